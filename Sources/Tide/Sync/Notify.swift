/*
 Notify: wake one or all waiting tasks, with a stored permit for a `notifyOne` nobody waited for.

 State (guarded by `lock`): `permit` (at most one stored), `waiters`.
 notifyOne: wake the first waiter (signal `woken`), or store the permit if nobody waits.
 notifyAll: wake every registered waiter (signal `wokenAll`); stores no permit.
 notified() poll: woken -> done; permit -> consume it, done; else register (same lock hold).
 Cancellation: a dropped future unlinks its node; if it was `woken` by notifyOne but never saw it,
 the notification is passed on (next waiter, or the permit), so no notifyOne is lost.
 A notified() future counts as waiting from its first poll: notifyAll wakes futures that were
 polled before it, not ones created later.
*/

/// Wakes waiting tasks without carrying data: a condition-variable-like signal for async code.
///
/// ``notifyOne()`` wakes one waiter or, if nobody waits, stores a single permit that the next
/// ``notified()`` consumes at once (so a notification sent just before the wait is not lost).
/// ``notifyAll()`` wakes every current waiter and stores nothing.
public final class Notify: WaitSource, @unchecked Sendable {
    let lock = WordLock()
    @exclusivity(unchecked) var permit = false
    @exclusivity(unchecked) var waiters = WaitQueue()

    /// A notifier with no stored permit.
    public init() {}

    /// Wakes the longest-waiting task, or stores a permit if nobody waits (permits do not add up).
    public func notifyOne() {
        let wake = lock.withLock { notifyOneLocked() }
        wake?.wake()
    }

    func notifyOneLocked() -> Waker? {
        if waiters.isEmpty {
            permit = true
            return nil
        }
        return waiters.wakeFirst(signal: WaitNode.woken)
    }

    /// Wakes every task waiting right now; stores no permit.
    public func notifyAll() {
        var list = WakeList()
        lock.withLock { waiters.wakeAll(signal: WaitNode.wokenAll, into: &list) }
        list.wakeAll()
    }

    func poll(_ waiter: Waiter?, _ context: Context?) -> Bool {
        lock.withLock { () -> Bool in
            if let waiter, waiter.node.signal != WaitNode.idle, !waiter.node.isQueued {
                waiter.node.signal = WaitNode.idle
                return true
            }
            if permit {
                permit = false
                if let waiter { waiters.remove(waiter.node) }
                return true
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return false
        }
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        let wake: Waker? = lock.withLock {
            guard waiters.withdraw(node, handed: WaitNode.woken) == .wasHanded else { return nil }
            return notifyOneLocked()
        }
        wake?.wake()
    }

    /// Waits for a notification (or consumes a stored permit at once).
    ///
    /// Cancel-safe: a notification given to a cancelled wait is passed on.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    public nonisolated(nonsending) func notified() async throws(CancellationError) {
        if poll(nil, nil) { return }
        try await notifiedFuture().waitCancellable()
    }

    /// The wait as a poll-based future (for `select` and combinators). Cancel-safe.
    public func notifiedFuture() -> NotifiedFuture {
        NotifiedFuture(notify: self)
    }
}

/// A poll-based wait for a ``Notify``. Cancel-safe.
public struct NotifiedFuture: Future {
    let notify: Notify
    var waiter: Waiter?

    init(notify: Notify) { self.notify = notify }

    /// Completes on a notification or a stored permit; otherwise registers.
    public mutating func poll(_ context: inout Context) -> Poll<Void> {
        if waiter == nil {
            if notify.poll(nil, nil) { return .ready(()) }
            waiter = Waiter(source: notify)
        }
        return notify.poll(waiter, context) ? .ready(()) : .pending
    }
}
