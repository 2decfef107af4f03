import Testing
@testable import Tide

@Suite("Sync: oneshot")
struct SyncOneshotTests {
    @Test func deliversTheValueOnce() async throws {
        let (tx, rx) = Oneshot<Int>.make()
        Task { try tx.send(7) }
        let value = try await withTimeout { try await rx.receive() }
        #expect(value == 7)
        #expect(throws: OneshotError.alreadyReceived) { try rx.tryReceive() }
    }

    @Test func secondSendHandsTheValueBack() throws {
        let (tx, rx) = Oneshot<String>.make()
        try tx.send("first")
        do {
            try tx.send("second")
            Issue.record("second send succeeded")
        } catch {
            guard case .alreadySent(let value) = error else { Issue.record("expected alreadySent"); return }
            #expect(value == "second")
        }
        #expect(try rx.tryReceive() == "first")
    }

    @Test func droppedSenderClosesTheReceiver() async throws {
        var tx: OneshotSender<Int>?
        let rx: OneshotReceiver<Int>
        (tx, rx) = Oneshot<Int>.make()
        #expect(throws: OneshotError.empty) { try rx.tryReceive() }
        #expect(tx != nil)
        let waiting = receiveError(rx)
        await Task.yield()
        tx = nil
        let error = try await withTimeout { await waiting.value }
        #expect(error == .closed)
    }

    @Test func sendToADroppedReceiverHandsTheValueBack() {
        let (tx, _) = Oneshot<Int>.make()
        do {
            try tx.send(3)
            Issue.record("send to a dropped receiver succeeded")
        } catch {
            guard case .closed(let value) = error else { Issue.record("expected closed"); return }
            #expect(value == 3)
        }
    }

    @Test func cancelledReceiveLeavesTheValue() async throws {
        let (tx, rx) = Oneshot<Int>.make()
        let waiting = receiveError(rx)
        waiting.cancel()
        let error = try await withTimeout { await waiting.value }
        #expect(error == .cancelled)
        try tx.send(5)
        #expect(try rx.tryReceive() == 5)
    }

    /// Several receives at once on one oneshot (two Swift tasks, so the second waits in the
    /// queue instead of the inline slot, and two poll tasks): exactly one gets the value, the
    /// others learn it was received, and none is left waiting.
    @Test func concurrentReceivesGetTheValueExactlyOnce() throws {
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        try withWatchdog("concurrentReceivesGetTheValueExactlyOnce") {
            let outcomes = try runtime.run { () async throws -> [Int] in
                let (tx, rx) = Oneshot<Int>.make()
                let parked = AtomicCounter()
                var swiftTasks: [JoinHandle<Int>] = []
                for _ in 0..<2 {
                    swiftTasks.append(Tide.spawn { () -> Int in
                        parked.increment()
                        do {
                            return try await rx.receive()
                        } catch OneshotError.alreadyReceived {
                            return -1
                        }
                    })
                }
                var pollTasks: [PollTaskHandle<Result<Int, OneshotError>>] = []
                for _ in 0..<2 {
                    pollTasks.append(try runtime.spawn(rx.receiveFuture()))
                }
                while parked.value < 2 { await Tide.yield() }
                for _ in 0..<20 { await Tide.yield() }
                try tx.send(42)
                var outcomes: [Int] = []
                for task in swiftTasks { outcomes.append(try await task.value) }
                for task in pollTasks {
                    switch try await task.value {
                    case .success(let value): outcomes.append(value)
                    case .failure(let error):
                        #expect(error == .alreadyReceived)
                        outcomes.append(-1)
                    }
                }
                return outcomes
            }
            #expect(outcomes.filter { $0 == 42 }.count == 1)
            #expect(outcomes.filter { $0 == -1 }.count == 3)
        }
    }

    /// A cancelled receive gives its slot back: the next receive waits there and gets the value.
    @Test func cancelledReceiveFreesTheSlotForTheNextOne() async throws {
        let (tx, rx) = Oneshot<Int>.make()
        for _ in 0..<3 {
            let waiting = receiveError(rx)
            await Task.yield()
            waiting.cancel()
            #expect(try await withTimeout { await waiting.value } == .cancelled)
        }
        let receiving = Task { try await rx.receive() }
        await Task.yield()
        try tx.send(9)
        #expect(try await withTimeout { try await receiving.value } == 9)
    }

