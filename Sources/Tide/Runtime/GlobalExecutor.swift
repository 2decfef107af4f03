/*
 Installing Tide as Swift's global executor.

 Mechanism: the Swift runtime (libswift_Concurrency) exports hook variables that it consults
 before its own global executor: `swift_task_enqueueGlobal_hook` (every job without a more
 specific executor: `Task {}`, `Task.detached`, task-group children and `async let` without a
 task executor preference, default actors' jobs), `swift_task_enqueueGlobalWithDelay_hook` and
 `swift_task_enqueueGlobalWithDeadline_hook` (`Task.sleep` and other delayed jobs). We find them
 with dlsym and store our functions in them, so jobs land on a Tide runtime's queues and delayed
 jobs on its timing wheel. (The toolchain's `ExecutorFactory` mechanism exists only as SPI and
 did not receive jobs in a probe; the hooks are what SwiftNIO uses too.)

 Delayed jobs: a `DelayedJob` object owns the job and a timer entry; the entry's waker is the
 DelayedJob itself, so the wheel's wake enqueues the job. The object stays alive through the
 retain held by the waker stored in the entry until the timer fires.
*/

#if canImport(Glibc)
import Glibc
#endif
@_spi(ExperimentalScheduling) @_spi(ExperimentalCustomExecutors) import _Concurrency
import Synchronization
import TideCore

private typealias EnqueueOriginal = @convention(thin) (UnownedJob) -> Void
private typealias EnqueueHook = @convention(thin) (UnownedJob, EnqueueOriginal) -> Void
private typealias DelayOriginal = @convention(thin) (UInt64, UnownedJob) -> Void
private typealias DelayHook = @convention(thin) (UInt64, UnownedJob, DelayOriginal) -> Void
private typealias DeadlineOriginal =
    @convention(thin) (Int64, Int64, Int64, Int64, Int32, UnownedJob) -> Void
private typealias DeadlineHook =
    @convention(thin) (Int64, Int64, Int64, Int64, Int32, UnownedJob, DeadlineOriginal) -> Void

/// The runtime that receives global jobs, and the hooks that were there before.
enum GlobalExecutorState {
    /// The installed runtime's object pointer (retained), 0 when none.
    static let runtime = Atomic<UInt>(0)
    static let lock = SyncLock()
    nonisolated(unsafe) static var previous: (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?,
        UnsafeMutableRawPointer?) = (nil, nil, nil)

    static var installed: Runtime? {
        let bits = runtime.load(ordering: .acquiring)
        guard let pointer = UnsafeRawPointer(bitPattern: bits) else { return nil }
        return Unmanaged<Runtime>.fromOpaque(pointer).takeUnretainedValue()
    }
}

private func hookSlot<T>(_ name: String, as type: T.Type) -> UnsafeMutablePointer<T>? {
    // RTLD_DEFAULT (a null handle): the global scope, where libswift_Concurrency's symbols are.
    guard let symbol = dlsym(nil, name) else { return nil }
    return symbol.assumingMemoryBound(to: T.self)
}

/// A job waiting on the timing wheel for its deadline.
private final class DelayedJob: @unchecked Sendable {
    let job: UnownedJob
    let runtime: Runtime
    var entry: TimerEntry?

    init(job: UnownedJob, runtime: Runtime) {
        self.job = job
        self.runtime = runtime
    }

    static let vtable = WakerVTable(
        clone: { data in
            _ = Unmanaged<DelayedJob>.fromOpaque(data!).retain()
            return data
        },
        wake: { data in
            let delayed = Unmanaged<DelayedJob>.fromOpaque(data!).takeRetainedValue()
            delayed.fire()
        },
        wakeByRef: { data in
            Unmanaged<DelayedJob>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.fire() }
        },
        drop: { data in
            Unmanaged<DelayedJob>.fromOpaque(data!).release()
        }
    )

    private func fire() {
        guard let entry = entry else { return }
        self.entry = nil
        _ = entry
        runtime.enqueueJob(job, global: true)
    }

    /// Arms the timer; enqueues at once if the deadline has passed.
    static func schedule(_ job: UnownedJob, on runtime: Runtime, deadlineNanoseconds: UInt64) {
        let delayed = DelayedJob(job: job, runtime: runtime)
        let entry = runtime.timers.makeEntry(deadlineNanoseconds: deadlineNanoseconds)
        delayed.entry = entry
        let waker = Waker(
            data: UnsafeRawPointer(Unmanaged.passRetained(delayed).toOpaque()), vtable: vtable)
        var context = Context(waker: waker)
        if case .ready = entry.poll(&context) {
            delayed.entry = nil
            runtime.enqueueJob(job, global: true)
        }
    }
}

