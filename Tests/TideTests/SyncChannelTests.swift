#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import Tide

/// Spawns `producers` tasks that each send `(producer, index)` for `count` indices, and returns
/// only the receiver, so that the last sender copy goes away when the producers finish.
private func spawnProducers(
    capacity: Int, producers: Int, count: Int
) throws -> Receiver<Int> {
    let (tx, rx) = try Channel<Int>.bounded(capacity: capacity)
    for producer in 0..<producers {
        Task {
            for index in 0..<count {
                try await tx.send(producer * 1_000_000 + index)
            }
        }
    }
    return rx
}

@Suite("Sync: channels")
struct SyncChannelTests {
    @Test func capacityBelowOneIsATypedError() {
        #expect(throws: ChannelError.invalidCapacity(0)) { try Channel<Int>.bounded(capacity: 0) }
        #expect(throws: ChannelError.invalidCapacity(-3)) { try Channel<Int>.bounded(capacity: -3) }
    }

    /// Many poll-based sends (kept alive by one `joinAll`) wait on a full channel while a Swift
    /// consumer receives. A sender woken for a freed slot can hand its value straight to a
    /// parked receive instead, which leaves the slot free: it must pass the wake on, or the next
    /// sender waits for ever beside an empty buffer (before the fix, 13 of 64 values arrived).
    /// A watchdog closes the channel after 10 s so that a lost wake fails instead of hanging.
    @Test(arguments: [false, true])
    func aSenderThatHandsOffPassesItsWakeOn(multiThread: Bool) throws {
        let runtime = multiThread ? try Runtime.multiThread(workers: 2) : try Runtime.currentThread()
        defer { runtime.shutdown() }
        let count = 64
        let (tx, rx) = try Channel<Int>.bounded(capacity: 1)
        let received = try runtime.run { () async throws -> [Int] in
            let sends = try runtime.spawn(joinAll((0..<count).map { tx.sendFuture($0) }))
            let watchdog = Tide.spawn {
                try? await Tide.sleep(for: .seconds(10))
                tx.close()
            }
            var values: [Int] = []
            while values.count < count, let value = try await rx.receive() { values.append(value) }
            watchdog.cancel()
            _ = try await sends.value
            return values
        }
        #expect(received.sorted() == Array(0..<count))
    }

