/*
 MultiThreadScheduler: N worker threads (plus spares), work stealing, one reactor driver.

 Queues. Each worker owns a LocalQueue (lock-free for the owner, stealable) and a LIFO slot (an
 atomic word) for the runnable most recently woken by the task it is running: a message passed
 from one task to another runs next, on the same core, without a futex wake. At most 3 runnables
 in a row come from the LIFO slot, then it spills into the local queue so a pair of tasks that
 wake each other cannot starve the rest. Wakes from outside the workers go to the global
 injection queue (`inject`, a SyncLock-guarded ring plus an atomic count). A worker takes from the
 global queue first every 61st turn (fairness), and whenever its own queues are empty.

 Tasks woken by the driver outside any job (a timer fired, a socket became ready) go to the
 shared `woken` queue, which every worker serves right after its LIFO slot: a backlog of new or
 yielded work must not make timers late.

 Yields. `Tide.yield()` parks the task's continuation in the worker's `deferredResumes`; the
 worker resumes it when the current job returns, still inside that job's turn, with `deferNext`
 set so the task goes to the back of the local queue (tokio's `yield_now`: one job per yield,
 where `Task.yield()` costs two). A poll task that woke itself is queued the same way. Either
 wakes a sibling only if other work is queued here: waking one for the yielder alone made it
 steal the task and bounce it between cores.

 Finding work, in order: LIFO slot, woken queue, local queue, global queue (up to half its length, at most
 128), then steal half of another worker's local queue (or its LIFO slot), starting at a random
 victim. `searching` counts workers that are stealing; at most half the workers search at once.

 Spinning before parking. A worker that finds nothing keeps searching for up to 50 µs (counted
 in `searching`, so pushes in that window wake nobody) before it parks: a producer feeding work a
 little slower than the others consume it then costs no futex or eventfd wake per item. The LIFO
 slot of a worker in a job is left alone unless the monitor marked that worker stalled (the task
 there runs next, hot in cache); a retiring spare calls `notify()` on its way out, since pushes
 made while it searched woke nobody.

 Parking without lost wakeups. A worker with nothing to do adds itself to `idle` (under
 `idleLock`), then looks at every queue once more, then parks. Whoever makes work available
 (push to a local queue, the LIFO slot, or the global queue) then calls `notify()`: if no worker
 is searching, it removes one worker from `idle` (under the same lock) and wakes it. Because the
 idle list is read and written under one lock, either the notifier sees the worker in the list
 (and wakes it), or the worker's re-check comes after the push (and sees the work).

 The driver. A parked worker that wins `driverBusy` blocks in epoll_wait (reactor.turn) with the
 next timer deadline as its timeout; the others sleep on their ThreadParker. Waking the driver
 goes through the eventfd. A timer armed earlier than the driver's timeout wakes it too. Busy
 workers poll the reactor and fire timers without blocking every 61 units of turn cost (a turn
 costs 1, plus 1 per 8 leaf operations it spent: `Coop.cost`), so I/O and timers progress even
 when nobody parks. A worker that parked while another thread held the driver sleeps on its
 parker; so whoever releases `driverBusy` wakes one parked worker if nobody took the driver
 since (`handOffDriver`): otherwise every worker could sleep with timers armed.

 Stall detector. Workers read no clock per job: each sets `inJob` and bumps `jobsRun` when a job
 starts. A monitor thread looks every `stallThreshold / 4` (as Go's sysmon does with its
 schedtick): a worker seen inside the same job (same `jobsRun`) for `stallThreshold` is marked
 `stalled` and reported (once per stall, through `onStall`), and an idle worker is woken: the
 stalled worker's queue and LIFO slot are now stealable. Workers that are not stalled take its
 work, so spares make up only for stalled workers beyond the free ones (one stalled worker of
 two starts none: a spare would only timeslice with the spinner on the same cores). A spare
 steals the stalled worker's queued runnables (including its LIFO slot) and drives timers and
 I/O, so everything else keeps running while the offender spins. A spare retires after it finds
 no stalled worker and no work for a while.
*/

#if canImport(Glibc)
import Glibc
#endif
import CTide
import Synchronization
import TideCore

