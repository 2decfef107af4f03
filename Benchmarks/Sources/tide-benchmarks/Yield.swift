// W8 yield: one task calls the runtime's yield 10,000,000 times. Metric: ns_per_yield.

import NIOCore
import NIOPosix
import Tide

private let baseCount = 10_000_000

/// A poll-based yield: wakes its own task and returns `.pending` once, then is ready.
struct YieldNow: Future {
    var yielded = false

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        if yielded { return .ready(()) }
        yielded = true
        context.wake()
        return .pending
    }
}

/// Awaits `YieldNow` `count` times in a row (a poll task's loop of yields).
struct YieldLoop: Future {
    var remaining: Int
    var current = YieldNow()

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while remaining > 0 {
            guard case .ready = current.poll(&context) else { return .pending }
            remaining -= 1
            current = YieldNow()
        }
        return .ready(())
    }
}

func yieldWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { scale in
            let count = scaled(baseCount, scale)
            let nanos = try withTideRuntime(flavor) {
                let start = monotonicNanos()
                for _ in 0..<count { await Tide.yield() }
                return monotonicNanos() - start
            }
            return [("ns_per_yield", Double(nanos) / Double(count))]
        })
    }
    entries.append(Entry("tide-poll") { scale in
        let count = scaled(baseCount, scale)
        let nanos = try withPollRuntime { runtime in
            let start = monotonicNanos()
            try await runtime.spawn(YieldLoop(remaining: count)).value
            return monotonicNanos() - start
        }
        return [("ns_per_yield", Double(nanos) / Double(count))]
    })
    entries.append(Entry("swift-default") { scale in try plainTaskYield(scale: scale) })
    entries.append(Entry("tide-global") { scale in
        try Tide.installAsGlobalExecutor(try Runtime.multiThread(workers: 2))
        return try plainTaskYield(scale: scale)
    })
    entries.append(Entry("nio") { scale in
        let count = scaled(baseCount, scale)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let start = monotonicNanos()
        let done = loop.makePromise(of: Void.self)
        loop.execute { Resubmitter(loop: loop, remaining: count, done: done).step() }
        try done.futureResult.wait()
        return [("ns_per_yield", Double(monotonicNanos() - start) / Double(count))]
    })
    return Workload(
        name: "yield", primaryMetric: "ns_per_yield", higherIsBetter: false, entries: entries)
}

/// W8 with `Task.yield()` in a plain task: swift-default, and tide-global after installing Tide.
private func plainTaskYield(scale: Double) throws -> [(name: String, value: Double)] {
    let count = scaled(baseCount, scale)
    let nanos = try blockingOnGlobalExecutor {
        let start = monotonicNanos()
        for _ in 0..<count { await Task.yield() }
        return monotonicNanos() - start
    }
    return [("ns_per_yield", Double(nanos) / Double(count))]
}

/// NIO's yield: a closure that re-submits itself to its event loop with `execute`.
/// Touched only on `loop`.
private final class Resubmitter: @unchecked Sendable {
    let loop: any EventLoop
    var remaining: Int
    let done: EventLoopPromise<Void>

    init(loop: any EventLoop, remaining: Int, done: EventLoopPromise<Void>) {
        self.loop = loop
        self.remaining = remaining
        self.done = done
    }

    func step() {
        remaining -= 1
        if remaining <= 0 {
            done.succeed(())
        } else {
            loop.execute { self.step() }
        }
    }
}
