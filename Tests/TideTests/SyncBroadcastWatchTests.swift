import Testing
@testable import Tide

@Suite("Sync: broadcast")
struct SyncBroadcastTests {
    @Test func everyReceiverSeesEveryMessage() async throws {
        let (tx, first) = try Broadcast<Int>.make(capacity: 16)
        let second = tx.subscribe()
        let readers = [first, second].map { receiver in
            Task { () async -> [Int] in
                var seen: [Int] = []
                while let value = try? await receiver.receive() { seen.append(value) }
                return seen
            }
        }
        for value in 0..<10 {
            let receivers = try tx.send(value)
            #expect(receivers == 2)
        }
        _ = consume tx
        for reader in readers {
            #expect(try await withTimeout { await reader.value } == Array(0..<10))
        }
    }

    @Test func laggingReceiverIsToldHowManyItMissedAndContinues() throws {
        let (tx, rx) = try Broadcast<Int>.make(capacity: 4)
        for value in 0..<10 { try tx.send(value) }
        #expect(throws: BroadcastReceiveError.lagged(6)) { try rx.tryReceive() }
        #expect(try rx.tryReceive() == 6)
        #expect(try rx.tryReceive() == 7)
        #expect(try rx.tryReceive() == 8)
        #expect(try rx.tryReceive() == 9)
        #expect(throws: BroadcastReceiveError.empty) { try rx.tryReceive() }
    }

    @Test func sendWithoutReceiversHandsTheValueBack() throws {
        let tx = try Broadcast<Int>.make(capacity: 2).0
        do {
            try tx.send(1)
            Issue.record("send without receivers succeeded")
        } catch {
            guard case .noReceivers(let value) = error else { return }
            #expect(value == 1)
        }
        #expect(throws: ChannelError.invalidCapacity(0)) { try Broadcast<Int>.make(capacity: 0) }
    }

    @Test func closedAfterTheLastMessage() throws {
        var tx: BroadcastSender<Int>? = nil
        let rx: BroadcastReceiver<Int>
        (tx, rx) = try Broadcast<Int>.make(capacity: 2)
        try tx?.send(1)
        tx = nil
        #expect(try rx.tryReceive() == 1)
        #expect(throws: BroadcastReceiveError.closed) { try rx.tryReceive() }
    }
}

@Suite("Sync: watch")
struct SyncWatchTests {
    @Test func changesCoalesceToTheLatestValue() async throws {
        let (tx, rx) = Watch<Int>.make(initial: 0)
        #expect(!rx.hasChanged)
        tx.send(1)
        tx.send(2)
        tx.send(3)
        try await rx.changed()
        #expect(rx.borrow() == 3)
        var next = rx.changedFuture()
        #expect(!pollOnce(&next).isReady, "three sends were one change")
        tx.modify { $0 += 1 }
        #expect(pollOnce(&next).isReady)
        #expect(rx.borrowAndUpdate() == 4)
    }

    @Test func waiterWakesOnSendAndSeesClosedAtTheEnd() async throws {
        var tx: WatchSender<String>? = nil
        let rx: WatchReceiver<String>
        (tx, rx) = Watch<String>.make(initial: "a")
        let waiting = Task { () async throws(WatchError) -> String in
            try await rx.changed()
            return rx.borrow()
        }
        #expect(await eventually { rx.storage.lock.withLock { rx.storage.waiters.count } == 1 })
        tx?.send("b")
        #expect(try await withTimeout { try await waiting.value } == "b")
        tx = nil
        await #expect(throws: WatchError.closed) { try await rx.changed() }
    }
}