    @Test func trySendReportsFullAndHandsTheValueBack() throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 2)
        try tx.trySend(1)
        try tx.trySend(2)
        do {
            try tx.trySend(3)
            Issue.record("third send into a channel of capacity 2 succeeded")
        } catch {
            guard case .full(let value) = error else { Issue.record("expected full"); return }
            #expect(value == 3)
        }
        #expect(try rx.tryReceive() == 1)
        try tx.trySend(3)
        #expect(try rx.tryReceive() == 2)
        #expect(try rx.tryReceive() == 3)
        #expect(throws: TryReceiveError.empty) { try rx.tryReceive() }
    }

    @Test func sendOnClosedHandsTheValueBack() async throws {
        let (tx, rx) = try Channel<String>.bounded(capacity: 4)
        try tx.trySend("kept")
        tx.close()
        do {
            try await tx.send("late")
            Issue.record("send on a closed channel succeeded")
        } catch {
            guard case .closed(let value) = error else { Issue.record("expected closed"); return }
            #expect(value == "late")
        }
        do {
            try tx.trySend("later")
        } catch {
            guard case .closed(let value) = error else { Issue.record("expected closed"); return }
            #expect(value == "later")
        }
        #expect(try await rx.receive() == "kept")
        #expect(try await rx.receive() == nil)
        #expect(throws: TryReceiveError.closed) { try rx.tryReceive() }
    }

    @Test func droppingTheLastReceiverFailsSends() throws {
        var rx: Receiver<Int>?
        let tx: Sender<Int>
        (tx, rx) = try Channel<Int>.bounded(capacity: 4)
        try tx.trySend(1)
        #expect(rx?.count == 1)
        rx = nil
        #expect(tx.isClosed)
        #expect(throws: (any Error).self) { try tx.trySend(2) }
    }

    @Test func closeDrainsBufferedValuesThenEnds() async throws {
        let (tx, rx) = makeUnboundedChannel(of: Int.self)
        for value in 0..<100 { try tx.trySend(value) }
        tx.close()
        var received: [Int] = []
        for await value in rx { received.append(value) }
        #expect(received == Array(0..<100))
    }

    @Test func lastSenderGoneClosesTheChannel() async throws {
        let rx = try spawnProducers(capacity: 8, producers: 3, count: 2_000)
        let seen = try await withTimeout {
            var lastIndex: [Int: Int] = [:]
            var total = 0
            var inOrder = true
            for await value in rx {
                let producer = value / 1_000_000
                let index = value % 1_000_000
                if let previous = lastIndex[producer], previous + 1 != index { inOrder = false }
                if lastIndex[producer] == nil && index != 0 { inOrder = false }
                lastIndex[producer] = index
                total += 1
            }
            return (total, inOrder)
        }
        #expect(seen.0 == 6_000)
        #expect(seen.1, "every sender's values arrive in the order it sent them")
    }

    @Test func backpressureSuspendsSendersUntilThereIsRoom() async throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 1)
        let producer = Task {
            for value in 0..<500 { try await tx.send(value) }
            tx.close()
        }
        let received = try await withTimeout {
            var values: [Int] = []
            while let value = try await rx.receive() { values.append(value) }
            return values
        }
        try await producer.value
        #expect(received == Array(0..<500))
    }

    @Test func manySendersAndReceiversDeliverEveryMessageExactlyOnce() async throws {
        let producers = 4
        let perProducer = 5_000
        let rx = try spawnProducers(capacity: 16, producers: producers, count: perProducer)
        let tally = Tally()
        try await withTimeout {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<3 {
                    let copy = rx
                    group.addTask {
                        var local: [Int] = []
                        for await value in copy { local.append(value) }
                        tally.add(contentsOf: local)
                    }
                }
            }
        }
        let counts = tally.snapshot
        #expect(counts.count == producers * perProducer)
        #expect(counts.values.allSatisfy { $0 == 1 })
    }

    @Test func cancellationStormLosesNothing() async throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 4)
        let received = Tally()
        let returned = Tally()
        let senders = 8
        let perSender = 400
        try await withTimeout(seconds: 40) {
            var random = TestRandom(seed: 42)
            var senderTasks: [Task<Void, Never>] = []
            for sender in 0..<senders {
                senderTasks.append(Task {
                    for index in 0..<perSender {
                        let value = sender * 10_000 + index
                        do throws(SendError<Int>) {
                            try await tx.send(value)
                        } catch {
                            returned.add(error.value)
                        }
                    }
                })
            }
            var receiverTasks: [Task<Void, Never>] = []
            for _ in 0..<40 {
                receiverTasks.append(Task {
                    while true {
                        do {
                            guard let value = try await rx.receive() else { return }
                            received.add(value)
                        } catch {
                            return
                        }
                    }
                })
            }
            for round in 0..<200 {
                await Task.yield()
                switch random.next() % 3 {
                case 0: senderTasks[Int(random.next() % UInt64(senders))].cancel()
                case 1: receiverTasks[round % receiverTasks.count].cancel()
                default: break
                }
            }
            for task in senderTasks { await task.value }
            tx.close()
            for task in receiverTasks.dropFirst(39) { await task.value }
            while let value = try? rx.tryReceive() { received.add(value) }
            for task in receiverTasks { task.cancel(); await task.value }
            while let value = try? rx.tryReceive() { received.add(value) }
        }
        var all = received.snapshot
        for (value, count) in returned.snapshot { all[value, default: 0] += count }
        #expect(all.count == senders * perSender, "every value was received or handed back")
        #expect(all.values.allSatisfy { $0 == 1 }, "and exactly once")
    }

    /// A Swift receive parked on an empty channel is handed the next value directly; the next
    /// receiver, which found one already waiting, queues behind it, so values go to waiting
    /// receivers in arrival order. A parked receive that is cancelled takes nothing, and the
    /// value sent after it stays in the channel.
    @Test func parkedReceivesGetValuesInOrderAndCancelLosesNothing() throws {
        let runtime = try Runtime.currentThread()
        let outcome = try withWatchdog("parkedReceivesGetValuesInOrderAndCancelLosesNothing") {
            try runtime.run { () async throws -> [Int?] in
                let (tx, rx) = try Channel<Int>.bounded(capacity: 4)
                let first = Tide.spawn { try await rx.receive() }
                await Tide.yield()
                let second = Tide.spawn { try await rx.receive() }
                await Tide.yield()
                try await tx.send(1)
                try await tx.send(2)
                let firstValue = try await first.value
                let secondValue = try await second.value

                let cancelled = Tide.spawn { try await rx.receive() }
                await Tide.yield()
                cancelled.cancel()
                await #expect(throws: CancellationError.self) { try await cancelled.value }
                try await tx.send(3)
                let third = try rx.tryReceive()

                let parked = Tide.spawn { try await rx.receive() }
                await Tide.yield()
                tx.close()
                let end = try await parked.value
                return [firstValue, secondValue, third, end]
            }
        }
        #expect(outcome == [1, 2, 3, nil])
    }

    /// Hand-offs to a parked receive racing its cancellation, with random timing: a plain thread
    /// sends 0..<2000 slowly (so the receive mostly finds the channel empty and parks in the
    /// slot), another cancels whichever receive is outstanding, and a consumer task receives
    /// one value at a time (each receive in a task of its own, retried when cancelled) until it
    /// has them all. A value lost by a cancelled receive would leave the consumer waiting
    /// forever: the watchdog fails the test. Each value must arrive exactly once.
    @Test func stressHandOffRacingCancelLosesNothing() throws {
        let count = 2_000
        let (tx, rx) = try Channel<Int>.bounded(capacity: count)
        let runtime = try Runtime.multiThread(workers: 2)
        defer { runtime.shutdown() }
        let received = Tally()
        let outstanding = OutstandingReceive()
        try withWatchdog("stressHandOffRacingCancelLosesNothing") {
            try runtime.run { () async throws -> Void in
                let sender = TestThread {
                    var random = TestRandom(seed: 21)
                    for value in 0..<count {
                        jitter(&random, upTo: 6)
                        try? tx.trySend(value)
                    }
                }
                let canceller = TestThread {
                    var random = TestRandom(seed: 22)
                    while !outstanding.isFinished {
                        jitter(&random, upTo: 12)
                        outstanding.cancel()
                    }
                }
                var total = 0
                while total < count {
                    let receive = Tide.spawn { () -> Int? in try? await rx.receive() }
                    outstanding.set(receive)
                    if let value = try await receive.value {
                        received.add(value)
                        total += 1
                    }
                }
                outstanding.finish()
                sender.join()
                canceller.join()
            }
        }
        let all = received.snapshot
        #expect(all.count == count)
        #expect(all.values.allSatisfy { $0 == 1 })
        #expect(throws: TryReceiveError.empty) { try rx.tryReceive() }
    }

    /// The first waiting receiver parks in the channel's inline slot, and a receive future that
    /// is dropped cannot take its waker back out. The next receiver (queued behind that stale
    /// slot) must still be woken by a send: sends wake the slot and the first queued receiver.
    @Test func aDroppedReceiveInTheSlotDoesNotStrandTheNextReceiver() throws {
        let runtime = try Runtime.currentThread()
        let received = try withWatchdog("aDroppedReceiveInTheSlotDoesNotStrandTheNextReceiver") {
            try runtime.run { () async throws -> Int? in
                let (tx, rx) = try Channel<Int>.bounded(capacity: 4)
                let first = try runtime.spawn(rx.receiveFuture())
                await Tide.yield()
                #expect(!first.isFinished)
                first.cancel()
                let firstOutcome = await first.wait()
                #expect(throws: JoinError.cancelled) { try firstOutcome.get() }
                let second = Tide.spawn { try await rx.receive() }
                await Tide.yield()
                #expect(!second.isFinished)
                try await tx.send(7)
                return try await second.value
            }
        }
        #expect(received == 7)
    }

    @Test func pollBasedSendAndReceiveOnLocalExecutor() throws {
        let (tx, rx) = try Channel<Int>.bounded(capacity: 3)
        let executor = LocalExecutor(parker: ConditionParker())
        let sum = Synchronization.Mutex(0)
        executor.spawn(ProducerFuture(sender: tx, next: 0, end: 1_000, pending: nil))
        executor.spawn(ConsumerFuture(receiver: rx, current: nil) { value in
            sum.withLock { $0 += value }
        })
        executor.run()
        #expect(sum.withLock { $0 } == (0..<1_000).reduce(0, +))
        #expect(executor.liveTasks == 0)
    }
}

