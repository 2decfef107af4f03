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
    private let registrations = Atomic<Int>(0)

    /// Whether some poll of `future` has registered a waker (and so is parked on the gate).
    var hasWaiter: Bool { registrations.load(ordering: .acquiring) > 0 }

    func set() {
        open.store(true, ordering: .releasing)
        waker.wake()
    }

    var future: PollFn<Void> {
        pollFn { context in
            if self.open.load(ordering: .acquiring) { return .ready(()) }
            self.waker.register(context)
            self.registrations.add(1, ordering: .releasing)
            return self.open.load(ordering: .acquiring) ? .ready(()) : .pending
        }
    }
}

/// Whether the test binary was built with `--sanitize=thread` (its runtime defines __tsan_init).
let runningUnderThreadSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil

/// A shareable atomic counter (an `Atomic` cannot be stored in an array).
final class AtomicCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// Runs the `tide` executable built next to the test bundle and returns its exit status and
/// output (stdout and stderr). Bounded: the child is killed after 60 s.
func runTideCommand(_ arguments: [String]) throws -> (status: Int32, text: String) {
    var path = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/exe", &path, path.count - 1)
    guard length > 0 else { throw SystemError("readlink", code: errno) }
    var directory = String(decoding: path[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    while let slash = directory.lastIndex(of: "/"), !directory.hasSuffix(".xctest") {
        directory = String(directory[..<slash])
        if directory.isEmpty { break }
    }
    if let slash = directory.lastIndex(of: "/") { directory = String(directory[..<slash]) }
    let executable = directory + "/tide"
    guard access(executable, X_OK) == 0 else { throw SystemError("access(\(executable))", code: errno) }
    var pipeFDs: [Int32] = [0, 0]
    guard pipe(&pipeFDs) == 0 else { throw SystemError("pipe", code: errno) }
    let argv = (["timeout", "60", executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
    posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
    var child = pid_t()
    let spawned = posix_spawnp(&child, "timeout", &actions, nil, argv, environ)
    posix_spawn_file_actions_destroy(&actions)
    close(pipeFDs[1])
    guard spawned == 0 else {
        close(pipeFDs[0])
        throw SystemError("posix_spawnp", code: spawned)
    }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(pipeFDs[0], &buffer, buffer.count)
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    close(pipeFDs[0])
    var status: Int32 = 0
    waitpid(child, &status, 0)
    let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitCode, String(decoding: bytes, as: UTF8.self))
}

/// Runs `body`; if it has not returned after `seconds`, prints `name` and aborts the test process,
/// so that a lost wakeup fails the run instead of hanging it.
func withWatchdog<T>(seconds: Int = 60, _ name: String, _ body: () throws -> T) rethrows -> T {
    let finished = AtomicCounter()
    let watchdog = TestThread {
        var waited = 0
        while finished.value == 0 && waited < seconds * 1_000 {
            usleep(1_000)
            waited += 1
        }
        if finished.value == 0 {
            let message = "\(name): still running after \(seconds) s, aborting\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            abort()
        }
    }
    defer {
        finished.increment()
        watchdog.join()
    }
    return try body()
}
