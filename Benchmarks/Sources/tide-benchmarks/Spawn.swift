// W1 spawn: spawn N tasks that each return their index, then await all of them and sum.
// Metrics: tasks_per_s (N / wall time, spawning and joining included) and wall_s.
//
// Every runtime runs in a child process of its own: a million tasks take about 1.5 GB of heap,
// and what one runtime leaves in malloc's arenas (grown, trimmed, fragmented) changed the next
// one's result by up to 3x when they shared a process.

import NIOCore
import NIOPosix
import Tide

private let baseCount = 1_000_000

func spawnWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { scale in
            let count = scaled(baseCount, scale)
            let start = monotonicNanos()
            let sum = try withTideRuntime(flavor) {
                var handles: [JoinHandle<Int>] = []
                handles.reserveCapacity(count)
                for index in 0..<count { handles.append(Tide.spawn { index }) }
                var sum = 0
                for handle in handles { sum &+= try await handle.value }
                return sum
            }
            return spawnMetrics(count: count, sum: sum, start: start)
        })
    }
    entries.append(Entry("tide-poll") { scale in
        let count = scaled(baseCount, scale)
        let start = monotonicNanos()
        let sum = try withPollRuntime { runtime in
            var handles: [PollTaskHandle<Int>] = []
            handles.reserveCapacity(count)
            for index in 0..<count { handles.append(try runtime.spawn(ready(index))) }
            // Joined in order, as the Swift flavours await their handles: one future walks the
            // handles and waits (registers a waker) only on the first one not finished yet.
            return try await SumInOrder(handles: handles).wait().get()
        }
        return spawnMetrics(count: count, sum: sum, start: start)
    })
    entries.append(Entry("swift-default") { scale in
        try plainTaskSpawn(scale: scale)
    })
    entries.append(Entry("tide-global") { scale in
        try Tide.installAsGlobalExecutor(try Runtime.multiThread(workers: 2))
        return try plainTaskSpawn(scale: scale)
    })
    entries.append(Entry("nio") { scale in
        let count = scaled(baseCount, scale)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let start = monotonicNanos()
        // Like the Tide and Swift tasks, the work is spawned from inside the runtime: each loop
        // submits its share (every loops.count-th index) to itself and joins it.
        let partials = loops.enumerated().map { loopIndex, loop in
            loop.flatSubmit {
                var futures: [EventLoopFuture<Int>] = []
                futures.reserveCapacity(count / loops.count + 1)
                for index in stride(from: loopIndex, to: count, by: loops.count) {
                    futures.append(loop.submit { index })
                }
                return EventLoopFuture.whenAllSucceed(futures, on: loop).map { $0.reduce(0, &+) }
            }
        }
        let sum = try partials.reduce(0) { try $0 &+ $1.wait() }
        return spawnMetrics(count: count, sum: sum, start: start)
    })
    return Workload(
        name: "spawn", primaryMetric: "tasks_per_s", higherIsBetter: true, entries: entries)
}

/// W1 with plain `Task {}`: swift-default, and tide-global after installing Tide.
private func plainTaskSpawn(scale: Double) throws -> [(name: String, value: Double)] {
    let count = scaled(baseCount, scale)
    let start = monotonicNanos()
    let sum = try blockingOnGlobalExecutor {
        var tasks: [Task<Int, Never>] = []
        tasks.reserveCapacity(count)
        for index in 0..<count { tasks.append(Task { index }) }
        var sum = 0
        for task in tasks { sum &+= await task.value }
        return sum
    }
    return spawnMetrics(count: count, sum: sum, start: start)
}

private func spawnMetrics(count: Int, sum: Int, start: Int64) -> [(name: String, value: Double)] {
    let wall = secondsSince(start)
    precondition(sum == count * (count - 1) / 2, "spawn: wrong sum \(sum)")
    return [("tasks_per_s", Double(count) / wall), ("wall_s", wall)]
}

/// W1's poll-task join: sums the outputs of `handles` in order, waiting on one handle at a time
/// (what `for handle in handles { sum += await handle.value }` does for Swift tasks).
struct SumInOrder: Future {
    var handles: [PollTaskHandle<Int>]
    var next = 0
    var sum = 0

    mutating func poll(_ context: inout Context) -> Poll<Result<Int, JoinError>> {
        while next < handles.count {
            // A copy of the handle, as `for handle in handles` makes: polled in place, the
            // array (shared with the caller) was copied whole on the first poll.
            var handle = handles[next]
            guard case .ready(let result) = handle.poll(&context) else { return .pending }
            switch result {
            case .success(let value): sum &+= value
            case .failure(let error): return .ready(.failure(error))
            }
            next += 1
        }
        return .ready(.success(sum))
    }
}
