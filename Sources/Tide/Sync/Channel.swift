/*
 Channel: the multi-producer queue behind `Sender` and `Receiver` (bounded and unbounded).

 State (all fields guarded by `lock`, a `WordLock`):
   buffer          ring of queued elements; `bound` is the capacity (Int.max when unbounded)
   closed          no more sends: `close()` was called or the last `Sender` copy went away
   receiversGone   the last `Receiver` copy went away: sends fail, the buffer was dropped
   receiverSlot    the first waiting receiver, inline (a `WaiterSlot`), so the usual single
                   consumer waits without allocating anything: a poll future's waker, or a
                   Swift `receive()`'s reservation and parked continuation, which a send resumes
                   with the value itself (handed over, never buffered). A Swift receive reserves
                   only when no other receiver waits (FIFO stays fair).
   receivers       wait queue of the other receive futures (tag 0) waiting for an element or
                   the end (a second receiver at once, or a waker that is not the slot's)
   senders         wait queue of send futures (tag 1) waiting for room (bounded only)

 Send:     closed/receiversGone -> fail with the value; room -> push, wake the slot's receiver
           and the first queued one (the slot may hold the waker of a receive future that was
           dropped, which cannot unregister: waking both means at most one spurious wake-up
           and never a lost one); full -> register in `senders` (same lock hold: no lost
           wakeup).
 Receive:  element -> pop, wake the first sender (a slot freed); closed -> end (nil);
           empty -> register: in `receiverSlot` if it is free (or already holds a waker for the
           same task), else in `receivers` through a `Waiter` made on the spot.
 Close / last sender gone: set `closed`, wake every waiter; receivers drain, then see the end.
 Last receiver gone: set `receiversGone`, take the buffer out and drop it after unlocking (an
           element's deinit must never run under our lock), wake every sender.
 Cancellation: a dropped future's `Waiter` calls `abandon`: unlink its node, or, if the node was
           woken (an element or a slot was meant for it) and never used the wake, wake the next
           waiter of the same kind if the condition still holds. A send future keeps its value
           until it is pushed, so a cancelled send never sends; a receive future dequeues only
           in the poll that returns the element, so a cancelled receive never loses one.
 Waking happens after the lock is released; wake-ones carry `WaitNode.woken`, broadcasts
 `WaitNode.wokenAll`.
*/

/// Creates multi-producer channels: `let (tx, rx) = try Channel<Int>.bounded(capacity: 1024)`.
///
/// A channel moves values from any number of ``Sender``s to a ``Receiver``. `Sender` and
/// `Receiver` are cheap copyable handles: copy a sender for every producer; the channel closes when
/// the last sender copy is gone or one of them calls ``Sender/close()``, and the receiver then
/// drains what is buffered and sees the end (`nil`). Copies of a `Receiver` share the queue (a work
/// queue: each message goes to exactly one of them), so the same type serves MPSC and MPMC use.
///
/// Prefer ``bounded(capacity:)``: a full channel suspends senders (backpressure). Use
/// ``unbounded()`` only when producers are known to be slower than the consumer.
public enum Channel<Element: Sendable> {
    /// A channel that buffers at most `capacity` values; `send` suspends while it is full.
    ///
    /// - Throws: ``ChannelError/invalidCapacity(_:)`` if `capacity` is less than 1 (a rendezvous
    ///   channel is not offered; use capacity 1).
    @inlinable
    public static func bounded(capacity: Int) throws(ChannelError) -> (Sender<Element>, Receiver<Element>) {
        guard capacity >= 1 else { throw .invalidCapacity(capacity) }
        return make(ChannelStorage<Element>(bound: capacity))
    }

    /// A channel with no capacity limit: `send` never suspends, and memory grows with the backlog.
    /// The name says so on purpose: use it only where the backlog is bounded by other means.
    @inlinable
    public static func unbounded() -> (Sender<Element>, Receiver<Element>) {
        make(ChannelStorage<Element>(bound: Int.max))
    }

    @inlinable
    static func make(_ storage: ChannelStorage<Element>) -> (Sender<Element>, Receiver<Element>) {
        (Sender(handle: SenderHandle(storage)), Receiver(handle: ReceiverHandle(storage)))
    }
}

/// Creates an unbounded channel (see ``Channel/unbounded()``); the name says it can grow without limit.
@inlinable
public func makeUnboundedChannel<Element: Sendable>(of type: Element.Type = Element.self)
    -> (Sender<Element>, Receiver<Element>)
{
    Channel<Element>.unbounded()
}

/// Why a channel could not be created.
public enum ChannelError: Error, Equatable, Sendable {
    /// The requested capacity is less than 1.
    case invalidCapacity(Int)
}

/// Why an async ``Sender/send(_:)`` did not send; the value comes back in either case.
public enum SendError<Element: Sendable>: Error {
    /// The channel is closed (closed explicitly, or every receiver is gone).
    case closed(Element)
    /// The sending task was cancelled while waiting for room; the value was not sent.
    case cancelled(Element)

    /// The value that was not sent.
    public var value: Element {
        switch self {
        case .closed(let value), .cancelled(let value): return value
        }
    }
}

