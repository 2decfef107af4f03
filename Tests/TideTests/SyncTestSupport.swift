import Glibc
import Synchronization
import Testing
@testable import Tide

/// A Parker for tests built on a pthread mutex and condition variable (a saved token, so an
/// unpark before park is not lost).
final class ConditionParker: Parker, @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var token = false

    override init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        super.init()
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    override func park() {
        pthread_mutex_lock(mutex)
        while !token { pthread_cond_wait(condition, mutex) }
        token = false
        pthread_mutex_unlock(mutex)
    }

    override func unpark() {
        pthread_mutex_lock(mutex)
        token = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }
}

struct SyncTestTimeout: Error, CustomStringConvertible {
    let seconds: Int
    var description: String { "test body did not finish within \(seconds) s" }
}

/// Runs `body`, failing (and cancelling it) if it takes longer than `seconds`: every test that
/// waits is bounded in time, so a lost wakeup shows up as a failure instead of a hang.
func withTimeout<T: Sendable>(
    seconds: Int = 20, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try? await Task.sleep(for: .seconds(seconds))
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw SyncTestTimeout(seconds: seconds)
        }
        group.cancelAll()
        return value
    }
}

/// A small deterministic random source for tests (SplitMix64).
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A thread-safe multiset counter for stress tests (on `SyncLock`, which TSan understands).
final class Tally: @unchecked Sendable {
    private let lock = SyncLock()
    private var counts: [Int: Int] = [:]

    func add(_ value: Int) { lock.withLock { counts[value, default: 0] += 1 } }
    func add(contentsOf values: [Int]) {
        lock.withLock { for value in values { counts[value, default: 0] += 1 } }
    }
    var snapshot: [Int: Int] { lock.withLock { counts } }
}

/// Yields until `condition` holds, at most `attempts` times (bounded; returns whether it held).
@discardableResult
func eventually(attempts: Int = 200_000, _ condition: () -> Bool) async -> Bool {
    for _ in 0..<attempts {
        if condition() { return true }
        await Task.yield()
    }
    return condition()
}

/// Polls `future` once with a waker that does nothing.
func pollOnce<F: Future>(_ future: inout F) -> Poll<F.Output> {
    let noop = Waker.noop
    var context = Context(waker: noop)
    return future.poll(&context)
}

/// An atomic integer that closures can capture.
final class Counter: Sendable {
    let atomic = Atomic<Int>(0)
    init() {}
    @discardableResult
    func add(_ amount: Int = 1) -> Int { atomic.wrappingAdd(amount, ordering: .relaxed).newValue }
    func subtract(_ amount: Int = 1) { atomic.wrappingSubtract(amount, ordering: .relaxed) }
    func max(_ value: Int) { atomic.max(value, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}