private func clockNanoseconds(_ clock: clockid_t) -> Int64 {
    var spec = timespec()
    clock_gettime(clock, &spec)
    return Int64(spec.tv_sec) &* 1_000_000_000 &+ Int64(spec.tv_nsec)
}

extension Tide {
    /// Makes `runtime` Swift's global executor for the rest of the process: plain `Task {}`,
    /// `Task.detached`, task-group children and `async let` (without a task executor
    /// preference), default actors and `Task.sleep` then run on its workers and timers.
    ///
    /// Use a multi-thread runtime (`Runtime.multiThread()`); a current-thread runtime would run
    /// global jobs only while some thread is inside its `run`. Call it early, before starting
    /// tasks: jobs already queued on Swift's default executor stay there, everything enqueued
    /// afterwards comes to Tide. `@MainActor` code is not affected: it keeps running on the main
    /// executor (Dispatch's main queue, drained by the main thread).
    ///
    /// Mechanism: the `swift_task_enqueueGlobal*_hook` variables of the Swift runtime (the same
    /// ones SwiftNIO uses) receive the jobs, which run on the generic executor as Swift's own
    /// global executor runs them; and the runtime becomes Swift's default executor
    /// (`_createExecutors`, SPI in the 6.3 toolchain), so that `Task.sleep` in plain tasks, which
    /// asks the default executor before the hooks, sleeps on Tide's timing wheel. Throws ``RuntimeError/globalExecutorAlreadyInstalled`` on a second
    /// call, ``RuntimeError/shutDown`` for a runtime that was shut down, and
    /// ``RuntimeError/globalExecutorHooksUnavailable`` if the Swift runtime lacks the hooks.
    public static func installAsGlobalExecutor(_ runtime: Runtime) throws(RuntimeError) {
        if runtime.isShutDownFlag { throw .shutDown }
        guard let enqueue = hookSlot("swift_task_enqueueGlobal_hook", as: EnqueueHook?.self),
            let delay = hookSlot("swift_task_enqueueGlobalWithDelay_hook", as: DelayHook?.self),
            let deadline = hookSlot(
                "swift_task_enqueueGlobalWithDeadline_hook", as: DeadlineHook?.self)
        else { throw .globalExecutorHooksUnavailable }
        let pointer = Unmanaged.passRetained(runtime).toOpaque()
        guard GlobalExecutorState.runtime.compareExchange(
            expected: 0, desired: UInt(bitPattern: pointer), ordering: .acquiringAndReleasing
        ).exchanged else {
            Unmanaged<Runtime>.fromOpaque(pointer).release()
            throw .globalExecutorAlreadyInstalled
        }
        GlobalExecutorState.lock.withLock {
            GlobalExecutorState.previous = (
                unsafeBitCast(enqueue.pointee, to: UnsafeMutableRawPointer?.self),
                unsafeBitCast(delay.pointee, to: UnsafeMutableRawPointer?.self),
                unsafeBitCast(deadline.pointee, to: UnsafeMutableRawPointer?.self))
            enqueue.pointee = { job, original in
                guard let runtime = GlobalExecutorState.installed else { return original(job) }
                runtime.enqueueJob(job, global: true)
            }
            delay.pointee = { delay, job, original in
                guard let runtime = GlobalExecutorState.installed else {
                    return original(delay, job)
                }
                // Saturating: a huge delay is "never", not a deadline wrapped into the past.
                let (sum, overflow) = monotonicNanoseconds().addingReportingOverflow(delay)
                DelayedJob.schedule(job, on: runtime, deadlineNanoseconds: overflow ? .max : sum)
            }
            deadline.pointee = { seconds, nanoseconds, toleranceSeconds, toleranceNanoseconds, clock, job, original in
                guard let runtime = GlobalExecutorState.installed else {
                    return original(
                        seconds, nanoseconds, toleranceSeconds, toleranceNanoseconds, clock, job)
                }
                // Swift's clock ids: 1 = ContinuousClock (CLOCK_BOOTTIME on Linux),
                // 2 = SuspendingClock (CLOCK_MONOTONIC).
                let source = clock == 1 ? CLOCK_BOOTTIME : CLOCK_MONOTONIC
                // Saturating throughout: a far deadline is "never", not one wrapped into the past.
                let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
                let (target, overflow2) = scaled.addingReportingOverflow(nanoseconds)
                let (left, overflow3) = target.subtractingReportingOverflow(clockNanoseconds(source))
                let remaining: Int64 =
                    overflow || overflow2 || overflow3 ? (seconds < 0 ? 0 : .max) : max(left, 0)
                let (sum, overflow4) = monotonicNanoseconds().addingReportingOverflow(UInt64(remaining))
                let deadline = overflow4 ? UInt64.max : sum
                DelayedJob.schedule(job, on: runtime, deadlineNanoseconds: deadline)
            }
        }
        // Task.sleep looks for a scheduling executor (the current task's, else the default
        // executor) before it falls back to the deadline hook above: make Tide the default.
        _createExecutors(factory: InstalledRuntimeExecutors.self)
    }

