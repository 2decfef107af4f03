import Synchronization
import TideCore

/// Counts what happens to the wakers of one test: clones, drops, wakes. The data pointer is the
/// counter itself (unretained: the test keeps it alive).
final class WakerCounter: Sendable {
    let clones = Atomic<Int>(0)
    let drops = Atomic<Int>(0)
    let wakes = Atomic<Int>(0)
    let wakesByRef = Atomic<Int>(0)

    static let vtable = WakerVTable(
        clone: { data in
            Unmanaged<WakerCounter>.fromOpaque(data!).takeUnretainedValue()
                .clones.add(1, ordering: .relaxed)
            return data
        },
        wake: { data in
            let counter = Unmanaged<WakerCounter>.fromOpaque(data!).takeUnretainedValue()
            counter.wakes.add(1, ordering: .relaxed)
            counter.drops.add(1, ordering: .relaxed)
        },
        wakeByRef: { data in
            Unmanaged<WakerCounter>.fromOpaque(data!).takeUnretainedValue()
                .wakesByRef.add(1, ordering: .relaxed)
        },
        drop: { data in
            Unmanaged<WakerCounter>.fromOpaque(data!).takeUnretainedValue()
                .drops.add(1, ordering: .relaxed)
        }
    )

    /// A waker that counts as one live reference (the "original").
    func makeWaker() -> Waker {
        clones.add(1, ordering: .relaxed)
        return Waker(data: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), vtable: Self.vtable)
    }

    /// References created minus references released: zero when nothing leaked.
    var live: Int { clones.load(ordering: .relaxed) - drops.load(ordering: .relaxed) }
    var totalWakes: Int { wakes.load(ordering: .relaxed) + wakesByRef.load(ordering: .relaxed) }
}

/// A one-shot event for tests: a future that is pending until `fire()`, keeping at most one waker.
final class TestSignal: @unchecked Sendable {
    private let lock = Mutex<Bool>(false)
    private let waker = AtomicWaker()

    func fire() {
        lock.withLock { $0 = true }
        waker.wake()
    }

    var isFired: Bool { lock.withLock { $0 } }

    /// Drops the stored waker (what a cancelled waiter does).
    func forget() { waker.clear() }

    func future<T>(_ value: T) -> PollFn<T> {
        pollFn { context in
            if self.isFired { return .ready(value) }
            self.waker.register(context)
            return self.isFired ? .ready(value) : .pending
        }
    }
}

/// A future that returns .pending (waking itself) `count` times before it is ready.
struct YieldTimes: Future {
    var remaining: Int
    let value: Int

    mutating func poll(_ context: inout Context) -> Poll<Int> {
        if remaining == 0 { return .ready(value) }
        remaining -= 1
        context.wake()
        return .pending
    }
}
