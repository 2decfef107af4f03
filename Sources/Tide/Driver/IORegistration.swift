/*
 IORegistration: one file descriptor's entry in the reactor.

 Readiness lives in one atomic word: the low bits are readiness flags (readable, writable, read
 closed, write closed, error), the upper 48 bits are a tick that the reactor increments on every
 event it delivers for this fd. The fd is registered edge-triggered, so the kernel reports each
 transition to "ready" once; the registration remembers it until the user drains the fd.

 The protocol between a task and the reactor:
 1. The task polls `pollReady(.readable)`: if the flag is set it gets a `ReadyEvent` (the flags
    and the tick it saw); else it registers its waker in the reader slot (AtomicWaker) and checks
    again (an event between the check and the registration is not lost).
 2. It does the read/write; on EAGAIN it calls `clearReadiness(event)`, which clears the flag only
    if the tick is still the one it saw. If the reactor delivered a new edge meanwhile (tick
    moved), the flag stays set: a stale "drained" never hides a fresh event.
 3. The reactor thread, on an event: sets the flags, bumps the tick, wakes the reader slot (on
    readable, read-closed or error) and the writer slot (on writable, write-closed or error).

 Lifetime: the reactor retains a registration from `register` until `deregister`; it releases it
 only at the start of its next turn, after EPOLL_CTL_DEL, so an event already fetched by
 epoll_wait never points at freed memory. The registration refers to the reactor weakly, so one
 kept after its runtime is gone can still be deregistered (as a no-op).
*/

import Synchronization
import TideCore

/// What a file descriptor is ready for. Combine with set algebra.
public struct Readiness: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64

    /// Creates readiness flags from raw bits.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Data (or a connection) can be read without blocking.
    public static let readable = Readiness(rawValue: 1 << 0)
    /// Data can be written without blocking.
    public static let writable = Readiness(rawValue: 1 << 1)
    /// The peer closed its writing side (EPOLLRDHUP/EPOLLHUP): reads return what is left, then 0.
    public static let readClosed = Readiness(rawValue: 1 << 2)
    /// Writing can no longer succeed (EPOLLHUP).
    public static let writeClosed = Readiness(rawValue: 1 << 3)
    /// The fd has a pending error (EPOLLERR).
    public static let error = Readiness(rawValue: 1 << 4)
    /// The registration was removed (``IORegistration/deregister()``): no event will come, and
    /// the fd may already be closed (its number reused): stop using it. Reported in both
    /// directions and never cleared.
    public static let deregistered = Readiness(rawValue: 1 << 5)

    static let all: Readiness = [.readable, .writable, .readClosed, .writeClosed, .error]
    static let readSide: Readiness = [.readable, .readClosed, .error, .deregistered]
    static let writeSide: Readiness = [.writable, .writeClosed, .error, .deregistered]
}

/// A readiness observation: the flags a task saw and the reactor tick at which it saw them, to
/// hand back to ``IORegistration/clearReadiness(_:)``.
public struct ReadyEvent: Sendable, Equatable {
    /// The flags that were set.
    public let readiness: Readiness
    /// The reactor tick of the observation.
    let tick: UInt64
}

/// The direction a task waits in.
public enum Interest: Sendable {
    /// Wait until readable (or closed, or failed).
    case readable
    /// Wait until writable (or closed, or failed).
    case writable
}

/// A file descriptor registered with a runtime's reactor: readiness plus one reader and one
/// writer waker slot.
///
/// Create it with ``Reactor/register(fd:)`` (or ``IORegistration/register(fd:)`` inside a runtime),
/// set the fd non-blocking, wait with ``readiness(for:)`` (async) or ``pollReady(_:context:)``
/// (from a `Future`), and call ``clearReadiness(_:)`` when a read or write returns EAGAIN. Call
/// ``deregister()`` before closing the fd. One task may wait for reading and one for writing at a
/// time; a second waiter in the same direction replaces the first one's waker.
public final class IORegistration: @unchecked Sendable {
    static let flagBits: UInt64 = 0xFFFF
    static let tickShift: UInt64 = 16

    /// The file descriptor (not owned: the registration never closes it).
    public let fd: Int32
    let state = Atomic<UInt64>(0)
    let reader = AtomicWaker()
    let writer = AtomicWaker()
    let deregistered = Atomic<Bool>(false)
    /// Weak: a registration may outlive its runtime (a key reader kept after `run` returned);
    /// deregistering it then has nothing left to do. Unowned, that read freed memory; strong,
    /// the reactor and the registrations it holds until `deregister` would keep each other.
    weak var reactor: Reactor?

