import Synchronization
import Testing
import TideCore

/// A parker for single-threaded tests: parking with no token would sleep forever, so the test
/// records it instead (the executor must never park while a task is ready).
final class RecordingParker: Parker, @unchecked Sendable {
    let tokens = Atomic<Int>(0)
    let emptyParks = Atomic<Int>(0)
    override func park() {
        if tokens.exchange(0, ordering: .acquiringAndReleasing) == 0 {
            emptyParks.add(1, ordering: .relaxed)
        }
    }
    override func unpark() { tokens.add(1, ordering: .releasing) }
}

@Suite("LocalExecutor")
struct LocalExecutorTests {
    @Test func runsEveryTaskToCompletion() {
        let executor = LocalExecutor(parker: RecordingParker())
        let results = Mutex<[Int]>([])
        for index in 0..<100 {
            executor.spawn(YieldTimes(remaining: index % 7, value: index).map { value in
                results.withLock { $0.append(value) }
            })
        }
        executor.run()
        #expect(results.withLock { $0.sorted() } == Array(0..<100))
        #expect(executor.liveTasks == 0)
    }

    @Test func pollsOnlyWokenTasksAndKeepsFIFOOrder() {
        let executor = LocalExecutor(parker: RecordingParker())
        let order = Mutex<[Int]>([])
        let signals = (0..<5).map { _ in TestSignal() }
        for (index, signal) in signals.enumerated() {
            executor.spawn(signal.future(index).map { value in order.withLock { $0.append(value) } })
        }
        executor.runUntilStalled()
        let pollsBefore = executor.polls
        #expect(pollsBefore == 5)
        // Nothing woken: nothing polled.
        executor.runUntilStalled()
        #expect(executor.polls == pollsBefore)
        for index in [3, 0, 4, 1, 2] { signals[index].fire() }
        executor.runUntilStalled()
        #expect(order.withLock { $0 } == [3, 0, 4, 1, 2])
        #expect(executor.polls == pollsBefore + 5)
        #expect(executor.liveTasks == 0)
    }

    @Test func wakeAfterCompletionIsANoOp() {
        let executor = LocalExecutor(parker: RecordingParker())
        nonisolated(unsafe) var savedWaker: Waker? = nil
        executor.spawn(pollFn { context in
            savedWaker = context.cloneWaker()
            return .ready(())
        })
        executor.run()
        savedWaker?.wakeByRef()
        savedWaker = nil
        #expect(executor.runUntilStalled() == 0)
    }

    @Test func tasksSpawnedWhileRunningRun() {
        let executor = LocalExecutor(parker: RecordingParker())
        let count = Atomic<Int>(0)
        executor.spawn(lazy {
            for _ in 0..<10 {
                executor.spawn(lazy { count.add(1, ordering: .relaxed) })
            }
        })
        executor.run()
        #expect(count.load(ordering: .relaxed) == 10)
    }

    @Test func droppingTheExecutorDropsPendingTasks() {
        final class Owned: Sendable {
            let onDeinit: @Sendable () -> Void
            init(_ onDeinit: @escaping @Sendable () -> Void) { self.onDeinit = onDeinit }
            deinit { onDeinit() }
        }
        let dropped = Mutex(0)
        let signal = TestSignal()
        do {
            let executor = LocalExecutor(parker: RecordingParker())
            let owned = Owned { dropped.withLock { $0 += 1 } }
            executor.spawn(signal.future(()).map { _ in _ = owned })
            executor.runUntilStalled()
            #expect(executor.liveTasks == 1)
            #expect(dropped.withLock { $0 } == 0)
        }
        // The executor is gone: the pending future (and what it owned) was dropped, even though
        // the signal still holds the task's waker.
        #expect(dropped.withLock { $0 } == 1)
        signal.forget()
    }
}