/// Sends next..<end one by one, then closes (a hand-written poll state machine).
private struct ProducerFuture: Future {
    let sender: Sender<Int>
    var next: Int
    let end: Int
    var pending: SendFuture<Int>?

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            if pending == nil {
                if next == end {
                    sender.close()
                    return .ready(())
                }
                pending = sender.sendFuture(next)
                next += 1
            }
            guard case .ready = pending!.poll(&context) else { return .pending }
            pending = nil
        }
    }
}

/// Receives until the channel ends, handing each value to `consume`.
private struct ConsumerFuture: Future {
    let receiver: Receiver<Int>
    var current: ReceiveFuture<Int>?
    let consume: (Int) -> Void

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            if current == nil { current = receiver.receiveFuture() }
            guard case .ready(let value) = current!.poll(&context) else { return .pending }
            current = nil
            guard let value else { return .ready(()) }
            consume(value)
        }
    }
}

/// The receive a stress test's canceller may cancel.
private final class OutstandingReceive: @unchecked Sendable {
    private let lock = SyncLock()
    private var handle: JoinHandle<Int?>?
    private var finished = false

    func set(_ handle: JoinHandle<Int?>) { lock.withLock { self.handle = handle } }
    func cancel() { lock.withLock { handle }?.cancel() }
    func finish() { lock.withLock { finished = true } }
    var isFinished: Bool { lock.withLock { finished } }
}
