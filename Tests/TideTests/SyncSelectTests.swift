import Synchronization
import Testing
@testable import Tide

@Suite("Sync: select")
struct SyncSelectTests {
    @Test func everyReadyBranchGetsAFairShare() async throws {
        let (tx1, rx1) = makeUnboundedChannel(of: Int.self)
        let (tx2, rx2) = makeUnboundedChannel(of: Int.self)
        try tx1.trySend(1)
        try tx2.trySend(2)
        var wins = [0, 0]
        let rounds = 10_000
        for _ in 0..<rounds {
            let winner = try await select { s in
                s.receive(rx1) { _ in 0 }
                s.receive(rx2) { _ in 1 }
            }
            wins[winner] += 1
            if winner == 0 { try tx1.trySend(1) } else { try tx2.trySend(2) }
            #expect(rx1.count == 1 && rx2.count == 1, "the losing branch left its message")
        }
        #expect(wins[0] > rounds * 2 / 5 && wins[0] < rounds * 3 / 5, "\(wins)")
        #expect(wins[1] > rounds * 2 / 5 && wins[1] < rounds * 3 / 5, "\(wins)")
    }

    @Test func defaultRunsOnlyWhenNothingIsReady() async throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 1)
        let first = try await select { s in
            s.receive(rx) { value in "received \(value ?? -1)" }
            s.default { "default" }
        }
        #expect(first == "default")
        try tx.trySend(9)
        let second = try await select { s in
            s.receive(rx) { value in "received \(value ?? -1)" }
            s.default { "default" }
        }
        #expect(second == "received 9")
    }

    @Test func sendBranchSendsOnlyWhenItWins() async throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 1)
        try tx.trySend(1)
        let full = try await select { s in
            s.send(tx, 2) { _ in "sent" }
            s.default { "full" }
        }
        #expect(full == "full")
        #expect(try rx.tryReceive() == 1)
        #expect(throws: TryReceiveError.empty) { try rx.tryReceive() }
        let sent = try await select { s in
            s.send(tx, 3) { result in (try? result.get()) != nil ? "sent" : "closed" }
            s.default { "full" }
        }
        #expect(sent == "sent")
        #expect(try rx.tryReceive() == 3)
    }

    @Test func waitsForTheFirstBranchToBecomeReady() async throws {
        let (tx1, rx1) = makeUnboundedChannel(of: Int.self)
        let (reply, replyRx) = Oneshot<String>.make()
        Task {
            await Task.yield()
            try reply.send("done")
        }
        let outcome = try await withTimeout {
            try await select { s in
                s.receive(rx1) { _ in "channel" }
                s.future(replyRx.receiveFuture()) { result in (try? result.get()) ?? "closed" }
            }
        }
        #expect(outcome == "done")
        #expect(!tx1.isClosed, "the sender stays alive, so the receive branch is never ready")
    }

    @Test func cancellationRunsTheCancelBranchAndTakesNothing() async throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 4)
        let waiting = Task {
            try await select { s in
                s.receive(rx) { _ in "received" }
                s.onCancel { "cancelled" }
            }
        }
        waiting.cancel()
        #expect(try await withTimeout { try await waiting.value } == "cancelled")
        let plain = Task {
            try await select { s in s.receive(rx) { _ in "received" } }
        }
        plain.cancel()
        await #expect(throws: CancellationError.self) { try await plain.value }
        try tx.trySend(1)
        #expect(try rx.tryReceive() == 1)
    }

    @Test func emptySelectIsATypedError() async {
        await #expect(throws: SelectError.noBranches) {
            let _: Int = try await select { _ in }
        }
    }

    @Test func losingBranchesLoseNothingUnderContention() async throws {
        let (tx1, rx1) = try Channel<Int>.bounded(capacity: 8)
        let (tx2, rx2) = try Channel<Int>.bounded(capacity: 8)
        let perChannel = 3_000
        let tally = Tally()
        try await withTimeout(seconds: 40) {
            let producers = Task {
                for value in 0..<perChannel {
                    try await tx1.send(value)
                    try await tx2.send(perChannel + value)
                }
                tx1.close()
                tx2.close()
            }
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        var open = (true, true)
                        var local: [Int] = []
                        while open.0 || open.1 {
                            let got: Int? = try! await select { s in
                                if open.0 {
                                    s.receive(rx1) { value in
                                        if value == nil { open.0 = false }
                                        return value
                                    }
                                }
                                if open.1 {
                                    s.receive(rx2) { value in
                                        if value == nil { open.1 = false }
                                        return value
                                    }
                                }
                            }
                            if let got { local.append(got) }
                        }
                        tally.add(contentsOf: local)
                    }
                }
                group.addTask {
                    var local: [Int] = []
                    while let value = try? await rx1.receive() { local.append(value) }
                    tally.add(contentsOf: local)
                }
            }
            try await producers.value
        }
        let counts = tally.snapshot
        #expect(counts.count == 2 * perChannel)
        #expect(counts.values.allSatisfy { $0 == 1 })
    }
}
