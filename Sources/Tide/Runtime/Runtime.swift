/*
 Runtime (current-thread flavour): one thread runs Swift jobs and poll tasks, drives the reactor
 and fires timers.

 Queues. `local` is touched only by the thread inside `run` (the owner). `inject` (a mutex-guarded
 queue plus an atomic count) receives work from every other thread, and all work while nobody is
 inside `run`. `enqueue` (Swift jobs) and `schedule` (poll tasks) pick the queue by comparing the
 calling thread with `owner`.

 Loop (`runLoop`): take up to 61 runnables from `local`, then move everything from `inject` to
 `local`; every 61 runs poll the reactor and the timers without blocking, so a busy runtime still
 sees I/O and timers; when `local` is empty, park.

 Parking without lost wakeups: the owner sets `sleeping`, then re-checks `inject`'s count, then
 computes the timer timeout, then blocks in epoll_wait. A remote pusher increments the count and
 then, if it swaps `sleeping` from true to false, writes the eventfd. Both sides use sequentially
 consistent atomics, so at least one of them sees the other. A timer armed from another thread
 with an earlier deadline than the one the owner sleeps for does the same swap (see TimerWheel's
 `onEarlierDeadline`).
*/

#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TideCore

enum Runnable {
    case job(UnownedJob)
    case task(PollTaskBase)
}

/// A Tide runtime: runs Swift tasks and poll-based tasks, waits for I/O with epoll and fires
/// timers from a timing wheel.
///
/// ```swift
/// let runtime = try Runtime.currentThread()
/// let answer = try runtime.run {
///     try await Tide.sleep(for: .milliseconds(10))
///     return 42
/// }
/// ```
///
/// `Runtime.currentThread()` runs everything on the thread that calls ``run(_:)``: child tasks,
/// task groups and `async let` inside `run` stay on it (the runtime is their `TaskExecutor`).
/// Work spawned while the runtime is not running waits until the next `run`.
public final class Runtime: TaskExecutor, @unchecked Sendable {
    /// The runtime's I/O driver.
    public let reactor: Reactor
    let timers: TimerWheel

    private let owner = Atomic<UInt>(0)
    private let sleeping = Atomic<Bool>(false)
    private let isShutDown = Atomic<Bool>(false)
    private var local = RunQueue<Runnable>(capacity: 1024)
    private let injectLock = SyncLock()
    // Guarded by `injectLock`.
    private var inject = RunQueue<Runnable>(capacity: 64)
    private let injectCount = Atomic<Int>(0)
    private let liveTasks = Atomic<Int>(0)
    private let counters = Counters()

    private init() throws(RuntimeError) {
        do {
            reactor = try Reactor()
        } catch {
            throw .system(error)
        }
        timers = TimerWheel()
        timers.onEarlierDeadline = { [unowned self] in self.unparkForTimer() }
    }

    /// A runtime that runs everything on the thread that calls ``run(_:)``.
    ///
    /// Throws ``RuntimeError/system(_:)`` if epoll or the eventfd cannot be created (for example
    /// when the process is out of file descriptors).
    public static func currentThread() throws(RuntimeError) -> Runtime {
        try Runtime()
    }

    /// The runtime whose `run` is executing on the calling thread, if any.
    public static var current: Runtime? {
        guard let pointer = pthread_getspecific(currentKey) else { return nil }
        return Unmanaged<Runtime>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Runs `body` as a Swift task on this runtime and returns its result, driving every other
    /// task, the reactor and the timers on the calling thread until `body` finishes.
    ///
    /// Throws what `body` throws, ``RuntimeError/alreadyRunning`` if the runtime is already inside
    /// `run` (on any thread), and ``RuntimeError/shutDown`` after ``shutdown()``. Blocks the
    /// calling thread: do not call it from async code.
    public func run<T: Sendable>(_ body: sending @escaping () async throws -> T) throws -> T {
        if isShutDown.load(ordering: .acquiring) { throw RuntimeError.shutDown }
        let me = UInt(pthread_self())
        guard owner.compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing)
            .exchanged
        else { throw RuntimeError.alreadyRunning }
        let previous = pthread_getspecific(Self.currentKey)
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
        defer {
            pthread_setspecific(Self.currentKey, previous)
            owner.store(0, ordering: .releasing)
        }
        let outcome = Outcome<T>()
        Task(executorPreference: self) {
            do {
                outcome.result = .success(try await body())
            } catch {
                outcome.result = .failure(error)
            }
        }
        runLoop(until: outcome)
        return try outcome.result!.get()
    }

    /// Spawns a poll-based future as a light task (one allocation: state, future and output) and
    /// returns its handle. Wakes the runtime if called from another thread.
    ///
    /// Throws ``RuntimeError/shutDown`` after ``shutdown()``.
    @discardableResult
    public func spawn<F: Future>(_ future: F) throws(RuntimeError) -> PollTaskHandle<F.Output> {
        if isShutDown.load(ordering: .acquiring) { throw .shutDown }
        let task = PollTask(future: future, scheduler: self)
        liveTasks.add(1, ordering: .relaxed)
        counters.spawned.add(1, ordering: .relaxed)
        task.state.store(PollTaskBase.scheduled, ordering: .releasing)
        schedule(task)
        return PollTaskHandle(task)
    }

