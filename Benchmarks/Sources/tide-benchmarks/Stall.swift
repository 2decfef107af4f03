// W7 stall: on 2 workers, two tasks busy-spin for 1 s without yielding while 100 tasks tick on a
// 10 ms periodic schedule. Metric: worst_late_ms, the worst lateness of the ticks whose deadline
// falls inside the spin (from the first spinner's start to the last one's end).
//
// Every ticker keeps a fixed schedule (deadline k = its start + k·10 ms, "burst" semantics), so a
// deadline missed during the spin is still waited for and recorded, late. The tickers start
// 100 ms before the spinners and stop 30 ms after both spinners finished. tide-ct (and tide-mt
// while it is shimmed) has one thread: its two spinners run one after the other and the timers
// wait for both; that is the honest number. asyncalgo has no tasks or timers: skipped.

import NIOCore
import NIOPosix
import Synchronization
import Tide

private let tickerCount = 100
private let periodNanos: Int64 = 10_000_000
private let spinNanos: Int64 = 1_000_000_000
private let warmupNanos: Int64 = 100_000_000
private let cooldownNanos: Int64 = 30_000_000

func stallWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { _ in
            let log = StallLog()
            try withTideRuntime(flavor) {
                let base = monotonicNanos()
                let tickers = log.tickers.map { ticker in
                    Tide.spawn {
                        var k: Int64 = 1
                        while !log.stop.isSet {
                            let deadline = base + k * periodNanos
                            try await Tide.sleep(until: TideClock.Instant(nanoseconds: deadline))
                            ticker.record(deadline: deadline, at: monotonicNanos())
                            k += 1
                        }
                    }
                }
                try await Tide.sleep(for: .nanoseconds(warmupNanos))
                let spinners = (0..<2).map { index in Tide.spawn { log.spin(index) } }
                for spinner in spinners { try await spinner.value }
                try await Tide.sleep(for: .nanoseconds(cooldownNanos))
                log.stop.set()
                for ticker in tickers { try await ticker.value }
            }
            return log.metrics()
        })
    }
    entries.append(Entry("tide-poll") { _ in
        let log = StallLog()
        try withPollRuntime { runtime in
            let base = monotonicNanos()
            let tickers = try log.tickers.map { ticker in
                try runtime.spawn(TickerTask(runtime: runtime, base: base, log: log, ticker: ticker))
            }
            try await Tide.sleep(for: .nanoseconds(warmupNanos))
            let spinners = try (0..<2).map { index in
                try runtime.spawn(lazy { log.spin(index) })
            }
            for spinner in spinners { try await spinner.value }
            try await Tide.sleep(for: .nanoseconds(cooldownNanos))
            log.stop.set()
            for ticker in tickers { try await ticker.value }
        }
        return log.metrics()
    })
    entries.append(Entry("swift-default") { _ in
        let log = StallLog()
        try blockingOnGlobalExecutor {
            let base = monotonicNanos()
            let tickers = log.tickers.map { ticker in
                Task {
                    var k: Int64 = 1
                    while !log.stop.isSet {
                        let deadline = base + k * periodNanos
                        let wait = deadline - monotonicNanos()
                        if wait > 0 { try await Task.sleep(for: .nanoseconds(wait)) }
                        ticker.record(deadline: deadline, at: monotonicNanos())
                        k += 1
                    }
                }
            }
            try await Task.sleep(for: .nanoseconds(warmupNanos))
            let spinners = (0..<2).map { index in Task { log.spin(index) } }
            for spinner in spinners { await spinner.value }
            try await Task.sleep(for: .nanoseconds(cooldownNanos))
            log.stop.set()
            for ticker in tickers { try await ticker.value }
        }
        return log.metrics()
    })
    entries.append(Entry("nio") { _ in
        let log = StallLog()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let base = monotonicNanos()
        var stopped: [EventLoopFuture<Void>] = []
        for (index, ticker) in log.tickers.enumerated() {
            let loop = loops[index % loops.count]
            let done = loop.makePromise(of: Void.self)
            stopped.append(done.futureResult)
            loop.execute { scheduleTick(1, base: base, loop: loop, log: log, ticker: ticker, done: done) }
        }
        sleepNanos(warmupNanos)
        let spinners = loops.enumerated().map { index, loop in loop.submit { log.spin(index) } }
        for spinner in spinners { try spinner.wait() }
        sleepNanos(cooldownNanos)
        log.stop.set()
        for future in stopped { try future.wait() }
        return log.metrics()
    })
    return Workload(
        name: "stall", primaryMetric: "worst_late_ms", higherIsBetter: false, entries: entries)
}

