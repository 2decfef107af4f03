#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Tide

struct Boom: Error, Equatable {}

/// glibc's size of an allocation (not in the Glibc module's headers).
@_silgen_name("malloc_usable_size")
private func mallocUsableSize(_ pointer: UnsafeMutableRawPointer) -> Int

@Suite("Current-thread runtime")
struct RuntimeTests {
    @Test func runReturnsTheBodysResult() throws {
        let runtime = try Runtime.currentThread()
        #expect(try runtime.run { 6 * 7 } == 42)
        // A runtime can run again after run returned.
        #expect(try runtime.run { "again" } == "again")
    }

    @Test func runRethrowsTheBodysError() throws {
        let runtime = try Runtime.currentThread()
        #expect(throws: Boom.self) {
            try runtime.run { () async throws -> Int in throw Boom() }
        }
    }

    @Test func nestedRunIsATypedErrorNotAHang() throws {
        let runtime = try Runtime.currentThread()
        let error = try runtime.run { () -> RuntimeError? in
            do {
                _ = try runtime.run { 1 }
                return nil
            } catch let error as RuntimeError {
                return error
            }
        }
        #expect(error == .alreadyRunning)
    }

    @Test func shutDownRuntimeRefusesWork() throws {
        let runtime = try Runtime.currentThread()
        runtime.shutdown()
        #expect(throws: RuntimeError.shutDown) { try runtime.run { 1 } }
        #expect(throws: RuntimeError.shutDown) { try runtime.spawn(ready(1)) }
    }

    @Test func childTasksGroupsAndAsyncLetStayOnTheRuntimeThread() throws {
        let runtime = try Runtime.currentThread()
        let runner = UInt(pthread_self())
        let threads = try runtime.run { () async -> [UInt] in
            async let first = UInt(pthread_self())
            let spawned = Tide.spawn { UInt(pthread_self()) }
            let grouped = await withTaskGroup(of: UInt.self) { group in
                for _ in 0..<8 { group.addTask { UInt(pthread_self()) } }
                var all: [UInt] = []
                for await thread in group { all.append(thread) }
                return all
            }
            return [await first, (try? await spawned.value) ?? 0] + grouped
        }
        #expect(threads.count == 10)
        #expect(threads.allSatisfy { $0 == runner })
    }

    @Test func joinHandleValueCancelAndIsFinished() throws {
        let runtime = try Runtime.currentThread()
        try runtime.run {
            let quick = Tide.spawn { 5 }
            let first = try await quick.value
            let second = try await quick.value
            #expect(first == 5 && second == 5)
            #expect(quick.isFinished)

            let slow = Tide.spawn { () async throws -> Int in
                try await Tide.sleep(for: .seconds(60))
                return 1
            }
            await Tide.yield()
            #expect(!slow.isFinished)
            slow.cancel()
            await #expect(throws: CancellationError.self) { try await slow.value }
            #expect(slow.isCancelled)
        }
    }

    /// `Tide.yield()` puts the task behind every task queued before it, on both flavours: two
    /// tasks that each log and yield alternate strictly (the deferred-resume path), and a yield
    /// off Tide's threads still returns (it falls back to `Task.yield()`).
    @Test(arguments: [0, 1])
    func yieldAlternatesTasksInQueueOrder(workers: Int) async throws {
        let runtime = try workers == 0 ? Runtime.currentThread() : Runtime.multiThread(workers: 1)
        defer { runtime.shutdown() }
        let log = try runtime.run { () async throws -> [Int] in
            let log = LogBox()
            let tasks = (0..<2).map { id in
                Tide.spawn {
                    for _ in 0..<50 {
                        log.append(id)
                        await Tide.yield()
                    }
                }
            }
            for task in tasks { try await task.value }
            return log.values
        }
        #expect(log.count == 100)
        #expect(zip(log, log.dropFirst()).allSatisfy { $0 != $1 }, "\(log)")
        await Tide.yield()
    }

    @Test func pollTasksRunAndJoinFromSwiftAndFromPollTasks() throws {
        let runtime = try Runtime.currentThread()
        let total = try runtime.run { () async throws -> Int in
            let handles = try (0..<100).map { index in
                try runtime.spawn(pollFn { context -> Poll<Int> in .ready(index) })
            }
            let joiner = try runtime.spawn(joinAll(handles).map { results in
                results.reduce(0) { $0 + ((try? $1.get()) ?? 0) }
            })
            let viaSwift = try await handles[10].value
            return try await joiner.value + viaSwift
        }
        #expect(total == 4950 + 10)
        #expect(runtime.metrics.pollTasksAlive == 0)
    }

    /// W4's budget is 128 bytes per waiting poll task: one whose future and output are small is
    /// a single 96-byte malloc chunk (glibc's usable size 88), whether it waits or completed:
    /// the future and the output share one field.
    @Test func aSmallPollTaskIsOneAllocationOf96Bytes() throws {
        let runtime = try Runtime.currentThread()
        let gate = Gate()
        let (waiting, finished) = try runtime.run { () async throws -> (Int, Int) in
            let waiting = try runtime.spawn(WaitOnGate(gate: gate))
            let finished = try runtime.spawn(ready(5))
            await Tide.yield()
            #expect(!waiting.isFinished && finished.isFinished)
            func usableSize<Output>(_ handle: PollTaskHandle<Output>) -> Int {
                mallocUsableSize(Unmanaged.passUnretained(handle.task).toOpaque())
            }
            let sizes = (usableSize(waiting), usableSize(finished))
            gate.set()
            #expect(try await waiting.value == 7)
            return sizes
        }
        #expect(waiting <= 88, "a waiting poll task takes \(waiting) usable bytes")
        #expect(finished <= 88, "a finished poll task takes \(finished) usable bytes")
    }

    /// The table of waiting tasks (what shutdown cancels) through a burst: 5,000 waiters fill
    /// it, finish in random order (slots freed and reused), the emptied table is given back, and
    /// the waiters that come after are still found and cancelled by shutdown.
    @Test func shutdownFindsTheWaitingTasksAfterABurstCameAndWent() throws {
        let runtime = try Runtime.currentThread()
        var random = TestRandom(seed: 0x5107)
        let gates = (0..<5_000).map { _ in Gate() }
        let order = gates.indices.shuffled(using: &random)
        let (burst, late) = try runtime.run { () async throws -> (Int, [PollTaskHandle<Int>]) in
            let handles = try gates.map { try runtime.spawn(WaitOnGate(gate: $0)) }
            await Tide.yield()
            // Half finish, half of the freed slots are taken again, then the rest finish.
            for index in order.prefix(2_500) { gates[index].set() }
            await Tide.yield()
            let refill = try (0..<1_250).map { _ in try runtime.spawn(WaitOnGate(gate: Gate())) }
            await Tide.yield()
            for index in order.dropFirst(2_500) { gates[index].set() }
            var sum = 0
            for handle in handles { sum += try await handle.value }
            for handle in refill { handle.cancel() }
            for handle in refill {
                await #expect(throws: JoinError.cancelled) { try await handle.value }
            }
            let late = try (0..<3).map { _ in try runtime.spawn(WaitOnGate(gate: Gate())) }
            await Tide.yield()
            return (sum, late)
        }
        #expect(burst == 7 * 5_000)
        #expect(runtime.metrics.pollTasksAlive == 3)
        runtime.shutdown()
        for handle in late { #expect(handle.isFinished) }
        #expect(runtime.metrics.pollTasksAlive == 0)
    }

    /// Pending until `gate` opens, then 7: a future of one reference.
    private struct WaitOnGate: Future {
        let gate: Gate
        func poll(_ context: inout Context) -> Poll<Int> {
            gate.waker.register(context)
            return gate.open.load(ordering: .acquiring) ? .ready(7) : .pending
        }
    }

    @Test func cancelledPollTaskDropsItsFutureAndReportsCancelled() throws {
        let runtime = try Runtime.currentThread()
        let gate = Gate()
        let outcome = try runtime.run { () async -> JoinError? in
            let handle = try! runtime.spawn(gate.future.map { 1 })
            await Tide.yield()
            #expect(!handle.isFinished)
            handle.cancel()
            do {
                _ = try await handle.value
                return nil
            } catch {
                return error as? JoinError
            }
        }
        #expect(outcome == .cancelled)
        // The waker the task left in the gate is still valid; waking a finished task is a no-op.
        gate.set()
        #expect(runtime.metrics.pollTasksAlive == 0)
    }

    @Test func wakesFromOtherThreadsReachTheRuntime() throws {
        let runtime = try Runtime.currentThread()
        let gates = (0..<50).map { _ in Gate() }
        let completed = try runtime.run { () async throws -> Int in
            let handles = try gates.map { gate in try runtime.spawn(gate.future.map { 1 }) }
            let thread = TestThread {
                var random = TestRandom(seed: 7)
                for gate in gates {
                    jitter(&random, upTo: 200)
                    gate.set()
                }
            }
            var sum = 0
            for handle in handles { sum += try await handle.value }
            thread.join()
            return sum
        }
        #expect(completed == 50)
    }

    @Test func swiftContinuationsResumedFromOtherThreads() throws {
        let runtime = try Runtime.currentThread()
        let values = try runtime.run { () async -> [Int] in
            var values: [Int] = []
            for round in 0..<200 {
                let value = await withUnsafeContinuation { (continuation: UnsafeContinuation<Int, Never>) in
                    let thread = TestThread { continuation.resume(returning: round) }
                    thread.join()
                }
                values.append(value)
            }
            return values
        }
        #expect(values == Array(0..<200))
    }

    @Test func workSpawnedWhileStoppedRunsAtTheNextRun() throws {
        let runtime = try Runtime.currentThread()
        let handle = try runtime.spawn(lazy { 9 })
        #expect(!handle.isFinished)
        #expect(try runtime.run { try await handle.value } == 9)
    }
}

