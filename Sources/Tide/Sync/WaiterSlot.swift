/*
 WaiterSlot: a primitive's first waiter, stored inline so that the usual lone waiter (a oneshot's
 receiver, a channel's single consumer) waits without allocating. Guarded by the owner's lock.

 It holds one of:
 - a poll future's waker (`register`): kept while the same task polls again; a future that is
   dropped cannot take it back out, so the owner must treat it as a hint (wake it, and whoever
   else could be waiting, when the condition changes: at most one spurious wake-up);
 - a reservation by a Swift `await` (`reserve`, then `park` its continuation): the owner resumes
   the continuation with the outcome itself (`takeParked`). Each reservation gets a number, so
   the cancellation handler of one await (`takeParked(reservation:)`) can never take a later
   await's continuation.
 Waiters that find the slot taken use the owner's `WaitQueue`.
*/

import TideCore

@usableFromInline
struct WaiterSlot<Outcome>: ~Copyable {
    @usableFromInline var waker: Waker?
    @usableFromInline var continuation: UnsafeContinuation<Outcome, Never>?
    @usableFromInline var reservation: UInt32 = 0
    @usableFromInline var reserved = false

    @inlinable
    init() {}

    /// Neither a waker nor a reservation.
    @inlinable
    var isFree: Bool { waker == nil && !reserved }

    /// Stores the waker of the future polling with `context` if the slot is free; true if the
    /// slot now wakes that task (it was free, or already held a waker for the same task), false
    /// if the caller must queue the future.
    @inlinable
    mutating func register(_ context: Context) -> Bool {
        if reserved { return false }
        if waker == nil {
            waker = context.cloneWaker()
            return true
        }
        return waker!.willWake(context)
    }

    /// The stored waker, taken out (wake it after unlocking).
    @inlinable
    mutating func takeWaker() -> Waker? { waker.take() }

    /// Reserves the free slot for a Swift await; returns the reservation's number.
    @inlinable
    mutating func reserve() -> UInt32 {
        reserved = true
        reservation &+= 1
        return reservation
    }

    /// Ends the reservation of an await that resumes at once instead of parking.
    @inlinable
    mutating func release() { reserved = false }

    /// Parks the reserving await's continuation.
    @inlinable
    mutating func park(_ parked: UnsafeContinuation<Outcome, Never>) { continuation = parked }

    /// Whether an await's continuation is parked here.
    @inlinable
    var hasParked: Bool { continuation != nil }

    /// Takes the parked continuation (resume it after unlocking), ending the reservation.
    @inlinable
    mutating func takeParked() -> UnsafeContinuation<Outcome, Never>? {
        guard let parked = continuation.take() else { return nil }
        reserved = false
        return parked
    }

    /// `takeParked()` for the cancellation handler of the await holding `reservation`.
    @inlinable
    mutating func takeParked(reservation: UInt32) -> UnsafeContinuation<Outcome, Never>? {
        guard reserved, self.reservation == reservation else { return nil }
        return takeParked()
    }
}
