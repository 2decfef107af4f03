#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Tide

/// Counts wakes of one timer in the wheel tests.
final class WakeRecorder: @unchecked Sendable {
    let fired = Synchronization.Mutex<[Int]>([])
    let index: Int
    init(index: Int) { self.index = index }

    static let vtable = WakerVTable(
        clone: { $0.map { UnsafeRawPointer(Unmanaged<WakeRecorder>.fromOpaque($0).retain().toOpaque()) } },
        wake: { data in
            let recorder = Unmanaged<WakeRecorder>.fromOpaque(data!)
            recorder.takeUnretainedValue().record()
            recorder.release()
        },
        wakeByRef: { data in Unmanaged<WakeRecorder>.fromOpaque(data!).takeUnretainedValue().record() },
        drop: { data in Unmanaged<WakeRecorder>.fromOpaque(data!).release() }
    )

    var sink: (@Sendable (Int) -> Void)?
    func record() { sink?(index) }

    func waker() -> Waker {
        Waker(data: UnsafeRawPointer(Unmanaged.passRetained(self).toOpaque()), vtable: Self.vtable)
    }
}

/// Timers on a wheel driven by simulated time: each records the simulated time it fired at.
/// Single-threaded (the wheel wakes synchronously inside `advance`).
final class SimulatedTimers: @unchecked Sendable {
    let wheel = TimerWheel()
    private(set) var now: UInt64
    private(set) var deadlines: [Int: UInt64] = [:]
    private let fired = Synchronization.Mutex<[Int: UInt64]>([:])
    private var entries: [TimerEntry] = []
    private var recorders: [WakeRecorder] = []

    /// Starts the wheel's simulated clock `offset` nanoseconds after its origin.
    init(startingAt offset: UInt64) {
        now = wheel.originNanoseconds + offset
        wheel.advance(now: now)
    }

    /// Arms timer `index` for `deadline`; true if it waits in the wheel (not due yet).
    func arm(_ index: Int, deadline: UInt64) -> Bool {
        let entry = wheel.makeEntry(deadlineNanoseconds: deadline)
        let recorder = WakeRecorder(index: index)
        recorder.sink = { [unowned self] index in fired.withLock { $0[index] = self.now } }
        var context = Context(waker: recorder.waker())
        let pending = !entry.poll(&context).isReady
        entries.append(entry)
        recorders.append(recorder)
        deadlines[index] = deadline
        return pending
    }

    /// Advances the simulated clock by `step` at a time, calling `advance` each time, until `end`.
    func step(by step: UInt64, until end: UInt64) {
        while now < end {
            now += step
            wheel.advance(now: now)
        }
    }

    /// When each fired timer fired (simulated time), by index.
    var log: [Int: UInt64] { fired.withLock { $0 } }
}

