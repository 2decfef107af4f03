/*
 Broadcast: every receiver sees every message, from a ring of the last `capacity` messages.

 State (guarded by `lock`): `slots` (ring of the last `capacity` values), `tail` (sequence number
 of the next message; message n lives in slot n % capacity while n >= tail - capacity),
 `closed` (the last sender copy is gone), `receivers` (live receiver handles), `waiters`.
 Each receiver has a `cursor` (next sequence number it will read), guarded by the same lock.
 Send: store at tail (the value it overwrites is dropped after unlocking), tail += 1, wake every
   waiter (`wokenAll`). A send with no receivers fails and hands the value back.
 Receive: cursor < tail - capacity -> the receiver fell behind: report `lagged(missed)` and move
   the cursor to the oldest kept message; cursor < tail -> copy that message, cursor += 1;
   closed -> `closed`; else register (same lock hold: no lost wakeup).
 Cancellation: a dropped receive future unlinks its node; the cursor moves only in the poll that
   returns a message, so receiving is cancel-safe.
*/

/// Creates broadcast channels: each message is delivered to every receiver.
///
/// The channel keeps the last `capacity` messages. Sending never waits; a receiver that falls
/// more than `capacity` messages behind gets ``BroadcastReceiveError/lagged(_:)`` with the number
/// it missed and then continues from the oldest message still kept. Use it for fan-out of events
/// where a slow consumer must not slow down the producer.
public enum Broadcast<Value: Sendable> {
    /// A sender and a first receiver; more receivers come from ``BroadcastSender/subscribe()``.
    ///
    /// - Throws: ``ChannelError/invalidCapacity(_:)`` if `capacity` is less than 1.
    public static func make(capacity: Int) throws(ChannelError)
        -> (BroadcastSender<Value>, BroadcastReceiver<Value>)
    {
        guard capacity >= 1 else { throw .invalidCapacity(capacity) }
        let storage = BroadcastStorage<Value>(capacity: capacity)
        let receiver = BroadcastReceiver(storage, cursor: 0)
        return (BroadcastSender(handle: BroadcastSenderHandle(storage)), receiver)
    }
}

/// Why a broadcast receive returned no message.
public enum BroadcastReceiveError: Error, Equatable, Sendable {
    /// The receiver fell behind and this many messages were overwritten before it read them; the
    /// next receive returns the oldest message still kept.
    case lagged(Int)
    /// Every sender is gone and this receiver has read everything.
    case closed
    /// Nothing new yet (only from ``BroadcastReceiver/tryReceive()``).
    case empty
    /// The task was cancelled while waiting; nothing was consumed.
    case cancelled
}

/// Why a broadcast send failed; the value comes back.
public enum BroadcastSendError<Value: Sendable>: Error {
    /// No receiver exists, so nobody could ever see the value.
    case noReceivers(Value)
}

@usableFromInline
final class BroadcastStorage<Value: Sendable>: WaitSource, @unchecked Sendable {
    let lock = WordLock()
    @exclusivity(unchecked) var slots: [Value?]
    let capacity: Int
    @exclusivity(unchecked) var tail = 0
    @exclusivity(unchecked) var closed = false
    @exclusivity(unchecked) var receivers = 0
    @exclusivity(unchecked) var waiters = WaitQueue()

    init(capacity: Int) {
        self.capacity = capacity
        slots = Array(repeating: nil, count: capacity)
    }

    func send(_ value: Value) throws(BroadcastSendError<Value>) -> Int {
        var list = WakeList()
        var overwritten: Value? = nil
        let receiverCount: Int = lock.withLock {
            guard receivers > 0 else { return 0 }
            let index = tail % capacity
            overwritten = slots[index].take()
            slots[index] = value
            tail += 1
            waiters.wakeAll(into: &list)
            return receivers
        }
        list.wakeAll()
        _ = overwritten
        guard receiverCount > 0 else { throw .noReceivers(value) }
        return receiverCount
    }

    func close() {
        var list = WakeList()
        lock.withLock {
            closed = true
            waiters.wakeAll(into: &list)
        }
        list.wakeAll()
    }

