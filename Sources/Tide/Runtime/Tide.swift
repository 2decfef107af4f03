import TideCore

/// Entry points for code running on a Tide runtime: spawning, sleeping, timeouts, intervals.
///
/// These find the runtime through the calling thread (``Runtime/current``), so call them from a
/// task running inside `runtime.run { ... }` (or spawned from one).
public enum Tide {
    /// Starts a Swift task on the current runtime and returns its handle.
    ///
    /// Outside a runtime the task runs on Swift's global executor instead (there is no Tide
    /// runtime to prefer), so spawning never fails.
    @discardableResult
    public static func spawn<T: Sendable>(
        _ body: sending @escaping () async throws -> T
    ) -> JoinHandle<T> {
        let runtime = Runtime.current
        runtime?.noteSpawned()
        return JoinHandle(executor: runtime, body)
    }

    /// Suspends the task for `duration` on the current runtime's timing wheel.
    ///
    /// Never ends early; a zero or negative duration returns at once. Throws `CancellationError`
    /// if the task is cancelled while sleeping (the timer is removed) and
    /// ``RuntimeError/noCurrentRuntime`` outside a runtime.
    public static func sleep(for duration: Duration) async throws {
        try await sleep(until: TideClock.Instant.now.advanced(by: duration))
    }

    /// Suspends the task until `deadline`; see ``sleep(for:)``.
    public static func sleep(until deadline: TideClock.Instant) async throws {
        guard let runtime = Runtime.current else { throw RuntimeError.noCurrentRuntime }
        if deadline <= .now { return }
        try await Sleep(until: deadline, on: runtime).waitCancellable()
    }

    /// Runs `operation` and returns its result, or throws ``TimeoutError`` if it has not finished
    /// after `duration`; the operation is then cancelled.
    ///
    /// The operation runs as a child task of the caller (on the same runtime). Cancellation is
    /// cooperative: `timeout` returns only once the operation has stopped, so an operation that
    /// ignores cancellation delays the error. Errors thrown by the operation are rethrown. A zero
    /// or negative duration times out at once unless the operation finishes first.
    public static func timeout<T: Sendable>(
        _ duration: Duration,
        operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let runtime = Runtime.current else { throw RuntimeError.noCurrentRuntime }
        let deadline = TideClock.Instant.now.advanced(by: duration)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Sleep(until: deadline, on: runtime).waitCancellable()
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw TimeoutError(duration: duration) }
            guard let value = first else { throw TimeoutError(duration: duration) }
            return value
        }
    }

    /// Ticks every `period`, first at `start` (default: one period from now), on the current
    /// runtime's timers; `policy` says what happens to ticks missed while the consumer was busy.
    ///
    /// Throws ``RuntimeError/noCurrentRuntime`` outside a runtime and ``IntervalError/nonPositivePeriod``
    /// for a zero or negative period (which would tick without end).
    public static func interval(
        every period: Duration,
        startingAt start: TideClock.Instant? = nil,
        missedTickPolicy policy: MissedTickPolicy = .skip
    ) throws -> Interval {
        guard period > .zero else { throw IntervalError.nonPositivePeriod(period) }
        guard let runtime = Runtime.current else { throw RuntimeError.noCurrentRuntime }
        return Interval(
            runtime: runtime, period: period,
            start: start ?? TideClock.Instant.now.advanced(by: period), policy: policy)
    }

    /// Lets other tasks run before this one continues: the task goes to the back of its
    /// worker's queue (never the LIFO slot), so every task queued before it runs first.
    ///
    /// On a Tide thread the task parks its continuation in the worker's deferred list, which
    /// the worker resumes right after the current job returns (as tokio's `yield_now` does):
    /// one job per yield. `Task.yield()` costs two (a continuation job that then re-enqueues the
    /// task) and three executor-preference lookups. Elsewhere it is `Task.yield()`.
    public nonisolated(nonsending) static func yield() async {
        // The executor-inheriting form: see "Suspending without hops" in FutureAwait.swift.
        let deferred = await _unsafeInheritExecutor_withUnsafeContinuation {
            (continuation: UnsafeContinuation<Bool, Never>) in
            if !Runtime.deferResumeOnThisThread(continuation) { continuation.resume(returning: false) }
        }
        if !deferred { await Task.yield() }
    }
}

/// A bad argument to ``Tide/interval(every:startingAt:missedTickPolicy:)``.
public enum IntervalError: Error, Equatable, Sendable {
    /// The period was zero or negative.
    case nonPositivePeriod(Duration)
}
