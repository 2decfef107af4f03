// W4 idle: spawn N=200,000 tasks that each wait on their own never-signalled continuation (Swift
// tasks, on Tide or on the built-in executor: the same code, so the ratio compares the tasks) or
// oneshot (Tide's poll tasks, which have no continuations) or promise callback (nio); read RSS
// before and after.
// Metrics: bytes_per_task = (RSS after - RSS before) / N, and spawn_s = time from the first
// spawn until every task is parked.
//
// Each combination runs in its own child process (`--child idle <runtime> <scale>`), so that the
// heap it measures holds nothing from other runtimes. The bookkeeping arrays are allocated before
// the first RSS reading, so they are not counted. The child exits with the tasks still parked.
// asyncalgo has no task model of its own: skipped.

#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import Tide

private let baseCount = 200_000

func idleWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name, ownProcess: true) { scale in
            let count = scaled(baseCount, scale)
            return try withTideRuntime(flavor) {
                let parked = Counter()
                let slots = ContinuationSlots(count: count)
                let before = residentBytes()
                let start = monotonicNanos()
                for index in 0..<count {
                    Tide.spawn {
                        await withUnsafeContinuation { continuation in
                            slots.store(continuation, at: index)
                            parked.increment()
                        }
                    }
                }
                while parked.current < count { await Tide.yield() }
                let spawnSeconds = secondsSince(start)
                return idleMetrics(before: before, count: count, spawnSeconds: spawnSeconds)
            }
        })
    }
    entries.append(Entry("tide-poll", ownProcess: true) { scale in
        let count = scaled(baseCount, scale)
        return try withPollRuntime { runtime in
            let parked = Counter()
            var senders: [OneshotSender<Int>] = []
            senders.reserveCapacity(count)
            let before = residentBytes()
            let start = monotonicNanos()
            for _ in 0..<count {
                let (sender, receiver) = Oneshot<Int>.make()
                senders.append(sender)
                try runtime.spawn(ParkedReceive(inner: receiver.receiveFuture(), parked: parked))
            }
            while parked.current < count { await Tide.yield() }
            let spawnSeconds = secondsSince(start)
            let metrics = idleMetrics(before: before, count: count, spawnSeconds: spawnSeconds)
            withExtendedLifetime(senders) {}
            return metrics
        }
    })
    entries.append(Entry("swift-default", ownProcess: true) { scale in
        let count = scaled(baseCount, scale)
        let parked = Counter()
        let slots = ContinuationSlots(count: count)
        let before = residentBytes()
        let start = monotonicNanos()
        for index in 0..<count {
            Task {
                await withUnsafeContinuation { continuation in
                    slots.store(continuation, at: index)
                    parked.increment()
                }
            }
        }
        while parked.current < count { usleep(200) }
        let spawnSeconds = secondsSince(start)
        return idleMetrics(before: before, count: count, spawnSeconds: spawnSeconds)
    })
    entries.append(Entry("nio", ownProcess: true) { scale in
        let count = scaled(baseCount, scale)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Array(group.makeIterator())
        let holders = loops.map { _ in PromiseHolder(capacity: count / loops.count + 1) }
        let before = residentBytes()
        let start = monotonicNanos()
        var made: [EventLoopFuture<Void>] = []
        for (index, loop) in loops.enumerated() {
            let share = count / loops.count + (index < count % loops.count ? 1 : 0)
            let holder = holders[index]
            made.append(loop.submit {
                for _ in 0..<share {
                    let promise = loop.makePromise(of: Int.self)
                    promise.futureResult.whenSuccess { _ in holder.fired += 1 }
                    holder.promises.append(promise)
                }
            })
        }
        for future in made { try future.wait() }
        let spawnSeconds = secondsSince(start)
        return idleMetrics(before: before, count: count, spawnSeconds: spawnSeconds)
    })
    return Workload(
        name: "idle", primaryMetric: "bytes_per_task", higherIsBetter: false, entries: entries)
}

private func idleMetrics(before: Int, count: Int, spawnSeconds: Double)
    -> [(name: String, value: Double)]
{
    let after = residentBytes()
    return [("bytes_per_task", Double(after - before) / Double(count)), ("spawn_s", spawnSeconds)]
}

/// A oneshot receive that counts its first poll, so the spawner knows when every task is parked.
struct ParkedReceive: Future {
    var inner: OneshotReceiveFuture<Int>
    let parked: Counter
    var counted = false

    mutating func poll(_ context: inout Context) -> Poll<Result<Int, OneshotError>> {
        if !counted {
            counted = true
            parked.increment()
        }
        return inner.poll(&context)
    }
}

/// Where each idle Swift task leaves its continuation (never resumed); one slot per task.
private final class ContinuationSlots: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<UnsafeContinuation<Void, Never>?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    func store(_ continuation: UnsafeContinuation<Void, Never>, at index: Int) {
        slots[index] = continuation
    }
}

/// The never-fulfilled promises of one event loop; touched only on that loop.
private final class PromiseHolder: @unchecked Sendable {
    var promises: [EventLoopPromise<Int>] = []
    var fired = 0

    init(capacity: Int) { promises.reserveCapacity(capacity) }
}
