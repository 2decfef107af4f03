/*
 Barrier: `count` tasks wait until all of them have arrived; then all continue together.

 State (guarded by `lock`): `arrived` in the current generation, `generation`, `waiters`.
 wait(): the first poll arrives: arrived += 1. The last arriver (arrived == count) is the leader:
   it resets `arrived`, bumps `generation` and wakes every waiter (`wokenAll`). Others remember the
   generation (node.amount) and register; they complete once `generation` moved on.
 Cancellation: a waiter dropped before its generation completed is still queued; `abandon`
   unlinks it and takes its arrival back (arrived -= 1), so a cancelled task does not count
   towards the barrier. After the generation completed there is nothing to undo: the arrival
   counted, so the async `wait()` decides under the lock (`leave`) whether a cancelled wait is
   taken back (still queued: it throws) or had already passed (it returns, not cancelled).
*/

/// Errors from ``Barrier``.
public enum BarrierError: Error, Equatable, Sendable {
    /// A barrier needs at least one participant.
    case invalidCount(Int)
    /// The task was cancelled while waiting; its arrival was taken back.
    case cancelled
}

/// What ``Barrier/wait()`` tells each participant.
public struct BarrierWaitResult: Sendable, Equatable {
    /// True for exactly one participant per generation: the last one to arrive.
    public let isLeader: Bool
}

/// Makes a group of `count` tasks wait for each other; reusable for successive rounds.
///
/// Each round (generation) ends when the `count`-th task arrives; that task is told it is the
/// leader (to do once-per-round work). A cancelled waiter takes its arrival back.
public final class Barrier: WaitSource, @unchecked Sendable {
    let lock = WordLock()
    let count: Int
    @exclusivity(unchecked) var arrived = 0
    @exclusivity(unchecked) var generation = 0
    @exclusivity(unchecked) var waiters = WaitQueue()

    /// A barrier for `count` participants.
    /// - Throws: ``BarrierError/invalidCount(_:)`` if `count` is less than 1.
    public init(count: Int) throws(BarrierError) {
        guard count >= 1 else { throw .invalidCount(count) }
        self.count = count
    }

    /// Arrives (first call for `waiter`) or checks the generation; registers while waiting.
    func poll(_ waiter: Waiter, _ arrive: Bool, _ context: Context) -> BarrierWaitResult? {
        var list = WakeList()
        let result: BarrierWaitResult? = lock.withLock {
            if arrive {
                arrived += 1
                if arrived == count {
                    arrived = 0
                    generation += 1
                    waiters.wakeAll(into: &list)
                    return BarrierWaitResult(isLeader: true)
                }
                waiter.node.amount = generation
            } else if generation != waiter.node.amount {
                waiters.remove(waiter.node)
                return BarrierWaitResult(isLeader: false)
            }
            waiters.register(waiter.node, context)
            return nil
        }
        list.wakeAll()
        return result
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        lock.withLock {
            guard node.isQueued else { return }
            waiters.remove(node)
            arrived -= 1
        }
    }

    /// Arrives and waits until all `count` participants of this generation have arrived.
    ///
    /// Cancel-safe in the sense that a cancelled wait takes its arrival back.
    /// - Throws: ``BarrierError/cancelled`` if the task is cancelled before the round completes.
    public nonisolated(nonsending) func wait() async throws(BarrierError) -> BarrierWaitResult {
        var future = waitFuture()
        if let result = await pollToCompletion(&future, cancellable: true) { return result }
        // Cancelled. A round that completed meanwhile counted this arrival: the wait passed.
        if let waiter = future.waiter, let passed = leave(waiter) { return passed }
        throw .cancelled
    }

    /// For a cancelled `wait()`: takes the arrival back if its round has not completed (nil),
    /// else returns the result of the round it passed. Decided under the lock, against a leader
    /// completing the round at the same moment.
    func leave(_ waiter: Waiter) -> BarrierWaitResult? {
        lock.withLock {
            // Queued means waiting for its round; once the leader's `wakeAll` took it out, the
            // round completed with this arrival in it.
            guard waiter.node.isQueued else { return BarrierWaitResult(isLeader: false) }
            waiters.remove(waiter.node)
            arrived -= 1
            return nil
        }
    }

    /// The wait as a poll-based future. Dropping it before its round completes takes the arrival
    /// back; once the round completed, the arrival counted whether or not it was polled again.
    public func waitFuture() -> BarrierWaitFuture {
        BarrierWaitFuture(barrier: self)
    }
}

/// A poll-based barrier wait: it arrives on its first poll.
public struct BarrierWaitFuture: Future {
    let barrier: Barrier
    var waiter: Waiter?

    init(barrier: Barrier) { self.barrier = barrier }

    /// Arrives on the first poll; completes when the generation completes.
    public mutating func poll(_ context: inout Context) -> Poll<BarrierWaitResult> {
        let arrive = waiter == nil
        if arrive { waiter = Waiter(source: barrier) }
        guard let result = barrier.poll(waiter.unsafelyUnwrapped, arrive, context) else { return .pending }
        return .ready(result)
    }
}
