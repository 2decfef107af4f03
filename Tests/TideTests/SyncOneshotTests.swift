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
        let waiting = Task { () async -> OneshotError? in
            do throws(OneshotError) {
                _ = try await rx.receive()
                return nil
            } catch {
                return error
            }
        }
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
        let waiting = Task { () async -> OneshotError? in
            do throws(OneshotError) {
                _ = try await rx.receive()
                return nil
            } catch {
                return error
            }
        }
        waiting.cancel()
        let error = try await withTimeout { await waiting.value }
        #expect(error == .cancelled)
        try tx.send(5)
        #expect(try rx.tryReceive() == 5)
    }

    /// Many oneshots, completed from plain threads with random timing while receivers on a
    /// multi-thread runtime wait: every value arrives exactly once, a dropped sender always
    /// closes its receiver, and no receiver is left waiting (a lost wakeup would hang the run;
    /// the watchdog turns that into a failure).
    @Test func stressEveryOutcomeArrivesOnceFromOtherThreads() throws {
        let count = 2_000
        var senders: [OneshotSender<Int>?] = []
        var receivers: [OneshotReceiver<Int>] = []
        for _ in 0..<count {
            let (tx, rx) = Oneshot<Int>.make()
            senders.append(tx)
            receivers.append(rx)
        }
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let box = SenderBox(senders)
        senders.removeAll()
        let waiting = receivers
        receivers.removeAll()
        try withWatchdog("stressEveryOutcomeArrivesOnceFromOtherThreads") {
            let outcomes = try runtime.run { () async throws -> [Int] in
                var handles: [JoinHandle<Int>] = []
                for index in 0..<count {
                    let receiver = waiting[index]
                    handles.append(Tide.spawn { () -> Int in
                        do {
                            return try await receiver.receive()
                        } catch OneshotError.closed {
                            return -1
                        }
                    })
                }
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
