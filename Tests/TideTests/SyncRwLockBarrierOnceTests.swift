import Testing
@testable import Tide

@Suite("Sync: RwLock")
struct SyncRwLockTests {
    @Test func readersShareWritersExclude() async throws {
        let lock = RwLock(0)
        let first = try #require(lock.tryRead())
        let second = try #require(lock.tryRead())
        #expect(lock.tryWrite() == nil)
        try first.unlock()
        try second.unlock()
        #expect(throws: RwLockError.alreadyUnlocked) { try second.unlock() }
        let writer = try #require(lock.tryWrite())
        #expect(lock.tryRead() == nil)
        try writer.withValue { $0 = 5 }
        try writer.unlock()
        #expect(try await lock.withReadLock { $0 } == 5)
    }

    @Test func waitingWriterIsNotStarvedByNewReaders() async throws {
        let lock = RwLock(0)
        let reader = try #require(lock.tryRead())
        let writer = Task { try await lock.withWriteLock { $0 += 1 } }
        #expect(await eventually { lock.lock.withLock { lock.waiters.count } == 1 })
        #expect(lock.tryRead() == nil, "a new reader queues behind the waiting writer")
        try reader.unlock()
        try await withTimeout { try await writer.value }
        #expect(try await lock.withReadLock { $0 } == 1)
    }

    @Test func concurrentWritersAndReadersStayConsistent() async throws {
        let lock = RwLock([Int]())
        try await withTimeout {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<6 {
                    group.addTask {
                        for step in 0..<200 {
                            if (index + step) % 3 == 0 {
                                try await lock.withWriteLock { $0.append(step) }
                            } else {
                                _ = try await lock.withReadLock { $0.count }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(try await lock.withReadLock { $0.count } == 400)
    }
}

@Suite("Sync: Barrier")
struct SyncBarrierTests {
    @Test func exactlyOneLeaderPerGeneration() async throws {
        #expect(throws: BarrierError.invalidCount(0)) { try Barrier(count: 0) }
        let parties = 5
        let generations = 50
        let barrier = try Barrier(count: parties)
        let leaders = Counter()
        try await withTimeout {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<parties {
                    group.addTask {
                        for _ in 0..<generations {
                            if try await barrier.wait().isLeader { leaders.add() }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(leaders.value == generations)
    }

    @Test func cancelledWaiterTakesItsArrivalBack() async throws {
        let barrier = try Barrier(count: 2)
        var first: BarrierWaitFuture? = barrier.waitFuture()
        #expect(!pollOnce(&first!).isReady)
        first = nil
        var second = barrier.waitFuture()
        #expect(!pollOnce(&second).isReady, "the dropped waiter no longer counts")
        var third = barrier.waitFuture()
        guard case .ready(let result) = pollOnce(&third) else {
            Issue.record("the second arrival did not complete the round")
            return
        }
        #expect(result.isLeader)
        guard case .ready(let other) = pollOnce(&second) else {
            Issue.record("the waiter was not released")
            return
        }
        #expect(!other.isLeader)
    }

    /// A waiter whose round the leader completed, cancelled before it ran again: its arrival
    /// counted, so its wait passed; it used to throw `.cancelled` ("arrival taken back") while
    /// the round had used it. The next round still needs two fresh arrivals.
    @Test func aWaiterCancelledAfterItsRoundCompletedStillPasses() throws {
        let runtime = try Runtime.currentThread()
        let barrier = try Barrier(count: 2)
        try runtime.run {
            let waiter = Tide.spawn { try await barrier.wait() }
            await Tide.yield()  // the waiter arrives and waits
            let leader = try await barrier.wait()
            #expect(leader.isLeader)
            // The waiter is woken but has not run again (this task holds the only thread).
            waiter.cancel()
            let passed = try await waiter.value
            #expect(!passed.isLeader)
            var next = barrier.waitFuture()
            #expect(!pollOnce(&next).isReady, "a new round starts from zero arrivals")
        }
    }
}

@Suite("Sync: OnceCell")
struct SyncOnceCellTests {
    @Test func concurrentCallersRunTheInitialiserOnce() async throws {
        let cell = OnceCell<Int>()
        let runs = Counter()
        let values = try await withTimeout {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await cell.getOrInit {
                            runs.add()
                            await Task.yield()
                            return 42
                        }
                    }
                }
                var all: [Int] = []
                for try await value in group { all.append(value) }
                return all
            }
        }
        #expect(values == Array(repeating: 42, count: 20))
        #expect(runs.value == 1)
        #expect(throws: OnceCellError.alreadyInitialized) { try cell.set(1) }
    }

    struct InitFailed: Error {}

    @Test func failedInitialiserLetsTheNextCallerTry() async throws {
        let cell = OnceCell<String>()
        await #expect(throws: InitFailed.self) {
            try await cell.getOrInit { throw InitFailed() }
        }
        #expect(cell.get() == nil)
        #expect(try await cell.getOrInit { "second" } == "second")
        #expect(cell.get() == "second")
    }
}
