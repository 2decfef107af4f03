import TideCore

/// A poll-based future that completes once a deadline has passed, on a runtime's timing wheel.
///
/// Swift code normally uses ``Tide/sleep(for:)``; use `Sleep` inside hand-written futures, as a
/// `select` branch, or in poll tasks. The timer is armed on the first poll (a deadline already
/// passed completes without touching the wheel) and removed from the wheel when the last copy of
/// the `Sleep` is dropped, so an abandoned sleep leaves nothing behind.
public struct Sleep: Future, Sendable {
    let entry: TimerEntry

    /// A sleep until `deadline` on `runtime`'s timers.
    public init(until deadline: TideClock.Instant, on runtime: Runtime) {
        let nanoseconds = UInt64(clamping: max(deadline.nanoseconds, 0))
        entry = runtime.timers.makeEntry(deadlineNanoseconds: nanoseconds)
    }

    /// A sleep until `deadline` on the current runtime's timers. Throws
    /// ``RuntimeError/noCurrentRuntime`` outside a runtime.
    public init(until deadline: TideClock.Instant) throws(RuntimeError) {
        guard let runtime = Runtime.current else { throw .noCurrentRuntime }
        self.init(until: deadline, on: runtime)
    }

    /// When the sleep ends.
    public var deadline: TideClock.Instant {
        TideClock.Instant(nanoseconds: Int64(clamping: entry.deadlineNanoseconds))
    }

    public mutating func poll(_ context: inout Context) -> Poll<Void> {
        entry.poll(&context)
    }
}

/// The operation given to ``Tide/timeout(_:operation:)`` did not finish in time.
public struct TimeoutError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The time limit that passed.
    public var duration: Duration

    /// A timeout error for `duration`.
    public init(duration: Duration) { self.duration = duration }

    public var description: String { "the operation did not finish within \(duration)" }
}
