/*
 Oneshot: one value, sent once, received once. One allocation holds the whole channel (the
 sender and the receiver are small handles on it), and the usual waiter costs nothing more.

 State (guarded by `lock`, a one-word lock): `value` (set by send, taken by the receiver),
 `phase` (open, sent, senderDropped, received), `receiverGone`, and the waiters:
 - `slot`: the first waiter, inline (a `WaiterSlot`): a poll future's waker, or a Swift
   `receive()`'s reservation and parked continuation, resumed with the result itself.
 - `waiters`: a `WaitQueue` for every other waiter (a second task receiving at the same time, or
   a future whose waker is not the slot's). Rare; only these allocate a `Waiter`.
 Sending or dropping the sender hands the value (or `.closed`) to a parked continuation, and wakes
 the slot's waker and every queued waiter (`wokenAll`); they re-poll and find the new phase.

 Cancel safety. A dropped receive future leaves nothing behind but, at most, its waker in the
 slot (woken once, spuriously, when the channel completes; any waker that `willWake` the same
 task reuses it); a queued one unlinks its node in `abandon`. A cancelled Swift `receive()`
 takes its continuation back out of the slot (by its reservation's number, so the handler of one
 receive never resumes a later one's continuation). In every case the value, if sent, stays in
 the cell for the next receive.
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
    @usableFromInline static var open: UInt8 { 0 }
    @usableFromInline static var sent: UInt8 { 1 }
    @usableFromInline static var senderDropped: UInt8 { 2 }
    @usableFromInline static var received: UInt8 { 3 }

    // Stored properties are laid out in declaration order: this order leaves the least padding.
    @usableFromInline let lock = WordLock()
    @exclusivity(unchecked) @usableFromInline var value: Value?
    @exclusivity(unchecked) @usableFromInline var phase: UInt8 = 0
    @exclusivity(unchecked) @usableFromInline var receiverGone = false
    @exclusivity(unchecked) @usableFromInline var slot = WaiterSlot<Result<Value, OneshotError>>()
    @exclusivity(unchecked) @usableFromInline var waiters = WaitQueue()

    @usableFromInline
    init() {}

    /// What a completed channel gives a receive (the caller holds the lock, `phase != open`).
    @inlinable
    func completedResult() -> Result<Value, OneshotError> {
        switch phase {
        case Self.sent:
            phase = Self.received
            return .success(value.take().unsafelyUnwrapped)
        case Self.senderDropped:
            return .failure(.closed)
        default:
            return .failure(.alreadyReceived)
        }
    }

    /// Takes everything that waits (the caller holds the lock): the parked continuation, the
    /// slot's waker and the queued waiters' wakers.
    func takeWaiters(into list: inout WakeList)
        -> UnsafeContinuation<Result<Value, OneshotError>, Never>?
    {
        let parked = slot.takeParked()
        list.add(slot.takeWaker())
        waiters.wakeAll(into: &list)
        return parked
    }

    func send(_ value: Value) throws(OneshotSendError<Value>) {
        var list = WakeList()
        var parked: UnsafeContinuation<Result<Value, OneshotError>, Never>?
        let outcome: Int = lock.withLock {
            if phase != Self.open { return 1 }
            if receiverGone { return 2 }
            parked = takeWaiters(into: &list)
            if parked != nil {
                phase = Self.received
            } else {
                self.value = value
                phase = Self.sent
            }
            return 0
        }
        if outcome == 1 { throw .alreadySent(value) }
        if outcome == 2 { throw .closed(value) }
        parked?.resume(returning: .success(value))
        list.wakeAll()
    }

    func senderDropped() {
        var list = WakeList()
        let parked = lock.withLock { () -> UnsafeContinuation<Result<Value, OneshotError>, Never>? in
            guard phase == Self.open else { return nil }
            phase = Self.senderDropped
            return takeWaiters(into: &list)
        }
        parked?.resume(returning: .failure(.closed))
        list.wakeAll()
    }

    func receiverDropped() {
        // A receive holds the receiver, so nothing is parked; a stale slot waker may remain.
        var stale: Waker?
        let dropped: Value? = lock.withLock {
            receiverGone = true
            stale = slot.takeWaker()
            return value.take()
        }
        _ = dropped
        _ = consume stale
    }

    /// Takes the value, or says why not; registers `context` (in the slot, else through
    /// `waiter`, created on demand) when nothing was sent yet.
    @inlinable
    func poll(_ waiter: inout Waiter?, _ context: Context?) -> Result<Value, OneshotError> {
        lock.withLock { () -> Result<Value, OneshotError> in
            if phase != Self.open {
                if let waiter { waiters.remove(waiter.node) }
                return completedResult()
            }
            guard let context else { return .failure(.empty) }
            if let waiter {
                waiters.register(waiter.node, context)
            } else if !slot.register(context) {
                let queued = Waiter(source: self)
                waiters.register(queued.node, context)
                waiter = queued
            }
            return .failure(.empty)
        }
    }

    /// A Swift `receive()`'s first step: the result if the channel completed, else a reservation
    /// of the slot (nil if another waiter holds it).
    @inlinable
    func reserve() -> (result: Result<Value, OneshotError>?, reservation: UInt32?) {
        lock.withLock {
            if phase != Self.open { return (completedResult(), nil) }
            guard slot.isFree else { return (nil, nil) }
            return (nil, slot.reserve())
        }
    }

    /// Parks the reserving receive's continuation, or resumes it at once if the channel
    /// completed or the task was cancelled since the reservation.
    @inlinable
    func park(_ parked: UnsafeContinuation<Result<Value, OneshotError>, Never>) {
        let now: Result<Value, OneshotError>? = lock.withLock {
            if phase != Self.open {
                slot.release()
                return completedResult()
            }
            if Task.isCancelled {
                slot.release()
                return .failure(.cancelled)
            }
            slot.park(parked)
            return nil
        }
        if let now { parked.resume(returning: now) }
    }

    /// The cancellation handler of the receive holding `reservation`: resumes its continuation
    /// with `.cancelled` if it is still parked.
    @usableFromInline
    func cancelParked(_ reservation: UInt32) {
        let parked = lock.withLock { slot.takeParked(reservation: reservation) }
        parked?.resume(returning: .failure(.cancelled))
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
    @inlinable
    public nonisolated(nonsending) func receive() async throws(OneshotError) -> Value {
        // A leaf operation for the coop budget, like every await on a runtime resource.
        if !Coop.spend() { await Tide.yield() }
        let (ready, reservation) = storage.reserve()
        if let ready { return try ready.get() }
        // Another receive holds the slot: wait in the queue like a poll future. A call of its
        // own, so that its frame is not part of every receive's frame (task memory).
        guard let reservation else { return try await receiveQueued() }
        let storage = self.storage
        // The executor-inheriting forms: see "Suspending without hops" in FutureAwait.swift.
        return try await _unsafeInheritExecutor_withTaskCancellationHandler {
            await _unsafeInheritExecutor_withUnsafeContinuation { continuation in
                storage.park(continuation)
            }
        } onCancel: {
            storage.cancelParked(reservation)
        }.get()
    }

    @usableFromInline
    nonisolated(nonsending) func receiveQueued() async throws(OneshotError) -> Value {
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
        var none: Waiter?
        return try storage.poll(&none, nil).get()
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
        let result = receiver.storage.poll(&waiter, context)
        if case .failure(.empty) = result { return .pending }
        return .ready(result)
    }
}
