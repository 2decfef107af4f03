/// Tide's monotonic clock: CLOCK_MONOTONIC with nanosecond instants, sleeping on the current
/// runtime's timing wheel (250 µs resolution; a sleep never ends early).
///
/// Use it wherever an API takes a `Clock` (`Task.sleep(for:clock:)`, swift-async-algorithms'
/// debounce and throttle) so that those sleeps land on Tide's timers. Sleeping outside a Tide
/// runtime throws ``RuntimeError/noCurrentRuntime``.
public struct TideClock: Clock, Sendable {
    /// A point in time of ``TideClock``: nanoseconds of CLOCK_MONOTONIC.
    public struct Instant: InstantProtocol, Sendable, Hashable, Comparable, CustomStringConvertible {
        /// Nanoseconds since an unspecified start (boot, on Linux).
        public var nanoseconds: Int64

        /// An instant at `nanoseconds` of CLOCK_MONOTONIC.
        public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

        /// The current instant.
        public static var now: Instant { Instant(nanoseconds: Int64(monotonicNanoseconds())) }

        /// Saturates instead of wrapping: `.now.advanced(by: .seconds(Int64.max))` is the latest
        /// instant, not one in the past (a sleep or timeout for "ever" never ends at once).
        public func advanced(by duration: Duration) -> Instant {
            let (sum, overflow) = nanoseconds.addingReportingOverflow(duration.nanosecondsClamped)
            if overflow { return Instant(nanoseconds: duration > .zero ? .max : .min) }
            return Instant(nanoseconds: sum)
        }

        /// Saturates at the largest durations an `Int64` of nanoseconds holds.
        public func duration(to other: Instant) -> Duration {
            let (difference, overflow) = other.nanoseconds.subtractingReportingOverflow(nanoseconds)
            if overflow { return .nanoseconds(other.nanoseconds > nanoseconds ? Int64.max : .min) }
            return .nanoseconds(difference)
        }

        public static func < (lhs: Instant, rhs: Instant) -> Bool {
            lhs.nanoseconds < rhs.nanoseconds
        }

        public var description: String { "TideClock.Instant(\(nanoseconds) ns)" }
    }

    /// A clock value (all `TideClock`s are the same clock).
    public init() {}

    public var now: Instant { .now }

    /// The timing wheel's tick.
    public var minimumResolution: Duration { .microseconds(250) }

    /// Sleeps until `deadline` on the current runtime's timers. Throws `CancellationError` if the
    /// task is cancelled first, or ``RuntimeError/noCurrentRuntime`` outside a runtime. A deadline
    /// in the past returns at once. `tolerance` is ignored (the wheel's tick is 250 µs).
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        try await Tide.sleep(until: deadline)
    }
}

extension Duration {
    /// The duration in nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }
}
