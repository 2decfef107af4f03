/*
 Watch: one current value, observed by receivers that wait for it to change.

 State (guarded by `lock`): `value`, `version` (incremented by every send), `closed` (the sender is
 gone), `waiters`. Each receiver keeps `seen`, the version it last marked as seen (same lock).
 Send: replace the value, version += 1, wake every waiter (`wokenAll`). Several sends before a
   receiver looks coalesce: it sees one change and the latest value.
 changed(): version != seen -> seen = version, done; closed -> `closed`; else register (same lock
   hold: no lost wakeup). A dropped changed() future unlinks its node and marks nothing seen, so
   it is cancel-safe.
*/

/// Creates watch channels: a single value that changes over time (configuration, state, health).
///
/// Receivers read the current value at any time and can wait for the next change. Changes
/// coalesce: a receiver that was busy sees one change and the latest value, never a backlog.
public enum Watch<Value: Sendable> {
    /// A sender and a first receiver, starting from `initial` (which counts as seen).
    public static func make(initial: Value) -> (WatchSender<Value>, WatchReceiver<Value>) {
        let storage = WatchStorage(initial)
        return (WatchSender(storage), WatchReceiver(storage, seen: 0))
    }
}

/// Why ``WatchReceiver/changed()`` returned without a change.
public enum WatchError: Error, Equatable, Sendable {
    /// The sender is gone and the receiver has seen the last value.
    case closed
    /// The task was cancelled while waiting; nothing was marked as seen.
    case cancelled
}

@usableFromInline
final class WatchStorage<Value: Sendable>: WaitSource, @unchecked Sendable {
    let lock = WordLock()
    @exclusivity(unchecked) var value: Value
    @exclusivity(unchecked) var version = 0
    @exclusivity(unchecked) var closed = false
    @exclusivity(unchecked) var waiters = WaitQueue()

    init(_ value: Value) { self.value = value }

    func update(_ body: (inout Value) -> Void) {
        var list = WakeList()
        lock.withLock {
            body(&value)
            version += 1
            waiters.wakeAll(into: &list)
        }
        list.wakeAll()
    }

    func close() {
        var list = WakeList()
        lock.withLock {
            closed = true
            waiters.wakeAll(into: &list)
        }
        list.wakeAll()
    }

    func changed(_ receiver: WatchReceiver<Value>, _ waiter: Waiter?, _ context: Context?) -> WatchError? {
        lock.withLock { () -> WatchError? in
            if receiver.seen != version {
                receiver.seen = version
                if let waiter { waiters.remove(waiter.node) }
                return nil
            }
            if closed {
                if let waiter { waiters.remove(waiter.node) }
                return .closed
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return .cancelled
        }
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        lock.withLock { waiters.remove(node) }
    }
}

/// Publishes new values to a ``Watch`` channel. When it is released, receivers see `closed`
/// after the last value.
public final class WatchSender<Value: Sendable>: Sendable {
    let storage: WatchStorage<Value>

    init(_ storage: WatchStorage<Value>) { self.storage = storage }

    deinit { storage.close() }

    /// Replaces the value and wakes every receiver waiting in `changed()`. Never waits.
    public func send(_ value: Value) {
        storage.update { $0 = value }
    }

    /// Changes the value in place (under the channel's lock: keep `body` short) and notifies.
    public func modify(_ body: (inout Value) -> Void) {
        storage.update(body)
    }

    /// The current value.
    public var value: Value { storage.lock.withLock { storage.value } }

    /// A new receiver; the current value counts as seen by it.
    public func subscribe() -> WatchReceiver<Value> {
        WatchReceiver(storage, seen: storage.lock.withLock { storage.version })
    }
}

/// Observes a ``Watch`` channel: read the current value, wait for changes.
public final class WatchReceiver<Value: Sendable>: @unchecked Sendable {
    let storage: WatchStorage<Value>
    /// The version last marked as seen; guarded by `storage.lock`.
    @exclusivity(unchecked) var seen: Int

    init(_ storage: WatchStorage<Value>, seen: Int) {
        self.storage = storage
        self.seen = seen
    }

    /// The current value, without marking it as seen.
    public func borrow() -> Value {
        storage.lock.withLock { storage.value }
    }

    /// The current value, marking it as seen (the next `changed()` waits for a newer one).
    public func borrowAndUpdate() -> Value {
        storage.lock.withLock {
            seen = storage.version
            return storage.value
        }
    }

    /// Whether a value newer than the last seen one was sent.
    public var hasChanged: Bool { storage.lock.withLock { seen != storage.version } }

    /// Waits until a value newer than the last seen one is sent and marks it seen; read it with
    /// ``borrow()``. Returns at once if there is an unseen change.
    ///
    /// Cancel-safe: a cancelled wait marks nothing as seen.
    /// - Throws: ``WatchError/closed`` if the sender is gone and nothing new is left,
    ///   ``WatchError/cancelled`` if the task was cancelled while waiting.
    public nonisolated(nonsending) func changed() async throws(WatchError) {
        let error: WatchError?
        do {
            error = try await changedFuture().waitCancellable()
        } catch {
            throw .cancelled
        }
        if let error { throw error }
    }

    /// The wait as a poll-based future: `nil` on a change, ``WatchError/closed`` at the end.
    public func changedFuture() -> WatchChangedFuture<Value> {
        WatchChangedFuture(receiver: self)
    }

    /// Another receiver with the same seen version.
    public func clone() -> WatchReceiver<Value> {
        WatchReceiver(storage, seen: storage.lock.withLock { seen })
    }
}

/// A poll-based wait for a watch change; output `nil` means changed. Cancel-safe.
public struct WatchChangedFuture<Value: Sendable>: Future {
    let receiver: WatchReceiver<Value>
    var waiter: Waiter?

    init(receiver: WatchReceiver<Value>) { self.receiver = receiver }

    /// Completes on an unseen change or at the end; otherwise registers.
    public mutating func poll(_ context: inout Context) -> Poll<WatchError?> {
        let storage = receiver.storage
        if waiter == nil {
            let outcome = storage.changed(receiver, nil, nil)
            if outcome != .cancelled { return .ready(outcome) }
            waiter = Waiter(source: storage)
        }
        let outcome = storage.changed(receiver, waiter, context)
        if outcome == .cancelled { return .pending }
        return .ready(outcome)
    }
}