/// One worker thread's state. Fields written by other threads are atomics.
///
/// Field order is about cache lines: searching workers poll `active` and `stalled` of every
/// other worker on each spin round, so those sit apart (behind `coldPadding`) from the fields
/// the owner writes on every job (`lifo`, `inJob`, the counters); on one line, every job of the
/// owner lost that line to the spinning sibling.
final class Worker: @unchecked Sendable {
    let index: Int
    let isSpare: Bool
    let queue = LocalQueue()
    let parker = ThreadParker()
    /// Set by the monitor when the current job has run for `stallThreshold`; cleared by the
    /// worker when that job ends.
    let stalled = Atomic<Bool>(false)
    let inDriver = Atomic<Bool>(false)
    let active = Atomic<Bool>(false)
    private let coldPadding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0)
    /// The LIFO slot: 0 or an encoded runnable. The owner swaps it; stealers may take it.
    let lifo = Atomic<UInt>(0)
    /// Whether the worker is inside a job (false while it looks for work, parks or drives).
    let inJob = Atomic<Bool>(false)
    /// The Swift task id of the job being run (0 for a poll task or a job that is not a task),
    /// for the stall report.
    let runningTaskID = Atomic<UInt64>(0)
    /// Increments as each job starts, so the monitor can tell one long job from many short ones.
    let jobsRun = Atomic<Int>(0)
    // Monitor-thread-only state: the job last seen running and since when.
    @exclusivity(unchecked) var observedJob = -1
    @exclusivity(unchecked) var observedSince: UInt64 = 0
    @exclusivity(unchecked) var reportedJob = -1
    // Counters for metrics.
    let polls = Atomic<Int>(0)
    let steals = Atomic<Int>(0)
    let parks = Atomic<Int>(0)
    let stallsSeen = Atomic<Int>(0)
    /// Spawns and finished poll tasks counted on this worker (see `Runtime.count`).
    let counts = OwnedCounts()
    // Owner-only state.
    /// The worker thread's `ctide_thread_id()`, set by the thread when it starts.
    @exclusivity(unchecked) var selfID: UInt32 = 0
    @exclusivity(unchecked) var tick: UInt32 = 0
    /// Turn cost since this worker last polled timers and I/O (see `Coop.cost`).
    @exclusivity(unchecked) var sinceMaintenance = 0
    @exclusivity(unchecked) var lifoRuns = 0
    @exclusivity(unchecked) var random: UInt64
    @exclusivity(unchecked) var thread = pthread_t()
    /// Set by Tide.yield(): the next job enqueued from this worker goes to the back.
    @exclusivity(unchecked) var deferNext = false
    /// Continuations of tasks that yielded in the current job, resumed when it returns.
    @exclusivity(unchecked) var deferredResumes: [UnsafeContinuation<Bool, Never>] = []

    /// The address of the scheduler this worker belongs to, for a cheap "is this thread one of
    /// ours" check: compared as an address, not loaded as a reference, which retained and
    /// released the scheduler on every push.
    @exclusivity(unchecked) var owner: UnsafeMutableRawPointer? = nil

    init(index: Int, isSpare: Bool) {
        self.index = index
        self.isSpare = isSpare
        random = UInt64(index &+ 1) &* 0x9E37_79B9_7F4A_7C15
    }

    func nextRandom(_ bound: Int) -> Int {
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        return Int(random % UInt64(bound))
    }
}

final class MultiThreadScheduler: @unchecked Sendable {
    /// Set once by the runtime right after creating the scheduler, before any thread starts.
    @exclusivity(unchecked) unowned(unsafe) var runtime: Runtime!
    let workerCount: Int
    let stallThreshold: UInt64
    /// Called on the monitor thread when a worker has been inside one job for too long.
    let onStall: @Sendable (StallReport) -> Void
    /// Workers, then spare slots (a spare is `active` only while it runs).
    let workers: [Worker]
    /// `workers`, unretained, for the loops that probe other workers while searching: reading
    /// `workers[i]` retained the victim and its queue on every probe, writing their object
    /// headers, which share a cache line with fields the victim's owner reads on every push.
    /// `workers` keeps them alive.
    private let unretainedWorkers: UnsafeMutableBufferPointer<Unmanaged<Worker>>
    let injectLock = SyncLock()
    // Allocated up front, like the current-thread flavour's queues (see Runtime.swift).
    @exclusivity(unchecked) private var inject = RingBuffer<UInt>(preallocated: ())
    let injectCount = Atomic<Int>(0)
    /// Tasks woken by the driver (timers fired, I/O ready) outside any job: they run before the
    /// local queues, so a backlog of new work does not make every timer late.
    let wokenLock = SyncLock()
    @exclusivity(unchecked) private var woken = RingBuffer<UInt>(preallocated: ())
    let wokenCount = Atomic<Int>(0)
    let idleLock = SyncLock()
    @exclusivity(unchecked) private var idle: [Int] = []
    /// `idle.count`, readable without the lock (see `notify`).
    let idleCount = Atomic<Int>(0)
    let searching = Atomic<Int>(0)
    let driverBusy = Atomic<Bool>(false)
    let stopping = Atomic<Bool>(false)
    let threadsStarted = Atomic<Bool>(false)
    @exclusivity(unchecked) private var monitor = pthread_t()
    /// The monitor sleeps on this between looks, so `stop()` does not wait out its interval.
    private let monitorParker = ThreadParker()
    let sparesActive = Atomic<Int>(0)
    let sparesStarted = Atomic<Int>(0)
    /// Pushes that went to the global queue (see `Metrics.remoteSchedules`).
    let remoteSchedules = Atomic<Int>(0)

    static let workerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    /// `workerKey`, read once: each read of the static checks its lazy initialisation (a call
    /// to `swift_once`), on every push.
    private let workerKeyCopy = MultiThreadScheduler.workerKey

    init(
        workers: Int, stallThreshold: Duration,
        onStall: @escaping @Sendable (StallReport) -> Void
    ) {
        workerCount = workers
        self.stallThreshold = UInt64(max(stallThreshold.nanosecondsClamped, 1_000_000))
        self.onStall = onStall
        let spares = max(workers, 1)
        self.workers = (0..<(workers + spares)).map { Worker(index: $0, isSpare: $0 >= workers) }
        unretainedWorkers = .allocate(capacity: self.workers.count)
        _ = unretainedWorkers.initialize(from: self.workers.lazy.map { Unmanaged.passUnretained($0) })
        for worker in self.workers { worker.owner = Unmanaged.passUnretained(self).toOpaque() }
    }