/// Why ``Sender/trySend(_:)`` did not send; the value comes back.
public enum TrySendError<Element: Sendable>: Error {
    /// The channel is bounded and full right now.
    case full(Element)
    /// The channel is closed (closed explicitly, or every receiver is gone).
    case closed(Element)

    /// The value that was not sent.
    public var value: Element {
        switch self {
        case .full(let value), .closed(let value): return value
        }
    }
}

/// Why ``Receiver/tryReceive()`` returned no value.
public enum TryReceiveError: Error, Equatable, Sendable {
    /// Nothing is buffered right now, but senders may still send.
    case empty
    /// The channel is closed and drained: nothing will ever arrive.
    case closed
}

/// The shared state of one channel; see the protocol at the top of this file.
@usableFromInline
final class ChannelStorage<Element: Sendable>: WaitSource, @unchecked Sendable {
    @usableFromInline static var receiverTag: Int { 0 }
    @usableFromInline static var senderTag: Int { 1 }

    @usableFromInline enum Attempt {
        case done
        case blocked
        case closed
    }

    @usableFromInline let lock = WordLock()
    @exclusivity(unchecked) @usableFromInline var buffer = RingBuffer<Element>()
    @usableFromInline let bound: Int
    @exclusivity(unchecked) @usableFromInline var closed = false
    @exclusivity(unchecked) @usableFromInline var receiversGone = false
    @exclusivity(unchecked) @usableFromInline var receiverSlot = WaiterSlot<ReceiveOutcome>()

    /// What a parked Swift receive is resumed with.
    @usableFromInline
    enum ReceiveOutcome {
        case element(Element)
        case closed
        case cancelled
    }
    @exclusivity(unchecked) @usableFromInline var receivers = WaitQueue()
    @exclusivity(unchecked) @usableFromInline var senders = WaitQueue()

    @inlinable
    init(bound: Int) {
        self.bound = bound
    }

    deinit {
        buffer.destroy()
    }

    /// Under the lock: pushes `value` if there is room, else registers `waiter` (if any).
    /// Returns the queued receiver to wake (or, after a hand-off, the sender to pass a wake on
    /// to); the slot's receiver goes to `slotWake`.
    @inlinable
    func sendLocked(
        _ value: Element, _ waiter: Waiter?, _ context: Context?, _ attempt: inout Attempt,
        _ slotWake: inout Waker?, _ handoff: inout UnsafeContinuation<ReceiveOutcome, Never>?
    ) -> Waker? {
        if closed || receiversGone {
            attempt = .closed
            if let waiter { senders.remove(waiter.node) }
            return nil
        }
        if receiverSlot.hasParked {
            // A Swift receive is parked (so the buffer is empty): hand the value over.
            handoff = receiverSlot.takeParked()
            attempt = .done
            guard let waiter else { return nil }
            senders.remove(waiter.node)
            // Woken for a slot that a receive freed, this send used the hand-off instead and left
            // the slot free: pass the wake on, or the next sender waits while there is room.
            guard waiter.node.signal == WaitNode.woken else { return nil }
            waiter.node.signal = WaitNode.idle
            return buffer.count < bound && !senders.isEmpty ? senders.wakeFirst() : nil
        }
        if buffer.count < bound {
            buffer.append(value)
            attempt = .done
            if let waiter {
                senders.remove(waiter.node)
                // The wake (if any) is used: dropping the finished future must not pass it on.
                waiter.node.signal = WaitNode.idle
            }
            slotWake = receiverSlot.takeWaker()
            return receivers.isEmpty ? nil : receivers.wakeFirst()
        }
        attempt = .blocked
        if let waiter, let context { senders.register(waiter.node, context) }
        return nil
    }

    /// Under the lock: pops an element if there is one, else registers the receive polling with
    /// `context` (if any) unless the channel is closed: in the slot, or through `waiter` (made
    /// here if needed). Returns the sender to wake.
    @inlinable
    func receiveLocked(
        _ waiter: inout Waiter?, _ context: Context?, _ element: inout Element?,
        _ attempt: inout Attempt
    ) -> Waker? {
        if let value = buffer.popFirst() {
            element = value
            attempt = .done
            if let waiter { receivers.remove(waiter.node) }
            return senders.isEmpty ? nil : senders.wakeFirst()
        }
        if closed {
            attempt = .closed
            if let waiter { receivers.remove(waiter.node) }
            return nil
        }
        attempt = .blocked
        guard let context else { return nil }
        if let waiter {
            receivers.register(waiter.node, context)
        } else if !receiverSlot.register(context) {
            let queued = Waiter(source: self, tag: Self.receiverTag)
            receivers.register(queued.node, context)
            waiter = queued
        }
        return nil
    }

    /// One send attempt; wakes the receiver it made ready.
    @inlinable
    func send(_ value: Element, _ waiter: Waiter?, _ context: Context?) -> Attempt {
        var attempt = Attempt.blocked
        var slotWake: Waker?
        var handoff: UnsafeContinuation<ReceiveOutcome, Never>?
        let wake = lock.withLock {
            sendLocked(value, waiter, context, &attempt, &slotWake, &handoff)
        }
        if let handoff {
            handoff.resume(returning: .element(value))
            wake?.wake()
            return attempt
        }
        wake?.wake()
        let slotWaker = slotWake.take()
        slotWaker?.wake()
        return attempt
    }