@Suite("Timing wheel")
struct TimerWheelTests {
    /// Deadlines far enough in the future that real time never reaches them during the test; the
    /// test drives the wheel with simulated `now` values.
    @Test func firesInDeadlineOrderAndNeverEarly() {
        let wheel = TimerWheel()
        let base = wheel.originNanoseconds + 3_600_000_000_000  // one hour in
        var random = TestRandom(seed: 42)
        let fireLog = Synchronization.Mutex<[(index: Int, at: UInt64)]>([])
        nonisolated(unsafe) var currentNow: UInt64 = 0
        var entries: [TimerEntry] = []
        var recorders: [WakeRecorder] = []
        var deadlines: [UInt64] = []
        // Spread over every level: up to ~3 days.
        for index in 0..<2_000 {
            let spread: UInt64 = [64, 4_096, 262_144, 16_777_216, 268_435_456][index % 5]
            let offsetMs = UInt64(random.next(Int(spread)))
            let deadline = base + offsetMs * 1_000_000 + UInt64(random.next(1_000_000))
            let entry = wheel.makeEntry(deadlineNanoseconds: deadline)
            let recorder = WakeRecorder(index: index)
            recorder.sink = { fired in fireLog.withLock { $0.append((fired, currentNow)) } }
            let waker = recorder.waker()
            var context = Context(waker: waker)
            #expect(!entry.poll(&context).isReady)
            entries.append(entry)
            recorders.append(recorder)
            deadlines.append(deadline)
        }
        #expect(wheel.count == 2_000)
        // Walk simulated time forward in uneven steps past the last deadline.
        var now = base - 5_000_000
        let end = deadlines.max()! + 2_000_000
        while now < end {
            now += UInt64(1 + random.next(40_000)) * 100_000 + UInt64(random.next(3)) * 60_000_000_000
            currentNow = now
            wheel.advance(now: now)
        }
        let log = fireLog.withLock { $0 }
        #expect(log.count == 2_000)
        #expect(Set(log.map(\.index)).count == 2_000)
        // Never early: each fired at a simulated time at or after its deadline.
        #expect(log.allSatisfy { deadlines[$0.index] <= $0.at })
        // Deadline order across advances: a timer fired in a later advance never has an earlier
        // deadline tick than one fired before it.
        let tick = TimerWheel.tickNanoseconds
        let ticks = log.map { (deadlines[$0.index] - wheel.originNanoseconds + tick - 1) / tick }
        var ordered = true
        for index in 1..<ticks.count where ticks[index] < ticks[index - 1] && log[index].at != log[index - 1].at {
            ordered = false
        }
        #expect(ordered)
        // Not late either: fired in the first advance that passed its deadline tick.
        #expect(wheel.count == 0)
        _ = entries
    }

    /// Level 0 covers one 16384-tick window (4096 ms); deadlines past its end wait one level up
    /// and cascade when the window turns. Stepping 1 ms at a time across that edge, each timer
    /// fires in the first step at or after its deadline: not early, and not a step late.
    @Test func timersAcrossTheLevelZeroEdgeFireInTheirOwnTick() {
        let millisecond: UInt64 = 1_000_000
        let timers = SimulatedTimers(startingAt: 4_000 * millisecond)
        let start = timers.now
        for offset in stride(from: 1, through: 300, by: 3) {
            #expect(timers.arm(offset, deadline: start + UInt64(offset) * millisecond + 400_000))
        }
        timers.step(by: millisecond, until: start + 310 * millisecond)
        let log = timers.log
        #expect(log.count == timers.deadlines.count)
        for (offset, deadline) in timers.deadlines {
            guard let at = log[offset] else { continue }
            // The first 1 ms step at or after the deadline's tick (deadlines round up to a tick,
            // which is shorter than a step).
            let tickStart = timers.wheel.originNanoseconds
                + timers.wheel.tick(forDeadline: deadline) * TimerWheel.tickNanoseconds
            #expect(at >= deadline)
            #expect(at < tickStart + millisecond, "timer \(offset) fired a step late")
        }
        #expect(timers.wheel.count == 0)
    }

    /// Timers whose deadlines fall in the same millisecond but in different ticks fire in
    /// different advances: each within one tick (250 µs) of its deadline, none early. Deadlines
    /// are spread over the whole of level 0 (its 256 bitmap words and their 4-word summary).
    @Test func timersFireWithinOneTickOfTheirDeadline() {
        let timers = SimulatedTimers(startingAt: 3_600_000_000_000)  // one hour in
        let base = timers.now
        var random = TestRandom(seed: 5)
        for index in 0..<300 {
            // Pairs of deadlines 0.3 ms apart, somewhere in the next ~4 s.
            let millisecond = UInt64(index / 2) * 13 + 1
            let deadline = base + millisecond * 1_000_000 + UInt64(index % 2) * 300_000
                + UInt64(random.next(100_000))
            #expect(timers.arm(index, deadline: deadline))
        }
        // Simulated time moves in 50 µs steps: a timer fires in the first step after its tick.
        let step: UInt64 = 50_000
        timers.step(by: step, until: timers.deadlines.values.max()! + 1_000_000)
        let log = timers.log
        #expect(log.count == timers.deadlines.count)
        for (index, deadline) in timers.deadlines {
            guard let at = log[index] else { continue }
            #expect(at >= deadline, "timer \(index) fired early")
            #expect(at < deadline + 250_000 + step, "timer \(index) fired more than a tick late")
        }
        #expect(timers.wheel.count == 0)
    }