    /// Spawns a Swift task that prefers this runtime as its executor, and returns its handle.
    ///
    /// Throws ``RuntimeError/shutDown`` after ``shutdown()``.
    @discardableResult
    public func spawn<T: Sendable>(
        _ body: sending @escaping () async throws -> T
    ) throws(RuntimeError) -> JoinHandle<T> {
        if isShutDown.load(ordering: .acquiring) { throw .shutDown }
        counters.spawned.add(1, ordering: .relaxed)
        return JoinHandle(executor: self, body)
    }

    /// Stops the runtime for good: queued poll tasks are cancelled (their futures dropped, their
    /// joiners see ``JoinError/cancelled``), later `run` and `spawn` calls throw
    /// ``RuntimeError/shutDown``. Swift jobs still queued are dropped with the runtime, which
    /// leaks their tasks: finish or cancel Swift tasks before shutting down.
    public func shutdown() {
        if isShutDown.exchange(true, ordering: .acquiringAndReleasing) { return }
        var pending = injectLock.withLock { () -> [Runnable] in
            var all: [Runnable] = []
            while let item = inject.pop() { all.append(item) }
            return all
        }
        if owner.load(ordering: .acquiring) == 0 {
            while let item = local.pop() { pending.append(item) }
        }
        for case .task(let task) in pending {
            task.cancel()
            task.run()
        }
    }

    // MARK: Executor

    /// Receives a Swift job (a task to run or resume). Called by the Swift runtime.
    public func enqueue(_ job: consuming ExecutorJob) {
        push(.job(UnownedJob(job)))
    }

    func schedule(_ task: PollTaskBase) {
        push(.task(task))
    }

    func taskFinished() {
        liveTasks.subtract(1, ordering: .relaxed)
    }

    private func push(_ runnable: Runnable) {
        if owner.load(ordering: .relaxed) == UInt(pthread_self()) {
            local.push(runnable)
            return
        }
        injectLock.withLock { inject.push(runnable) }
        injectCount.add(1, ordering: .sequentiallyConsistent)
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            reactor.wakeup()
        }
    }

    private func unparkForTimer() {
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            reactor.wakeup()
        }
    }

    // MARK: Loop

    private func runLoop<T>(until outcome: Outcome<T>) {
        let executor = asUnownedTaskExecutor()
        var sinceDriver = 0
        drainInject()
        while outcome.result == nil {
            var ran = 0
            while ran < 61, outcome.result == nil, let runnable = local.pop() {
                switch runnable {
                case .job(let job):
                    job.runSynchronously(on: executor)
                case .task(let task):
                    task.run()
                }
                ran += 1
            }
            counters.polls.add(ran, ordering: .relaxed)
            drainInject()
            sinceDriver += ran
            if outcome.result != nil { break }
            if local.isEmpty {
                park()
                sinceDriver = 0
            } else if sinceDriver >= 61 {
                reactor.turn(timeoutMilliseconds: 0)
                timers.advance()
                sinceDriver = 0
            }
        }
    }

    private func drainInject() {
        if injectCount.load(ordering: .sequentiallyConsistent) == 0 { return }
        injectLock.withLock {
            while let item = inject.pop() {
                local.push(item)
                injectCount.subtract(1, ordering: .relaxed)
            }
        }
    }

    private func park() {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        if injectCount.load(ordering: .sequentiallyConsistent) > 0 {
            sleeping.store(false, ordering: .sequentiallyConsistent)
            drainInject()
            return
        }
        let timeout = timers.millisecondsUntilNext() ?? -1
        counters.parks.add(1, ordering: .relaxed)
        reactor.turn(timeoutMilliseconds: timeout)
        sleeping.store(false, ordering: .sequentiallyConsistent)
        timers.advance()
        drainInject()
    }

    // MARK: Introspection

    /// Counters for tests and metrics: tasks spawned, runnables run, times parked, poll tasks
    /// alive.
    public var metrics: Metrics {
        Metrics(
            tasksSpawned: counters.spawned.load(ordering: .relaxed),
            polls: counters.polls.load(ordering: .relaxed),
            parks: counters.parks.load(ordering: .relaxed),
            pollTasksAlive: liveTasks.load(ordering: .relaxed),
            timersArmed: timers.lock.withLock { timers.count },
            ioRegistrations: reactor.registrations)
    }

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
}

/// A snapshot of a runtime's counters.
public struct Metrics: Sendable, Equatable {
    /// Tasks (Swift and poll) spawned through the runtime.
    public var tasksSpawned: Int
    /// Jobs and poll-task turns run.
    public var polls: Int
    /// Times the runtime slept in the reactor.
    public var parks: Int
    /// Poll tasks spawned and not yet complete.
    public var pollTasksAlive: Int
    /// Timers currently in the timing wheel.
    public var timersArmed: Int
    /// File descriptors registered with the reactor.
    public var ioRegistrations: Int
}

private final class Counters: Sendable {
    let spawned = Atomic<Int>(0)
    let polls = Atomic<Int>(0)
    let parks = Atomic<Int>(0)
}

/// Where `run` receives its body's result. Written and read on the runtime's thread only.
private final class Outcome<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
