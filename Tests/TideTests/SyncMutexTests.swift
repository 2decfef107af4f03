import Synchronization
import Testing
@testable import Tide

private func queuedWaiters<T>(_ mutex: Tide.Mutex<T>) -> Int {
    mutex.lock.withLock { mutex.waiters.count }
}

@Suite("Sync: Mutex")
struct SyncMutexTests {
    @Test func mutualExclusionAcrossTasks() async throws {
        let mutex = Tide.Mutex(0)
        let inside = Counter()
        let overlapped = Counter()
        try await withTimeout {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<300 {
                            try await mutex.withLock { value in
                                if inside.add() != 1 { overlapped.add() }
                                let before = value
                                await Task.yield()
                                value = before + 1
                                inside.subtract()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(try await mutex.withLock { $0 } == 2_400)
        #expect(overlapped.value == 0)
    }

    @Test func waitersGetTheLockInFIFOOrder() async throws {
        let mutex = Tide.Mutex<[Int]>([])
        let held = try #require(mutex.tryLock())
        var tasks: [Task<Void, any Error>] = []
        for id in 0..<10 {
            tasks.append(Task {
                try await mutex.withLock { $0.append(id) }
            })
            #expect(await eventually { queuedWaiters(mutex) == id + 1 })
        }
        try held.unlock()
        for task in tasks { try await task.value }
        #expect(try await mutex.withLock { $0 } == Array(0..<10))
    }

    @Test func unlockingTwiceIsATypedError() async throws {
        let mutex = Tide.Mutex("x")
        let guarded = try await mutex.lock()
        try guarded.withValue { $0 += "y" }
        try guarded.unlock()
        #expect(throws: MutexError.alreadyUnlocked) { try guarded.unlock() }
        #expect(throws: MutexError.alreadyUnlocked) { try guarded.withValue { $0 += "z" } }
        #expect(try await mutex.withLock { $0 } == "xy")
    }

    @Test func cancelledWaiterDoesNotKeepTheLock() async throws {
        let mutex = Tide.Mutex(0)
        let held = try #require(mutex.tryLock())
        let waiter = Task { try await mutex.lock() }
        #expect(await eventually { queuedWaiters(mutex) == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        #expect(queuedWaiters(mutex) == 0)
        try held.unlock()
        #expect(mutex.tryLock() != nil)
    }

    @Test func grantedButDroppedLockFutureHandsTheLockOn() throws {
        let mutex = Tide.Mutex(0)
        let held = try #require(mutex.tryLock())
        var first: MutexLockFuture<Int>? = mutex.lockFuture()
        var second = mutex.lockFuture()
        #expect(!pollOnce(&first!).isReady)
        #expect(!pollOnce(&second).isReady)
        try held.unlock()
        first = nil
        guard case .ready(let guarded) = pollOnce(&second) else {
            Issue.record("the lock was not handed on")
            return
        }
        try guarded.unlock()
        #expect(mutex.tryLock() != nil)
    }

    @Test func lostWakeupStressWithCancellation() async throws {
        let mutex = Tide.Mutex(0)
        let completed = Counter()
        try await withTimeout(seconds: 40) {
            var tasks: [Task<Void, Never>] = []
            for index in 0..<16 {
                tasks.append(Task {
                    for _ in 0..<400 {
                        do {
                            try await mutex.withLock { $0 += 1 }
                            completed.add()
                        } catch {
                            return
                        }
                    }
                })
                if index % 4 == 3 { tasks[index - 1].cancel() }
            }
            for task in tasks { await task.value }
        }
        #expect(try await mutex.withLock { $0 } == completed.value)
        #expect(queuedWaiters(mutex) == 0)
        #expect(mutex.tryLock() != nil)
    }
}
