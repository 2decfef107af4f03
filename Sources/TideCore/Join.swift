/// Futures that wait for several futures: `Join2`, `Join3`, `JoinAll`.
///
/// All children are polled with the same context, so one task drives all of them concurrently; a
/// child that finished is never polled again. The join completes when the last child does.

/// Waits for two futures and returns both outputs.
public struct Join2<A: Future, B: Future>: Future {
    @usableFromInline var a: A
    @usableFromInline var b: B
    @usableFromInline var outputA: A.Output?
    @usableFromInline var outputB: B.Output?
    @usableFromInline var finished = false

    @inlinable
    init(_ a: A, _ b: B) {
        self.a = a
        self.b = b
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<(A.Output, B.Output)> {
        precondition(!finished, "Join2 polled after it completed")
        if outputA == nil, case .ready(let value) = a.poll(&context) { outputA = value }
        if outputB == nil, case .ready(let value) = b.poll(&context) { outputB = value }
        guard let first = outputA, let second = outputB else { return .pending }
        finished = true
        return .ready((first, second))
    }
}

/// Waits for three futures and returns all outputs.
public struct Join3<A: Future, B: Future, C: Future>: Future {
    @usableFromInline var a: A
    @usableFromInline var b: B
    @usableFromInline var c: C
    @usableFromInline var outputA: A.Output?
    @usableFromInline var outputB: B.Output?
    @usableFromInline var outputC: C.Output?
    @usableFromInline var finished = false

    @inlinable
    init(_ a: A, _ b: B, _ c: C) {
        self.a = a
        self.b = b
        self.c = c
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<(A.Output, B.Output, C.Output)> {
        precondition(!finished, "Join3 polled after it completed")
        if outputA == nil, case .ready(let value) = a.poll(&context) { outputA = value }
        if outputB == nil, case .ready(let value) = b.poll(&context) { outputB = value }
        if outputC == nil, case .ready(let value) = c.poll(&context) { outputC = value }
        guard let first = outputA, let second = outputB, let third = outputC else { return .pending }
        finished = true
        return .ready((first, second, third))
    }
}

/// Waits for every future in an array; the outputs keep the array's order.
public struct JoinAll<Child: Future>: Future {
    @usableFromInline var children: [Child]
    @usableFromInline var outputs: [Child.Output?]
    @usableFromInline var remaining: Int
    @usableFromInline var finished = false

    @inlinable
    init(_ children: [Child]) {
        self.children = children
        outputs = Array(repeating: nil, count: children.count)
        remaining = children.count
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<[Child.Output]> {
        precondition(!finished, "JoinAll polled after it completed")
        var index = 0
        while index < children.count {
            if outputs[index] == nil, case .ready(let value) = children[index].poll(&context) {
                outputs[index] = value
                remaining -= 1
            }
            index += 1
        }
        guard remaining == 0 else { return .pending }
        finished = true
        var result: [Child.Output] = []
        result.reserveCapacity(outputs.count)
        for output in outputs {
            guard let output else { preconditionFailure("JoinAll lost an output") }
            result.append(output)
        }
        return .ready(result)
    }
}

/// A future that waits for both `a` and `b`.
@inlinable
public func join<A: Future, B: Future>(_ a: A, _ b: B) -> Join2<A, B> { Join2(a, b) }

/// A future that waits for `a`, `b` and `c`.
@inlinable
public func join<A: Future, B: Future, C: Future>(_ a: A, _ b: B, _ c: C) -> Join3<A, B, C> {
    Join3(a, b, c)
}

/// A future that waits for every future in `futures` (an empty array is ready at once).
@inlinable
public func joinAll<F: Future>(_ futures: [F]) -> JoinAll<F> { JoinAll(futures) }
