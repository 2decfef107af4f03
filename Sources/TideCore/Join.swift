/// Futures that wait for several futures: `Join2`, `Join3`, `JoinAll`.
///
/// One task drives all children concurrently; a child that finished is never polled again, and
/// the join completes when the last child does. Children are polled with the joiner's own
/// context, except in a large `JoinAll` that is woken often: that one gives each child a waker
/// of its own (see `JoinReadiness`).

import Synchronization

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
///
/// Each poll polls every unfinished child with the joiner's context, which is cheapest when
/// many children finish between polls. A join of more than ``JoinAll/scanLimit`` children that
/// is polled often with few children ready each time (its scans have polled its children four
/// times over) switches to a waker per child that records which child woke, and from then on
/// polls only those: joining n futures that finish one at a time costs O(n) polls, not O(n^2).
public struct JoinAll<Child: Future>: Future {
    /// Joins of at most this many children always scan.
    public static var scanLimit: Int { 32 }
    /// Child polls by scanning, as a multiple of the child count, after which a large join
    /// switches to a waker per child.
    @usableFromInline static var scansBeforeReadiness: Int { 4 }

    @usableFromInline var children: [Child]
    @usableFromInline var outputs: [Child.Output?]
    @usableFromInline var remaining: Int
    @usableFromInline var finished = false
    /// Child polls made by scanning so far.
    @usableFromInline var scanned = 0
    /// Which children woke, once the join switched to a waker per child.
    @usableFromInline var readiness: JoinReadiness?

    @inlinable
    init(_ children: [Child]) {
        self.children = children
        outputs = Array(repeating: nil, count: children.count)
        remaining = children.count
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<[Child.Output]> {
        precondition(!finished, "JoinAll polled after it completed")
        if let readiness {
            // Register first: a child that wakes after the take below wakes the joiner.
            readiness.joiner.register(context)
            var node = readiness.takeWoken()
            while let current = node {
                node = readiness.next(after: current)
                readiness.rearm(current)
                pollChild(readiness.index(of: current), readiness)
            }
        } else if children.count > Self.scanLimit
            && scanned >= Self.scansBeforeReadiness * children.count
        {
            // Polled often, few children ready each time: give each child its own waker. The
            // poll below replaces the joiner's waker in every child that is still pending.
            let made = JoinReadiness(count: children.count)
            readiness = made
            made.joiner.register(context)
            for index in 0..<children.count { pollChild(index, made) }
        } else {
            var index = 0
            while index < children.count {
                if outputs[index] == nil {
                    scanned += 1
                    pollChild(index, &context)
                }
                index += 1
            }
        }
        guard remaining == 0 else { return .pending }
        finished = true
        readiness = nil
        var result: [Child.Output] = []
        result.reserveCapacity(outputs.count)
        for output in outputs {
            guard let output else { preconditionFailure("JoinAll lost an output") }
            result.append(output)
        }
        return .ready(result)
    }

    @inlinable
    mutating func pollChild(_ index: Int, _ context: inout Context) {
        if outputs[index] == nil, case .ready(let value) = children[index].poll(&context) {
            outputs[index] = value
            remaining -= 1
        }
    }

    @inlinable
    mutating func pollChild(_ index: Int, _ readiness: JoinReadiness) {
        var context = readiness.context(for: index)
        pollChild(index, &context)
    }
}

/*
 JoinReadiness: which children of a large JoinAll woke since its last poll (once it switched to
 a waker per child).

 One node per child, in one allocation. A node's waker data pointer is the node itself; the
 wakers hold references to the JoinReadiness object, found through the node's `owner` field.
 `link` is 1 while the node is not queued; a wake that swaps it from 1 owns the node, pushes it
 onto `woken` (a Treiber stack: `link` becomes the previous head, 0 at the bottom) and wakes the
 joiner if the stack was empty (otherwise the push that made it non-empty woke the joiner,
 whose next poll takes this node too). The poll registers the joiner's waker, then takes the
 whole stack at once with an exchange, so nodes are never popped one by one and the stack has no
 ABA problem; it reads each node's successor, then sets its `link` back to 1 before polling
 that child, so a wake during or after that poll queues it again.
*/

/// The nodes of one large `JoinAll` and the stack of those that woke.
@usableFromInline
final class JoinReadiness: @unchecked Sendable {
    @usableFromInline
    struct Node: ~Copyable {
        @usableFromInline let link: Atomic<UInt>
        @usableFromInline let owner: UnsafeRawPointer