    init(fd: Int32, reactor: Reactor) {
        self.fd = fd
        self.reactor = reactor
    }

    /// Registers `fd` with the current runtime's reactor. Throws ``RuntimeError/noCurrentRuntime``
    /// outside a runtime, or the `epoll_ctl` failure (e.g. a closed fd, or a regular file, which
    /// epoll does not support).
    public static func register(fd: Int32) throws -> IORegistration {
        guard let runtime = Runtime.current else { throw RuntimeError.noCurrentRuntime }
        return try runtime.reactor.register(fd: fd)
    }

    /// The readiness flags currently recorded.
    public var currentReadiness: Readiness {
        Readiness(rawValue: state.load(ordering: .acquiring) & Self.flagBits)
    }

    /// Called by the reactor thread for each epoll event.
    func deliver(_ ready: Readiness) {
        var current = state.load(ordering: .relaxed)
        while true {
            let tick = (current >> Self.tickShift) &+ 1
            let next = (tick << Self.tickShift) | (current & Self.flagBits) | ready.rawValue
            let (exchanged, original) = state.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        if !ready.isDisjoint(with: Readiness.readSide) { reader.wake() }
        if !ready.isDisjoint(with: Readiness.writeSide) { writer.wake() }
    }

    private func observe(_ interest: Interest) -> ReadyEvent? {
        let current = state.load(ordering: .acquiring)
        let flags = Readiness(rawValue: current & Self.flagBits)
        let wanted = interest == .readable ? Readiness.readSide : Readiness.writeSide
        let hit = flags.intersection(wanted)
        if hit.isEmpty { return nil }
        return ReadyEvent(readiness: hit, tick: current >> Self.tickShift)
    }

    /// Poll-style readiness: ready with the event if the fd is ready for `interest` (or closed or
    /// failed), else registers the task's waker and returns `.pending`.
    public func pollReady(_ interest: Interest, context: inout Context) -> Poll<ReadyEvent> {
        if let event = observe(interest) { return .ready(event) }
        switch interest {
        case .readable: reader.register(context)
        case .writable: writer.register(context)
        }
        if let event = observe(interest) { return .ready(event) }
        return .pending
    }

    /// Waits until the fd is ready for `interest` (or closed, or failed, or deregistered) and
    /// returns the event. Throws `CancellationError` if the task is cancelled while waiting
    /// (nothing is consumed).
    public nonisolated(nonsending) func readiness(
        for interest: Interest
    ) async throws(CancellationError) -> ReadyEvent {
        try await ReadinessFuture(registration: self, interest: interest).waitCancellable()
    }

    /// Clears the flags of `event` unless the reactor delivered a newer event since it was taken.
    /// Call it after a read or write returned EAGAIN. Closed, error and deregistered flags are
    /// never cleared.
    public func clearReadiness(_ event: ReadyEvent) {
        let clear = event.readiness.subtracting([.readClosed, .writeClosed, .error, .deregistered])
            .rawValue
        var current = state.load(ordering: .relaxed)
        while current >> Self.tickShift == event.tick {
            let next = current & ~clear
            let (exchanged, original) = state.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged { return }
            current = original
        }
    }

    /// Removes the fd from the reactor. Waiting tasks are woken, and they and every later wait
    /// see ``Readiness/deregistered``. Idempotent. Call it before closing the fd.
    public func deregister() {
        if deregistered.exchange(true, ordering: .acquiringAndReleasing) { return }
        reactor?.deregister(self)
        // Before the wakes: a woken waiter polls again and must find it, or it waits for an
        // event that no longer comes.
        state.bitwiseOr(Readiness.deregistered.rawValue, ordering: .acquiringAndReleasing)
        reader.wake()
        writer.wake()
    }
}

/// A future that completes when an `IORegistration` is ready for an interest.
public struct ReadinessFuture: Future {
    let registration: IORegistration
    let interest: Interest

    /// A future for `registration`'s readiness in the `interest` direction.
    public init(registration: IORegistration, interest: Interest) {
        self.registration = registration
        self.interest = interest
    }

    public mutating func poll(_ context: inout Context) -> Poll<ReadyEvent> {
        registration.pollReady(interest, context: &context)
    }
}