    /// Cancellation racing the send, from plain threads with random timing: each value is either
    /// received by its task or, if the task was cancelled first, still in the cell afterwards.
    /// Nothing is lost and no task hangs.
    @Test func stressCancelRacingSendLosesNothing() throws {
        let count = 2_000
        let (box, waiting) = makeOneshots(count)
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        try withWatchdog("stressCancelRacingSendLosesNothing") {
            let outcomes = try runtime.run { () async throws -> [Int] in
                let handles = spawnReceives(waiting, endingWith: .cancelled)
                let cancels = handles
                let threads = (0..<2).map { offset in
                    TestThread {
                        var random = TestRandom(seed: UInt64(offset + 11))
                        var index = offset
                        while index < count {
                            jitter(&random, upTo: 5)
                            if offset == 0 {
                                try? box.take(index)?.send(index)
                            } else {
                                cancels[index - 1].cancel()
                            }
                            index += offset == 0 ? 1 : 2
                        }
                    }
                }
                var results: [Int] = []
                for handle in handles { results.append(try await handle.value) }
                for thread in threads { thread.join() }
                return results
            }
            for index in 0..<count {
                if outcomes[index] == -1 {
                    #expect(try waiting[index].tryReceive() == index)
                } else {
                    #expect(outcomes[index] == index)
                }
            }
        }
    }

    /// Many oneshots, completed from plain threads with random timing while receivers on a
    /// multi-thread runtime wait: every value arrives exactly once, a dropped sender always
    /// closes its receiver, and no receiver is left waiting (a lost wakeup would hang the run;
    /// the watchdog turns that into a failure).
    @Test func stressEveryOutcomeArrivesOnceFromOtherThreads() throws {
        let count = 2_000
        let (box, waiting) = makeOneshots(count)
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        try withWatchdog("stressEveryOutcomeArrivesOnceFromOtherThreads") {
            let outcomes = try runtime.run { () async throws -> [Int] in
                let handles = spawnReceives(waiting, endingWith: .closed)
                // Four plain threads complete the oneshots: even indices send their index, odd ones
                // drop the sender, each after random jitter.
                let threads = (0..<4).map { offset in
                    TestThread {
                        var random = TestRandom(seed: UInt64(offset + 7))
                        var index = offset
                        while index < count {
                            jitter(&random, upTo: 10)
                            if index % 2 == 0 {
                                try? box.take(index)?.send(index)
                            } else {
                                _ = box.take(index)
                            }
                            index += 4
                        }
                    }
                }
                var results: [Int] = []
                for handle in handles { results.append(try await handle.value) }
                for thread in threads { thread.join() }
                return results
            }
            #expect(outcomes.count == count)
            #expect(outcomes.enumerated().allSatisfy { index, value in
                index % 2 == 0 ? value == index : value == -1
            })
        }
    }
}

/// A task that receives from `rx` and returns why it got no value (nil if it got one).
private func receiveError(_ rx: OneshotReceiver<Int>) -> Task<OneshotError?, Never> {
    Task { () async -> OneshotError? in
        do throws(OneshotError) {
            _ = try await rx.receive()
            return nil
        } catch {
            return error
        }
    }
}

/// `count` oneshots: their senders in a box for plain threads, and their receivers.
private func makeOneshots(_ count: Int) -> (SenderBox, [OneshotReceiver<Int>]) {
    var senders: [OneshotSender<Int>?] = []
    var receivers: [OneshotReceiver<Int>] = []
    for _ in 0..<count {
        let (tx, rx) = Oneshot<Int>.make()
        senders.append(tx)
        receivers.append(rx)
    }
    return (SenderBox(senders), receivers)
}

/// One task per receiver, returning the value, or -1 when the receive fails with `ending`.
private func spawnReceives(
    _ receivers: [OneshotReceiver<Int>], endingWith ending: OneshotError
) -> [JoinHandle<Int>] {
    receivers.map { receiver in
        Tide.spawn { () -> Int in
            do throws(OneshotError) {
                return try await receiver.receive()
            } catch where error == ending {
                return -1
            }
        }
    }
}

/// Senders handed to plain threads; each slot is taken once.
private final class SenderBox: @unchecked Sendable {
    private let lock = SyncLock()
    private var senders: [OneshotSender<Int>?]

    init(_ senders: [OneshotSender<Int>?]) { self.senders = senders }

    func take(_ index: Int) -> OneshotSender<Int>? {
        lock.withLock {
            let sender = senders[index]
            senders[index] = nil
            return sender
        }
    }
}
