import Synchronization
import Testing
@testable import Tide

@Suite("Sync: Semaphore")
struct SyncSemaphoreTests {
    @Test func permitsAreCountedAndOverReleaseIsAnError() throws {
        let semaphore = try Semaphore(permits: 3)
        #expect(try semaphore.tryAcquire(2))
        #expect(try !semaphore.tryAcquire(2))
        #expect(semaphore.availablePermits == 1)
        try semaphore.release(2)
        #expect(semaphore.availablePermits == 3)
        #expect(throws: SemaphoreError.overRelease(released: 1, held: 0)) { try semaphore.release() }
        #expect(throws: SemaphoreError.invalidCount(0)) { try semaphore.tryAcquire(0) }
        #expect(throws: SemaphoreError.exceedsMaximum(requested: 4, maximum: 3)) {
            try semaphore.tryAcquire(4)
        }
        #expect(throws: SemaphoreError.invalidCount(-1)) { try Semaphore(permits: -1) }
    }

    @Test func limitsConcurrency() async throws {
        let semaphore = try Semaphore(permits: 3)
        let running = Counter()
        let peak = Counter()
        try await withTimeout {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let count = index % 2 + 1
                        for _ in 0..<50 {
                            try await semaphore.withPermits(count) {
                                peak.max(running.add(count))
                                await Task.yield()
                                running.subtract(count)
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(peak.value <= 3)
        #expect(semaphore.availablePermits == 3)
    }

    @Test func cancelledAcquireTakesNoPermit() async throws {
        let semaphore = try Semaphore(permits: 2)
        #expect(try semaphore.tryAcquire(2))
        let waiter = Task { try await semaphore.acquire(2) }
        #expect(await eventually { semaphore.lock.withLock { semaphore.waiters.count } == 1 })
        waiter.cancel()
        await #expect(throws: SemaphoreError.cancelled) { try await waiter.value }
        try semaphore.release(2)
        #expect(semaphore.availablePermits == 2)
    }

    @Test func departingHeadLetsSmallerRequestsThrough() throws {
        let semaphore = try Semaphore(permits: 3)
        #expect(try semaphore.tryAcquire(2))
        var big: SemaphoreAcquireFuture? = try semaphore.acquireFuture(3)
        var small = try semaphore.acquireFuture(1)
        #expect(!pollOnce(&big!).isReady)
        #expect(!pollOnce(&small).isReady, "FIFO: the small request waits behind the big one")
        big = nil
        #expect(pollOnce(&small).isReady)
        #expect(semaphore.availablePermits == 0)
    }
}

@Suite("Sync: Notify")
struct SyncNotifyTests {
    @Test func notifyOneStoresOnePermit() async throws {
        let notify = Notify()
        notify.notifyOne()
        notify.notifyOne()
        try await notify.notified()
        var second = notify.notifiedFuture()
        #expect(!pollOnce(&second).isReady, "permits do not add up")
        notify.notifyOne()
        #expect(pollOnce(&second).isReady)
    }

    @Test func notifyAllWakesEveryWaiterAndStoresNothing() async throws {
        let notify = Notify()
        let tasks = (0..<5).map { _ in Task { try await notify.notified() } }
        #expect(await eventually { notify.lock.withLock { notify.waiters.count } == 5 })
        notify.notifyAll()
        try await withTimeout { for task in tasks { try await task.value } }
        var later = notify.notifiedFuture()
        #expect(!pollOnce(&later).isReady)
    }

    @Test func droppedNotifiedWaiterPassesTheNotificationOn() {
        let notify = Notify()
        var first: NotifiedFuture? = notify.notifiedFuture()
        var second = notify.notifiedFuture()
        #expect(!pollOnce(&first!).isReady)
        #expect(!pollOnce(&second).isReady)
        notify.notifyOne()
        first = nil
        #expect(pollOnce(&second).isReady)
    }

    @Test func pingPongLosesNoWakeup() async throws {
        let ping = Notify()
        let pong = Notify()
        let rounds = 5_000
        try await withTimeout(seconds: 40) {
            let other = Task {
                for _ in 0..<rounds {
                    try await ping.notified()
                    pong.notifyOne()
                }
            }
            for _ in 0..<rounds {
                ping.notifyOne()
                try await pong.notified()
            }
            try await other.value
        }
    }
}
