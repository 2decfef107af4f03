/// Futures that race several futures: the first one ready wins and the others are dropped.
///
/// Children are polled in order with the same context, so when several are ready in the same
/// poll the earlier one wins (a biased select; Tide's channel `select` is the fair one). Dropping
/// a losing child runs its cleanup (deinit of whatever it registered), so a child must be
/// cancel-safe for `select` to lose nothing.

/// The output of a two-way select: which side won, and its value.
public enum Either<Left, Right> {
    /// The first future finished first.
    case left(Left)
    /// The second future finished first.
    case right(Right)
}

extension Either: Sendable where Left: Sendable, Right: Sendable {}
extension Either: Equatable where Left: Equatable, Right: Equatable {}

/// Races two futures.
public struct Select2<A: Future, B: Future>: Future {
    @usableFromInline var a: A?
    @usableFromInline var b: B?

    @inlinable
    init(_ a: A, _ b: B) {
        self.a = a
        self.b = b
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Either<A.Output, B.Output>> {
        guard var first = a.take(), var second = b.take() else {
            preconditionFailure("Select2 polled after it completed")
        }
        if case .ready(let value) = first.poll(&context) { return .ready(.left(value)) }
        if case .ready(let value) = second.poll(&context) { return .ready(.right(value)) }
        a = first
        b = second
        return .pending
    }
}

/// Races every future in an array; the output is the winner's index and value.
public struct SelectAll<Child: Future>: Future {
    @usableFromInline var children: [Child]
    @usableFromInline var finished = false

    @inlinable
    init(_ children: [Child]) {
        precondition(!children.isEmpty, "select over no futures would never complete")
        self.children = children
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<(index: Int, output: Child.Output)> {
        precondition(!finished, "SelectAll polled after it completed")
        var index = 0
        while index < children.count {
            if case .ready(let value) = children[index].poll(&context) {
                finished = true
                children.removeAll()
                return .ready((index, value))
            }
            index += 1
        }
        return .pending
    }
}

/// A future that completes with whichever of `a` and `b` finishes first, dropping the other.
@inlinable
public func select<A: Future, B: Future>(_ a: A, _ b: B) -> Select2<A, B> { Select2(a, b) }

/// A future that completes with the first of `futures` to finish, dropping the rest. The array
/// must not be empty.
@inlinable
public func selectAll<F: Future>(_ futures: [F]) -> SelectAll<F> { SelectAll(futures) }
