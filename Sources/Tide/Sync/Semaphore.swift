/*
 Semaphore: counted permits with FIFO waiters that may ask for several permits at once.

 State (guarded by `lock`): `permits` available now, `maximum` (the initial count unless given),
 `waiters` (node.amount = permits requested).
 Acquire n: a granted node -> done; nobody queued and n available -> take them; else register.
 Grant pass (after a release or a departure): while the first waiter's request fits, subtract it,
   mark the node `granted` and wake it. Strict FIFO: a large request at the head blocks smaller
   ones behind it, so large requests never starve.
 Release n: over-release (more than are held, maximum - permits) is a typed error, else add them
   and run the grant pass.
 Cancellation: a dropped acquire future unlinks its node and runs the grant pass (it may have been
   the head that blocked others); if it had been granted, its permits go back first. Cancel-safe.
*/

/// Errors from ``Semaphore``.
public enum SemaphoreError: Error, Equatable, Sendable {
    /// A permit count below 0 (creation) or below 1 (acquire/release), or a maximum below the
    /// initial count.
    case invalidCount(Int)
    /// An acquire asked for more permits than the semaphore can ever have.
    case exceedsMaximum(requested: Int, maximum: Int)
    /// A release would make more permits available than the maximum (released more than held).
    case overRelease(released: Int, held: Int)
    /// The task was cancelled while waiting; no permit was taken.
    case cancelled
}

/// An async counting semaphore: limits how many tasks do something at once.
///
/// `acquire(n)` waits until `n` permits are free; waiters are served in FIFO order. Releasing more
/// permits than are held is reported as an error rather than silently raising the limit.
public final class Semaphore: WaitSource, @unchecked Sendable {
    @usableFromInline let lock = WordLock()
    @exclusivity(unchecked) @usableFromInline var permits: Int
    @usableFromInline let maximum: Int
    @exclusivity(unchecked) @usableFromInline var waiters = WaitQueue()

    /// A semaphore with `permits` free permits; the maximum is `maximum` (default: `permits`).
    ///
    /// - Throws: ``SemaphoreError/invalidCount(_:)`` if `permits` is negative or `maximum` is
    ///   smaller than `permits`.
    public init(permits: Int, maximum: Int? = nil) throws(SemaphoreError) {
        guard permits >= 0 else { throw .invalidCount(permits) }
        let limit = maximum ?? permits
        guard limit >= permits, limit >= 1 else { throw .invalidCount(limit) }
        self.permits = permits
        self.maximum = limit
    }

    /// How many permits are free right now.
    public var availablePermits: Int { lock.withLock { permits } }

    func check(_ count: Int) throws(SemaphoreError) {
        guard count >= 1 else { throw .invalidCount(count) }
        guard count <= maximum else { throw .exceedsMaximum(requested: count, maximum: maximum) }
    }

    func acquire(_ count: Int, _ waiter: Waiter?, _ context: Context?) -> Bool {
        lock.withLock { () -> Bool in
            if let waiter, waiter.node.signal == WaitNode.granted {
                waiter.node.signal = WaitNode.idle
                return true
            }
            if waiters.isEmpty && permits >= count {
                permits -= count
                return true
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return false
        }
    }

    /// Grants permits to waiters at the head while their requests fit. Call with `lock` held.
    func grantLocked(into list: inout WakeList) {
        while let first = waiters.first, first.amount <= permits {
            permits -= first.amount
            list.add(waiters.wakeFirst(signal: WaitNode.granted))
        }
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        var list = WakeList()
        lock.withLock {
            switch waiters.withdraw(node, handed: WaitNode.granted) {
            case .dequeued: break
            case .wasHanded: permits += node.amount
            case .nothing: return
            }
            grantLocked(into: &list)
        }
        list.wakeAll()
    }

    /// Waits for `count` permits (FIFO). Release them with ``release(_:)``.
    ///
    /// Cancel-safe: a cancelled acquire holds no permit and does not block others.
    /// - Throws: ``SemaphoreError/invalidCount(_:)`` if `count < 1`,
    ///   ``SemaphoreError/exceedsMaximum(requested:maximum:)`` if it can never be satisfied,
    ///   ``SemaphoreError/cancelled`` if the task is cancelled while waiting.
    public nonisolated(nonsending) func acquire(_ count: Int = 1) async throws(SemaphoreError) {
        try check(count)
        if acquire(count, nil, nil) { return }
        do {
            try await acquireFuture(unchecked: count).waitCancellable()
        } catch {
            throw .cancelled
        }
    }

    /// Takes `count` permits if they are free and nobody waits; returns whether it did.
    ///
    /// - Throws: as ``acquire(_:)`` for invalid counts.
    public func tryAcquire(_ count: Int = 1) throws(SemaphoreError) -> Bool {
        try check(count)
        return acquire(count, nil, nil)
    }

    /// The acquisition as a poll-based future (for `select` and combinators). Cancel-safe.
    ///
    /// - Throws: as ``acquire(_:)`` for invalid counts.
    public func acquireFuture(_ count: Int = 1) throws(SemaphoreError) -> SemaphoreAcquireFuture {
        try check(count)
        return acquireFuture(unchecked: count)
    }

    func acquireFuture(unchecked count: Int) -> SemaphoreAcquireFuture {
        SemaphoreAcquireFuture(semaphore: self, count: count)
    }

    /// Gives back `count` permits and wakes the waiters they satisfy.
    ///
    /// - Throws: ``SemaphoreError/invalidCount(_:)`` if `count < 1`;
    ///   ``SemaphoreError/overRelease(released:held:)`` if more permits would be free than the
    ///   maximum (nothing is released then).
    public func release(_ count: Int = 1) throws(SemaphoreError) {
        guard count >= 1 else { throw .invalidCount(count) }
        var list = WakeList()
        let held: Int? = lock.withLock {
            let held = maximum - permits
            guard count <= held else { return held }
            permits += count
            grantLocked(into: &list)
            return nil
        }
        list.wakeAll()
        if let held { throw .overRelease(released: count, held: held) }
    }

    /// Runs `body` holding `count` permits and releases them afterwards (also when it throws).
    ///
    /// - Throws: the errors of ``acquire(_:)``, or whatever `body` throws.
    public nonisolated(nonsending) func withPermits<Result>(
        _ count: Int = 1, _ body: () async throws -> Result
    ) async throws -> Result {
        try await acquire(count)
        defer { try? release(count) }
        return try await body()
    }
}

/// A poll-based semaphore acquisition. Cancel-safe.
public struct SemaphoreAcquireFuture: Future {
    let semaphore: Semaphore
    let count: Int
    var waiter: Waiter?

    init(semaphore: Semaphore, count: Int) {
        self.semaphore = semaphore
        self.count = count
    }

    /// Takes the permits if granted or free; otherwise waits in FIFO order.
    public mutating func poll(_ context: inout Context) -> Poll<Void> {
        if waiter == nil {
            if semaphore.acquire(count, nil, nil) { return .ready(()) }
            waiter = Waiter(source: semaphore, amount: count)
        }
        return semaphore.acquire(count, waiter, context) ? .ready(()) : .pending
    }
}