@Suite("blockOn and ThreadParker")
struct BlockOnTests {
    @Test func blockOnWaitsForAWakeFromAnotherThread() {
        let gate = Gate()
        let thread = TestThread {
            for _ in 0..<1000 { sched_yield() }
            gate.set()
        }
        blockOn(gate.future)
        thread.join()
        let open = gate.open.load(ordering: .relaxed)
        #expect(open)
    }

    @Test func parkerKeepsAnEarlyUnpark() {
        let parker = ThreadParker()
        parker.unpark()
        parker.park()
    }

    @Test func localExecutorWithThreadParkerSleepsUntilWoken() {
        let parker = ThreadParker()
        let executor = LocalExecutor(parker: parker)
        let gates = (0..<20).map { _ in Gate() }
        let done = Atomic<Int>(0)
        for gate in gates {
            executor.spawn(gate.future.map { _ in done.add(1, ordering: .relaxed) })
        }
        let thread = TestThread {
            var random = TestRandom(seed: 3)
            for gate in gates {
                jitter(&random, upTo: 500)
                gate.set()
            }
        }
        executor.run()
        thread.join()
        #expect(done.load(ordering: .relaxed) == 20)
    }
}

/// Every waker a task hands out is dropped again: once the work is done and the handles are
/// gone, nothing keeps the parker (blockOn) or the task object (runtime) alive.
@Suite("Waker accounting in blockOn and the runtime")
struct WakerAccountingTests {
    /// A future that clones its context's waker several times, keeps the clones in a shared box
    /// and wakes (consuming) them from another thread, ready on the third poll.
    final class Clones: @unchecked Sendable {
        let lock = SyncLock()
        var raw: [(data: UnsafeRawPointer?, vtable: WakerVTable)] = []
        func keep(_ waker: consuming Waker) { let parts = waker.intoRaw(); lock.withLock { raw.append(parts) } }
        func wakeAll() {
            let all = lock.withLock { () -> [(data: UnsafeRawPointer?, vtable: WakerVTable)] in
                defer { raw.removeAll() }
                return raw
            }
            for parts in all { Waker(data: parts.data, vtable: parts.vtable).wake() }
        }
    }