    deinit {
        unretainedWorkers.deallocate()
        inject.destroy()
        woken.destroy()
    }

    /// Parks `continuation` in the calling worker's deferred list if the caller runs inside one
    /// of this scheduler's jobs; false otherwise.
    func deferResume(_ continuation: UnsafeContinuation<Bool, Never>) -> Bool {
        guard let pointer = pthread_getspecific(workerKeyCopy) else { return false }
        return Unmanaged<Worker>.fromOpaque(pointer)._withUnsafeGuaranteedRef { worker in
            guard worker.owner == selfAddress, worker.inJob.load(ordering: .relaxed) else {
                return false
            }
            worker.deferredResumes.append(continuation)
            return true
        }
    }

    /// Resumes the tasks that yielded in the job that just returned (still inside the job's
    /// turn): each goes to the back of this worker's queue, never the LIFO slot.
    private func resumeDeferred(_ worker: Worker) {
        // By index, without copying the array: a resume only enqueues (it never runs a task
        // here), so nothing is appended meanwhile.
        var index = 0
        while index < worker.deferredResumes.count {
            worker.deferNext = true
            worker.deferredResumes[index].resume(returning: true)
            index += 1
        }
        worker.deferNext = false
        worker.deferredResumes.removeAll(keepingCapacity: true)
    }

    /// Counts `event` in the calling worker's own counters; false if the caller is not one of
    /// this scheduler's workers.
    @inline(__always)
    func countOnWorker(_ event: CountedEvent) -> Bool {
        guard let pointer = pthread_getspecific(workerKeyCopy) else { return false }
        return Unmanaged<Worker>.fromOpaque(pointer)._withUnsafeGuaranteedRef { worker in
            guard worker.owner == selfAddress else { return false }
            worker.counts.bump(event)
            return true
        }
    }

    /// `event`'s counts summed over every worker, spares included.
    func workerCounts(_ event: CountedEvent) -> Int {
        workers.reduce(0) { $0 + $1.counts.load(event) }
    }

    /// This scheduler's address, as workers record their owner.
    @inline(__always)
    private var selfAddress: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The worker running on the calling thread, if it belongs to this scheduler.
    var currentWorker: Worker? {
        guard let pointer = pthread_getspecific(workerKeyCopy) else { return nil }
        let worker = Unmanaged<Worker>.fromOpaque(pointer).takeUnretainedValue()
        return worker.owner == selfAddress ? worker : nil
    }

    /// Whether the caller is one of the threads `stop` joins (a worker, a spare, the monitor:
    /// the stall callback runs there), which must not wait for them.
    var isOwnThread: Bool {
        currentWorker != nil || monitorThreadID.load(ordering: .acquiring) == ctide_thread_id()
    }

    /// The monitor thread's `ctide_thread_id()`, stored by the monitor itself; 0 before.
    private let monitorThreadID = Atomic<UInt32>(0)

    // MARK: Starting and stopping

    /// Starts the workers and the monitor. If one cannot be started (`pthread_create` fails, for
    /// example at a thread or pid limit), stops and joins those that did and throws.
    func start() throws(SystemError) {
        if threadsStarted.exchange(true, ordering: .acquiringAndReleasing) { return }
        var started = 0
        var failure: Int32 = 0
        for index in 0..<workerCount {
            failure = startThread(workers[index])
            if failure != 0 { break }
            started += 1
        }
        if failure == 0 {
            failure = spawnThread(&monitor, detached: false) { self.monitorLoop() }
            if failure == 0 { return }
        }
        stopping.store(true, ordering: .sequentiallyConsistent)
        for index in 0..<started { workers[index].parker.unpark() }
        runtime.reactor.wakeup()
        for index in 0..<started { pthread_join(workers[index].thread, nil) }
        throw SystemError("pthread_create", code: failure)
    }

    /// Starts `worker`'s thread; returns `pthread_create`'s result (on failure the worker is left
    /// inactive).
    private func startThread(_ worker: Worker) -> Int32 {
        worker.active.store(true, ordering: .releasing)
        // Spares are detached: nothing joins them (`stop` waits for `sparesActive` instead).
        let result = spawnThread(&worker.thread, detached: worker.isSpare) {
            self.workerLoop(worker)
        }
        if result != 0 { worker.active.store(false, ordering: .releasing) }
        return result
    }

