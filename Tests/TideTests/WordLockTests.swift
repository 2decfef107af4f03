#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Tide

@Suite("WordLock")
struct WordLockTests {
    /// Four threads increment one counter under the lock; some of them yield the CPU while
    /// holding it, so the others spin out and sleep on the park table. A lost wake-up would hang
    /// (the watchdog fails the test); a broken exclusion would lose increments.
    @Test func stressExcludesAndWakesEverySleeper() {
        let shared = LockedCounter()
        let perThread = 20_000
        withWatchdog("stressExcludesAndWakesEverySleeper") {
            let threads = (0..<4).map { offset in
                TestThread {
                    var random = TestRandom(seed: UInt64(offset + 3))
                    for _ in 0..<perThread {
                        shared.increment(yieldingInside: random.next(64) == 0)
                    }
                }
            }
            for thread in threads { thread.join() }
        }
        #expect(shared.value == 4 * perThread)
    }
}

private final class LockedCounter: @unchecked Sendable {
    let lock = WordLock()
    var count = 0

    func increment(yieldingInside: Bool) {
        lock.lock()
        let before = count
        if yieldingInside { sched_yield() }
        count = before + 1
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}
