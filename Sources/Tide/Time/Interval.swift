import TideCore

/// What an ``Interval`` does when ticks were missed because the consumer was slow (or the runtime
/// was busy).
public enum MissedTickPolicy: Sendable, Equatable {
    /// Deliver every missed tick at once, back to back, then continue on the original schedule.
    case burst
    /// Deliver one tick now and schedule the next one a full period after it (the schedule
    /// shifts). A tick that is only late, not missed (the next one is not due yet), keeps the
    /// schedule: the timing wheel never fires early, so every tick is a little late.
    case delay
    /// Deliver the overdue tick now and drop the others that were missed; the next tick is the
    /// next one on the original schedule after now (like Go's `time.Ticker`). The default.
    case skip
}

/// An `AsyncSequence` of ticks every `period`, on a runtime's timing wheel. Create it with
/// ``Tide/interval(every:startingAt:missedTickPolicy:)``.
///
/// Each element is the instant the tick was scheduled for (not when it was delivered). The
/// sequence ends (returns `nil`) when the iterating task is cancelled.
public struct Interval: AsyncSequence, Sendable {
    public typealias Element = TideClock.Instant

    let runtime: Runtime
    let period: Duration
    let start: TideClock.Instant
    let policy: MissedTickPolicy

    public func makeAsyncIterator() -> Iterator {
        Iterator(runtime: runtime, period: period, next: start, policy: policy)
    }

    /// Produces the ticks of an ``Interval``.
    public struct Iterator: AsyncIteratorProtocol {
        let runtime: Runtime
        let period: Duration
        var next: TideClock.Instant
        let policy: MissedTickPolicy

        /// Waits for the next tick; `nil` once the task is cancelled.
        public mutating func next() async -> TideClock.Instant? {
            let scheduled = next
            do {
                try await Sleep(until: scheduled, on: runtime).waitCancellable()
            } catch {
                return nil
            }
            let now = TideClock.Instant.now
            switch policy {
            case .burst:
                next = scheduled.advanced(by: period)
            case .delay:
                let onSchedule = scheduled.advanced(by: period)
                next = onSchedule <= now ? now.advanced(by: period) : onSchedule
            case .skip:
                var candidate = scheduled.advanced(by: period)
                if candidate <= now {
                    let periodNanoseconds = Swift.max(period.nanosecondsClamped, 1)
                    let behind = now.nanoseconds - candidate.nanoseconds
                    let periods = behind / periodNanoseconds + 1
                    candidate = TideClock.Instant(
                        nanoseconds: candidate.nanoseconds + periods * periodNanoseconds)
                }
                next = candidate
            }
            return scheduled
        }
    }
}