    /// Far more timers than one batch come due in one `advance`: 700 in a single tick (batches
    /// end in the middle of that slot), 300 spread over the ticks before; later 601 from one
    /// level-1 slot. All fire, each once, none early; the timers not due stay; the buffer the
    /// wakers are collected in never grew.
    @Test func aThousandTimersDueAtOnceFireInBatchesFromOneAdvance() {
        let timers = SimulatedTimers(startingAt: 3_600_000_000_000)
        let base = timers.now
        let capacity = timers.wheel.firedBufferCapacity
        #expect(capacity >= TimerWheel.fireBatch)
        for index in 0..<700 {
            #expect(timers.arm(index, deadline: base + 20_000_000))
        }
        for index in 700..<1_000 {
            #expect(timers.arm(index, deadline: base + 1_000_000 + UInt64(index - 700) * 60_000))
        }
        // Not due at the advance: one later in level 0, one in level 1 (five seconds out).
        #expect(timers.arm(1_000, deadline: base + 30_000_000))
        #expect(timers.arm(1_001, deadline: base + 5_000_000_000))
        timers.step(by: 25_000_000, until: base + 25_000_000)
        let log = timers.log
        #expect(log.count == 1_000)
        for index in 0..<1_000 {
            guard let at = log[index], let deadline = timers.deadlines[index] else {
                Issue.record("timer \(index) did not fire")
                continue
            }
            #expect(at >= deadline)
        }
        #expect(timers.wheel.count == 2)
        #expect(timers.wheel.firedBufferCapacity == capacity)
        timers.step(by: 10_000_000, until: base + 35_000_000)
        #expect(timers.log.count == 1_001)
        #expect(timers.wheel.count == 1)
        // 600 more in the same level-1 slot as timer 1_001, all due in one advance: the slot is
        // emptied whole and what does not fit a batch waits one level down for the next one.
        for index in 1_002..<1_602 {
            #expect(timers.arm(index, deadline: base + 5_000_000_000 + UInt64(index) * 1_000))
        }
        // One step, so that nothing cascades before: the level-1 slot itself comes due.
        timers.step(by: 5_965_000_000, until: base + 6_000_000_000)
        let all = timers.log
        #expect(all.count == 1_602)
        for (index, deadline) in timers.deadlines {
            if let at = all[index] { #expect(at >= deadline) }
        }
        #expect(timers.wheel.count == 0)
        #expect(timers.wheel.firedBufferCapacity == capacity)
    }

    @Test func droppedTimerLeavesTheWheel() {
        let wheel = TimerWheel()
        let recorder = WakeRecorder(index: 0)
        do {
            let entry = wheel.makeEntry(deadlineNanoseconds: wheel.originNanoseconds + 10_000_000_000)
            let waker = recorder.waker()
            var context = Context(waker: waker)
            _ = entry.poll(&context)
            #expect(wheel.count == 1)
        }
        #expect(wheel.count == 0)
        #expect(wheel.nextDeadlineTick() == nil)
    }

    @Test func pastDeadlineIsReadyWithoutEnteringTheWheel() {
        let wheel = TimerWheel()
        let entry = wheel.makeEntry(deadlineNanoseconds: 0)
        var context = Context(waker: Waker.noop)
        #expect(entry.poll(&context).isReady)
        #expect(wheel.count == 0)
    }
}

@Suite("Time")
struct TimeTests {
    @Test func sleepsEndInDeadlineOrderAndNeverEarly() throws {
        let runtime = try Runtime.currentThread()
        let results = try runtime.run { () async throws -> [(Int, Bool)] in
            try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for (index, delay) in [40, 10, 30, 0, 20, -5].enumerated() {
                    group.addTask {
                        let deadline = TideClock.Instant.now.advanced(by: .milliseconds(delay))
                        try await Tide.sleep(until: deadline)
                        return (index, TideClock.Instant.now >= deadline)
                    }
                }
                var order: [(Int, Bool)] = []
                for try await result in group { order.append(result) }
                return order
            }
        }
        #expect(results.allSatisfy { $0.1 })
        // 0 ms and -5 ms complete at once (in either order), then 10, 20, 30, 40 ms.
        #expect(Set(results.prefix(2).map(\.0)) == [3, 5])
        #expect(results.dropFirst(2).map(\.0) == [1, 4, 2, 0])
    }

