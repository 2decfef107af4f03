#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Tide

private struct BlockingFailure: Error, Equatable {
    let code: Int
}

/// A gate for OS threads: `pass()` blocks until `open()` (or until a generous bound passes, so a
/// broken pool fails the test instead of hanging it). Returns whether the gate was open.
private final class ThreadGate: Sendable {
    private let isOpen = Atomic<Bool>(false)

    func open() { isOpen.store(true, ordering: .releasing) }

    @discardableResult
    func pass() -> Bool {
        waitUntil { self.isOpen.load(ordering: .acquiring) }
    }
}

/// Polls `condition` every millisecond for at most about ten seconds; returns whether it held.
/// A bound on hanging, not a timing assertion.
@discardableResult
private func waitUntil(_ condition: () -> Bool) -> Bool {
    for _ in 0..<10_000 {
        if condition() { return true }
        usleep(1_000)
    }
    return condition()
}

/// Records, when released, whether the calling thread could take `lock` (it cannot if it holds
/// it: the pool's mutex is not recursive). Retries so that another thread holding it briefly does
/// not count.
private final class LockProbe: @unchecked Sendable {
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let lockWasFree: Counter

    init(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, recordingInto lockWasFree: Counter) {
        self.mutex = mutex
        self.lockWasFree = lockWasFree
    }

    deinit {
        for _ in 0..<1_000 {
            if pthread_mutex_trylock(mutex) == 0 {
                pthread_mutex_unlock(mutex)
                lockWasFree.add()
                return
            }
            usleep(100)
        }
    }
}

