#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Tide

@Suite("Multi-thread runtime")
struct MultiThreadTests {
    @Test func badConfigurationIsATypedError() {
        #expect(throws: RuntimeError.invalidWorkerCount(0)) { try Runtime.multiThread(workers: 0) }
        #expect(throws: RuntimeError.invalidWorkerCount(-3)) { try Runtime.multiThread(workers: -3) }
        #expect(throws: RuntimeError.invalidStallThreshold(.zero)) {
            try Runtime.multiThread(workers: 1, stallThreshold: .zero)
        }
    }

    @Test func runReturnsAndMisuseIsATypedError() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        #expect(try runtime.run { 40 + 2 } == 42)
        let nested = try runtime.run { () -> RuntimeError? in
            do {
                _ = try runtime.run { 1 }
                return nil
            } catch let error as RuntimeError {
                return error
            }
        }
        #expect(nested == .alreadyRunning)
        runtime.shutdown()
        #expect(throws: RuntimeError.shutDown) { try runtime.run { 1 } }
        #expect(throws: RuntimeError.shutDown) { try runtime.spawn(ready(1)) }
    }

    @Test func tasksRunOnWorkerThreadsNotTheCaller() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let caller = UInt(pthread_self())
        let threads = try runtime.run { () async -> [UInt] in
            await withTaskGroup(of: UInt.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        #expect(Runtime.current === runtime)
                        return UInt(pthread_self())
                    }
                }
                var all: [UInt] = []
                for await thread in group { all.append(thread) }
                return all
            }
        }
        #expect(threads.count == 50)
        #expect(!threads.contains(caller))
    }

    /// Every spawned task completes exactly once, with wakes coming from workers and from plain
    /// threads at random moments; steals and the LIFO slot are exercised along the way.
    @Test func stressEveryTaskCompletesExactlyOnce() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let taskCount = 3_000
        let completions = (0..<taskCount).map { _ in AtomicCounter() }
        let gates = (0..<taskCount).map { _ in Gate() }
        let total = try runtime.run { () async throws -> Int in
            var pollHandles: [PollTaskHandle<Int>] = []
            var swiftHandles: [JoinHandle<Int>] = []
            for index in 0..<taskCount {
                if index % 2 == 0 {
                    pollHandles.append(try runtime.spawn(gates[index].future.map { _ in
                        completions[index].increment()
                        return 1
                    }))
                } else {
                    let gate = gates[index]
                    swiftHandles.append(Tide.spawn {
                        await gate.future.wait()
                        await Tide.yield()
                        completions[index].increment()
                        return 1
                    })
                }
            }
            // Half the gates are opened by OS threads, half by tasks on the workers.
            let threads = (0..<2).map { offset in
                TestThread {
                    var random = TestRandom(seed: UInt64(offset + 99))
                    var index = offset * 2
                    while index < taskCount {
                        jitter(&random, upTo: 30)
                        gates[index].set()
                        index += 4
                    }
                }
            }
            let openers = (0..<2).map { offset in
                Tide.spawn {
                    var index = offset * 2 + 1
                    while index < taskCount {
                        gates[index].set()
                        if index % 7 == 0 { await Tide.yield() }
                        index += 4
                    }
                }
            }
            var sum = 0
            for handle in pollHandles { sum += try await handle.value }
            for handle in swiftHandles { sum += try await handle.value }
            for opener in openers { try await opener.value }
            for thread in threads { thread.join() }
            return sum
        }
        #expect(total == taskCount)
        #expect(completions.allSatisfy { $0.value == 1 })
        let metrics = runtime.metrics
        #expect(metrics.pollTasksAlive == 0)
        #expect(metrics.tasksSpawned == taskCount + 2)  // and the openers; run's body is not
        #expect(metrics.workers.count == 2)
        #expect(metrics.totalPolls >= taskCount)
    }

    /// Spawns counted on the workers' own counters and on the shared ones (from plain threads)
    /// add up: every task is counted once as spawned and once as finished.
    @Test func spawnCountsFromWorkersAndThreadsAddUp() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let perSpawner = 500
        let outside = (0..<2).map { offset in
            TestThread {
                var random = TestRandom(seed: UInt64(offset + 7))
                for index in 0..<perSpawner {
                    if index % 50 == 0 { jitter(&random, upTo: 10) }
                    _ = try? runtime.spawn(ready(index))
                }
            }
        }
        let inside = try runtime.run { () async throws -> Int in
            let spawners = (0..<2).map { _ in
                Tide.spawn { () async throws -> Int in
                    var sum = 0
                    for index in 0..<perSpawner {
                        sum += try await runtime.spawn(ready(index)).value
                    }
                    return sum
                }
            }
            var total = 0
            for spawner in spawners { total += try await spawner.value }
            return total
        }
        for thread in outside { thread.join() }
        #expect(inside == 2 * perSpawner * (perSpawner - 1) / 2)
        // Tasks spawned from the plain threads may still be queued: wait (bounded) for them.
        var waited = 0
        while runtime.metrics.pollTasksAlive > 0 && waited < 10_000 {
            usleep(1_000)
            waited += 1
        }
        let metrics = runtime.metrics
        #expect(metrics.pollTasksAlive == 0)
        #expect(metrics.tasksSpawned == 4 * perSpawner + 2)
    }

    /// A large `joinAll` (one waker per child) polled as a poll task while its children
    /// complete on both workers: each child yields a random number of times, waits on a gate
    /// that two plain threads open in random order with random timing, and yields again. Every
    /// output arrives once and in order; a lost child wake leaves the join pending forever (the
    /// watchdog fails the test).
    @Test func stressLargeJoinAllWithChildrenWokenFromManyThreads() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        for round in 0..<3 {
            let taskCount = 1_500
            let completions = (0..<taskCount).map { _ in AtomicCounter() }
            let gates = (0..<taskCount).map { _ in Gate() }
            var random = TestRandom(seed: UInt64(40 + round))
            let handles = try (0..<taskCount).map { index in
                try runtime.spawn(YieldGateYield(
                    before: random.next(10), gate: gates[index], after: random.next(10),
                    done: completions[index], value: index))
            }
            let joiner = try runtime.spawn(joinAll(handles))
            let order = (0..<taskCount).shuffled(using: &random)
            let openers = (0..<2).map { half in
                TestThread {
                    var random = TestRandom(seed: UInt64(50 + round * 2 + half))
                    for index in order where index % 2 == half {
                        jitter(&random, upTo: 4)
                        gates[index].set()
                    }
                }
            }
            let results = try withWatchdog("stressLargeJoinAllWithChildrenWokenFromManyThreads") {
                try runtime.run { try await joiner.value }
            }
            for opener in openers { opener.join() }
            #expect(results.count == taskCount)
            #expect(results.enumerated().allSatisfy { (try? $1.get()) == $0 })
            #expect(completions.allSatisfy { $0.value == 1 })
        }
    }

    /// The poll-task state machine under fire: each task yields to itself a random number of
    /// times (the self-wake path that re-queues a task still `running`), waits on a gate opened
    /// by a plain thread with random timing, and yields again; a third thread cancels every
    /// fifth task at a random moment. Every task ends exactly once: with its value (its future
    /// completed once) or cancelled (its future never completed). A lost wake-up hangs (the
    /// watchdog fails the test).
    @Test func stressSelfWakesGateWakesAndCancelsOnPollTasks() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let taskCount = 2_000
        let completions = (0..<taskCount).map { _ in AtomicCounter() }
        let gates = (0..<taskCount).map { _ in Gate() }
        try withWatchdog("stressSelfWakesGateWakesAndCancelsOnPollTasks") {
            let outcomes = try runtime.run { () async throws -> [Int] in
                var random = TestRandom(seed: 5)
                var handles: [PollTaskHandle<Int>] = []
                for index in 0..<taskCount {
                    let future = YieldGateYield(
                        before: random.next(20), gate: gates[index], after: random.next(20),
                        done: completions[index], value: index)
                    handles.append(try runtime.spawn(future))
                }
                let cancels = handles
                let opener = TestThread {
                    var random = TestRandom(seed: 6)
                    for index in 0..<taskCount {
                        jitter(&random, upTo: 4)
                        gates[index].set()
                    }
                }
                let canceller = TestThread {
                    var random = TestRandom(seed: 7)
                    for index in stride(from: 0, to: taskCount, by: 5) {
                        jitter(&random, upTo: 20)
                        cancels[index].cancel()
                    }
                }
                var outcomes: [Int] = []
                for handle in handles {
                    switch await handle.wait() {
                    case .success(let value): outcomes.append(value)
                    case .failure: outcomes.append(-1)
                    }
                }
                opener.join()
                canceller.join()
                return outcomes
            }
            for index in 0..<taskCount {
                if outcomes[index] == -1 {
                    #expect(index % 5 == 0)
                    #expect(completions[index].value == 0)
                } else {
                    #expect(outcomes[index] == index)
                    #expect(completions[index].value == 1)
                }
            }
        }
        #expect(runtime.metrics.pollTasksAlive == 0)
    }

    @Test func idleWorkersStealQueuedWork() throws {
        let runtime = try Runtime.multiThread(workers: 2, stallThreshold: .seconds(30))
        defer { runtime.shutdown() }
        let taskCount = 2_000
        let finished = AtomicCounter()
        try runtime.run {
            // Spawned in a burst from one worker, which then holds its thread until every task
            // has run: the tasks left in its local queue and LIFO slot can only have been taken
            // by the other worker stealing them, however the threads were scheduled.
            var handles: [PollTaskHandle<Int>] = []
            for index in 0..<taskCount {
                handles.append(try runtime.spawn(lazy { () -> Int in
                    finished.increment()
                    return index
                }))
            }
            var waited = 0
            while finished.value < taskCount && waited < 20_000 {
                usleep(1_000)
                waited += 1
            }
            #expect(finished.value == taskCount)
            var sum = 0
            for handle in handles { sum += try await handle.value }
            #expect(sum == (0..<taskCount).reduce(0, +))
        }
        let steals = runtime.metrics.workers.reduce(0) { $0 + $1.steals }
        #expect(steals > 0)
    }

    /// Workers that go idle while another thread holds the driver sleep on their parkers; when
    /// the driver is released one of them must take it over, or armed timers never fire and the
    /// runtime hangs. Short random sleeps between bursts of work, and spare threads started and
    /// retired by short stalls, make those races frequent. A watchdog turns a hang into a failure.
    @Test func timersKeepFiringWhileWorkersRaceForTheDriver() throws {
        try withWatchdog("timersKeepFiringWhileWorkersRaceForTheDriver") {
            let runtime = try Runtime.multiThread(
                workers: 2, stallThreshold: .milliseconds(2), onStall: { _ in })
            defer { runtime.shutdown() }
            let completed = try runtime.run { () async throws -> Int in
                var total = 0
                for round in 0..<20 {
                    var handles: [JoinHandle<Int>] = []
                    // Jobs longer than the stall threshold: when both workers are in one, a spare
                    // thread starts, takes the driver for a while, and retires.
                    for _ in 0..<2 {
                        handles.append(Tide.spawn {
                            let start = monotonicNow()
                            while monotonicNow() - start < 4_000_000 {}
                            return 0
                        })
                    }
                    for index in 0..<32 {
                        handles.append(Tide.spawn {
                            var random = TestRandom(seed: UInt64(round * 1_000 + index))
                            for _ in 0..<3 {
                                for _ in 0..<Int.random(in: 0..<100, using: &random) { await Tide.yield() }
                                let micros = Int.random(in: 0..<1_500, using: &random)
                                try await Tide.sleep(for: .microseconds(micros))
                            }
                            return 1
                        })
                    }
                    for handle in handles { total += try await handle.value }
                }
                return total
            }
            #expect(completed == 20 * 32)
        }
    }

    @Test func shutdownWithTimeoutGivesUpOnAStuckWorkerAndCancelsWaitingTasks() throws {
        let runtime = try Runtime.multiThread(workers: 2, stallThreshold: .seconds(30))
        let gate = Gate()
        let waiting = try runtime.spawn(gate.future.map { 1 })
        let release = AtomicCounter()
        let entered = AtomicCounter()
        // A job that will not return until the test lets it.
        let stuck = try runtime.spawn(lazy { () -> Int in
            entered.increment()
            while release.value == 0 { usleep(100) }
            return 2
        })
        var waited = 0
        while (entered.value == 0 || runtime.metrics.pollTasksAlive > 2) && waited < 10_000 {
            usleep(1_000)
            waited += 1
        }
        #expect(entered.value == 1)
        #expect(runtime.shutdown(timeout: .milliseconds(20)) == false)
        // The task that was waiting is cancelled even though a worker is still busy.
        #expect(waiting.isFinished)
        var poll = waiting
        var context = Context(waker: Waker.noop)
        guard case .ready(.failure(.cancelled)) = poll.poll(&context) else {
            Issue.record("a task waiting at shutdown should end as cancelled")
            return
        }
        // The stuck job still finishes normally once it returns.
        release.increment()
        waited = 0
        while !stuck.isFinished && waited < 10_000 {
            usleep(1_000)
            waited += 1
        }
        #expect(stuck.isFinished)
    }

    @Test func shutdownWithTimeoutReturnsTrueWhenEveryThreadStops() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        let sum = try runtime.run { () async throws -> Int in
            let handle = Tide.spawn { 20 }
            return try await handle.value + 1
        }
        #expect(sum == 21)
        #expect(runtime.shutdown(timeout: .seconds(10)))
        #expect(runtime.shutdown(timeout: .seconds(10)))
        #expect(throws: RuntimeError.shutDown) { try runtime.spawn(ready(1)) }
    }

    @Test func shutdownCancelsPendingPollTasksAndJoinsThreads() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        let gate = Gate()
        let handle = try runtime.spawn(gate.future.map { 1 })
        // Let it be polled once and park on the gate.
        try runtime.run { await Tide.yield() }
        #expect(!handle.isFinished)
        runtime.shutdown()
        #expect(throws: RuntimeError.shutDown) { try runtime.spawn(ready(1)) }
        // The waiting task was cancelled: its future dropped, its joiners told.
        #expect(handle.isFinished)
        var poll = handle
        var context = Context(waker: Waker.noop)
        guard case .ready(.failure(.cancelled)) = poll.poll(&context) else {
            Issue.record("a task pending at shutdown should end as cancelled")
            return
        }
        #expect(runtime.metrics.pollTasksAlive == 0)
        // Waking it afterwards is harmless.
        gate.set()
    }

    @Test func shutdownEndsPollTasksStillQueued() throws {
        let runtime = try Runtime.multiThread(workers: 2, stallThreshold: .seconds(60))
        let busy = AtomicCounter()
        // Occupy both workers until shutdown begins, so that the poll tasks below stay queued.
        for _ in 0..<2 {
            try runtime.spawn { () async -> Void in
                busy.increment()
                let start = ContinuousClock.now
                while ContinuousClock.now - start < .seconds(10) {
                    if (try? runtime.spawn(ready(0))) == nil { break }
                    usleep(1_000)
                }
                usleep(20_000)  // let shutdown mark the workers as stopping
            }
        }
        let start = ContinuousClock.now
        while busy.value < 2 && ContinuousClock.now - start < .seconds(10) { usleep(1_000) }
        let handles = try (0..<100).map { try runtime.spawn(ready($0)) }
        runtime.shutdown()
        // Each one ended exactly once: cancelled (drained from its queue) or, if a worker ran it
        // before it saw the shutdown, with its value.
        for (index, handle) in handles.enumerated() {
            var poll = handle
            switch pollOnce(&poll) {
            case .ready(.success(let value)): #expect(value == index)
            case .ready(.failure(.cancelled)): break
            case .pending: Issue.record("task \(index) was still pending after shutdown")
            }
        }
        #expect(runtime.metrics.pollTasksAlive == 0)
    }

    @Test func shutdownCancelsPollTasksThatNeverRan() throws {
        // Queued, never polled: they are in the run queue only, and shutdown must still end them.
        let runtime = try Runtime.currentThread()
        let handles = try (0..<50).map { try runtime.spawn(ready($0)) }
        #expect(runtime.metrics.pollTasksAlive == 50)
        runtime.shutdown()
        for handle in handles {
            var poll = handle
            guard case .ready(.failure(.cancelled)) = pollOnce(&poll) else {
                Issue.record("a task queued at shutdown should end as cancelled")
                return
            }
        }
        #expect(runtime.metrics.pollTasksAlive == 0)
        #expect(runtime.metrics.tasksSpawned == 50)
    }

    @Test func stallDetectorKeepsOtherTasksRunning() throws {
        let reports = Synchronization.Mutex<[StallReport]>([])
        let runtime = try Runtime.multiThread(
            workers: 1, stallThreshold: .milliseconds(20),
            onStall: { report in reports.withLock { $0.append(report) } })
        defer { runtime.shutdown() }
        let ticks = AtomicCounter()
        let sawTicksWhileSpinning = try runtime.run { () async throws -> Int in
            let ticker = Tide.spawn {
                for _ in 0..<1_000 {
                    try await Tide.sleep(for: .milliseconds(2))
                    ticks.increment()
                }
            }
            // Let the ticker start, then spin on the only worker without ever yielding, until
            // the ticker has ticked 5 times (or 5 s pass: then the detector failed).
            try await Tide.sleep(for: .milliseconds(1))
            let spinner = Tide.spawn { () -> Int in
                let start = ticks.value
                let deadline = monotonicNow() + 5_000_000_000
                while ticks.value < start + 5 && monotonicNow() < deadline {}
                return ticks.value - start
            }
            let seen = try await spinner.value
            ticker.cancel()
            return seen
        }
        #expect(sawTicksWhileSpinning >= 5)
        let reported = reports.withLock { $0 }
        #expect(!reported.isEmpty)
        #expect(reported.allSatisfy { $0.worker == 0 && $0.duration >= .milliseconds(20) })
        // The spinner is a Swift task: the report names it by the runtime's task id.
        #expect(reported.allSatisfy { $0.taskID != nil })
        #expect(runtime.metrics.sparesStarted >= 1)
        #expect(runtime.metrics.workers[0].stallsSeen >= 1)
    }

    /// A task that wakes another and then spins: the woken task sits in the spinner's LIFO slot.
    /// Once the monitor marks the spinner's worker stalled, the other (idle) worker is woken and
    /// takes it; one stalled worker of two needs no spare thread.
    ///
    /// `gate.hasWaiter` turns true when the waiter registers its waker, a moment before its task
    /// has suspended; a wake in that moment resumes the waiter on its own worker and the LIFO
    /// slot is never used. So the scenario is tried up to five times until one run takes the
    /// stall path; every run must release the spinner.
    @Test func aStalledWorkersLifoSlotIsTakenByTheOtherWorker() throws {
        var sawStallPath = false
        for _ in 0..<5 where !sawStallPath {
            let runtime = try Runtime.multiThread(
                workers: 2, stallThreshold: .milliseconds(5), onStall: { _ in })
            defer { runtime.shutdown() }
            let gate = Gate()
            let ran = AtomicCounter()
            let released = try runtime.run { () async throws -> Bool in
                let waiter = Tide.spawn {
                    await gate.future.wait()
                    ran.increment()
                }
                // Let the waiter start and park on the gate.
                while !gate.hasWaiter { await Tide.yield() }
                try await Tide.sleep(for: .milliseconds(1))
                let spinner = Tide.spawn { () -> Bool in
                    gate.set()
                    let deadline = monotonicNow() + 5_000_000_000
                    while ran.value == 0 && monotonicNow() < deadline {}
                    return ran.value == 1
                }
                let released = try await spinner.value
                try await waiter.value
                return released
            }
            #expect(released)
            #expect(runtime.metrics.sparesStarted == 0)
            sawStallPath = runtime.metrics.workers.reduce(0) { $0 + $1.stallsSeen } >= 1
        }
        #expect(sawStallPath)
    }

    @Test func coopBudgetLetsAnotherTaskRunOnTheSameThread() throws {
        // Current-thread: one thread, so without the budget the busy task would finish its whole
        // loop before the flag could be set.
        let runtime = try Runtime.currentThread()
        let (received, sawFlag) = try runtime.run { () async throws -> (Int, Bool) in
            let (tx, rx) = Channel<Int>.unbounded()
            for value in 0..<10_000 { try tx.trySend(value) }
            let flag = Atomic<Bool>(false)
            let setter = Tide.spawn { flag.store(true, ordering: .relaxed) }
            var received = 0
            while received < 10_000, !flag.load(ordering: .relaxed) {
                _ = try await rx.receive()
                received += 1
            }
            try await setter.value
            return (received, flag.load(ordering: .relaxed))
        }
        #expect(sawFlag)
        #expect(received <= Coop.budgetPerTurn + 1)
    }

    /// A task whose every turn spends the whole budget (draining a full channel) still lets the
    /// loop look at its timers every few turns, not every 61: a timer already due when the
    /// drain starts fires within four turns of it (61 turns of 128 receives would be 7,808).
    @Test func aTimerFiresWhileATaskSpendsWholeBudgets() throws {
        let runtime = try Runtime.currentThread()
        let received = try runtime.run { () async throws -> Int in
            let (tx, rx) = Channel<Int>.unbounded()
            for value in 0..<20_000 { try tx.trySend(value) }
            let fired = Atomic<Bool>(false)
            let sleeper = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(1))
                fired.store(true, ordering: .relaxed)
            }
            await Tide.yield()  // the sleeper arms its timer
            // Hold the thread until the timer is due (and a tick more): it cannot fire yet,
            // since the loop looks at timers only between turns.
            let due = monotonicNow() + 2_000_000
            while monotonicNow() < due {}
            var received = 0
            while received < 20_000, !fired.load(ordering: .relaxed) {
                _ = try await rx.receive()
                received += 1
            }
            try await sleeper.value
            return received
        }
        #expect(received <= 4 * Coop.budgetPerTurn + Coop.budgetPerTurn)
    }

    /// A worker that finds every task while spinning (each arrives a little after the last one
    /// finished) must still look at timers. The spin path did not count what it ran toward
    /// maintenance, and a worker that keeps finding work never parks (where it would drive):
    /// with the other worker inside one long job, a due timer waited for the stream to end.
    @Test func timersFireWhileAWorkerFindsEveryTaskBySpinning() throws {
        final class Progress: Sendable {
            let ran = Atomic<Int>(0)
            /// How many stream tasks had run when the sleeper woke; -1 until then.
            let wokeAt = Atomic<Int>(-1)
        }
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let items = 20_000
        let progress = Progress()
        let produced = try runtime.run { () async throws -> Int in
            let sleeper = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(1))
                progress.wokeAt.store(progress.ran.load(ordering: .acquiring), ordering: .releasing)
            }
            while runtime.metrics.timersArmed == 0 && !sleeper.isFinished { await Tide.yield() }
            // One long job that spawns a short task every ~20 µs, ending early once the
            // sleeper woke.
            var produced = 0
            while produced < items && progress.wokeAt.load(ordering: .acquiring) < 0 {
                Tide.spawn { progress.ran.add(1, ordering: .acquiringAndReleasing) }
                produced += 1
                let until = monotonicNow() + 20_000
                while monotonicNow() < until {}
            }
            try await sleeper.value
            return produced
        }
        #expect(progress.wokeAt.load(ordering: .acquiring) >= 0)
        #expect(produced < items, "the timer fired only after the stream of \(items) tasks ended")
    }

    /// Joining handles of finished tasks returns at once; a loop over many of them must still
    /// spend the coop budget, or it holds the thread (and every timer on it) until it ends.
    @Test func joiningFinishedHandlesSpendsTheCoopBudget() throws {
        let runtime = try Runtime.currentThread()
        let (joined, sawFlag) = try runtime.run { () async throws -> (Int, Bool) in
            let count = 2_000
            var swiftHandles: [JoinHandle<Int>] = []
            var pollHandles: [PollTaskHandle<Int>] = []
            for index in 0..<count {
                swiftHandles.append(Tide.spawn { index })
                pollHandles.append(try runtime.spawn(ready(index)))
            }
            while !(swiftHandles.allSatisfy(\.isFinished) && pollHandles.allSatisfy(\.isFinished)) {
                await Tide.yield()
            }
            let flag = Atomic<Bool>(false)
            let setter = Tide.spawn { flag.store(true, ordering: .relaxed) }
            var joined = 0
            var sum = 0
            for index in 0..<count where !flag.load(ordering: .relaxed) {
                sum += try await swiftHandles[index].value
                sum += try await pollHandles[index].value
                joined += 1
            }
            try await setter.value
            #expect(sum == 2 * (0..<joined).reduce(0, +))
            return (joined, flag.load(ordering: .relaxed))
        }
        #expect(sawFlag)
        #expect(joined < 2_000)
    }

    /// Regression: with the leaf's coop check inside the await adapter, a Swift task whose budget
    /// ran out re-polled a send forever inside one job (every poll yielded, every yield was
    /// resumed at once). Four producers into a small bounded channel hit it within seconds.
    @Test func producersOnABoundedChannelNeverLivelock() throws {
        let runtime = try Runtime.multiThread(workers: 2, stallThreshold: .seconds(30))
        defer { runtime.shutdown() }
        let received = try runtime.run { () async throws -> Int in
            let (tx, rx) = try Channel<Int>.bounded(capacity: 16)
            let producers = (0..<4).map { producer in
                Tide.spawn { [tx] in
                    for value in 0..<20_000 { try await tx.send(producer * 20_000 + value) }
                }
            }
            var count = 0
            var sum = 0
            while count < 80_000, let value = try await rx.receive() {
                count += 1
                sum &+= value
            }
            for producer in producers { try await producer.value }
            #expect(sum == (0..<80_000).reduce(0, +))
            return count
        }
        #expect(received == 80_000)
    }

    /// A future that wakes itself during its poll is polled again only after other tasks ran.
    @Test func selfWakingFutureAwaitedFromSwiftYields() throws {
        let runtime = try Runtime.currentThread()
        let (others, spins) = try runtime.run { () async throws -> (Int, Int) in
            let counter = AtomicCounter()
            let other = Tide.spawn { for _ in 0..<10 { counter.increment(); await Tide.yield() } }
            final class Spins: @unchecked Sendable { var value = 0 }
            let spins = Spins()
            await pollFn { context -> Poll<Void> in
                spins.value += 1
                if counter.value >= 10 || spins.value > 100_000 { return .ready(()) }
                context.wake()
                return .pending
            }.wait()
            try await other.value
            return (counter.value, spins.value)
        }
        #expect(others == 10)
        #expect(spins < 100_000)
    }

    @Test func coopBudgetAppliesToPollTasks() throws {
        let runtime = try Runtime.multiThread(workers: 1)
        defer { runtime.shutdown() }
        let (received, sawFlag) = try runtime.run { () async throws -> (Int, Bool) in
            let (tx, rx) = Channel<Int>.unbounded()
            for value in 0..<10_000 { try tx.trySend(value) }
            let flag = Atomic<Bool>(false)
            final class Count: @unchecked Sendable { var value = 0 }
            let count = Count()
            var receive = rx.receiveFuture()
            let busy = try runtime.spawn(pollFn { context -> Poll<Void> in
                while count.value < 10_000, !flag.load(ordering: .relaxed) {
                    guard case .ready = receive.poll(&context) else { return .pending }
                    receive = rx.receiveFuture()
                    count.value += 1
                }
                return .ready(())
            })
            let setter = try runtime.spawn(lazy { flag.store(true, ordering: .relaxed) })
            try await busy.value
            try await setter.value
            return (count.value, flag.load(ordering: .relaxed))
        }
        #expect(sawFlag)
        #expect(received < 10_000)
    }
}

