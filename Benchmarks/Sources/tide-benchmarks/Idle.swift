// W4 idle: spawn N=200,000 tasks that each wait on their own never-signalled continuation (Swift
// tasks, on Tide or on the built-in executor: the same code, so the ratio compares the tasks) or
// waker (Tide's poll tasks, whose continuation is their waker) or promise callback (nio); read
// RSS before and after. A continuation or waker goes into a slot allocated before the first
// reading, so what is measured is the task itself. (A Tide oneshot per task would add its
// storage, sender and receiver: 160 bytes.)
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
        entries.append(Entry(flavor.name) { scale in
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
    entries.append(Entry("tide-poll") { scale in
        let count = scaled(baseCount, scale)
        return try withPollRuntime { runtime in
            let slots = WakerSlots(count: count)
            let before = residentBytes()
            let start = monotonicNanos()
            for index in 0..<count {
                try runtime.spawn(ParkedOnSlot(slots: slots, index: index))
            }
            while slots.parked.current < count { await Tide.yield() }
            let spawnSeconds = secondsSince(start)
            return idleMetrics(before: before, count: count, spawnSeconds: spawnSeconds)
        }
    })
    entries.append(Entry("swift-default") { scale in
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
    entries.append(Entry("nio") { scale in
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

/// A poll task of W4: leaves a clone of its waker in its slot (what the Swift tasks do with their
/// continuation) and stays pending.
struct ParkedOnSlot: Future {
    let slots: WakerSlots
    let index: Int

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        slots.store(context.cloneWaker(), at: index)
        return .pending
    }
}

/// Where each idle poll task leaves its waker (never woken); one slot per task, allocated before
/// the first RSS reading like `ContinuationSlots`.
final class WakerSlots: @unchecked Sendable {
    let slots: UnsafeMutableBufferPointer<(data: UnsafeRawPointer?, vtable: WakerVTable)?>
    let parked = Counter()

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    /// Keeps `waker` at `index`; the first store for a slot counts its task as parked.
    func store(_ waker: consuming Waker, at index: Int) {
        if slots[index] == nil { parked.increment() }
        if let old = slots[index] { _ = Waker(data: old.data, vtable: old.vtable) }
        slots[index] = waker.intoRaw()
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
