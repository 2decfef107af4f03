/*
 Oneshot: one value, sent once, received once.

 State (guarded by `lock`): `value` (set by send, taken by the receiver), `phase` (open, sent,
 senderDropped, received), `receiverGone`, and `waiters` (receive futures; normally at most one,
 but copies of a receive future may each wait). Sending or dropping the sender wakes every waiter
 (`wokenAll`); a dropped receive future unlinks its node in `abandon` and nothing else is needed
 (the value stays in the cell until a receive takes it), so receiving is cancel-safe.
*/

/// Creates a one-shot channel: ``OneshotSender/send(_:)`` once, ``OneshotReceiver/receive()`` once.
///
/// Use it to hand one result back from a task or a callback (a reply channel). If the sender is
/// dropped without sending, the receiver gets ``OneshotError/closed`` instead of waiting forever.
public enum Oneshot<Value: Sendable> {
    /// A new sender/receiver pair.
    public static func make() -> (OneshotSender<Value>, OneshotReceiver<Value>) {
        let storage = OneshotStorage<Value>()
        return (OneshotSender(storage), OneshotReceiver(storage))
    }
}

/// Why a oneshot receive returned no value.
public enum OneshotError: Error, Equatable, Sendable {
    /// The sender was dropped without sending.
    case closed
    /// Nothing was sent yet (only from ``OneshotReceiver/tryReceive()``).
    case empty
    /// The value was already received.
    case alreadyReceived
    /// The receiving task was cancelled while waiting; the value, if sent later, stays available.
    case cancelled
}

/// Why a oneshot send failed; the value comes back.
public enum OneshotSendError<Value: Sendable>: Error {
    /// `send` was already called once.
    case alreadySent(Value)
    /// The receiver is gone, so nobody can ever receive the value.
    case closed(Value)
}

@usableFromInline
final class OneshotStorage<Value: Sendable>: WaitSource, @unchecked Sendable {
    @usableFromInline static var open: Int { 0 }
    @usableFromInline static var sent: Int { 1 }
    @usableFromInline static var senderDropped: Int { 2 }
    @usableFromInline static var received: Int { 3 }

    @usableFromInline let lock = SyncLock()
    @exclusivity(unchecked) @usableFromInline var value: Value?
    @exclusivity(unchecked) @usableFromInline var phase = 0
    @exclusivity(unchecked) @usableFromInline var receiverGone = false
    @exclusivity(unchecked) @usableFromInline var waiters = WaitQueue()

    @usableFromInline
    init() {}

    func send(_ value: Value) throws(OneshotSendError<Value>) {
        var list = WakeList()
        let outcome: Int = lock.withLock {
            if phase != Self.open { return 1 }
            if receiverGone { return 2 }
            self.value = value
            phase = Self.sent
            waiters.wakeAll(into: &list)
            return 0
        }
        list.wakeAll()
        if outcome == 1 { throw .alreadySent(value) }
        if outcome == 2 { throw .closed(value) }
    }

    func senderDropped() {
        var list = WakeList()
        lock.withLock {
            if phase == Self.open { phase = Self.senderDropped }
            waiters.wakeAll(into: &list)
        }
        list.wakeAll()
    }

    func receiverDropped() {
        let dropped: Value? = lock.withLock {
            receiverGone = true
            return value.take()
        }
        _ = dropped
    }

    /// Takes the value, or says why not; registers `waiter` when nothing was sent yet.
    @usableFromInline
    func take(_ waiter: Waiter?, _ context: Context?) -> Result<Value, OneshotError> {
        lock.withLock { () -> Result<Value, OneshotError> in
            switch phase {
            case Self.sent:
                phase = Self.received
                if let waiter { waiters.remove(waiter.node) }
                return .success(value.take().unsafelyUnwrapped)
            case Self.senderDropped:
                if let waiter { waiters.remove(waiter.node) }
                return .failure(.closed)
            case Self.received:
                if let waiter { waiters.remove(waiter.node) }
                return .failure(.alreadyReceived)
            default:
                if let waiter, let context { waiters.register(waiter.node, context) }
                return .failure(.empty)
            }
        }
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        lock.withLock { waiters.remove(node) }
    }
}

/// Sends the one value of a oneshot channel. Dropping it without sending closes the channel.
public final class OneshotSender<Value: Sendable>: Sendable {
    let storage: OneshotStorage<Value>

    init(_ storage: OneshotStorage<Value>) { self.storage = storage }

    deinit { storage.senderDropped() }

    /// Sends `value` and wakes the receiver. Never suspends.
    ///
    /// - Throws: ``OneshotSendError/alreadySent(_:)`` on a second call,
    ///   ``OneshotSendError/closed(_:)`` if the receiver is gone; both hand the value back.
    public func send(_ value: Value) throws(OneshotSendError<Value>) {
        try storage.send(value)
    }
}

/// Receives the one value of a oneshot channel.
public final class OneshotReceiver<Value: Sendable>: Sendable {
    @usableFromInline let storage: OneshotStorage<Value>

    init(_ storage: OneshotStorage<Value>) { self.storage = storage }

    deinit { storage.receiverDropped() }

    /// Waits for the value.
    ///
    /// Cancel-safe: a cancelled receive takes nothing; a later receive still gets the value.
    /// - Throws: ``OneshotError/closed`` if the sender was dropped without sending,
    ///   ``OneshotError/alreadyReceived`` if the value was taken before,
    ///   ``OneshotError/cancelled`` if the task was cancelled while waiting.
    public nonisolated(nonsending) func receive() async throws(OneshotError) -> Value {
        let result: Result<Value, OneshotError>
        do {
            result = try await receiveFuture().waitCancellable()
        } catch {
            throw .cancelled
        }
        return try result.get()
    }

    /// Takes the value if it was sent, without waiting.
    ///
    /// - Throws: ``OneshotError/empty`` if nothing was sent yet, otherwise as ``receive()``.
    public func tryReceive() throws(OneshotError) -> Value {
        try storage.take(nil, nil).get()
    }

    /// The receive as a poll-based future (for `select` and combinators). Cancel-safe.
    public func receiveFuture() -> OneshotReceiveFuture<Value> {
        OneshotReceiveFuture(receiver: self)
    }
}

/// A poll-based oneshot receive; its output is the value or why there is none. Cancel-safe.
public struct OneshotReceiveFuture<Value: Sendable>: Future {
    @usableFromInline let receiver: OneshotReceiver<Value>
    @usableFromInline var waiter: Waiter?

    init(receiver: OneshotReceiver<Value>) { self.receiver = receiver }

    /// Takes the value if it is there, else registers for the send (or the sender's drop).
    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Result<Value, OneshotError>> {
        let storage = receiver.storage
        if waiter == nil {
            let result = storage.take(nil, nil)
            if case .failure(.empty) = result {
                waiter = Waiter(source: storage)
            } else {
                return .ready(result)
            }
        }
        let result = storage.take(waiter, context)
        if case .failure(.empty) = result { return .pending }
        return .ready(result)
    }
}