    /// The runtime installed with ``installAsGlobalExecutor(_:)``, if any.
    public static var globalExecutor: Runtime? { GlobalExecutorState.installed }
}

// MARK: Delayed jobs from Task.sleep

/*
 Since Swift 6.2, `Task.sleep` hands its wake-up job to the current task's executor when that
 executor is a `SchedulingExecutor` (SE-0505, SPI in the 6.3 toolchain), and only otherwise to the
 global executor's deadline hook. A task that prefers a Tide runtime therefore sleeps on Tide's
 timing wheel only if the runtime conforms; without this, such sleeps went to Dispatch's timers.

 The job Task.sleep hands over is a small wake-up task of its own, created without an executor
 preference; it resumes the sleeper's continuation. It runs on the generic executor (no task
 executor), as the global executor would run it. Run as a job of Tide's task executor, it hopped
 to Swift's global executor before resuming the sleeper: every Task.sleep on a Tide runtime
 took a trip through Dispatch's thread pool, and while that pool was blocked (two tests blocked in
 `run` on a two-core machine) the sleep never ended.
*/
@_spi(ExperimentalScheduling)
extension Runtime: SchedulingExecutor {
    /// Runs `job` on this runtime once `delay` has passed on `clock` (Task.sleep's path).
    public func enqueue<C: Clock>(
        _ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C
    ) {
        let unowned = UnownedJob(job)
        let nanoseconds = Self.nanoseconds(of: delay, clock: clock)
        DelayedJob.schedule(
            unowned, on: self, deadlineNanoseconds: monotonicNanoseconds() &+ nanoseconds)
    }

    /// Runs `job` on this runtime once `clock` reaches `instant` (Task.sleep's path).
    public func enqueue<C: Clock>(
        _ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C
    ) {
        enqueue(job, after: clock.now.duration(to: instant), tolerance: tolerance, clock: clock)
    }

    /// A clock's duration in nanoseconds (0 if negative). Swift's clocks measure in `Duration`;
    /// a clock with another duration type is not supported and its job runs at once.
    private static func nanoseconds<C: Clock>(of delay: C.Duration, clock: C) -> UInt64 {
        guard let duration = delay as? Duration else { return 0 }
        // components may split a negative duration as a zero or negative second count and
        // negative attoseconds: a deadline in the past, due at once.
        let nanoseconds = duration.nanosecondsClamped
        return nanoseconds > 0 ? UInt64(nanoseconds) : 0
    }
}

@_silgen_name("swift_job_run")
private func _swiftJobRun(_ job: UnownedJob, _ executor: UnownedSerialExecutor)

/// Runs a job from the global executor hook as Swift's own global executor does: on the generic
/// executor (a null serial executor reference), with no task executor. Run as a job of Tide's
/// task executor instead, a task without a preference hops back to the global executor after
/// every suspension: twice the jobs, and each hop queued behind all the waiting work (p99 timer
/// lateness of 1 s in the timers benchmark, against 1.7 ms this way).
func runOnGenericExecutor(_ job: UnownedJob) {
    _swiftJobRun(job, unsafeBitCast((UInt(0), UInt(0)), to: UnownedSerialExecutor.self))
}

/// Swift's executor factory for an installed runtime: its default executor is the runtime, so
/// that `Task.sleep` in a task without an executor preference finds Tide's timing wheel (the
/// runtime is its `SchedulingExecutor`); the main executor stays the one Swift made.
struct InstalledRuntimeExecutors: ExecutorFactory {
    static var mainExecutor: any MainExecutor { MainActor.executor }
    static var defaultExecutor: any TaskExecutor {
        // Registered only once a runtime is installed, and installing is for good.
        guard let runtime = GlobalExecutorState.installed else {
            preconditionFailure("the executor factory is registered only after installing")
        }
        return runtime
    }
}