    /// Stops every thread: workers finish the runnable they are running, then exit; queued poll
    /// tasks are released. Joins the worker and monitor threads, waiting at most until
    /// `deadline` (CLOCK_MONOTONIC ns) if one is given. Returns false if a worker was still inside
    /// a job at the deadline: its thread is left to exit when that job ends, and the queues are
    /// left alone (that thread may still push to them).
    /// Must not be called on one of this scheduler's threads (a thread cannot join itself):
    /// there, call `requestStop()` and let another thread call `stop`.
    @discardableResult
    func stop(deadline: UInt64? = nil) -> Bool {
        requestStop()
        guard threadsStarted.load(ordering: .acquiring) else {
            // Never ran: what was spawned is still in the global queue.
            drainAfterStop()
            return true
        }
        for index in 0..<workerCount {
            guard join(workers[index].thread, deadline: deadline) else {
                // Give up on the rest: each thread frees itself when its job ends and it exits.
                for later in index..<workerCount { pthread_detach(workers[later].thread) }
                pthread_detach(monitor)
                return false
            }
        }
        pthread_join(monitor, nil)
        // Spares are detached: wait for them to leave, as for the workers (until `deadline`, if
        // one is given). Draining while a spare still ran a job raced with it on its queue, and a
        // runtime freed after `shutdown()` returned was then used by that job's end.
        while sparesActive.load(ordering: .acquiring) > 0 {
            if let deadline, monotonicNanoseconds() >= deadline { return false }
            usleep(100)
        }
        drainAfterStop()
        return true
    }