    @Test func cancelledSleepLeavesNothingInTheWheel() throws {
        let runtime = try Runtime.currentThread()
        let armedWhileSleeping = try runtime.run { () async -> Int in
            let sleeper = Tide.spawn { try await Tide.sleep(for: .seconds(3600)) }
            await Tide.yield()
            await Tide.yield()
            let armed = runtime.metrics.timersArmed
            sleeper.cancel()
            _ = try? await sleeper.value
            return armed
        }
        #expect(armedWhileSleeping == 1)
        #expect(runtime.metrics.timersArmed == 0)
    }

    @Test func timeoutCancelsTheOperation() throws {
        let runtime = try Runtime.currentThread()
        let sawCancellation = Atomic<Bool>(false)
        let outcome = try runtime.run { () async -> String in
            do {
                _ = try await Tide.timeout(.milliseconds(20)) {
                    do {
                        try await Tide.sleep(for: .seconds(3600))
                    } catch is CancellationError {
                        sawCancellation.store(true, ordering: .relaxed)
                        throw CancellationError()
                    }
                    return 1
                }
                return "finished"
            } catch let error as TimeoutError {
                return "timeout \(error.duration)"
            } catch {
                return "other \(error)"
            }
        }
        #expect(outcome == "timeout 0.02 seconds")
        let cancelled = sawCancellation.load(ordering: .relaxed)
        #expect(cancelled)
        #expect(runtime.metrics.timersArmed == 0)
    }