/// One NIO tick: scheduled for deadline k on `loop`; records itself and schedules tick k+1.
private func scheduleTick(
    _ k: Int64, base: Int64, loop: any EventLoop, log: StallLog, ticker: TickRecord,
    done: EventLoopPromise<Void>
) {
    if log.stop.isSet {
        done.succeed(())
        return
    }
    let deadline = base + k * periodNanos
    loop.scheduleTask(in: .nanoseconds(max(0, deadline - monotonicNanos()))) {
        ticker.record(deadline: deadline, at: monotonicNanos())
        scheduleTick(k + 1, base: base, loop: loop, log: log, ticker: ticker, done: done)
    }
}

private func sleepNanos(_ nanos: Int64) {
    var request = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 { request = remaining }
}

/// A poll-task ticker: sleeps until each deadline of its schedule on the runtime's wheel.
struct TickerTask: Future {
    let runtime: Runtime
    let base: Int64
    let log: StallLog
    let ticker: TickRecord
    var k: Int64 = 1
    var sleep: Sleep?

    init(runtime: Runtime, base: Int64, log: StallLog, ticker: TickRecord) {
        self.runtime = runtime
        self.base = base
        self.log = log
        self.ticker = ticker
    }

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            if sleep == nil {
                if log.stop.isSet { return .ready(()) }
                let deadline = TideClock.Instant(nanoseconds: base + k * periodNanos)
                sleep = Sleep(until: deadline, on: runtime)
            }
            guard case .ready = sleep!.poll(&context) else { return .pending }
            ticker.record(deadline: sleep!.deadline.nanoseconds, at: monotonicNanos())
            sleep = nil
            k += 1
        }
    }
}

/// The ticks of one ticker; written only by that ticker, read after it was joined.
final class TickRecord: @unchecked Sendable {
    var deadlines: [Int64] = []
    var lateness: [Int64] = []

    init() {
        deadlines.reserveCapacity(512)
        lateness.reserveCapacity(512)
    }

    func record(deadline: Int64, at now: Int64) {
        deadlines.append(deadline)
        lateness.append(now - deadline)
    }
}

/// Everything one W7 run shares: the tickers' records, the spinners' spans and the stop flag.
final class StallLog: Sendable {
    let tickers = (0..<tickerCount).map { _ in TickRecord() }
    /// start0, end0, start1, end1 of the two spinners.
    let spans = SlotArray(count: 4)
    let stop = StopFlag()

    /// Busy-spins for 1 s without yielding; records the span as spinner `index`.
    func spin(_ index: Int) {
        let start = monotonicNanos()
        spans[2 * index] = start
        var now = start
        while now - start < spinNanos { now = monotonicNanos() }
        spans[2 * index + 1] = now
    }

    func metrics() -> [(name: String, value: Double)] {
        let windowStart = min(spans[0], spans[2])
        let windowEnd = max(spans[1], spans[3])
        var worst: Int64 = 0
        for ticker in tickers {
            for (deadline, late) in zip(ticker.deadlines, ticker.lateness)
            where deadline >= windowStart && deadline <= windowEnd {
                worst = max(worst, late)
            }
        }
        return [("worst_late_ms", Double(worst) / 1e6)]
    }
}

/// A one-way flag: set once, read by many.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
