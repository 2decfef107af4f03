/*
 Runtime: the facade over two schedulers. The multi-thread flavour delegates queueing, workers,
 parking and the stall detector to MultiThreadScheduler (see its file). The rest of this comment
 is the current-thread flavour, which lives here: one thread runs Swift jobs and poll tasks,
 drives the reactor and fires timers.

 Queues. `local` is touched only by the thread inside `run` (the owner). `inject` (a mutex-guarded
 queue plus an atomic count) receives work from every other thread, and all work while nobody is
 inside `run`. `enqueue` (Swift jobs) and `schedule` (poll tasks) pick the queue by comparing the
 calling thread with `owner`.

 Loop (`runLoop`): run runnables from `local` (a turn costs 1, plus 1 per 8 leaf operations
 it spent: `Coop.cost`) until they cost 61, then move everything from `inject` to `local`; every
 61 of cost, poll the reactor and the timers without blocking, so a busy runtime still sees I/O
 and timers, also when its turns each spend a full budget; when `local` is empty, park. After
 each Swift job the loop resumes the tasks that called `Tide.yield()` in it (`deferredResumes`):
 they go to the back of `local`. A poll task that woke itself goes back there too, keeping the
 queue's reference to it.

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
import CTide
import Logging
import Synchronization
import TideCore

enum Runnable {
    case job(UnownedJob)
    /// A job to run on the generic executor, with no task executor (see `enqueueJob(_:global:)`).
    case genericJob(UnownedJob)
    /// A poll task and the queue's reference to it (retained when queued, consumed by the run).
    case task(Unmanaged<PollTaskBase>)
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
    /// `PollTaskBase.vtable`, read from here on every poll: a `static let` costs a
    /// `swift_once` check per access.
    let pollTaskVTable = PollTaskBase.vtable
    /// Where ``Tide/spawnBlocking(_:)`` runs blocking work for this runtime's tasks: up to 512
    /// threads, started on demand, retired after 10 s idle; shut down with the runtime.
    public let blockingPool = BlockingPool(
        checkedMaximumThreads: 512, keepAlive: .seconds(10), queueCapacity: 65_536,
        name: "tide-blocking")
    let timers: TimerWheel

    /// The multi-thread scheduler, or nil for the current-thread flavour.
    let multi: MultiThreadScheduler?
    /// `multi`, to borrow without a retain and release on the enqueue path (the runtime owns the
    /// scheduler for its whole life). An `unowned(unsafe)` field did not do it: binding it with
    /// `if let` retained the scheduler, an atomic pair per enqueue.
    let multiRef: Unmanaged<MultiThreadScheduler>?
    /// Current-thread flavour: the `ctide_thread_id()` of the thread inside `run` (4 or more, the
    /// same id a poll task records as its poller). Multi-thread: 1 while `run` waits.
    private let owner = Atomic<UInt>(0)
    /// Continuations of tasks that yielded during the current job (`Tide.yield`); resumed by the
    /// run loop right after that job. Owner thread only (current-thread flavour).
    @exclusivity(unchecked) private var deferredResumes: [UnsafeContinuation<Bool, Never>] = []
    /// Whether the owner thread is inside a job of `runLoop`.
    @exclusivity(unchecked) private var inTurn = false
    private let sleeping = Atomic<Bool>(false)
    private let isShutDown = Atomic<Bool>(false)
    // The current-thread flavour allocates these two up front (see `RingBuffer(preallocated:)`):
    // each doubling step past 1 KiB while tasks ran was a malloc request that made glibc
    // consolidate every small chunk freed since, 10 ms and more once 100,000 tasks had finished.
    @exclusivity(unchecked) private var local = RingBuffer<Runnable>()
    /// Current-thread flavour: tasks woken while the loop drives timers and epoll; they run
    /// before `local`, so a backlog of new work does not make timers late.
    @exclusivity(unchecked) private var woken = RingBuffer<Runnable>()
    @exclusivity(unchecked) private var driving = false
    private let injectLock = SyncLock()
    // Guarded by `injectLock`.
    @exclusivity(unchecked) private var inject = RingBuffer<Runnable>()
    private let injectCount = Atomic<Int>(0)
    /// Guards the table of live tasks; taken when a poll task first waits and when it
    /// finishes, so a one-word lock rather than a pthread mutex.
    private let registryLock = WordLock()
    /// Poll tasks that waited (returned pending without waking themselves) and are not complete,
    /// so that `shutdown()` can cancel them: a waiting task is in no queue, only in the wakers
    /// that will wake it. A task enters it at its first wait, not at spawn: a task that
    /// completes in its first poll (or is still queued at shutdown, where the queues cancel it)
    /// never takes the lock. A table, not an intrusive list, so that the task keeps a 32-bit
    /// slot number instead of two links (16 bytes of every poll task); each member holds one
    /// retain for the table (see LiveTaskTable.swift).
    @exclusivity(unchecked) private var liveTasks = LiveTaskTable()
    private let counters = Counters()

    private init(
        workers: Int?, stallThreshold: Duration,
        onStall: (@Sendable (StallReport) -> Void)?
    ) throws(RuntimeError) {
        do {
            reactor = try Reactor()
        } catch {
            throw .system(error)
        }
        timers = TimerWheel()
        multi = workers.map { count in
            MultiThreadScheduler(
                workers: count, stallThreshold: stallThreshold, onStall: onStall ?? Runtime.logStall)
        }
        multiRef = multi.map { Unmanaged.passUnretained($0) }
        if let scheduler = multi {
            scheduler.runtime = self
            timers.onEarlierDeadline = { scheduler.timerArmedEarlier() }
            do {
                try scheduler.start()
            } catch {
                throw .system(error)
            }
            // The workers keep the runtime alive until `shutdown()` (set only once they run: a
            // runtime whose threads could not start must be freed when `init` throws).
            keepAlive = self
        } else {
            timers.onEarlierDeadline = { [unowned self] in self.unparkForTimer() }
            local = RingBuffer(preallocated: ())
            woken = RingBuffer(preallocated: ())
        }
    }

    deinit {
        for queue in [local, woken, inject] {
            var queue = queue
            while let item = queue.popFirst() {
                if case .task(let task) = item { task.release() }
            }
            queue.destroy()
        }
    }

    /// Set for the multi-thread flavour: its threads use the runtime until `shutdown()`.
    @exclusivity(unchecked) private var keepAlive: Runtime?

    /// A runtime that runs everything on the thread that calls ``run(_:)``.
    ///
    /// Throws ``RuntimeError/system(_:)`` if epoll or the eventfd cannot be created (for example
    /// when the process is out of file descriptors).
    public static func currentThread() throws(RuntimeError) -> Runtime {
        try Runtime(workers: nil, stallThreshold: .zero, onStall: nil)
    }

    /// A work-stealing runtime with `workers` threads (default: one per core).
    ///
    /// Tasks run on whichever worker is free; idle workers steal from busy ones; one parked worker
    /// waits in epoll for I/O and timers. A monitor thread reports any worker that runs one job
    /// for longer than `stallThreshold` (through `onStall`, or as a swift-log warning with label
    /// `tide.runtime` by default) and
    /// starts a spare thread so that the other tasks keep running while it spins.
    ///
    /// The threads start at once and live until ``shutdown()``; a runtime that is never shut down
    /// lives until the process exits. Throws ``RuntimeError/invalidWorkerCount(_:)`` for
    /// `workers < 1` and ``RuntimeError/system(_:)`` if epoll or the eventfd cannot be created or
    /// a thread cannot be started (those that did are stopped first).
    public static func multiThread(
        workers: Int? = nil,
        stallThreshold: Duration = .milliseconds(10),
        onStall: (@Sendable (StallReport) -> Void)? = nil
    ) throws(RuntimeError) -> Runtime {
        let count = workers ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        guard count >= 1 else { throw .invalidWorkerCount(count) }
        guard stallThreshold > .zero else { throw .invalidStallThreshold(stallThreshold) }
        return try Runtime(workers: count, stallThreshold: stallThreshold, onStall: onStall)
    }

    /// The logger behind the default stall report (label `tide.runtime`). Where its lines go is
    /// decided by the process's swift-log bootstrap (standard error when none was made).
    static let logger = Logger(label: "tide.runtime")

    /// The default stall report: a warning through swift-log, with the worker, how long the job
    /// had run and the Swift task id as metadata.
    static let logStall: @Sendable (StallReport) -> Void = { report in
        var metadata: Logger.Metadata = [
            "worker": "\(report.worker)",
            "running_ms": "\(report.duration.nanosecondsClamped / 1_000_000)",
        ]
        if let taskID = report.taskID { metadata["task_id"] = "\(taskID)" }
        logger.warning(
            "stall detected: a task has held a worker without yielding; its queued tasks move to other threads",
            metadata: metadata)
    }

    /// Marks the calling thread as one of this runtime's threads (for `Runtime.current`).
    func enterThread() {
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
    }

    /// The number of worker threads (1 for the current-thread flavour).
    public var workerCount: Int { multi?.workerCount ?? 1 }

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
        if multi != nil { return try runMultiThread(body) }
        let me = UInt(ctide_thread_id())
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

    private func runMultiThread<T: Sendable>(
        _ body: sending @escaping () async throws -> T
    ) throws -> T {
        if Runtime.current === self { throw RuntimeError.alreadyRunning }
        guard owner.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing)
            .exchanged
        else { throw RuntimeError.alreadyRunning }
        defer { owner.store(0, ordering: .releasing) }
        let outcome = SharedOutcome<T>()
        Task(executorPreference: self) {
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            outcome.finish(result)
        }
        return try outcome.wait().get()
    }

    /// Spawns a poll-based future as a light task (one allocation: state, future and output) and
    /// returns its handle. Wakes the runtime if called from another thread.
    ///
    /// Throws ``RuntimeError/shutDown`` after ``shutdown()``.
    @inlinable
    @discardableResult
    public func spawn<F: Future>(_ future: F) throws(RuntimeError) -> PollTaskHandle<F.Output> {
        if isShutDownFlag { throw .shutDown }
        let task = PollTask<PollStage<F>>(future: future, scheduler: Unmanaged.passUnretained(self))
        admit(task)
        return PollTaskHandle(task)
    }

    /// Counts a new poll task and queues its first poll (behind the queued work: the LIFO slot
    /// is for wakes). Not generic, so `spawn` specialises into the caller without pulling the
    /// scheduler along.
    @usableFromInline
    func admit(_ task: PollTaskBase) {
        count(.pollSpawned)
        task.state.store(PollTaskBase.scheduled, ordering: .releasing)
        reschedule(Unmanaged.passRetained(task))
    }

    /// Puts `task` in the table of live tasks when it is about to wait for the first time;
    /// called by the thread running it (state `running`), so no other thread can finish it
    /// meanwhile.
    func taskWillWait(_ task: PollTaskBase) {
        // A waiting task may be woken from any thread, which then queues it here: from now on it
        // keeps the runtime alive (see `PollTaskBase.schedulerRef`). Once per task: it stays listed
        // until it completes.
        if !task.retainsScheduler {
            task.retainsScheduler = true
            _ = Unmanaged.passUnretained(self).retain()
        }
        // The table's reference, released when the task leaves it.
        let unmanaged = Unmanaged.passRetained(task)
        // 2^32 - 1 tasks waiting at once (the `notListed` sentinel) would need over 400 GB.
        registryLock.withLock { task.liveSlot = liveTasks.insert(unmanaged) }
    }

    /// Spawns a Swift task that prefers this runtime as its executor, and returns its handle.
    ///
    /// Throws ``RuntimeError/shutDown`` after ``shutdown()``.
    @discardableResult
    public func spawn<T: Sendable>(
        _ body: sending @escaping () async throws -> T
    ) throws(RuntimeError) -> JoinHandle<T> {
        if isShutDown.load(ordering: .acquiring) { throw .shutDown }
        count(.spawned)
        return JoinHandle(executor: self, body)
    }

    @usableFromInline
    var isShutDownFlag: Bool { isShutDown.load(ordering: .acquiring) }

    func noteSpawned() {
        count(.spawned)
    }

    /// Counts a spawn or a finished poll task. On the runtime's own threads (the owner of a
    /// current-thread runtime, a worker of a multi-thread one) the count goes to that thread's
    /// counters, which only it writes: a load and a store instead of a locked add, which cost
    /// about 3% of the spawn workload per counter. Elsewhere it goes to the shared atomics.
    @inline(__always)
    func count(_ event: CountedEvent) {
        if let multi = multiRef {
            if multi._withUnsafeGuaranteedRef({ $0.countOnWorker(event) }) { return }
        } else if owner.load(ordering: .relaxed) == UInt(ctide_thread_id()) {
            counters.ownerCounts.bump(event)
            return
        }
        switch event {
        case .spawned: counters.spawned.add(1, ordering: .relaxed)
        case .pollSpawned: counters.pollSpawned.add(1, ordering: .relaxed)
        case .pollFinished: counters.pollFinished.add(1, ordering: .relaxed)
        }
    }

    /// Stops the runtime for good: queued poll tasks are cancelled (their futures dropped, their
    /// joiners see ``JoinError/cancelled``), later `run` and `spawn` calls throw
    /// ``RuntimeError/shutDown``. Swift jobs still queued are dropped with the runtime, which
    /// leaks their tasks: finish or cancel Swift tasks before shutting down.
    ///
    /// Multi-thread flavour: every worker (and spare thread) finishes the job it is running and
    /// exits, and the threads are joined before this returns. Poll tasks still waiting complete
    /// as cancelled. The blocking pool finishes its queued jobs and its threads are joined.
    /// Called from one of the runtime's own tasks, it returns at once, since that thread cannot
    /// join itself: a helper thread does all of the above once the calling job has returned.
    /// Only the first call shuts down; a later call returns true at once, even while the first
    /// (or its helper thread) is still at work.
    public func shutdown() {
        shutdown(deadline: nil)
    }

    /// Shuts the runtime down like ``shutdown()``, but waits at most `timeout` for the worker
    /// threads to finish the jobs they are running.
    ///
    /// Use it when a task may be stuck in a long synchronous call and the process must move on
    /// (for example on SIGTERM). Returns true if every thread stopped in time. Returns false if a
    /// worker was still inside a job at the deadline: that thread exits when its job ends, and the
    /// runtime (its queues and whatever tasks they hold) stays allocated so that the thread can
    /// finish safely; nothing more is run. Called from one of the runtime's own tasks, it returns
    /// true at once and a helper thread waits, with the same deadline (see ``shutdown()``). On
    /// the current-thread flavour this is ``shutdown()``.
    @discardableResult
    public func shutdown(timeout: Duration) -> Bool {
        let nanoseconds = UInt64(max(timeout.nanosecondsClamped, 0))
        return shutdown(deadline: monotonicNanoseconds() &+ nanoseconds)
    }

    @discardableResult
    private func shutdown(deadline: UInt64?) -> Bool {
        if isShutDown.exchange(true, ordering: .acquiringAndReleasing) { return true }
        if let multi {
            if multi.isOwnThread {
                // Called by one of the runtime's own jobs (or its stall callback), whose thread
                // cannot join itself: a helper thread joins them all (this one once the job
                // returns) and finishes.
                multi.requestStop()
                startShutdownHelper(multi, deadline: deadline)
                return true
            }
            return finishShutdown(multi, deadline: deadline)
        }
        cancelQueuedTasks()
        if owner.load(ordering: .acquiring) == 0 {
            cancelWaitingTasks()
            // As above: joiners woken by those cancellations were queued again.
            while cancelQueuedTasks() > 0 {}
            blockingPool.shutdown()
        }
        return true
    }

    /// Multi-thread flavour: stops and joins the threads, then cancels the poll tasks left.
    @discardableResult
    private func finishShutdown(_ multi: MultiThreadScheduler, deadline: UInt64?) -> Bool {
        guard multi.stop(deadline: deadline) else {
            // A worker is still inside a job: keep the runtime alive for it (keepAlive stays
            // set) and cancel the tasks that wait, so their joiners do not hang.
            cancelWaitingTasks(onlyIdle: true)
            return false
        }
        keepAlive = nil
        cancelWaitingTasks()
        // Cancelling a waiting task wakes its joiners, which may be waiting tasks too: those
        // wakes queued them after the queues were drained. They are complete now; the queues'
        // references must go, or each would keep the runtime alive.
        while multi.drainAfterStop() > 0 {}
        blockingPool.shutdown()
        return true
    }

    /// Runs `finishShutdown` on a new detached thread, which holds the runtime until it is done.
    /// If no thread can be started, the threads still stop (they were told to), but what was
    /// queued or waiting stays as it is, and the runtime is not freed.
    private func startShutdownHelper(_ multi: MultiThreadScheduler, deadline: UInt64?) {
        var thread = pthread_t()
        _ = spawnThread(&thread, detached: true) { self.finishShutdown(multi, deadline: deadline) }
    }

    /// Current-thread flavour, at shutdown: cancels the poll tasks in the global queue (and in
    /// the local queues, if no thread is inside `run`) and releases the queues' references.
    /// Returns how many there were.
    @discardableResult
    private func cancelQueuedTasks() -> Int {
        var pending = injectLock.withLock { () -> [Runnable] in
            var all: [Runnable] = []
            while let item = inject.popFirst() { all.append(item) }
            injectCount.subtract(all.count, ordering: .relaxed)
            return all
        }
        if owner.load(ordering: .acquiring) == 0 {
            while let item = woken.popFirst() ?? local.popFirst() { pending.append(item) }
        }
        var count = 0
        for case .task(let task) in pending {
            count += 1
            task._withUnsafeGuaranteedRef { $0.cancel() }
            if PollTaskBase.runQueued(task, thread: ctide_thread_id()) { reschedule(task) }
        }
        return count
    }

    /// After the threads stopped: completes every poll task that is still alive as cancelled
    /// (its future dropped, its joiners woken with `JoinError.cancelled`).
    private func cancelWaitingTasks(onlyIdle: Bool = false) {
        let remaining = registryLock.withLock { () -> [PollTaskBase] in
            liveTasks.tasks
        }
        for task in remaining {
            if onlyIdle { task.cancelIfWaiting() } else { task.cancelAtShutdown() }
        }
    }

    // MARK: Executor

    /// Receives a Swift job (a task to run or resume). Called by the Swift runtime.
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueueJob(UnownedJob(job))
    }

    /// Queues a Swift job. `global`: the job runs on the generic executor, with no task
    /// executor, as Swift's global executor runs its jobs: for jobs that came through the
    /// installed global executor, and for the wake-up tasks of `Task.sleep`. Those tasks have no
    /// executor preference, and one run as a job of Tide's task executor hops off it (to Swift's
    /// global executor) at its first suspension point or return.
    func enqueueJob(_ job: UnownedJob, global: Bool = false) {
        if let multi = multiRef {
            let item = global ? RunnableRef(globalJob: job) : RunnableRef(job: job)
            multi._withUnsafeGuaranteedRef { $0.push(item) }
        } else {
            push(global ? .genericJob(job) : .job(job))
        }
    }

    /// Queues a woken poll task; `task` is a reference the queue takes over.
    func schedule(_ task: Unmanaged<PollTaskBase>) {
        // Borrowed through `multiRef`, as `enqueueJob` does: `if let multi` retained and released
        // the scheduler (shared by every worker) per wake.
        if let multi = multiRef {
            multi._withUnsafeGuaranteedRef { $0.push(RunnableRef(task: task)) }
        } else {
            push(.task(task))
        }
    }

    /// A poll task woken while it ran (or just spawned): queue it behind the others (never the
    /// LIFO slot, or a task that keeps waking itself would never let the others run). `task` is
    /// a reference the queue takes over.
    func reschedule(_ task: Unmanaged<PollTaskBase>) {
        if let multi = multiRef {
            multi._withUnsafeGuaranteedRef { $0.push(RunnableRef(task: task), yielding: true) }
        } else {
            push(.task(task))
        }
    }

    /// Counts a finished poll task and takes it out of the table of live tasks if it is there;
    /// called by the thread that completed it.
    func taskFinished(_ task: PollTaskBase) {
        count(.pollFinished)
        // Written (under the lock) only by threads that owned the task's turn before this one;
        // the state word's acquire orders that write before this read.
        guard task.liveSlot != PollTaskBase.notListed else { return }
        let listed = registryLock.withLock { () -> Unmanaged<PollTaskBase>? in
            let slot = task.liveSlot
            guard slot != PollTaskBase.notListed else { return nil }
            task.liveSlot = PollTaskBase.notListed
            return liveTasks.remove(at: slot)
        }
        listed?.release()
    }

    private func push(_ runnable: Runnable) {
        if owner.load(ordering: .relaxed) == UInt(ctide_thread_id()) {
            if driving { woken.append(runnable) } else { local.append(runnable) }
            return
        }
        injectLock.withLock { inject.append(runnable) }
        injectCount.add(1, ordering: .sequentiallyConsistent)
        counters.remoteSchedules.add(1, ordering: .relaxed)
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

    private func runLoop(until outcome: RunFlag) {
        let executor = asUnownedTaskExecutor()
        let thread = ctide_thread_id()
        var sinceDriver = 0
        drainInject()
        while !outcome.isDone {
            var ran = 0
            var cost = 0
            while cost < Coop.driverInterval, !outcome.isDone,
                let runnable = woken.popFirst() ?? local.popFirst()
            {
                let spent = Coop.turn {
                    switch runnable {
                    case .job(let job), .genericJob(let job):
                        inTurn = true
                        if case .genericJob = runnable {
                            runOnGenericExecutor(job)
                        } else {
                            job.runSynchronously(on: executor)
                        }
                        inTurn = false
                        if !deferredResumes.isEmpty { resumeDeferred() }
                    case .task(let task):
                        // Woken while it ran: behind the queued work, never the LIFO slot.
                        if PollTaskBase.runQueued(task, thread: thread) { local.append(runnable) }
                    }
                }
                ran += 1
                cost += Coop.cost(ofTurnSpending: spent)
            }
            counters.polls.add(ran, ordering: .relaxed)
            drainInject()
            sinceDriver += cost
            if outcome.isDone { break }
            if local.isEmpty && woken.isEmpty {
                park()
                sinceDriver = 0
            } else if sinceDriver >= Coop.driverInterval {
                driving = true
                reactor.turn(timeoutMilliseconds: 0)
                timers.advance()
                driving = false
                sinceDriver = 0
            }
        }
    }

    /// Parks `continuation` until the job running on this thread returns, if this thread is
    /// running a Tide job; false otherwise (the caller resumes it itself).
    static func deferResumeOnThisThread(_ continuation: UnsafeContinuation<Bool, Never>) -> Bool {
        guard let pointer = pthread_getspecific(currentKey) else { return false }
        return Unmanaged<Runtime>.fromOpaque(pointer)._withUnsafeGuaranteedRef { runtime in
            if let multi = runtime.multiRef {
                return multi._withUnsafeGuaranteedRef { $0.deferResume(continuation) }
            }
            guard runtime.owner.load(ordering: .relaxed) == UInt(ctide_thread_id()), runtime.inTurn
            else { return false }
            runtime.deferredResumes.append(continuation)
            return true
        }
    }

    /// Resumes the yielded tasks: each goes to the back of the local queue.
    private func resumeDeferred() {
        // By index, without copying the array: a resume only enqueues, it never runs a task.
        var index = 0
        while index < deferredResumes.count {
            deferredResumes[index].resume(returning: true)
            index += 1
        }
        deferredResumes.removeAll(keepingCapacity: true)
    }

    private func drainInject() {
        if injectCount.load(ordering: .sequentiallyConsistent) == 0 { return }
        injectLock.withLock {
            while let item = inject.popFirst() {
                local.append(item)
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
        let timeout = timers.nanosecondsUntilNext() ?? -1
        counters.parks.add(1, ordering: .relaxed)
        driving = true
        reactor.turn(timeoutNanoseconds: timeout)
        sleeping.store(false, ordering: .sequentiallyConsistent)
        timers.advance()
        driving = false
        drainInject()
    }

    // MARK: Introspection

    /// Counters for tests and monitoring: tasks spawned and alive, runnables run, parks, queue
    /// depths, timers and registrations, and per-worker counters for the multi-thread flavour.
    /// Cheap to read at any time from any thread.
    public var metrics: Metrics {
        // Finished is read first: a task counted as finished was counted as spawned before.
        let finished = counters.pollFinished.load(ordering: .acquiring)
            + counters.ownerCounts.load(.pollFinished)
            + (multi?.workerCounts(.pollFinished) ?? 0)
        let pollSpawned = counters.pollSpawned.load(ordering: .acquiring)
            + counters.ownerCounts.load(.pollSpawned)
            + (multi?.workerCounts(.pollSpawned) ?? 0)
        let spawned = counters.spawned.load(ordering: .relaxed)
            + counters.ownerCounts.load(.spawned)
            + (multi?.workerCounts(.spawned) ?? 0)
        return Metrics(
            tasksSpawned: spawned + pollSpawned,
            polls: counters.polls.load(ordering: .relaxed),
            parks: counters.parks.load(ordering: .relaxed),
            pollTasksAlive: pollSpawned - finished,
            timersArmed: timers.lock.withLock { timers.count },
            ioRegistrations: reactor.registrations,
            workers: multi?.workerMetrics() ?? [],
            globalQueueDepth: multi?.globalQueueDepth ?? injectCount.load(ordering: .relaxed),
            remoteSchedules: multi?.remoteSchedules.load(ordering: .relaxed)
                ?? counters.remoteSchedules.load(ordering: .relaxed),
            sparesStarted: multi?.sparesStarted.load(ordering: .relaxed) ?? 0,
            blocking: blockingPool.metrics)
    }

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
}

/// What `Runtime.count` counts.
enum CountedEvent {
    case spawned
    case pollSpawned
    case pollFinished
}

/// Spawn and finish counts written by one thread only (a current-thread runtime's owner, or one
/// worker), with a load and a store; other threads only read them.
final class OwnedCounts: Sendable {
    let spawned = Atomic<Int>(0)
    let pollSpawned = Atomic<Int>(0)
    let pollFinished = Atomic<Int>(0)

    /// Adds one to `event`'s count; only from the owning thread. The releasing store pairs with
    /// the metrics reader's acquiring load (see `Runtime.metrics`).
    @inline(__always)
    func bump(_ event: CountedEvent) {
        switch event {
        case .spawned: spawned.store(spawned.load(ordering: .relaxed) &+ 1, ordering: .releasing)
        case .pollSpawned:
            pollSpawned.store(pollSpawned.load(ordering: .relaxed) &+ 1, ordering: .releasing)
        case .pollFinished:
            pollFinished.store(pollFinished.load(ordering: .relaxed) &+ 1, ordering: .releasing)
        }
    }

    /// `event`'s count, with an acquiring load.
    func load(_ event: CountedEvent) -> Int {
        switch event {
        case .spawned: spawned.load(ordering: .acquiring)
        case .pollSpawned: pollSpawned.load(ordering: .acquiring)
        case .pollFinished: pollFinished.load(ordering: .acquiring)
        }
    }
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
    /// Per-worker counters (multi-thread flavour; empty for current-thread).
    public var workers: [WorkerMetrics]
    /// Runnables waiting in the global injection queue.
    public var globalQueueDepth: Int
    /// Runnables queued so far from threads that are not the runtime's (wakes from other
    /// threads or from Swift's global executor, spawns from outside): each took the injection
    /// queue's lock and perhaps a thread wake-up. Work that stays on the runtime's threads
    /// (wakes from tasks, timers, I/O readiness) does not count.
    public var remoteSchedules: Int
    /// Spare threads the stall detector started so far.
    public var sparesStarted: Int
    /// The runtime's blocking pool.
    public var blocking: BlockingPoolMetrics
    /// Polls summed over workers (multi-thread) or the runtime's own count (current-thread).
    public var totalPolls: Int { workers.isEmpty ? polls : workers.reduce(0) { $0 + $1.polls } }
}

private final class Counters: Sendable {
    /// Counts from threads that are not the runtime's (locked adds).
    let spawned = Atomic<Int>(0)
    let pollSpawned = Atomic<Int>(0)
    let pollFinished = Atomic<Int>(0)
    /// Counts from the owner of a current-thread runtime.
    let ownerCounts = OwnedCounts()
    let polls = Atomic<Int>(0)
    let parks = Atomic<Int>(0)
    let remoteSchedules = Atomic<Int>(0)
}

/// Where `run` receives its body's result. Written and read on the runtime's thread only.
private final class Outcome<T>: RunFlag, @unchecked Sendable {
    @exclusivity(unchecked) var result: Result<T, any Error>? {
        didSet { isDone = true }
    }
}

/// Whether a current-thread `run`'s body finished. Not generic, so the run loop that checks it
/// after every job is compiled once, without looking up the result type's metadata.
private class RunFlag: @unchecked Sendable {
    @exclusivity(unchecked) final var isDone = false
}

/// Where a multi-thread `run` receives its body's result: written by a worker, read by the
/// thread waiting in `run`.
private final class SharedOutcome<T>: @unchecked Sendable {
    private let lock = SyncLock()
    @exclusivity(unchecked) private var result: Result<T, any Error>?
    private let parker = ThreadParker()

    func finish(_ value: Result<T, any Error>) {
        lock.withLock { result = value }
        parker.unpark()
    }

    func wait() -> Result<T, any Error> {
        while true {
            if let value = lock.withLock({ result }) { return value }
            parker.park()
        }
    }
}
