/*
 RwLock<Value>: an async reader-writer lock, fair in FIFO order.

 State (guarded by `lock`): `readers` (shared holders), `writer` (an exclusive holder),
 `waiters` (FIFO; node.tag = read or write).
 Acquire: a granted node -> owned. With nobody queued: a read succeeds unless a writer holds the
   lock; a write succeeds if nobody holds it. Otherwise register at the tail: a new reader queues
   behind a waiting writer, so writers do not starve (and readers behind a writer do not either).
 Grant pass (after a release or a departure): if the head is a writer and the lock is free, grant
   it; else grant every reader at the head up to the first writer.
 Cancellation: a dropped future unlinks its node and runs the grant pass (it may have blocked the
   readers behind it); a granted but unseen acquisition is released first. Cancel-safe.
*/

import Synchronization

/// Errors from ``RwLock`` guards.
public enum RwLockError: Error, Equatable, Sendable {
    /// The guard was already unlocked.
    case alreadyUnlocked
}

/// An async reader-writer lock around a value: many readers or one writer at a time.
///
/// Fair: requests are served in arrival order, with consecutive readers admitted together, so
/// neither writers nor readers starve. Use it for read-mostly state whose critical sections await.
public final class RwLock<Value>: WaitSource, @unchecked Sendable {
    static var read: Int { 0 }
    static var write: Int { 1 }

    let lock = WordLock()
    @exclusivity(unchecked) var readers = 0
    @exclusivity(unchecked) var writer = false
    @exclusivity(unchecked) var waiters = WaitQueue()
    @exclusivity(unchecked) var value: Value

    /// A lock protecting `value`.
    public init(_ value: Value) { self.value = value }

    func acquire(_ kind: Int, _ waiter: Waiter?, _ context: Context?) -> Bool {
        lock.withLock { () -> Bool in
            if let waiter, waiter.node.signal == WaitNode.granted {
                waiter.node.signal = WaitNode.idle
                return true
            }
            if waiters.isEmpty && !writer {
                if kind == Self.read {
                    readers += 1
                    return true
                }
                if readers == 0 {
                    writer = true
                    return true
                }
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return false
        }
    }

    func grantLocked(into list: inout WakeList) {
        while let first = waiters.first, !writer {
            if first.tag == Self.write {
                guard readers == 0 else { return }
                writer = true
                list.add(waiters.wakeFirst(signal: WaitNode.granted))
                return
            }
            readers += 1
            list.add(waiters.wakeFirst(signal: WaitNode.granted))
        }
    }

    func releaseLocked(_ kind: Int) {
        if kind == Self.read { readers -= 1 } else { writer = false }
    }

    func release(_ kind: Int) {
        var list = WakeList()
        lock.withLock {
            releaseLocked(kind)
            grantLocked(into: &list)
        }
        list.wakeAll()
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        var list = WakeList()
        lock.withLock {
            switch waiters.withdraw(node, handed: WaitNode.granted) {
            case .dequeued: break
            case .wasHanded: releaseLocked(node.tag)
            case .nothing: return
            }
            grantLocked(into: &list)
        }
        list.wakeAll()
    }

    func acquireAsync(_ kind: Int) async throws(CancellationError) {
        if acquire(kind, nil, nil) { return }
        try await RwLockAcquireFuture(lock: self, kind: kind).waitCancellable()
    }

    /// Waits for shared access and returns a guard (FIFO with writers). Cancel-safe.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    public nonisolated(nonsending) func read() async throws(CancellationError) -> RwLockReadGuard<Value> {
        try await acquireAsync(Self.read)
        return RwLockReadGuard(self)
    }