    /// Tells every thread to stop after the job it is running, without waiting for them.
    func requestStop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        guard threadsStarted.load(ordering: .acquiring) else { return }
        for worker in workers { worker.parker.unpark() }
        monitorParker.unpark()
        runtime.reactor.wakeup()
    }

    /// Joins `thread`, giving up at `deadline` (CLOCK_MONOTONIC ns); returns whether it joined.
    private func join(_ thread: pthread_t, deadline: UInt64?) -> Bool {
        guard let deadline else {
            pthread_join(thread, nil)
            return true
        }
        // pthread_timedjoin_np measures against CLOCK_REALTIME: convert the remaining time.
        let now = monotonicNanoseconds()
        let remaining = deadline > now ? deadline - now : 0
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        let total = UInt64(wall.tv_nsec) + remaining % 1_000_000_000
        wall.tv_sec += Int(remaining / 1_000_000_000) + Int(total / 1_000_000_000)
        wall.tv_nsec = Int(total % 1_000_000_000)
        return ctide_timedjoin(thread, &wall) == 0
    }

    /// After the threads stopped: completes the poll tasks still queued as cancelled and
    /// releases the queues' references to them. Returns how many runnables it took out.
    @discardableResult
    func drainAfterStop() -> Int {
        var leftovers: [RunnableRef] = []
        injectLock.withLock {
            while let bits = inject.popFirst() { leftovers.append(RunnableRef(bits: bits)) }
            injectCount.store(0, ordering: .relaxed)
        }
        wokenLock.withLock {
            while let bits = woken.popFirst() { leftovers.append(RunnableRef(bits: bits)) }
            wokenCount.store(0, ordering: .relaxed)
        }
        for worker in workers {
            let lifo = worker.lifo.exchange(0, ordering: .acquiringAndReleasing)
            if lifo != 0 { leftovers.append(RunnableRef(bits: lifo)) }
            while let item = worker.queue.pop() { leftovers.append(item) }
        }
        // Queued poll tasks complete as cancelled here (the runtime then cancels the waiting
        // ones, which are in its table of live tasks).
        for item in leftovers where item.isTask {
            item.task._withUnsafeGuaranteedRef { $0.cancelAtShutdown() }
            item.task.release()
        }
        return leftovers.count
    }

    // MARK: Scheduling

    /// Makes `item` runnable. From one of our workers it goes to the LIFO slot (or, after
    /// `Tide.yield()` or a task re-queueing itself, to the back of the local queue); from
    /// anywhere else to the global queue.
    func push(_ item: RunnableRef, yielding: Bool = false) {
        if let pointer = pthread_getspecific(workerKeyCopy) {
            // The worker is borrowed, not retained: an atomic retain and release per push
            // were a tenth of the yield profile.
            let pushed = Unmanaged<Worker>.fromOpaque(pointer)._withUnsafeGuaranteedRef { worker in
                worker.owner == selfAddress && pushFromWorker(item, yielding: yielding, worker)
            }
            if pushed { return }
        }
        injectLock.withLock { inject.append(item.bits) }
        injectCount.add(1, ordering: .sequentiallyConsistent)
        remoteSchedules.add(1, ordering: .relaxed)
        notify()
    }

    /// `push` from one of this scheduler's workers; false if it must go to the global queue.
    private func pushFromWorker(_ item: RunnableRef, yielding: Bool, _ worker: Worker) -> Bool {
        if !worker.inJob.load(ordering: .relaxed) && !yielding {
            // On a worker but outside a job: the driver (timers, epoll) is waking tasks.
            wokenLock.withLock { woken.append(item.bits) }
            wokenCount.add(1, ordering: .sequentiallyConsistent)
            notify()
            return true
        }
        if stopping.load(ordering: .relaxed) { return false }
        if yielding || worker.deferNext {
            worker.deferNext = false
            pushYielded(item, worker)
        } else {
            // Only a task pushed out of the LIFO slot into the (stealable) queue is worth waking
            // a sibling for, as in tokio: the slot's own task runs here when this job ends, and
            // waking a sibling per wake cost a futex syscall per ping-pong message. If this job
            // stalls instead, the monitor hands the slot to another thread.
            //
            // Only this worker fills its slot; other threads only empty it (exchange with 0). So
            // an empty slot can be filled with a plain store, not a locked exchange: a stealer's
            // exchange that comes first finds nothing, one that comes after takes this item.
            if worker.lifo.load(ordering: .relaxed) == 0 {
                worker.lifo.store(item.bits, ordering: .releasing)
                return true
            }
            let previous = worker.lifo.exchange(item.bits, ordering: .acquiringAndReleasing)
            if previous != 0 {
                pushLocal(RunnableRef(bits: previous), worker)
                notify()
            }
        }
        return true
    }

    /// Queues a task that yielded (or woke itself) behind this worker's queued work. The worker
    /// runs it again next unless other work is queued here, so a sibling is woken only for that
    /// other work, as tokio does: waking one for the yielder alone made it steal the task and
    /// bounce it between cores.
    private func pushYielded(_ item: RunnableRef, _ worker: Worker) {
        pushLocal(item, worker)
        if worker.queue.count > 1 || worker.lifo.load(ordering: .relaxed) != 0 { notify() }
    }

    private func pushLocal(_ item: RunnableRef, _ worker: Worker) {
        guard let start = worker.queue.push(item) else { return }
        let queue = worker.queue
        injectLock.withLock {
            for offset in 0..<LocalQueue.overflowCount {
                inject.append(queue.claimed(at: start &+ UInt32(offset)))
            }
            inject.append(item.bits)
        }
        injectCount.add(LocalQueue.overflowCount + 1, ordering: .sequentiallyConsistent)
    }

    /// Wakes one parked worker if no worker is already searching for work.
    ///
    /// The fence pairs with the one in `park`: either this load sees the worker counted as idle,
    /// or that worker's re-check after its fence sees the work pushed before this fence.
    func notify() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if idleCount.load(ordering: .relaxed) == 0 { return }
        if searching.load(ordering: .relaxed) > 0 { return }
        let woken: Int? = idleLock.withLock {
            guard let index = idle.popLast() else { return nil }
            idleCount.subtract(1, ordering: .relaxed)
            return index
        }
        guard let index = woken else { return }
        wake(workers[index])
    }

    private func wake(_ worker: Worker) {
        if worker.inDriver.load(ordering: .acquiring) {
            runtime.reactor.wakeup()
        }
        worker.parker.unpark()
    }

    /// Called when a timer became the earliest: make the driver recompute its timeout.
    func timerArmedEarlier() {
        if driverBusy.load(ordering: .acquiring) { runtime.reactor.wakeup() }
    }

    // MARK: Worker loop

    private func workerLoop(_ worker: Worker) {
        pthread_setspecific(workerKeyCopy, Unmanaged.passUnretained(worker).toOpaque())
        runtime.enterThread()
        worker.selfID = ctide_thread_id()
        defer {
            worker.active.store(false, ordering: .releasing)
            if worker.isSpare { sparesActive.subtract(1, ordering: .acquiringAndReleasing) }
        }
        let executor = runtime.asUnownedTaskExecutor()
        var idleRounds = 0
        while !stopping.load(ordering: .acquiring) {
            // Work found while spinning counts toward maintenance like any other: a worker that
            // keeps finding its next task within the spin never parks (where it would drive).
            if let item = nextRunnable(worker) ?? spinForWork(worker) {
                idleRounds = 0
                worker.sinceMaintenance &+= run(item, on: worker, executor: executor)
                worker.tick &+= 1
                if worker.sinceMaintenance >= Coop.driverInterval {
                    worker.sinceMaintenance = 0
                    maintenance(worker)
                }
                continue
            }
            if worker.isSpare {
                idleRounds += 1
                if !anyWorkerStalled() && idleRounds > 3 {
                    // A push made while this spare was searching woke nobody (see `notify`):
                    // hand any such work, and the driver, to a parked worker before leaving.
                    notify()
                    return
                }
            }
            park(worker)
        }
    }

    /// Runs one runnable; returns its turn's cost toward the next maintenance (see `Coop.cost`).
    @discardableResult
    private func run(_ item: RunnableRef, on worker: Worker, executor: UnownedTaskExecutor) -> Int {
        worker.runningTaskID.store(item.isTask ? 0 : swiftTaskID(of: item.job), ordering: .relaxed)
        if worker.stalled.load(ordering: .relaxed) { worker.stalled.store(false, ordering: .releasing) }
        // Both counters are written only by this worker: a load and a store, not a locked
        // read-modify-write per job.
        worker.jobsRun.store(worker.jobsRun.load(ordering: .relaxed) &+ 1, ordering: .releasing)
        worker.inJob.store(true, ordering: .releasing)
        worker.polls.store(worker.polls.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        let spent = Coop.turn {
            if item.isTask {
                if PollTaskBase.runQueued(item.task, thread: worker.selfID) {
                    // Woken while it ran: behind the queued work, never the LIFO slot.
                    if stopping.load(ordering: .relaxed) {
                        push(item, yielding: true)
                    } else {
                        pushYielded(item, worker)
                    }
                }
            } else {
                if item.isGlobalJob {
                    runOnGenericExecutor(item.job)
                } else {
                    item.job.runSynchronously(on: executor)
                }
                if !worker.deferredResumes.isEmpty { resumeDeferred(worker) }
            }
        }
        worker.inJob.store(false, ordering: .releasing)
        if worker.stalled.load(ordering: .relaxed) { worker.stalled.store(false, ordering: .releasing) }
        return Coop.cost(ofTurnSpending: spent)
    }

    private func nextRunnable(_ worker: Worker) -> RunnableRef? {
        if worker.tick % 61 == 0, let item = popInject(worker) { return item }
        // Only the owner fills the slot, so an empty slot stays empty until this worker fills
        // it: a plain load skips the exchange (a locked instruction) when there is nothing.
        if worker.lifo.load(ordering: .relaxed) != 0 {
            if worker.lifoRuns < 3 {
                let lifo = worker.lifo.exchange(0, ordering: .acquiringAndReleasing)
                if lifo != 0 {
                    worker.lifoRuns += 1
                    return RunnableRef(bits: lifo)
                }
            } else {
                worker.lifoRuns = 0
                let lifo = worker.lifo.exchange(0, ordering: .acquiringAndReleasing)
                if lifo != 0 { pushLocal(RunnableRef(bits: lifo), worker) }
            }
        }
        worker.lifoRuns = 0
        if let item = popWoken() { return item }
        if let item = worker.queue.pop() { return item }
        if let item = popInject(worker) { return item }
        return stealWork(worker)
    }

    private func popWoken() -> RunnableRef? {
        if wokenCount.load(ordering: .relaxed) == 0 { return nil }
        let bits: UInt? = wokenLock.withLock {
            guard let bits = woken.popFirst() else { return nil }
            wokenCount.subtract(1, ordering: .relaxed)
            return bits
        }
        return bits.map(RunnableRef.init(bits:))
    }

    /// Takes one runnable from the global queue and moves a batch more into the local queue.
    private func popInject(_ worker: Worker) -> RunnableRef? {
        if injectCount.load(ordering: .sequentiallyConsistent) == 0 { return nil }
        // Straight from the global queue into the local one, under the lock: at most as many as
        // the local queue has room for, so no push overflows back (into this lock). No batch
        // array: one per call was a malloc request over 1 KiB (see `LocalQueue.push`).
        let queue = worker.queue
        let room = queue.room
        let first: UInt? = injectLock.withLock {
            guard let first = inject.popFirst() else { return nil }
            // `share` is at most what the global queue holds, so `popFirst` cannot come up empty.
            let share = min(inject.count / max(workerCount, 1), 127, room)
            queue.push(count: share) { inject.popFirst().unsafelyUnwrapped }
            injectCount.subtract(share + 1, ordering: .sequentiallyConsistent)
            return first
        }
        return first.map { RunnableRef(bits: $0) }
    }

    private func stealWork(_ worker: Worker) -> RunnableRef? {
        guard beginSearching(worker) else { return nil }
        let item = searchOthers(worker)
        endSearching(worker, found: item != nil)
        return item
    }

    /// Counts the worker as searching, unless half the workers already are (spares always may).
    private func beginSearching(_ worker: Worker) -> Bool {
        let current = searching.load(ordering: .relaxed)
        if current * 2 >= max(workerCount, 2) && !worker.isSpare { return false }
        searching.add(1, ordering: .sequentiallyConsistent)
        return true
    }

    /// Ends a search. The last searcher to stop after finding work wakes a parked worker if work
    /// is still in sight: pushes made while it searched woke nobody (see `notify`), and what it
    /// left in the global queue (it takes a share, which can be none) would otherwise wait for
    /// it. One that found nothing checks for work itself before it parks.
    private func endSearching(_ worker: Worker, found: Bool) {
        if searching.subtract(1, ordering: .sequentiallyConsistent).newValue == 0, found {
            if !worker.queue.isEmpty || injectCount.load(ordering: .sequentiallyConsistent) > 0
                || wokenCount.load(ordering: .sequentiallyConsistent) > 0
            {
                notify()
            }
        }
    }

    /// One pass over the other workers' queues (from a random victim), then the global queue.
    private func searchOthers(_ worker: Worker) -> RunnableRef? {
        let count = unretainedWorkers.count
        let start = worker.nextRandom(count)
        for offset in 0..<count {
            let found = unretainedWorkers[(start + offset) % count]._withUnsafeGuaranteedRef {
                victim -> RunnableRef? in
                if victim === worker || !victim.active.load(ordering: .acquiring) { return nil }
                if let item = victim.queue.steal(into: worker.queue) { return item }
                // A worker stuck in one job cannot run its LIFO slot; take it. A worker in a
                // short job keeps it: the task there was just woken by the job and runs next,
                // hot in cache. (`stalled` first: it is on the line the owner rarely writes.)
                if isStuck(victim), victim.lifo.load(ordering: .relaxed) != 0 {
                    let lifo = victim.lifo.exchange(0, ordering: .acquiringAndReleasing)
                    if lifo != 0 { return RunnableRef(bits: lifo) }
                }
                return nil
            }
            if let found {
                worker.steals.add(1, ordering: .relaxed)
                return found
            }
        }
        return popInject(worker)
    }

    /// Whether the monitor found `worker` stalled in its current job.
    private func isStuck(_ worker: Worker) -> Bool {
        worker.stalled.load(ordering: .acquiring) && worker.inJob.load(ordering: .acquiring)
    }

    /// Before parking, keep looking for work for up to `spinNanoseconds`, counted as searching:
    /// while a worker searches, a push wakes nobody, so a producer feeding work a little slower
    /// than the others consume it does not pay a futex or eventfd wake per item.
    private func spinForWork(_ worker: Worker) -> RunnableRef? {
        guard beginSearching(worker) else { return nil }
        var found: RunnableRef? = nil
        defer { endSearching(worker, found: found != nil) }
        let deadline = monotonicNanoseconds() &+ Self.spinNanoseconds
        var rounds = 0
        while !stopping.load(ordering: .relaxed) {
            found = popWoken() ?? searchOthers(worker)
            if found != nil { return found }
            rounds &+= 1
            if rounds & 7 == 0 && monotonicNanoseconds() > deadline { return nil }
            for _ in 0..<32 { ctide_spin_hint() }
        }
        return nil
    }

    /// How long an idle worker searches before it parks.
    static let spinNanoseconds: UInt64 = 50_000

    private func hasWork(for worker: Worker) -> Bool {
        if injectCount.load(ordering: .sequentiallyConsistent) > 0 { return true }
        if wokenCount.load(ordering: .sequentiallyConsistent) > 0 { return true }
        if worker.lifo.load(ordering: .acquiring) != 0 || !worker.queue.isEmpty { return true }
        for reference in unretainedWorkers {
            let busy = reference._withUnsafeGuaranteedRef { other in
                guard other !== worker, other.active.load(ordering: .acquiring) else { return false }
                return !other.queue.isEmpty
                    || (isStuck(other) && other.lifo.load(ordering: .acquiring) != 0)
            }
            if busy { return true }
        }
        return false
    }

    /// Polls the reactor and fires due timers without blocking, if no other thread drives.
    private func maintenance(_ worker: Worker) {
        // Only the thread that holds the driver fires timers, as in tokio: with every worker
        // advancing the wheel, two threads fired the same backlog in turns, each batch and each
        // fired entry's removal contending for the wheel's lock, and W5's workers spent tens of
        // milliseconds in advance without running a job. A worker that finds the driver taken
        // leaves the timers to its holder: one in maintenance fires them now, one parked in
        // epoll wakes at the next deadline (an earlier timer wakes it, `timerArmedEarlier`).
        guard driverBusy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
            .exchanged
        else { return }
        runtime.reactor.turn(timeoutMilliseconds: 0)
        runtime.timers.advance()
        driverBusy.store(false, ordering: .releasing)
        handOffDriver()
    }

    /// Called after releasing `driverBusy`. A worker that went to park while another thread held
    /// the driver sleeps on its parker, not in epoll_wait: if nobody took the driver since, wake
    /// one parked worker so that it parks again as the driver. Without this, every worker could
    /// end up asleep with timers armed and no thread left to fire them.
    private func handOffDriver() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if idleCount.load(ordering: .relaxed) == 0 || driverBusy.load(ordering: .relaxed) { return }
        let woken: Int? = idleLock.withLock {
            guard let index = idle.popLast() else { return nil }
            idleCount.subtract(1, ordering: .relaxed)
            return index
        }
        if let index = woken { wake(workers[index]) }
    }

    private func park(_ worker: Worker) {
        idleLock.withLock {
            idle.append(worker.index)
            idleCount.add(1, ordering: .relaxed)
        }
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if hasWork(for: worker) || stopping.load(ordering: .acquiring) {
            removeFromIdle(worker)
            return
        }
        worker.parks.add(1, ordering: .relaxed)
        if driverBusy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
            .exchanged
        {
            worker.inDriver.store(true, ordering: .releasing)
            // Against `notify`'s fence: a pusher that reads `inDriver` false (and so writes no
            // eventfd wake) must have pushed before `hasWork` below looks. Without it the store
            // and those loads form a store-buffering pair that only the wheel's lock (taken in
            // `nanosecondsUntilNext`) happened to order.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            var timeout = runtime.timers.nanosecondsUntilNext() ?? -1
            if worker.isSpare || anyWorkerStalled() {
                timeout = timeout < 0 ? 10_000_000 : min(timeout, 10_000_000)
            }
            if !hasWork(for: worker) && !stopping.load(ordering: .acquiring) {
                runtime.reactor.turn(timeoutNanoseconds: timeout)
            }
            worker.inDriver.store(false, ordering: .releasing)
            removeFromIdle(worker)
            runtime.timers.advance()
            driverBusy.store(false, ordering: .releasing)
            handOffDriver()
            return
        } else if worker.isSpare {
            // A spare never sleeps long: it exists to keep things moving during a stall.
            usleep(1_000)
        } else {
            worker.parker.park()
        }
        removeFromIdle(worker)
    }

    private func removeFromIdle(_ worker: Worker) {
        idleLock.withLock {
            if let position = idle.lastIndex(of: worker.index) {
                idle.remove(at: position)
                idleCount.subtract(1, ordering: .relaxed)
            }
        }
    }

    // MARK: Stall detector

    func anyWorkerStalled() -> Bool {
        for index in 0..<workerCount where workers[index].stalled.load(ordering: .acquiring) {
            return true
        }
        return false
    }

    private func monitorLoop() {
        monitorThreadID.store(ctide_thread_id(), ordering: .releasing)
        let interval = max(stallThreshold / 4, 500_000)
        while !stopping.load(ordering: .acquiring) {
            monitorParker.park(timeoutNanoseconds: interval)
            if stopping.load(ordering: .acquiring) { return }
            let now = monotonicNanoseconds()
            var stalled = 0
            for index in 0..<workerCount {
                let worker = workers[index]
                let taskID = worker.runningTaskID.load(ordering: .relaxed)
                let job = worker.jobsRun.load(ordering: .acquiring)
                guard worker.inJob.load(ordering: .acquiring) else {
                    worker.observedJob = -1
                    continue
                }
                if job != worker.observedJob {
                    // A job the monitor has not seen before: it started at most one interval ago.
                    worker.observedJob = job
                    worker.observedSince = now
                    continue
                }
                guard now - worker.observedSince >= stallThreshold else { continue }
                stalled += 1
                // Re-check that the same job is still running before marking the worker.
                guard worker.jobsRun.load(ordering: .acquiring) == job else { continue }
                if !worker.stalled.exchange(true, ordering: .acquiringAndReleasing) {
                    // Its LIFO slot just became stealable: wake an idle worker to take it.
                    notify()
                }
                if worker.reportedJob != job {
                    worker.reportedJob = job
                    worker.stallsSeen.add(1, ordering: .relaxed)
                    onStall(StallReport(
                        worker: index, duration: .nanoseconds(Int64(now - worker.observedSince)),
                        taskID: taskID == 0 ? nil : taskID))
                }
            }
            // Workers that are not stalled take a stalled worker's queue and LIFO slot by
            // stealing, so a spare only makes up for stalled workers beyond the free ones: one
            // stalled worker of two starts none (a spare would only timeslice with the spinner
            // on the same cores), every worker stalled starts one per stalled worker.
            let wanted = min(stalled, max(0, 2 * stalled - workerCount))
            if wanted > 0 && sparesActive.load(ordering: .acquiring) < wanted {
                startSpare()
            }
        }
    }

    private func startSpare() {
        for index in workerCount..<workers.count {
            let spare = workers[index]
            if spare.active.load(ordering: .acquiring) { continue }
            sparesActive.add(1, ordering: .acquiringAndReleasing)
            if startThread(spare) != 0 {
                // No thread (a thread or pid limit): nothing will take the count back, and
                // shutdown waits for it to reach zero. The monitor tries again at its next look.
                sparesActive.subtract(1, ordering: .acquiringAndReleasing)
                return
            }
            sparesStarted.add(1, ordering: .relaxed)
            return
        }
    }

    // MARK: Metrics

    func workerMetrics() -> [WorkerMetrics] {
        workers.prefix(workerCount).map { worker in
            WorkerMetrics(
                polls: worker.polls.load(ordering: .relaxed),
                steals: worker.steals.load(ordering: .relaxed),
                parks: worker.parks.load(ordering: .relaxed),
                localQueueDepth: worker.queue.count
                    + (worker.lifo.load(ordering: .relaxed) != 0 ? 1 : 0),
                stallsSeen: worker.stallsSeen.load(ordering: .relaxed))
        }
    }

    var globalQueueDepth: Int { injectCount.load(ordering: .relaxed) }
}


