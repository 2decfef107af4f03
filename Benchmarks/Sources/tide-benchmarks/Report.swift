// Shared pieces of every workload: the measurement record, the RESULT line printer, the monotonic
// clock, RSS, percentiles, the seeded LCG and small thread-safe boxes.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One RESULT line: which runtime ran which workload, and its metrics in print order.
struct Measurement: Sendable {
    let runtime: String
    let workload: String
    let metrics: [(name: String, value: Double)]

    /// The value of metric `name`, if this measurement has it.
    func value(of name: String) -> Double? {
        metrics.first { $0.name == name }?.value
    }

    /// `RESULT <runtime> <workload> <metric>=<value> ...`, as WORKLOADS.md defines it.
    var line: String {
        let fields = metrics.map { "\($0.name)=\(format($0.value))" }
        return (["RESULT", runtime, workload] + fields).joined(separator: " ")
    }
}

/// Up to three decimals for small numbers, none for large ones; never scientific notation.
func format(_ value: Double, decimals: Int? = nil) -> String {
    let places = decimals ?? (abs(value) >= 1000 ? 0 : 3)
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    if places == 0 { return String(Int64(rounded)) }
    let negative = rounded < 0
    let magnitude = abs(rounded)
    let whole = Int64(magnitude)
    let fraction = Int64(((magnitude - Double(whole)) * scale).rounded())
    var digits = String(fraction)
    while digits.count < places { digits = "0" + digits }
    return (negative ? "-" : "") + String(whole) + "." + digits
}

/// Prints a line and flushes at once, so a parent process or a pipe sees it even if we crash.
func emit(_ line: String) {
    print(line)
    fflush(nil)
}

/// Nanoseconds of CLOCK_MONOTONIC (the clock TideClock and NIODeadline also read).
@inline(__always)
func monotonicNanos() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

/// Seconds elapsed since `start` (a `monotonicNanos()` reading).
func secondsSince(_ start: Int64) -> Double {
    Double(monotonicNanos() - start) / 1e9
}

/// Resident set size in bytes: resident pages (second field of /proc/self/statm) × page size.
func residentBytes() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard count > 0 else { return 0 }
    let fields = String(decoding: buffer[0..<count], as: UTF8.self).split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
    return pages * sysconf(Int32(_SC_PAGESIZE))
}

/// The value below which `fraction` of `sorted` lies (nearest rank); 0 for an empty array.
func percentile(_ sorted: [Int64], _ fraction: Double) -> Int64 {
    guard !sorted.isEmpty else { return 0 }
    let index = Int((Double(sorted.count - 1) * fraction).rounded())
    return sorted[min(max(index, 0), sorted.count - 1)]
}

/// The seeded pseudo-random durations of W5: the i-th value of a 64-bit LCG (Knuth's MMIX
/// constants), reduced to [0, 500) ms, in nanoseconds. Every runtime sleeps the same durations.
func timerDurations(count: Int, seed: UInt64 = 0x5EED) -> [Int64] {
    var state = seed
    var result: [Int64] = []
    result.reserveCapacity(count)
    for _ in 0..<count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let microseconds = Int64((state >> 33) % 500_000)
        result.append(microseconds * 1000)
    }
    return result
}

/// A fixed-size array of Int64 slots that many tasks write concurrently, each to its own index.
/// Reading happens only after every writer finished (joined), which orders the writes.
final class SlotArray: @unchecked Sendable {
    let pointer: UnsafeMutableBufferPointer<Int64>

    init(count: Int, initial: Int64 = 0) {
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: initial)
    }

    deinit { pointer.deallocate() }

    subscript(index: Int) -> Int64 {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    var values: [Int64] { Array(pointer) }
}

/// A shared counter.
final class Counter: Sendable {
    let value = Atomic<Int>(0)

    /// Adds one and returns the new value.
    @discardableResult
    func increment() -> Int { value.add(1, ordering: .acquiringAndReleasing).newValue }

    /// Subtracts one and returns the new value.
    @discardableResult
    func decrement() -> Int { value.subtract(1, ordering: .acquiringAndReleasing).newValue }

    var current: Int { value.load(ordering: .acquiring) }
}

/// The lateness statistics of W5 from per-task lateness in nanoseconds.
func latenessMetrics(_ lateness: [Int64]) -> [(name: String, value: Double)] {
    let sorted = lateness.sorted()
    return [
        ("late_p50_ms", Double(percentile(sorted, 0.50)) / 1e6),
        ("late_p99_ms", Double(percentile(sorted, 0.99)) / 1e6),
    ]
}

/// A counting semaphore on a POSIX `sem_t`, for blocking the main thread until a task finishes
/// without involving Dispatch (which would add threads to what is measured).
final class DispatchlessSemaphore: @unchecked Sendable {
    private let semaphore: UnsafeMutablePointer<sem_t>

    init() {
        semaphore = .allocate(capacity: 1)
        sem_init(semaphore, 0, 0)
    }

    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }

    func signal() { sem_post(semaphore) }

    func wait() {
        while sem_wait(semaphore) != 0 {}
    }
}
