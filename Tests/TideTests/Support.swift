#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Tide

/// Starts an OS thread running `body`; `join()` waits for it. For wakes that come from outside
/// any runtime.
final class TestThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<TestThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed")
    }

    func join() {
        pthread_join(thread, nil)
    }
}

extension TestRandom {
    /// A value in `0..<bound`.
    mutating func next(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// Spins for up to `count` iterations of sched_yield: a short random delay between operations.
func jitter(_ random: inout TestRandom, upTo count: Int = 20) {
    for _ in 0..<random.next(count) { sched_yield() }
}

/// CPU time used by the calling thread, in nanoseconds.
func threadCPUNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

func monotonicNow() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// A flag shared with a poll-based future: pending until set.
final class Gate: @unchecked Sendable {
    let open = Atomic<Bool>(false)
    let waker = AtomicWaker()

    func set() {
        open.store(true, ordering: .releasing)
        waker.wake()
    }

    var future: PollFn<Void> {
        pollFn { context in
            if self.open.load(ordering: .acquiring) { return .ready(()) }
            self.waker.register(context)
            return self.open.load(ordering: .acquiring) ? .ready(()) : .pending
        }
    }
}

/// Whether the test binary was built with `--sanitize=thread` (its runtime defines __tsan_init).
let runningUnderThreadSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