        @usableFromInline
        init(owner: UnsafeRawPointer) {
            link = Atomic(1)
            self.owner = owner
        }
    }

    @usableFromInline let joiner = AtomicWaker()
    @usableFromInline let woken = Atomic<UInt>(0)
    /// `Self.vtable`, read once: a static is a lazy global, checked at every access.
    @usableFromInline let nodeVTable: WakerVTable
    @usableFromInline let nodes: UnsafeMutablePointer<Node>
    @usableFromInline let count: Int

    @usableFromInline
    init(count: Int) {
        self.count = count
        nodeVTable = Self.vtable
        nodes = .allocate(capacity: count)
        let owner = UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque())
        for index in 0..<count { (nodes + index).initialize(to: Node(owner: owner)) }
    }

    deinit {
        nodes.deinitialize(count: count)
        nodes.deallocate()
    }

    /// A context whose waker queues child `index`.
    @inlinable
    func context(for index: Int) -> Context {
        Context(unownedData: UnsafeRawPointer(nodes + index), vtable: nodeVTable)
    }

    /// Takes every node queued since the last take (most recent first); nil when none.
    @inlinable
    func takeWoken() -> UnsafeMutablePointer<Node>? {
        UnsafeMutablePointer(bitPattern: woken.exchange(0, ordering: .acquiring))
    }

    /// The node below `node` in a taken stack.
    @inlinable
    func next(after node: UnsafeMutablePointer<Node>) -> UnsafeMutablePointer<Node>? {
        UnsafeMutablePointer(bitPattern: node.pointee.link.load(ordering: .relaxed))
    }

    /// Marks a taken node as not queued, so that its next wake queues it again.
    @inlinable
    func rearm(_ node: UnsafeMutablePointer<Node>) {
        node.pointee.link.store(1, ordering: .releasing)
    }

    @inlinable
    func index(of node: UnsafeMutablePointer<Node>) -> Int { node - nodes }

    /// Queues `node` unless it is queued already, and wakes the joiner if the stack was empty
    /// (a node already on the stack means its push woke the joiner, whose next poll takes the
    /// whole stack, this node included).
    func wake(_ node: UnsafeMutablePointer<Node>) {
        guard node.pointee.link.compareExchange(
            expected: 1, desired: 0, ordering: .acquiring
        ).exchanged else { return }
        let address = UInt(bitPattern: node)
        var head = woken.load(ordering: .relaxed)
        while true {
            node.pointee.link.store(head, ordering: .relaxed)
            let (exchanged, original) = woken.compareExchange(
                expected: head, desired: address, ordering: .releasing)
            if exchanged { break }
            head = original
        }
        if head == 0 { joiner.wake() }
    }

    private static func owner(of data: UnsafeRawPointer?) -> Unmanaged<JoinReadiness> {
        let node = data!.assumingMemoryBound(to: Node.self)
        return Unmanaged.fromOpaque(node.pointee.owner)
    }

    @usableFromInline
    static let vtable = WakerVTable(
        clone: { data in
            _ = JoinReadiness.owner(of: data).retain()
            return data
        },
        wake: { data in
            let owner = JoinReadiness.owner(of: data)
            owner._withUnsafeGuaranteedRef {
                $0.wake(UnsafeMutablePointer(mutating: data!.assumingMemoryBound(to: Node.self)))
            }
            owner.release()
        },
        wakeByRef: { data in
            JoinReadiness.owner(of: data)._withUnsafeGuaranteedRef {
                $0.wake(UnsafeMutablePointer(mutating: data!.assumingMemoryBound(to: Node.self)))
            }
        },
        drop: { data in
            JoinReadiness.owner(of: data).release()
        }
    )
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