    func receive(
        _ receiver: BroadcastReceiver<Value>, _ waiter: Waiter?, _ context: Context?
    ) -> Result<Value, BroadcastReceiveError> {
        lock.withLock { () -> Result<Value, BroadcastReceiveError> in
            let oldest = Swift.max(0, tail - capacity)
            if receiver.cursor < oldest {
                let missed = oldest - receiver.cursor
                receiver.cursor = oldest
                if let waiter { waiters.remove(waiter.node) }
                return .failure(.lagged(missed))
            }
            if receiver.cursor < tail {
                let value = slots[receiver.cursor % capacity].unsafelyUnwrapped
                receiver.cursor += 1
                if let waiter { waiters.remove(waiter.node) }
                return .success(value)
            }
            if closed {
                if let waiter { waiters.remove(waiter.node) }
                return .failure(.closed)
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return .failure(.empty)
        }
    }

    func subscribe() -> BroadcastReceiver<Value> {
        BroadcastReceiver(self, cursor: lock.withLock { tail })
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        lock.withLock { waiters.remove(node) }
    }
}

/// Closes the broadcast channel when the last ``BroadcastSender`` copy releases it.
final class BroadcastSenderHandle<Value: Sendable>: Sendable {
    let storage: BroadcastStorage<Value>
    init(_ storage: BroadcastStorage<Value>) { self.storage = storage }
    deinit { storage.close() }
}

/// Sends to every receiver of a ``Broadcast`` channel; copy it freely. The channel closes when
/// the last copy is gone.
public struct BroadcastSender<Value: Sendable>: Sendable {
    let handle: BroadcastSenderHandle<Value>

    init(handle: BroadcastSenderHandle<Value>) { self.handle = handle }

    /// Delivers `value` to every current receiver and returns how many there are. Never waits: a
    /// slow receiver loses the oldest messages instead (it sees `lagged`).
    ///
    /// - Throws: ``BroadcastSendError/noReceivers(_:)`` (with the value) if there is no receiver.
    @discardableResult
    public func send(_ value: Value) throws(BroadcastSendError<Value>) -> Int {
        try handle.storage.send(value)
    }

    /// A new receiver that sees the messages sent from now on.
    public func subscribe() -> BroadcastReceiver<Value> {
        handle.storage.subscribe()
    }
}

/// Receives every message of a ``Broadcast`` channel from the point it subscribed.
public final class BroadcastReceiver<Value: Sendable>: @unchecked Sendable {
    let storage: BroadcastStorage<Value>
    /// The next sequence number to read; guarded by `storage.lock`.
    @exclusivity(unchecked) var cursor: Int

    init(_ storage: BroadcastStorage<Value>, cursor: Int) {
        self.storage = storage
        self.cursor = cursor
        storage.lock.withLock { storage.receivers += 1 }
    }

    deinit {
        storage.lock.withLock { storage.receivers -= 1 }
    }

    /// Waits for the next message.
    ///
    /// Cancel-safe: a cancelled receive consumes nothing.
    /// - Throws: ``BroadcastReceiveError/lagged(_:)`` if messages were missed (receive again to
    ///   continue), ``BroadcastReceiveError/closed`` when every sender is gone and everything was
    ///   read, ``BroadcastReceiveError/cancelled`` if the task was cancelled while waiting.
    public nonisolated(nonsending) func receive() async throws(BroadcastReceiveError) -> Value {
        let result: Result<Value, BroadcastReceiveError>
        do {
            result = try await receiveFuture().waitCancellable()
        } catch {
            throw .cancelled
        }
        return try result.get()
    }

    /// Takes the next message if there is one, without waiting.
    ///
    /// - Throws: ``BroadcastReceiveError/empty`` if nothing new was sent, otherwise as
    ///   ``receive()``.
    public func tryReceive() throws(BroadcastReceiveError) -> Value {
        try storage.receive(self, nil, nil).get()
    }

    /// The receive as a poll-based future (for `select`). Cancel-safe.
    public func receiveFuture() -> BroadcastReceiveFuture<Value> {
        BroadcastReceiveFuture(receiver: self)
    }

    /// A new receiver that starts from the messages sent from now on.
    public func resubscribe() -> BroadcastReceiver<Value> {
        storage.subscribe()
    }
}

/// A poll-based broadcast receive. Cancel-safe.
public struct BroadcastReceiveFuture<Value: Sendable>: Future {
    let receiver: BroadcastReceiver<Value>
    var waiter: Waiter?

    init(receiver: BroadcastReceiver<Value>) { self.receiver = receiver }

    /// Returns the next message (or lagged/closed); otherwise registers.
    public mutating func poll(_ context: inout Context) -> Poll<Result<Value, BroadcastReceiveError>> {
        let storage = receiver.storage
        if waiter == nil {
            let result = storage.receive(receiver, nil, nil)
            if case .failure(.empty) = result {
                waiter = Waiter(source: storage)
            } else {
                return .ready(result)
            }
        }
        let result = storage.receive(receiver, waiter, context)
        if case .failure(.empty) = result { return .pending }
        return .ready(result)
    }
}
