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
}