/// Installing the global executor changes where every task of the process runs, the test
/// runner's own included, so it is checked in a child process: `tide global`, built with the
/// tests, installs a multi-thread runtime and reports where plain tasks, detached tasks, async let,
/// task groups, actors and Task.sleep ran.
@Suite("Global executor")
struct GlobalExecutorTests {
    @Test func plainTasksSleepAndActorsRunOnTideInAChildProcess() throws {
        let output = try runTideCommand(["global"])
        #expect(output.status == 0, "tide global exited with \(output.status): \(output.text)")
        for check in ["Task {}", "Task.detached", "async let", "task group", "default actor",
                      "Task.sleep(for:", "Task.sleep arms", "second install"]
        {
            let line = output.text.split(separator: "\n").first { $0.contains(check) }
            #expect(line?.hasPrefix("ok") == true, "missing or failed: \(check)\n\(output.text)")
        }
    }
}

/// Wakes itself `before` times, waits for `gate`, wakes itself `after` times, then counts its
/// completion in `done` and returns `value`.
private struct YieldGateYield: Future {
    var before: Int
    let gate: Gate
    var after: Int
    let done: AtomicCounter
    let value: Int
    var waiting: PollFn<Void>? = nil

    mutating func poll(_ context: inout Context) -> Poll<Int> {
        if before > 0 {
            before -= 1
            context.wake()
            return .pending
        }
        if waiting == nil { waiting = gate.future }
        guard case .ready = waiting!.poll(&context) else { return .pending }
        if after > 0 {
            after -= 1
            context.wake()
            return .pending
        }
        done.increment()
        return .ready(value)
    }
}