    /// A Swift `receive()`'s step after its fast path: `.closed` if the channel is closed and
    /// drained; else a reservation of the slot, or nil (another receiver waits, or an element
    /// arrived meanwhile): then it receives through a `ReceiveFuture`.
    @inlinable
    func reserveReceive() -> (closed: Bool, reservation: UInt32?) {
        lock.withLock {
            guard buffer.isEmpty else { return (false, nil) }
            if closed { return (true, nil) }
            guard receiverSlot.isFree, receivers.isEmpty else { return (false, nil) }
            return (false, receiverSlot.reserve())
        }
    }

    /// Parks the reserving receive's continuation, or resumes it at once with an element that
    /// arrived, the end, or its cancellation.
    @inlinable
    func parkReceive(_ continuation: UnsafeContinuation<ReceiveOutcome, Never>) {
        var senderWake: Waker?
        let now: ReceiveOutcome? = lock.withLock {
            if let value = buffer.popFirst() {
                receiverSlot.release()
                if !senders.isEmpty { senderWake = senders.wakeFirst() }
                return .element(value)
            }
            if closed {
                receiverSlot.release()
                return .closed
            }
            if Task.isCancelled {
                receiverSlot.release()
                return .cancelled
            }
            receiverSlot.park(continuation)
            return nil
        }
        let waker = senderWake.take()
        waker?.wake()
        if let now { continuation.resume(returning: now) }
    }

    /// The cancellation handler of the receive holding `reservation`.
    @usableFromInline
    func cancelParkedReceive(_ reservation: UInt32) {
        let parked = lock.withLock { receiverSlot.takeParked(reservation: reservation) }
        parked?.resume(returning: .cancelled)
    }

    /// One receive attempt; wakes the sender it made room for. `waiter` is the receive's
    /// queue entry, if it has one (it may get one here).
    @inlinable
    func receive(_ waiter: inout Waiter?, _ context: Context?, _ attempt: inout Attempt) -> Element? {
        var element: Element? = nil
        var result = Attempt.blocked
        let wake = lock.withLock { receiveLocked(&waiter, context, &element, &result) }
        wake?.wake()
        attempt = result
        return element
    }

    /// A receive attempt that registers nothing.
    @inlinable
    func tryReceive(_ attempt: inout Attempt) -> Element? {
        var none: Waiter?
        return receive(&none, nil, &attempt)
    }

    /// Closes the channel for sending; wakes everyone so they see it.
    @usableFromInline
    func close() {
        var list = WakeList()
        let parked = lock.withLock { () -> UnsafeContinuation<ReceiveOutcome, Never>? in
            guard !closed else { return nil }
            closed = true
            let parked = receiverSlot.takeParked()
            list.add(receiverSlot.takeWaker())
            receivers.wakeAll(into: &list)
            senders.wakeAll(into: &list)
            return parked
        }
        // A parked receive implies an empty buffer: it sees the end.
        parked?.resume(returning: .closed)
        list.wakeAll()
    }

    /// The last receiver is gone: refuse further sends and drop what is buffered.
    @usableFromInline
    func receiversDropped() {
        var list = WakeList()
        var dropped = lock.withLock {
            receiversGone = true
            senders.wakeAll(into: &list)
            list.add(receiverSlot.takeWaker())
            receivers.wakeAll(into: &list)
            return buffer.takeAll()
        }
        list.wakeAll()
        dropped.destroy()
    }

    @usableFromInline
    var bufferedCount: Int { lock.withLock { buffer.count } }

    @usableFromInline
    var isClosed: Bool { lock.withLock { closed || receiversGone } }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        let wake: Waker? = lock.withLock {
            if node.isQueued {
                if node.tag == Self.receiverTag { receivers.remove(node) } else { senders.remove(node) }
                return nil
            }
            guard node.signal == WaitNode.woken else { return nil }
            node.signal = WaitNode.idle
            if node.tag == Self.receiverTag {
                return buffer.isEmpty ? nil : receivers.wakeFirst()
            }
            return buffer.count < bound && !closed && !receiversGone ? senders.wakeFirst() : nil
        }
        wake?.wake()
    }
}

/// Owns the sending side: when the last ``Sender`` copy releases it, the channel closes.
@usableFromInline
final class SenderHandle<Element: Sendable>: Sendable {
    @usableFromInline let storage: ChannelStorage<Element>

    @inlinable
    init(_ storage: ChannelStorage<Element>) { self.storage = storage }

    deinit { storage.close() }
}

/// Owns the receiving side: when the last ``Receiver`` copy releases it, sends start to fail and
/// the buffered values are dropped.
@usableFromInline
final class ReceiverHandle<Element: Sendable>: Sendable {
    @usableFromInline let storage: ChannelStorage<Element>

    @inlinable
    init(_ storage: ChannelStorage<Element>) { self.storage = storage }

    deinit { storage.receiversDropped() }
}
