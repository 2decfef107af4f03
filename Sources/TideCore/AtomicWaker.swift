/*
 AtomicWaker: one slot for a waker, shared between one registering side and any number of
 waking sides, without a lock that a waker could block on (so it is usable from an interrupt
 handler).

 Protocol (the same one tokio's AtomicWaker uses):
 - `state` is a bit set: REGISTERING (a register call owns the slot) and WAKING (a wake call
   owns the slot, or asked the registering call to wake on its behalf).
 - register: CAS WAITING -> REGISTERING. On success it owns the slot, stores the new waker, and
   tries to CAS REGISTERING -> WAITING. If that fails, a wake arrived meanwhile (WAKING is set):
   it takes the waker back out, resets the state to WAITING and wakes it itself, so the wake is
   not lost. If the first CAS fails because WAKING is set, a wake is in progress; the new waker
   is woken directly (the caller will be polled again).
 - wake/take: fetch_or(WAKING). If the old state was WAITING, this call owns the slot: it takes
   the waker and clears WAKING. Otherwise a register (or another wake) owns it and will see the
   WAKING bit; nothing else to do.
 - wakeAndClose (one-time events): fetch_or(WAKING), and if the old state was WAITING, take the
   waker and wake it, but leave WAKING set: the slot stays closed, so every later register fails
   its first CAS and wakes its own waker (its task re-polls and sees the event). A register that
   held the slot meanwhile sees WAKING when it releases it and wakes the waker it stored.
 Two register calls at once are a misuse (one registering side); the second one wakes its own
 waker so that its task re-polls, and nothing is lost.
*/

import Synchronization

/// A waker slot that one side registers into and any thread (or interrupt handler) wakes.
///
/// Use it in a leaf future whose event comes from elsewhere: register the polling task's waker,
/// then re-check the condition. `wake()` from the event source then wakes the registered task
/// exactly once; a wake that races with `register` is never lost.
///
/// The class is open so that an object can be its own waker slot without a second allocation
/// (Tide's poll tasks are their joiners' `AtomicWaker`); its operations are final.
open class AtomicWaker: @unchecked Sendable {
    @usableFromInline static let waiting: UInt16 = 0
    @usableFromInline static let registering: UInt16 = 1
    @usableFromInline static let waking: UInt16 = 2

    // Guarded by the protocol above: only the owner of the state bits touches it.
    @exclusivity(unchecked) nonisolated(unsafe) var slot: Waker?
    /// Two bits, in a 16-bit word placed after the slot: a subclass (a task that is its own join
    /// slot) packs its small fields into the rest of the slot's last 8 bytes.
    @usableFromInline let state = Atomic<UInt16>(0)

    /// Creates an empty slot.
    public init() {}


    /// Stores the waker of the task polling with `context`, replacing any previous one. If a wake
    /// arrives while registering, the task is woken at once.
    public final func register(_ context: Context) {
        let (exchanged, current) = state.compareExchange(
            expected: Self.waiting, desired: Self.registering, ordering: .acquiring)
        if exchanged {
            var previous: Waker? = nil
            if let existing = slot.take() {
                if existing.willWake(context) {
                    slot = consume existing
                } else {
                    previous = consume existing
                    slot = context.cloneWaker()
                }
            } else {
                slot = context.cloneWaker()
            }
            let (released, _) = state.compareExchange(
                expected: Self.registering, desired: Self.waiting, ordering: .acquiringAndReleasing)
            if !released {
                // A wake arrived while we held the slot; it left the waking to us.
                let waker = slot.take()
                state.store(Self.waiting, ordering: .releasing)
                waker?.wake()
            }
            _ = consume previous
            return
        }
        // Either a wake is in progress (it may already have taken the old waker) or another
        // register holds the slot (misuse). In both cases the caller is polled again, so no wake
        // is lost.
        _ = current
        context.wake()
    }

    /// Wakes the registered task, if any, and closes the slot for good: a later `register`
    /// wakes its own waker at once instead of storing it.
    ///
    /// For a one-time event (a task's completion) whose waiters check for the event before they
    /// register: a waiter that registers after this call is polled again and sees the event.
    /// One atomic read-modify-write, where `wake()` takes two (it reopens the slot).
    public final func wakeAndClose() {
        let previous = state.bitwiseOr(Self.waking, ordering: .acquiringAndReleasing).oldValue
        // Owning the slot now; `waking` stays set, so register calls fail their first exchange
        // and wake their own waker. If a register held the slot, it sees `waking` when it
        // releases it and wakes the waker it stored.
        if previous == Self.waiting { slot.take()?.wake() }
    }

    /// Wakes the registered task, if any, and empties the slot.
    public final func wake() {
        take()?.wake()
    }

    /// Removes and returns the registered waker, if any, without waking it. Racing with
    /// `register`, it returns `nil` and the registering side wakes its own waker instead.
    public final func take() -> Waker? {
        let previous = state.bitwiseOr(Self.waking, ordering: .acquiringAndReleasing).oldValue
        if previous == Self.waiting {
            let waker = slot.take()
            state.bitwiseAnd(~Self.waking, ordering: .releasing)
            return waker
        }
        return nil
    }

    /// Drops the registered waker without waking it (a future that stops waiting calls this).
    public final func clear() {
        _ = take()
    }
}