@Suite("BlockingPool")
struct BlockingPoolTests {
    @Test func invalidArgumentsAreTypedErrors() {
        #expect(throws: BlockingPoolError.invalidMaximumThreads(0)) {
            try BlockingPool(maximumThreads: 0)
        }
        #expect(throws: BlockingPoolError.invalidQueueCapacity(-3)) {
            try BlockingPool(queueCapacity: -3)
        }
        #expect(throws: BlockingPoolError.negativeKeepAlive(.milliseconds(-1))) {
            try BlockingPool(keepAlive: .milliseconds(-1))
        }
    }

    @Test func resultsAndErrorsAreDelivered() throws {
        let pool = try BlockingPool(maximumThreads: 2)
        defer { pool.shutdown() }

        // As a poll-based future, driven by blockOn and composed with map.
        let handle = try pool.submit { 6 * 7 }
        #expect(try blockOn(handle).get() == 42)
        #expect(blockOn(try pool.submit { "blocking" }.map { (try? $0.get())?.count ?? 0 }) == 8)
        #expect(handle.isFinished)

        // From Swift code: values, rethrown errors, and the shared pool through Tide.spawnBlocking.
        let runtime = try Runtime.currentThread()
        let outcome = try runtime.run { () async throws -> (Int, BlockingFailure?, String, Int) in
            let value = try await pool.run { 1 + 1 }
            var failure: BlockingFailure?
            do {
                _ = try await pool.run { () throws -> Int in throw BlockingFailure(code: 7) }
            } catch let error as BlockingFailure {
                failure = error
            }
            let shared = try await Tide.spawnBlocking { "shared" }
            let again = try await handle.value
            return (value, failure, shared, again)
        }
        #expect(outcome.0 == 2)
        #expect(outcome.1 == BlockingFailure(code: 7))
        #expect(outcome.2 == "shared")
        #expect(outcome.3 == 42)
        #expect(throws: BlockingFailure(code: 9)) {
            try blockOn(try pool.submit { () throws -> Int in throw BlockingFailure(code: 9) }).get()
        }
    }

    @Test func manyJobsFromSeveralTasksEachCompleteExactlyOnce() throws {
        let pool = try BlockingPool(maximumThreads: 8)
        defer { pool.shutdown() }
        let tally = Tally()
        let runtime = try Runtime.currentThread()
        let tasks = 8
        let jobsPerTask = 250
        let returned = try runtime.run { () async throws -> Int in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<tasks {
                    group.addTask {
                        var sum = 0
                        // Half awaited one by one, half submitted in a batch and then awaited.
                        for job in 0..<jobsPerTask / 2 {
                            let id = task * jobsPerTask + job
                            sum += try await pool.run {
                                tally.add(id)
                                return 1
                            }
                        }
                        var handles: [BlockingHandle<Int>] = []
                        for job in jobsPerTask / 2..<jobsPerTask {
                            let id = task * jobsPerTask + job
                            handles.append(try pool.submit {
                                tally.add(id)
                                return 1
                            })
                        }
                        for handle in handles { sum += try await handle.value }
                        return sum
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        let total = tasks * jobsPerTask
        #expect(returned == total)
        let counts = tally.snapshot
        #expect(counts.count == total)
        #expect(counts.values.allSatisfy { $0 == 1 })
        pool.shutdown()
        #expect(pool.metrics.completedJobs == total)
    }

    @Test func neverRunsMoreThanMaximumThreads() throws {
        let pool = try BlockingPool(maximumThreads: 4)
        defer { pool.shutdown() }
        let gate = ThreadGate()
        let running = Counter()
        let highest = Counter()
        var handles: [BlockingHandle<Bool>] = []
        for _ in 0..<50 {
            handles.append(try pool.submit {
                highest.max(running.add())
                let passed = gate.pass()
                running.subtract()
                return passed
            })
        }
        // Four jobs hold the four threads at the gate; the other 46 wait in the queue.
        #expect(waitUntil { pool.metrics.runningJobs == 4 })
        let busy = pool.metrics
        #expect(busy.threadsAlive == 4)
        #expect(busy.queuedJobs == 46)
        gate.open()
        for handle in handles { #expect(try blockOn(handle).get()) }
        #expect(highest.value == 4)
        #expect(pool.metrics.threadsAlive <= 4)
        // Counted just after each handle is completed: wait for the last count.
        #expect(waitUntil { pool.metrics.completedJobs == 50 })
    }

    @Test func fullQueueIsATypedErrorAndTheRejectedClosureNeverRuns() throws {
        let pool = try BlockingPool(maximumThreads: 1, queueCapacity: 2)
        let gate = ThreadGate()
        let rejectedRan = Counter()
        let blocker = try pool.submit { gate.pass() }
        #expect(waitUntil { pool.metrics.runningJobs == 1 })
        let queued = [try pool.submit { 1 }, try pool.submit { 2 }]
        #expect(throws: BlockingPoolError.queueFull(capacity: 2)) {
            try pool.submit { rejectedRan.add() }
        }
        #expect(pool.metrics.rejectedJobs == 1)
        gate.open()
        #expect(try blockOn(blocker).get())
        #expect(try queued.map { try blockOn($0).get() } == [1, 2])
        pool.shutdown()
        #expect(rejectedRan.value == 0)
        #expect(pool.metrics.completedJobs == 3)
    }

    /// Only jobs that find every thread busy count against the queue's capacity: jobs handed to
    /// a thread just started, or to an idle thread not awake yet, do not (they used to, so a
    /// second submit right after the first was refused as full three times in four).
    @Test func jobsOnTheirWayToAThreadDoNotFillTheQueue() throws {
        let pool = try BlockingPool(maximumThreads: 4, keepAlive: .seconds(60), queueCapacity: 1)
        defer { pool.shutdown() }
        for round in 0..<2 {
            // Round 0 starts four threads; round 1 finds them idle and notifies them.
            let gate = ThreadGate()
            let handles = try (0..<5).map { _ in try pool.submit { gate.pass() } }
            #expect(throws: BlockingPoolError.queueFull(capacity: 1)) {
                try pool.submit { false }
            }
            #expect(pool.metrics.rejectedJobs == round + 1)
            gate.open()
            for handle in handles { #expect(try blockOn(handle).get()) }
            #expect(waitUntil { pool.metrics.idleThreads == 4 })
        }
    }

    /// A negative timeout under a second used to make a `tv_nsec` below zero, on which
    /// `pthread_cond_timedwait` fails at once without unlocking: shutdown spun for ever holding
    /// the pool's lock. It only checks now, like any timeout that has passed.
    @Test func aNegativeSubSecondShutdownTimeoutOnlyChecks() throws {
        try withWatchdog("aNegativeSubSecondShutdownTimeoutOnlyChecks") {
            for timeout in [Duration.milliseconds(-999), .nanoseconds(-999_999_999), .milliseconds(-1)] {
                let pool = try BlockingPool(maximumThreads: 1, queueCapacity: 4)
                let gate = ThreadGate()
                let running = try pool.submit { gate.pass() }
                #expect(waitUntil { pool.metrics.runningJobs == 1 })
                #expect(!pool.shutdown(timeout: timeout))
                gate.open()
                #expect(try blockOn(running).get())
                #expect(pool.shutdown(timeout: .seconds(30)))
            }
        }
    }

    @Test func idleThreadsRetireAfterKeepAlive() throws {
        let pool = try BlockingPool(maximumThreads: 4, keepAlive: .milliseconds(50))
        defer { pool.shutdown() }
        let arrived = Counter()
        // Four jobs that wait for each other need four threads at once.
        let handles = try (0..<4).map { _ in
            try pool.submit { () -> Bool in
                arrived.add()
                return waitUntil { arrived.value == 4 }
            }
        }
        for handle in handles { #expect(try blockOn(handle).get()) }
        #expect(waitUntil { pool.metrics.threadsAlive == 0 })
        #expect(pool.metrics.idleThreads == 0)
        // A retired pool starts threads again for new work.
        #expect(try blockOn(try pool.submit { "back" }).get() == "back")
    }

    @Test func aJobsClosureIsReleasedOutsideThePoolLock() throws {
        let pool = try BlockingPool(maximumThreads: 1)
        defer { pool.shutdown() }
        let lockWasFree = Counter()
        // Only the job's closure holds the probe, so the pool thread usually releases it last.
        let handle = try pool.submit {
            [probe = LockProbe(pool.state.lock.mutex, recordingInto: lockWasFree)] in
            withExtendedLifetime(probe) { true }
        }
        #expect(try blockOn(handle).get())
        #expect(waitUntil { pool.metrics.completedJobs == 1 })
        #expect(lockWasFree.value == 1)
    }

    @Test func shutdownFinishesQueuedJobsJoinsThreadsAndRejectsNewWork() throws {
        let pool = try BlockingPool(maximumThreads: 2)
        let finished = Counter()
        let handles = try (0..<20).map { index in
            try pool.submit { () -> Int in
                usleep(1_000)
                finished.add()
                return index
            }
        }
        pool.shutdown()
        #expect(finished.value == 20)
        #expect(handles.allSatisfy { $0.isFinished })
        let metrics = pool.metrics
        #expect(metrics.threadsAlive == 0 && metrics.idleThreads == 0 && metrics.queuedJobs == 0)
        #expect(metrics.completedJobs == 20)
        #expect(throws: BlockingPoolError.shutDown) { try pool.submit { 1 } }
        // Shutting down again returns at once.
        pool.shutdown()
        #expect(pool.shutdown(timeout: .zero))
    }

    @Test func shutdownWithTimeoutReportsJobsStillRunning() throws {
        let pool = try BlockingPool(maximumThreads: 1)
        let gate = ThreadGate()
        let handle = try pool.submit { gate.pass() }
        #expect(!pool.shutdown(timeout: .milliseconds(20)))
        #expect(throws: BlockingPoolError.shutDown) { try pool.submit { 1 } }
        gate.open()
        #expect(pool.shutdown(timeout: .seconds(30)))
        #expect(try blockOn(handle).get())
        #expect(pool.metrics.threadsAlive == 0)
    }

    @Test func shutdownFromAJobOfThePoolDoesNotWaitForItself() throws {
        let pool = try BlockingPool(maximumThreads: 2)
        let handle = try pool.submit { pool.shutdown(timeout: .seconds(30)) }
        #expect(try blockOn(handle).get() == false)
        pool.shutdown()
        #expect(pool.metrics.threadsAlive == 0)
        #expect(throws: BlockingPoolError.shutDown) { try pool.submit { 1 } }
    }

    @Test func droppingThePoolLetsItsJobsFinish() throws {
        let gate = ThreadGate()
        let handle: BlockingHandle<Bool>
        do {
            let pool = try BlockingPool(maximumThreads: 1)
            handle = try pool.submit { gate.pass() }
        }
        gate.open()
        #expect(try blockOn(handle).get())
    }

    @Test func aBlockingJobDoesNotStallTheRuntime() throws {
        let pool = try BlockingPool(maximumThreads: 1)
        defer { pool.shutdown() }
        let runtime = try Runtime.currentThread()
        let runtimeThread = UInt(pthread_self())
        let ticks = Counter()
        let stop = Counter()
        let (seen, jobThread) = try runtime.run { () async throws -> (Int, UInt) in
            let ticker = Tide.spawn {
                while stop.value == 0 {
                    ticks.add()
                    await Tide.yield()
                }
            }
            // The job blocks its thread until the ticker, which runs only on the runtime's
            // thread, has advanced: it would wait out its bound if the await blocked the runtime.
            let result = try await pool.run { () -> (Int, UInt) in
                waitUntil { ticks.value >= 100 }
                return (ticks.value, UInt(pthread_self()))
            }
            stop.add()
            try await ticker.value
            return result
        }
        #expect(seen >= 100)
        #expect(jobThread != runtimeThread)
    }

    @Test func cancellingTheWaitDoesNotStopTheClosure() throws {
        let pool = try BlockingPool(maximumThreads: 1)
        defer { pool.shutdown() }
        let gate = ThreadGate()
        let finished = Counter()
        let runtime = try Runtime.currentThread()
        let cancelled = try runtime.run { () async throws -> Bool in
            let waiter = Tide.spawn {
                try await pool.run { () -> Int in
                    gate.pass()
                    finished.add()
                    return 1
                }
            }
            await eventually { pool.metrics.runningJobs == 1 }
            waiter.cancel()
            do {
                _ = try await waiter.value
                return false
            } catch is CancellationError {
                return true
            }
        }
        #expect(cancelled)
        #expect(finished.value == 0)
        gate.open()
        #expect(waitUntil { pool.metrics.completedJobs == 1 })
        #expect(finished.value == 1)
    }
}
