/*
 Mutex<Value>: an async, FIFO-fair lock around a value.

 State (guarded by `lock`, a `WordLock` held only for a few instructions):
   locked   whether some task owns the async lock
   waiters  FIFO of lock futures waiting for it
 Acquire: a granted node -> owned; else free and nobody queued -> take it; else register at the
   tail (same lock hold: no lost wakeup). New arrivals never overtake queued waiters.
 Release: if someone waits, ownership is handed to the first waiter (`locked` stays true, its node
   is marked `granted`, it is woken); otherwise `locked = false`.
 Cancellation: a dropped lock future's `abandon` unlinks its node; if it had already been granted
   the lock but never saw it, the lock is handed on (or released), so a cancelled `lock()` can
   neither keep the lock nor lose a hand-over. Lock futures are therefore cancel-safe.
 `value` is touched only by the owner of the async lock.
*/

import Synchronization

/// Errors from ``Mutex`` and its guards.
public enum MutexError: Error, Equatable, Sendable {
    /// The guard was already unlocked (a second `unlock()`, or using it after unlocking).
    case alreadyUnlocked
}

/// An async mutual-exclusion lock that protects a value: waiting suspends the task, not the thread.
///
/// Waiters get the lock in the order they asked for it (FIFO), so nobody starves. Use it when the
/// critical section awaits (I/O, channel operations); for a few instructions without `await`,
/// `Synchronization.Mutex` is cheaper.
///
/// ```swift
/// let counter = Tide.Mutex(0)
/// try await counter.withLock { value in value += 1 }
/// ```
public final class Mutex<Value>: WaitSource, @unchecked Sendable {
    @usableFromInline let lock = WordLock()
    @exclusivity(unchecked) @usableFromInline var locked = false
    @exclusivity(unchecked) @usableFromInline var waiters = WaitQueue()
    @exclusivity(unchecked) @usableFromInline var value: Value

    /// A mutex protecting `value`.
    public init(_ value: Value) {
        self.value = value
    }

    /// One acquisition attempt; registers `waiter` if the lock is not available.
    @inlinable
    func acquire(_ waiter: Waiter?, _ context: Context?) -> Bool {
        lock.withLock { () -> Bool in
            if let waiter, waiter.node.signal == WaitNode.granted {
                waiter.node.signal = WaitNode.idle
                return true
            }
            if !locked && waiters.isEmpty {
                locked = true
                return true
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return false
        }
    }

    /// Hands the lock to the first waiter, or frees it. Call with `lock` held.
    @usableFromInline
    func releaseLocked() -> Waker? {
        if waiters.isEmpty {
            locked = false
            return nil
        }
        return waiters.wakeFirst(signal: WaitNode.granted)
    }

    @usableFromInline
    func release() {
        let wake = lock.withLock { releaseLocked() }
        wake?.wake()
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        let wake: Waker? = lock.withLock {
            guard waiters.withdraw(node, handed: WaitNode.granted) == .wasHanded else { return nil }
            return releaseLocked()
        }
        wake?.wake()
    }

    /// Waits for the lock and returns a guard that owns it until ``MutexGuard/unlock()`` (or until
    /// the guard is released by ARC, as a safety net).
    ///
    /// Cancel-safe: a cancelled wait neither takes the lock nor delays the next waiter.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    public nonisolated(nonsending) func lock() async throws(CancellationError) -> MutexGuard<Value> {
        if acquire(nil, nil) { return MutexGuard(self) }
        return try await lockFuture().waitCancellable()
    }

    /// Takes the lock if it is free and nobody is waiting, without suspending.
    public func tryLock() -> MutexGuard<Value>? {
        acquire(nil, nil) ? MutexGuard(self) : nil
    }

    /// The lock acquisition as a poll-based future (for `select`, combinators, poll tasks).
    /// Cancel-safe: dropping it before it completes hands a granted lock on.
    public func lockFuture() -> MutexLockFuture<Value> {
        MutexLockFuture(mutex: self)
    }

    /// Runs `body` with exclusive access to the value, then unlocks (also when `body` throws).
    ///
    /// - Throws: `CancellationError` if the task is cancelled while waiting for the lock (then
    ///   `body` does not run); otherwise whatever `body` throws.
    public nonisolated(nonsending) func withLock<Result>(
        _ body: (inout Value) async throws -> Result
    ) async throws -> Result {
        if !acquire(nil, nil) {
            _ = try await AcquireOnly(mutex: self).waitCancellable()
        }
        defer { release() }
        return try await body(&value)
    }
}

/// Owns a ``Mutex``'s lock; unlock it with ``unlock()``.
public final class MutexGuard<Value>: @unchecked Sendable {
    @usableFromInline let mutex: Mutex<Value>
    @usableFromInline let released = Atomic<Bool>(false)

    init(_ mutex: Mutex<Value>) { self.mutex = mutex }

    deinit {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { mutex.release() }
    }

    /// Gives the lock back (to the next waiter, in FIFO order).
    ///
    /// - Throws: ``MutexError/alreadyUnlocked`` if this guard was already unlocked.
    public func unlock() throws(MutexError) {
        if released.exchange(true, ordering: .acquiringAndReleasing) { throw .alreadyUnlocked }
        mutex.release()
    }

    /// Runs `body` with the protected value.
    ///
    /// - Throws: ``MutexError/alreadyUnlocked`` if the guard was unlocked (the value is then not
    ///   touched); otherwise whatever `body` throws.
    public func withValue<Result>(_ body: (inout Value) throws -> Result) throws -> Result {
        if released.load(ordering: .acquiring) { throw MutexError.alreadyUnlocked }
        return try body(&mutex.value)
    }
}

/// A poll-based lock acquisition; its output is the guard. Cancel-safe.
public struct MutexLockFuture<Value>: Future {
    @usableFromInline var inner: AcquireOnly<Value>

    init(mutex: Mutex<Value>) { inner = AcquireOnly(mutex: mutex) }

    /// Takes the lock if it was handed over or is free; otherwise waits in FIFO order.
    public mutating func poll(_ context: inout Context) -> Poll<MutexGuard<Value>> {
        guard case .ready = inner.poll(&context) else { return .pending }
        return .ready(MutexGuard(inner.mutex))
    }
}

/// Acquires the lock without making a guard (for `withLock`, which releases it itself).
@usableFromInline
struct AcquireOnly<Value>: Future {
    @usableFromInline let mutex: Mutex<Value>
    @usableFromInline var waiter: Waiter?

    @usableFromInline
    init(mutex: Mutex<Value>) { self.mutex = mutex }

    @usableFromInline
    mutating func poll(_ context: inout Context) -> Poll<Void> {
        if waiter == nil {
            if mutex.acquire(nil, nil) { return .ready(()) }
            waiter = Waiter(source: mutex)
        }
        return mutex.acquire(waiter, context) ? .ready(()) : .pending
    }
}

/// Tide's async ``Mutex``, under a name that does not clash with `Synchronization.Mutex`.
///
/// A file that imports both Tide and Synchronization cannot write `Tide.Mutex` (the name `Tide`
/// finds the ``Tide`` namespace, not the module); it can write `AsyncMutex` or `Tide.Mutex`
/// through the alias below.
public typealias AsyncMutex<Value> = Mutex<Value>

extension Tide {
    /// Tide's async ``Mutex`` (see ``AsyncMutex``), so `Tide.Mutex` names it even when
    /// Synchronization is imported too.
    public typealias Mutex<Value> = AsyncMutex<Value>
}