    @Test func timeoutReturnsAQuickResultAndRethrowsErrors() throws {
        let runtime = try Runtime.currentThread()
        try runtime.run {
            let value = try await Tide.timeout(.seconds(10)) { 5 }
            #expect(value == 5)
            await #expect(throws: Boom.self) {
                try await Tide.timeout(.seconds(10)) { () async throws -> Int in throw Boom() }
            }
        }
        #expect(runtime.metrics.timersArmed == 0)
    }

    /// Durations beyond the ~292 years an `Int64` of nanoseconds holds saturate: "forever"
    /// (`.seconds(Int64.max)`) is the latest instant, not one wrapped into the past, so such a
    /// sleep does not end at once and such a timeout does not fire at once.
    @Test func durationsTooLongForTheClockMeanForever() throws {
        let now = TideClock.Instant.now
        #expect(now.advanced(by: .seconds(Int64.max)).nanoseconds == Int64.max)
        #expect(now.advanced(by: .seconds(400 * 365 * 86_400)) > now)
        #expect(TideClock.Instant(nanoseconds: -5).advanced(by: .seconds(Int64.min)).nanoseconds == .min)
        #expect(TideClock.Instant(nanoseconds: .min).duration(to: now) == .nanoseconds(Int64.max))
        let runtime = try Runtime.currentThread()
        try runtime.run {
            await #expect(throws: TimeoutError.self) {
                try await Tide.timeout(.milliseconds(20)) {
                    try await Tide.sleep(for: .seconds(Int64.max))
                }
            }
            let value = try await Tide.timeout(.seconds(Int64.max)) { () async throws -> Int in
                try await Tide.sleep(for: .milliseconds(5))
                return 7
            }
            #expect(value == 7)
        }
        #expect(runtime.metrics.timersArmed == 0)
    }

    @Test func outsideARuntimeTimeIsATypedError() async {
        await #expect(throws: RuntimeError.noCurrentRuntime) { try await Tide.sleep(for: .milliseconds(1)) }
        #expect(throws: RuntimeError.noCurrentRuntime) { try Tide.interval(every: .seconds(1)) }
    }

    @Test func intervalTicksOnScheduleAndRejectsBadPeriods() throws {
        let runtime = try Runtime.currentThread()
        let ticks = try runtime.run { () async throws -> [TideClock.Instant] in
            #expect(throws: IntervalError.nonPositivePeriod(.zero)) { try Tide.interval(every: .zero) }
            let start = TideClock.Instant.now
            var ticks: [TideClock.Instant] = []
            // `.burst`: the ticks are the scheduled instants however late this thread runs (the
            // default `.skip` drops ticks when a loaded machine delays it past a period).
            for await tick in try Tide.interval(
                every: .milliseconds(5), startingAt: start, missedTickPolicy: .burst)
            {
                #expect(TideClock.Instant.now >= tick)
                ticks.append(tick)
                if ticks.count == 5 { break }
            }
            return ticks.map { TideClock.Instant(nanoseconds: $0.nanoseconds - start.nanoseconds) }
        }
        #expect(ticks.map(\.nanoseconds) == [0, 5, 10, 15, 20].map { Int64($0) * 1_000_000 })
    }

    @Test func intervalSkipPolicyDropsMissedTicks() throws {
        let runtime = try Runtime.currentThread()
        let offsets = try runtime.run { () async throws -> [Int64] in
            let start = TideClock.Instant.now
            var offsets: [Int64] = []
            var iterator = try Tide.interval(every: .milliseconds(10), startingAt: start).makeAsyncIterator()
            for _ in 0..<3 {
                guard let tick = await iterator.next() else { break }
                offsets.append((tick.nanoseconds - start.nanoseconds) / 1_000_000)
                // A slow consumer: misses about three ticks.
                try await Tide.sleep(for: .milliseconds(35))
            }
            return offsets
        }
        #expect(offsets.count == 3)
        // The tick that was due while the consumer slept is delivered late, once; the ones after
        // it are dropped and the next one is back on the original 10 ms grid.
        #expect(offsets[0] == 0 && offsets[1] == 10)
        #expect(offsets[2] % 10 == 0 && offsets[2] >= 40)
    }

    /// `.delay` shifts the schedule only when a tick was missed. Every tick is delivered a
    /// little late (the wheel never fires early); that alone used to push each next tick back,
    /// 28 ms behind schedule after 100 ticks of 5 ms. Wherever a tick was taken before the next
    /// was due, the next tick must be exactly one period later; after a missed one (this
    /// consumer misses one on purpose), later than that.
    @Test func intervalDelayPolicyShiftsOnlyAfterAMissedTick() throws {
        let runtime = try Runtime.currentThread()
        let period = Duration.milliseconds(10)
        let ticks = try runtime.run { () async throws -> [(scheduled: TideClock.Instant, delivered: TideClock.Instant)] in
            var ticks: [(scheduled: TideClock.Instant, delivered: TideClock.Instant)] = []
            var iterator = try Tide.interval(every: period, missedTickPolicy: .delay).makeAsyncIterator()
            for index in 0..<12 {
                guard let tick = await iterator.next() else { break }
                ticks.append((tick, TideClock.Instant.now))
                if index == 5 { try await Tide.sleep(for: .milliseconds(25)) }
            }
            return ticks
        }
        #expect(ticks.count == 12)
        guard ticks.count == 12 else { return }
        for index in 1..<ticks.count {
            let previous = ticks[index - 1]
            let onSchedule = previous.scheduled.advanced(by: period)
            if onSchedule > previous.delivered {
                // Taken before the next tick was due: nothing was missed.
                #expect(ticks[index].scheduled == onSchedule)
            } else {
                #expect(ticks[index].scheduled >= onSchedule)
            }
        }
        // The consumer came back from tick 5 after tick 6 was due and tick 7's time passed too.
        #expect(ticks[7].scheduled > ticks[6].scheduled.advanced(by: period))
    }

    @Test func intervalBurstPolicyDeliversMissedTicks() throws {
        let runtime = try Runtime.currentThread()
        let offsets = try runtime.run { () async throws -> [Int64] in
            let start = TideClock.Instant.now
            var offsets: [Int64] = []
            var iterator = try Tide.interval(
                every: .milliseconds(10), startingAt: start, missedTickPolicy: .burst
            ).makeAsyncIterator()
            _ = await iterator.next()
            try await Tide.sleep(for: .milliseconds(35))
            for _ in 0..<3 {
                guard let tick = await iterator.next() else { break }
                offsets.append((tick.nanoseconds - start.nanoseconds) / 1_000_000)
            }
            return offsets
        }
        #expect(offsets == [10, 20, 30])
    }

    @Test func clockWorksWithTaskSleep() throws {
        let runtime = try Runtime.currentThread()
        let elapsed = try runtime.run { () async throws -> Duration in
            let clock = TideClock()
            let start = clock.now
            try await Task.sleep(for: .milliseconds(15), clock: clock)
            return start.duration(to: clock.now)
        }
        #expect(elapsed >= .milliseconds(15))
    }

    /// Task.sleep in a task that prefers a Tide runtime arms Tide's timing wheel (the runtime is a
    /// SchedulingExecutor), on both flavours, and wakes on the runtime's threads.
    @Test func taskSleepUsesTheRuntimesTimers() throws {
        for runtime in [try Runtime.currentThread(), try Runtime.multiThread(workers: 2)] {
            defer { runtime.shutdown() }
            let (armed, slept, onRuntime) = try runtime.run {
                () async throws -> (Int, UInt64, Bool) in
                let start = monotonicNow()
                let sleeper = Tide.spawn { () async throws -> Bool in
                    try await Task.sleep(for: .milliseconds(30))
                    return Runtime.current === runtime
                }
                try await Tide.sleep(for: .milliseconds(10))
                let armed = runtime.metrics.timersArmed
                let onRuntime = try await sleeper.value
                return (armed, monotonicNow() - start, onRuntime)
            }
            #expect(armed == 1)
            #expect(slept >= 30_000_000)
            #expect(onRuntime)
        }
    }

    /// Task.sleep's wake-up is a task of its own without an executor preference. Run as a job of
    /// Tide's task executor, it hopped to Swift's global executor before resuming the sleeper:
    /// every sleep went through Dispatch's pool, and never ended while that pool's threads were
    /// all busy (two tests blocked in `run` on two cores). On the generic executor it resumes
    /// the sleeper on the runtime's own thread: nothing comes back from outside.
    @Test func taskSleepWakesWithoutLeavingTheRuntime() throws {
        for runtime in [try Runtime.currentThread(), try Runtime.multiThread(workers: 2)] {
            defer { runtime.shutdown() }
            let (before, after, onRuntime) = try runtime.run { () async throws -> (Int, Int, Bool) in
                let before = runtime.metrics.remoteSchedules
                try await Task.sleep(for: .milliseconds(5))
                return (before, runtime.metrics.remoteSchedules, Runtime.current === runtime)
            }
            #expect(after == before, "the sleep's wake-up came back from outside the runtime")
            #expect(onRuntime)
        }
    }

    /// A Task.sleep on Tide's wheel ends with `CancellationError` when its task is cancelled,
    /// long before its deadline, and the wake-up that fires later finds nothing to resume.
    @Test func taskSleepOnARuntimeIsCancellable() throws {
        for runtime in [try Runtime.currentThread(), try Runtime.multiThread(workers: 2)] {
            defer { runtime.shutdown() }
            let (threw, armedWhileSleeping) = try runtime.run { () async throws -> (Bool, Int) in
                let sleeper = Tide.spawn { () async -> Bool in
                    do {
                        try await Task.sleep(for: .seconds(30))
                        return false
                    } catch {
                        return error is CancellationError
                    }
                }
                // Cancelled while it sleeps, not before it starts (bounded: 2 s at most).
                var armed = 0
                for _ in 0..<2_000 where armed == 0 {
                    try await Tide.sleep(for: .milliseconds(1))
                    armed = runtime.metrics.timersArmed
                }
                sleeper.cancel()
                return (try await sleeper.value, armed)
            }
            #expect(armedWhileSleeping == 1)
            #expect(threw)
        }
    }

    /// `remoteSchedules` counts what other threads queue, and only that.
    @Test func remoteSchedulesCountsWorkQueuedFromOtherThreads() throws {
        for runtime in [try Runtime.currentThread(), try Runtime.multiThread(workers: 2)] {
            defer { runtime.shutdown() }
            let spawnedBefore = runtime.metrics.tasksSpawned
            let (before, afterLocal, afterRemote) = try runtime.run {
                () async throws -> (Int, Int, Int) in
                let before = runtime.metrics.remoteSchedules
                // A poll task spawned and finished on the runtime's thread (counted by that
                // thread's own counters), then three from a plain thread (the shared ones).
                #expect(try await runtime.spawn(ready(0)).value == 0)
                // Spawned and woken on the runtime's threads: not remote.
                let (tx, rx) = try Channel<Int>.bounded(capacity: 1)
                let local = Tide.spawn { try await rx.receive() ?? -1 }
                try await Tide.sleep(for: .milliseconds(1))
                try await tx.send(1)
                let localValue = try await local.value
                let afterLocal = runtime.metrics.remoteSchedules
                // Three poll tasks spawned from a plain thread: three remote schedules.
                let handles = Synchronization.Mutex<[PollTaskHandle<Int>]>([])
                let spawner = TestThread {
                    for value in 0..<3 {
                        guard let handle = try? runtime.spawn(ready(value)) else { return }
                        handles.withLock { $0.append(handle) }
                    }
                }
                spawner.join()
                let afterRemote = runtime.metrics.remoteSchedules
                var sum = localValue
                for handle in handles.withLock({ $0 }) { sum += try await handle.value }
                #expect(sum == 1 + 0 + 1 + 2)
                return (before, afterLocal, afterRemote)
            }
            #expect(afterLocal == before)
            #expect(afterRemote - afterLocal == 3)
            let metrics = runtime.metrics
            #expect(metrics.tasksSpawned - spawnedBefore == 1 + 1 + 3)  // run's body is not spawned
            #expect(metrics.pollTasksAlive == 0)
        }
    }

    @Test func idleRuntimeSleepsInsteadOfSpinning() throws {
        let runtime = try Runtime.currentThread()
        let (cpu, wall) = try runtime.run { () async throws -> (UInt64, UInt64) in
            let cpuStart = threadCPUNanoseconds()
            let wallStart = monotonicNow()
            try await Tide.sleep(for: .milliseconds(300))
            return (threadCPUNanoseconds() - cpuStart, monotonicNow() - wallStart)
        }
        // A spinning loop would use about the whole wall time; a parked one a tiny fraction.
        #expect(cpu * 10 < wall, "CPU \(cpu) ns over \(wall) ns wall")
    }
}