    static func cloningFuture(_ clones: Clones) -> PollFn<Int> {
        var polls = 0
        return pollFn { context in
            polls += 1
            if polls >= 3 { return .ready(polls) }
            clones.keep(context.cloneWaker())
            clones.keep(context.cloneWaker())
            let thread = TestThread { clones.wakeAll() }
            thread.join()
            return .pending
        }
    }

    @Test func blockOnReleasesEveryWaker() {
        weak var weakParker: ThreadParker?
        do {
            let parker = ThreadParker()
            weakParker = parker
            let clones = Clones()
            #expect(blockOn(Self.cloningFuture(clones), parker: parker) == 3)
            clones.wakeAll()
        }
        #expect(weakParker == nil)
    }

    @Test func runtimeTasksReleaseEveryWaker() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        final class WeakTask: @unchecked Sendable { weak var task: PollTaskBase? }
        let weakTask = WeakTask()
        let clones = Clones()
        let value = try runtime.run { () async throws -> Int in
            let handle = try runtime.spawn(Self.cloningFuture(clones))
            let value = try await handle.value
            return value
        }
        #expect(value == 3)
        clones.wakeAll()
        // Spawn one more and keep only a weak reference once it is joined.
        try runtime.run {
            let handle = try runtime.spawn(Self.cloningFuture(clones))
            weakTask.task = handle.task
            _ = try await handle.value
        }
        clones.wakeAll()
        // The worker may still be finishing the task's last turn; wait (bounded) for release.
        var spins = 0
        while weakTask.task != nil && spins < 2_000 {
            usleep(1_000)
            spins += 1
        }
        #expect(weakTask.task == nil)
    }
}

@Suite("Poll tasks and their runtime's lifetime")
struct PollTaskLifetimeTests {
    /// A one-time event a poll task waits on: `set()` from any thread completes `Wait` with 42.
    private final class Event: Sendable {
        let happened = Atomic<Bool>(false)
        let polled = Atomic<Bool>(false)
        let slot = AtomicWaker()

        func set() {
            happened.store(true, ordering: .releasing)
            slot.wake()
        }

