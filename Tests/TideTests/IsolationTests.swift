#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
import Tide

/// A serial executor with a thread of its own, which can tell whether the calling code runs on
/// it: an actor that uses it sees after every await whether it was brought back home.
final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    private let jobs = Synchronization.Mutex<[UnownedJob]>([])
    private let stopping = Atomic<Bool>(false)
    private let ready = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let threadID = Atomic<UInt>(0)
    private var thread: TestThread?

    init() {
        sem_init(ready, 0, 0)
        thread = TestThread { [self] in loop() }
    }

    deinit {
        sem_destroy(ready)
        ready.deallocate()
    }

    /// Whether the caller runs on this executor's thread.
    var isCurrent: Bool { threadID.load(ordering: .acquiring) == UInt(pthread_self()) }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        jobs.withLock { $0.append(unowned) }
        sem_post(ready)
    }

    /// Runs the queued jobs, then ends the thread.
    func stop() {
        stopping.store(true, ordering: .releasing)
        sem_post(ready)
        thread?.join()
        thread = nil  // the thread's closure holds this executor
    }

    private func loop() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        while true {
            sem_wait(ready)
            let batch = jobs.withLock { queued -> [UnownedJob] in
                defer { queued.removeAll() }
                return queued
            }
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
            if batch.isEmpty && stopping.load(ordering: .acquiring) { return }
        }
    }
}

/// An actor on a `ThreadExecutor` that awaits Tide's resources and notes, after each await,
/// whether it runs on its own executor again.
actor IsolationProbe {
    let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private(set) var homeAfter: [String: Bool] = [:]

    init(executor: ThreadExecutor) { self.executor = executor }

    func awaitEach(
        channel: Receiver<Int>, oneshot: OneshotReceiver<Int>, task: JoinHandle<Int>,
        pollTask: PollTaskHandle<Int>
    ) async throws -> [Int] {
        var values: [Int] = []
        values.append(try await channel.receive() ?? -1)
        homeAfter["channel receive"] = executor.isCurrent
        values.append(try await oneshot.receive())
        homeAfter["oneshot receive"] = executor.isCurrent
        values.append(try await channel.receiveFuture().waitCancellable() ?? -1)
        homeAfter["future wait"] = executor.isCurrent
        await Tide.yield()
        homeAfter["yield"] = executor.isCurrent
        values.append(try await task.value)
        homeAfter["join handle"] = executor.isCurrent
        values.append(try await pollTask.value)
        homeAfter["poll task handle"] = executor.isCurrent
        values.append(try await BlockingPool.shared.run { 6 })
        homeAfter["blocking pool"] = executor.isCurrent
        // Tide.sleep needs the current runtime: it leaves the actor for the task's preferred
        // executor (this runtime) first, and comes back after.
        try await Tide.sleep(for: .milliseconds(1))
        homeAfter["Tide.sleep"] = executor.isCurrent
        return values
    }

    /// Receives from `receiver` (in a task that is cancelled): true when the receive threw and
    /// the actor is on its executor after it.
    func receiveCancelled(_ receiver: Receiver<Int>) async {
        do {
            _ = try await receiver.receive()
            homeAfter["cancelled receive"] = false
        } catch {
            homeAfter["cancelled receive"] = executor.isCurrent
        }
    }
}

@Suite("Isolation across Tide's awaits")
struct IsolationTests {
    @Test func awaitsOnTideResourcesComeBackToTheCallersActor() throws {
        let executor = ThreadExecutor()
        defer { executor.stop() }
        let probe = IsolationProbe(executor: executor)
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let values = try runtime.run {
            let (channelTx, channelRx) = try Channel<Int>.bounded(capacity: 1)
            let (oneshotTx, oneshotRx) = Oneshot<Int>.make()
            // Its sender stays alive (the channel open) until the end: the receive must end by
            // cancellation, not by the channel closing.
            let (cancelledTx, cancelledRx) = try Channel<Int>.bounded(capacity: 1)
            // Each value comes a little later than the actor starts waiting for it, so that
            // the waits usually park (and resume from a worker) instead of finding it ready.
            let sender = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(5))
                try await channelTx.send(1)
                try await Tide.sleep(for: .milliseconds(5))
                try oneshotTx.send(2)
                try await Tide.sleep(for: .milliseconds(5))
                try await channelTx.send(3)
            }
            let task = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(20))
                return 4
            }
            let pollTask = try runtime.spawn(ready(5))
            let values = try await probe.awaitEach(
                channel: channelRx, oneshot: oneshotRx, task: task, pollTask: pollTask)
            try await sender.value
            // A Tide task, not `Task {}`: outside an installed global executor, `Task {}` starts
            // on Swift's global executor, which the blocking tests around may keep busy.
            let waiter = Tide.spawn { await probe.receiveCancelled(cancelledRx) }
            waiter.cancel()
            try await waiter.value
            cancelledTx.close()
            return values
        }
        #expect(values == [1, 2, 3, 4, 5, 6])
        let homeAfter = try runtime.run { await probe.homeAfter }
        #expect(homeAfter.count == 9)
        for (await_, home) in homeAfter.sorted(by: { $0.key < $1.key }) {
            #expect(home, "the actor was not on its executor after \(await_)")
        }
    }
}
