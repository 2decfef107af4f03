// W5 timers: N=200,000 tasks each sleep a pseudo-random duration in [0, 500) ms (seeded LCG, the
// same durations for every runtime). Each task computes its own deadline when it starts
// (CLOCK_MONOTONIC now + its duration) and records lateness = wake time - deadline.
// Metrics: wall_s (first spawn to last wake), late_p50_ms, late_p99_ms.
//
// The Swift tasks are unstructured (handles awaited in order), not task-group children: a task
// group removes a finished child in O(children), which at 200,000 children made the group itself,
// not the timers, the cost (76% of the profile).
// tide-global: the swift-default code (plain Task {} and Task.sleep) after
// Tide.installAsGlobalExecutor.
//
// Every runtime runs in a child process of its own: run in the harness's process, a p99 read
// 1.5-17 ms where a fresh process read 0.4-0.8 ms for the same runtime and binary (threads and
// heap left by the workloads before it), and a child started right after an in-process entry
// overlapped that entry's clean-up on the same two cores.
// asyncalgo has no timers of its own: skipped.

import NIOCore
import NIOPosix
import Tide

private let baseCount = 200_000

func timersWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { scale in
            let durations = timerDurations(count: scaled(baseCount, scale))
            let lateness = SlotArray(count: durations.count)
            let start = monotonicNanos()
            try withTideRuntime(flavor) {
                var handles: [JoinHandle<Void>] = []
                handles.reserveCapacity(durations.count)
                for (index, duration) in durations.enumerated() {
                    handles.append(Tide.spawn {
                        let deadline = TideClock.Instant.now.advanced(by: .nanoseconds(duration))
                        try await Tide.sleep(until: deadline)
                        lateness[index] = monotonicNanos() - deadline.nanoseconds
                    })
                }
                for handle in handles { try await handle.value }
            }
            return timerMetrics(lateness, start: start)
        })
    }
    entries.append(Entry("tide-poll") { scale in
        let durations = timerDurations(count: scaled(baseCount, scale))
        let lateness = SlotArray(count: durations.count)
        let start = monotonicNanos()
        try withPollRuntime { runtime in
            let remaining = Counter()
            remaining.value.store(durations.count, ordering: .releasing)
            let (allDone, waitAll) = Oneshot<Void>.make()
            for (index, duration) in durations.enumerated() {
                try runtime.spawn(TimerTask(
                    runtime: runtime, index: index, duration: duration, lateness: lateness,
                    remaining: remaining, allDone: allDone))
            }
            try await waitAll.receive()
        }
        return timerMetrics(lateness, start: start)
    })
    entries.append(Entry("swift-default") { scale in
        try plainTaskTimers(scale: scale)
    })
    // Plain Task.sleep on plain Task {}, as swift-default runs it, but with Tide installed as
    // Swift's global executor: its own process, since installing is for the life of a process.
    entries.append(Entry("tide-global") { scale in
        try Tide.installAsGlobalExecutor(try Runtime.multiThread(workers: 2))
        return try plainTaskTimers(scale: scale)
    })
    entries.append(Entry("nio") { scale in
        let durations = timerDurations(count: scaled(baseCount, scale))
        let lateness = SlotArray(count: durations.count)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let remaining = Counter()
        remaining.value.store(durations.count, ordering: .releasing)
        let done = loops[0].makePromise(of: Void.self)
        let start = monotonicNanos()
        for (loopIndex, loop) in loops.enumerated() {
            loop.execute {
                // This loop's share: every loops.count-th timer.
                for index in stride(from: loopIndex, to: durations.count, by: loops.count) {
                    let duration = durations[index]
                    let deadline = monotonicNanos() + duration
                    loop.scheduleTask(in: .nanoseconds(duration)) {
                        lateness[index] = monotonicNanos() - deadline
                        if remaining.decrement() == 0 { done.succeed(()) }
                    }
                }
            }
        }
        try done.futureResult.wait()
        return timerMetrics(lateness, start: start)
    })
    return Workload(
        name: "timers", primaryMetric: "late_p99_ms", higherIsBetter: false, entries: entries)
}

/// W5 the plain Swift way: unstructured `Task {}`s that `Task.sleep`, awaited in order, all on
/// whatever the global executor is (Swift's own, or Tide once installed).
private func plainTaskTimers(scale: Double) throws -> [(name: String, value: Double)] {
    let durations = timerDurations(count: scaled(baseCount, scale))
    let lateness = SlotArray(count: durations.count)
    let start = monotonicNanos()
    try blockingOnGlobalExecutor {
        var tasks: [Task<Void, any Error>] = []
        tasks.reserveCapacity(durations.count)
        for (index, duration) in durations.enumerated() {
            tasks.append(Task {
                let deadline = monotonicNanos() + duration
                try await Task.sleep(for: .nanoseconds(duration))
                lateness[index] = monotonicNanos() - deadline
            })
        }
        for task in tasks { try await task.value }
    }
    return timerMetrics(lateness, start: start)
}

private func timerMetrics(_ lateness: SlotArray, start: Int64) -> [(name: String, value: Double)] {
    [("wall_s", secondsSince(start))] + latenessMetrics(lateness.values)
}

/// A poll task of W5: on its first poll computes its deadline and arms a `Sleep`; when that
/// completes records its lateness, and the last one to finish signals `allDone`.
struct TimerTask: Future {
    let runtime: Runtime
    let index: Int
    let duration: Int64
    let lateness: SlotArray
    let remaining: Counter
    let allDone: OneshotSender<Void>
    var sleep: Sleep?

    init(
        runtime: Runtime, index: Int, duration: Int64, lateness: SlotArray, remaining: Counter,
        allDone: OneshotSender<Void>
    ) {
        self.runtime = runtime
        self.index = index
        self.duration = duration
        self.lateness = lateness
        self.remaining = remaining
        self.allDone = allDone
    }

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        if sleep == nil {
            let deadline = TideClock.Instant.now.advanced(by: .nanoseconds(duration))
            sleep = Sleep(until: deadline, on: runtime)
        }
        guard case .ready = sleep!.poll(&context) else { return .pending }
        lateness[index] = monotonicNanos() - sleep!.deadline.nanoseconds
        if remaining.decrement() == 0 { try? allDone.send(()) }
        return .ready(())
    }
}