        struct Wait: Future {
            let event: Event

            mutating func poll(_ context: inout Context) -> Poll<Int> {
                if event.happened.load(ordering: .acquiring) { return .ready(42) }
                event.slot.register(context)
                event.polled.store(true, ordering: .releasing)
                return event.happened.load(ordering: .acquiring) ? .ready(42) : .pending
            }
        }
    }

    /// Tasks that never waited (one done in its first poll, one still queued) do not keep the
    /// runtime alive: dropping it frees it, and their handles still work afterwards.
    @Test func tasksThatNeverWaitedLetTheRuntimeGo() throws {
        weak var weakRuntime: Runtime?
        let finished: PollTaskHandle<Int>
        let queued: PollTaskHandle<Int>
        do {
            let runtime = try Runtime.currentThread()
            weakRuntime = runtime
            finished = try runtime.run {
                let handle = try runtime.spawn(ready(7))
                _ = try await handle.value
                return handle
            }
            // Spawned while the runtime is not running: queued, never run.
            queued = try runtime.spawn(ready(8))
        }
        #expect(weakRuntime == nil)
        #expect(try blockOn(finished).get() == 7)
        // The task's runtime is gone; cancelling (a wake) must not reach it.
        queued.cancel()
        #expect(!queued.isFinished)
    }

    /// A task that waited keeps its runtime alive: a wake from another thread after the last
    /// user reference was dropped queues it on a live runtime, which can still run it. Once the
    /// task is gone, so is the runtime.
    @Test func aTaskThatWaitedKeepsTheRuntimeAliveUntilItIsGone() throws {
        let event = Event()
        weak var weakRuntime: Runtime?
        do {
            let waiting: PollTaskHandle<Int>
            do {
                let runtime = try Runtime.currentThread()
                weakRuntime = runtime
                waiting = try runtime.run {
                    let handle = try runtime.spawn(Event.Wait(event: event))
                    var turns = 0
                    while !event.polled.load(ordering: .acquiring) && turns < 1_000 {
                        await Tide.yield()
                        turns += 1
                    }
                    return handle
                }
                let polled = event.polled.load(ordering: .acquiring)
                #expect(polled)
            }
            let kept = try #require(weakRuntime)
            let thread = TestThread { event.set() }
            thread.join()
            let value = try kept.run { try await waiting.value }
            #expect(value == 42)
            kept.shutdown()
        }
        #expect(weakRuntime == nil)
    }
}

@Suite("Live task table")
struct LiveTaskTableTests {
    /// Slots are reused last-freed first, a freed slot holds no task, every listed task is
    /// found, and once a table of more than 4096 slots empties it starts over from slot 0.
    @Test func slotsAreReusedAndAnEmptiedLargeTableStartsOver() throws {
        let runtime = try Runtime.currentThread()
        defer { runtime.shutdown() }
        let tasks = (0..<5_000).map { index in
            PollTask<PollStage<Ready<Int>>>(
                future: ready(index), scheduler: Unmanaged.passUnretained(runtime))
        }
        var table = LiveTaskTable()
        // Task index -> its slot, for every task listed.
        var slotOf: [Int: UInt32] = [:]
        func list(_ index: Int) -> UInt32 {
            let slot = table.insert(Unmanaged.passRetained(tasks[index]))
            slotOf[index] = slot
            return slot
        }
        func unlist(_ index: Int) -> Bool {
            guard let slot = slotOf.removeValue(forKey: index) else { return false }
            return table.remove(at: slot)?.takeRetainedValue() === tasks[index]
        }
        #expect((0..<10).map(list) == Array(0..<10))
        #expect(unlist(3))
        #expect(unlist(7))
        #expect(table.remove(at: 7) == nil)
        #expect(table.remove(at: 99) == nil)
        #expect(table.count == 8)
        #expect(list(10) == 7)
        #expect(list(11) == 3)
        #expect(list(12) == 10)
        #expect(Set(table.tasks.map(ObjectIdentifier.init))
            == Set(slotOf.keys.map { ObjectIdentifier(tasks[$0]) }))
        // Grow past 4096 slots, then empty the table: it gives its storage back, starts over.
        for index in 13..<5_000 { _ = list(index) }
        #expect(table.count == 4_998)
        for index in Array(slotOf.keys) { #expect(unlist(index)) }
        #expect(table.count == 0)
        #expect(table.tasks.isEmpty)
        #expect(list(0) == 0)
        #expect(unlist(0))
    }
}

/// An append-only log shared by tasks on one thread.
private final class LogBox: @unchecked Sendable {
    private let lock = SyncLock()
    private var entries: [Int] = []

    func append(_ value: Int) { lock.withLock { entries.append(value) } }
    var values: [Int] { lock.withLock { entries } }
}