/// What the stall detector saw: a worker inside one job for too long.
public struct StallReport: Sendable, Equatable, CustomStringConvertible {
    /// The worker's index.
    public var worker: Int
    /// How long it had been running that job when noticed.
    public var duration: Duration
    /// The id the Swift runtime gave the task that is running (the one debuggers and
    /// `swift-inspect` show), or nil when the job is a Tide poll task or not a Swift task.
    public var taskID: UInt64?

    /// A report; `taskID` nil when the stalled job is not a Swift task.
    public init(worker: Int, duration: Duration, taskID: UInt64? = nil) {
        self.worker = worker
        self.duration = duration
        self.taskID = taskID
    }

    public var description: String {
        let task = taskID.map { "Swift task \($0)" } ?? "a poll task or job"
        return "worker \(worker) has been running \(task) for \(duration) without yielding"
    }
}

/// The Swift runtime's id for the task behind `job` (0 if the job is not a task). The runtime
/// exports this accessor for executors; it reads one field.
@_silgen_name("swift_task_getJobTaskId")
private func _swiftJobTaskID(_ job: UnownedJob) -> UInt64

@inline(__always)
func swiftTaskID(of job: UnownedJob) -> UInt64 { _swiftJobTaskID(job) }

/// Counters of one worker thread.
public struct WorkerMetrics: Sendable, Equatable {
    /// Jobs and poll-task turns run.
    public var polls: Int
    /// Successful steals from other workers.
    public var steals: Int
    /// Times the worker parked (in the reactor or on its condition variable).
    public var parks: Int
    /// Runnables waiting in its local queue and LIFO slot.
    public var localQueueDepth: Int
    /// Stalls the detector reported for it.
    public var stallsSeen: Int
}