    /// Waits for exclusive access and returns a guard (FIFO with readers). Cancel-safe.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    public nonisolated(nonsending) func write() async throws(CancellationError) -> RwLockWriteGuard<Value> {
        try await acquireAsync(Self.write)
        return RwLockWriteGuard(self)
    }

    /// Shared access if available at once (no writer holds or waits).
    public func tryRead() -> RwLockReadGuard<Value>? {
        acquire(Self.read, nil, nil) ? RwLockReadGuard(self) : nil
    }

    /// Exclusive access if available at once (nobody holds or waits).
    public func tryWrite() -> RwLockWriteGuard<Value>? {
        acquire(Self.write, nil, nil) ? RwLockWriteGuard(self) : nil
    }

    /// Runs `body` with shared access to the value, then releases it.
    /// - Throws: `CancellationError` if cancelled while waiting; whatever `body` throws.
    public nonisolated(nonsending) func withReadLock<Result>(
        _ body: (Value) async throws -> Result
    ) async throws -> Result {
        try await acquireAsync(Self.read)
        defer { release(Self.read) }
        return try await body(value)
    }

    /// Runs `body` with exclusive access to the value, then releases it.
    /// - Throws: `CancellationError` if cancelled while waiting; whatever `body` throws.
    public nonisolated(nonsending) func withWriteLock<Result>(
        _ body: (inout Value) async throws -> Result
    ) async throws -> Result {
        try await acquireAsync(Self.write)
        defer { release(Self.write) }
        return try await body(&value)
    }
}

/// Shared access to an ``RwLock``'s value until ``unlock()`` (or ARC release, as a safety net).
public final class RwLockReadGuard<Value>: @unchecked Sendable {
    let owner: RwLock<Value>
    let released = Atomic<Bool>(false)

    init(_ owner: RwLock<Value>) { self.owner = owner }

    deinit {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { owner.release(RwLock<Value>.read) }
    }

    /// The value (read-only).
    /// - Throws: ``RwLockError/alreadyUnlocked`` after ``unlock()``.
    public func get() throws(RwLockError) -> Value {
        if released.load(ordering: .acquiring) { throw .alreadyUnlocked }
        return owner.value
    }

    /// Releases shared access.
    /// - Throws: ``RwLockError/alreadyUnlocked`` on a second call.
    public func unlock() throws(RwLockError) {
        if released.exchange(true, ordering: .acquiringAndReleasing) { throw .alreadyUnlocked }
        owner.release(RwLock<Value>.read)
    }
}

/// Exclusive access to an ``RwLock``'s value until ``unlock()`` (or ARC release, as a safety net).
public final class RwLockWriteGuard<Value>: @unchecked Sendable {
    let owner: RwLock<Value>
    let released = Atomic<Bool>(false)

    init(_ owner: RwLock<Value>) { self.owner = owner }

    deinit {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { owner.release(RwLock<Value>.write) }
    }

    /// Runs `body` with the value.
    /// - Throws: ``RwLockError/alreadyUnlocked`` after ``unlock()``; whatever `body` throws.
    public func withValue<Result>(_ body: (inout Value) throws -> Result) throws -> Result {
        if released.load(ordering: .acquiring) { throw RwLockError.alreadyUnlocked }
        return try body(&owner.value)
    }

    /// Releases exclusive access.
    /// - Throws: ``RwLockError/alreadyUnlocked`` on a second call.
    public func unlock() throws(RwLockError) {
        if released.exchange(true, ordering: .acquiringAndReleasing) { throw .alreadyUnlocked }
        owner.release(RwLock<Value>.write)
    }
}

/// A poll-based RwLock acquisition (read or write). Cancel-safe.
struct RwLockAcquireFuture<Value>: Future {
    let lock: RwLock<Value>
    let kind: Int
    var waiter: Waiter?

    init(lock: RwLock<Value>, kind: Int) {
        self.lock = lock
        self.kind = kind
    }

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        if waiter == nil {
            if lock.acquire(kind, nil, nil) { return .ready(()) }
            waiter = Waiter(source: lock, tag: kind)
        }
        return lock.acquire(kind, waiter, context) ? .ready(()) : .pending
    }
}
