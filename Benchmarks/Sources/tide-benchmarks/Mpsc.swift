// W3 mpsc: 4 producers each send M=1,000,000 integers into one bounded channel (capacity 1024)
// read by 1 consumer. Metric: msgs_per_s (4·M / wall time, from the first send to the last
// receive).
//
// swift-default has no bounded channel: it uses AsyncStream with its default (unbounded) buffer,
// the built-in way to hand values between tasks; its producers never wait. asyncalgo's
// AsyncChannel is a rendezvous channel (capacity 0): every send waits for the consumer.
// asyncalgo-mpsc uses MultiProducerSingleConsumerAsyncChannel with watermarks low 512 / high 1024,
// the nearest it has to "bounded at 1024". nio has no multi-producer channel: skipped.

import AsyncAlgorithms
import Tide

private let baseMessages = 1_000_000
private let producerCount = 4
private let capacity = 1024

func mpscWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { scale in
            let perProducer = scaled(baseMessages, scale)
            let (received, nanos) = try withTideRuntime(flavor) {
                let start = monotonicNanos()
                let receiver = try startSwiftProducers(perProducer: perProducer)
                var received = 0
                while try await receiver.receive() != nil { received += 1 }
                return (received, monotonicNanos() - start)
            }
            return mpscMetrics(received: received, perProducer: perProducer, nanos: nanos)
        })
    }
    entries.append(Entry("tide-poll") { scale in
        let perProducer = scaled(baseMessages, scale)
        let (received, nanos) = try withPollRuntime { runtime in
            let start = monotonicNanos()
            let receiver = try startPollProducers(on: runtime, perProducer: perProducer)
            let received = try await runtime.spawn(Consumer(input: receiver)).value
            return (received, monotonicNanos() - start)
        }
        return mpscMetrics(received: received, perProducer: perProducer, nanos: nanos)
    })
    entries.append(Entry("swift-default") { scale in
        let perProducer = scaled(baseMessages, scale)
        let (received, nanos) = try blockingOnGlobalExecutor {
            let (stream, input) = AsyncStream.makeStream(of: Int.self)
            let start = monotonicNanos()
            let producers = Task {
                await withDiscardingTaskGroup { group in
                    for _ in 0..<producerCount {
                        group.addTask {
                            for value in 0..<perProducer { input.yield(value) }
                        }
                    }
                }
                input.finish()
            }
            var received = 0
            for await _ in stream { received += 1 }
            await producers.value
            return (received, monotonicNanos() - start)
        }
        return mpscMetrics(received: received, perProducer: perProducer, nanos: nanos)
    })
    entries.append(Entry("asyncalgo") { scale in
        let perProducer = scaled(baseMessages, scale)
        let (received, nanos) = try blockingOnGlobalExecutor {
            let channel = AsyncChannel<Int>()
            let start = monotonicNanos()
            let producers = Task {
                await withDiscardingTaskGroup { group in
                    for _ in 0..<producerCount {
                        group.addTask {
                            for value in 0..<perProducer { await channel.send(value) }
                        }
                    }
                }
                channel.finish()
            }
            var received = 0
            for await _ in channel { received += 1 }
            await producers.value
            return (received, monotonicNanos() - start)
        }
        return mpscMetrics(received: received, perProducer: perProducer, nanos: nanos)
    })
    entries.append(Entry("asyncalgo-mpsc") { scale in
        let perProducer = scaled(baseMessages, scale)
        let (received, nanos) = try blockingOnGlobalExecutor {
            var made = MultiProducerSingleConsumerAsyncChannel.makeChannel(
                of: Int.self, backpressureStrategy: .watermark(low: capacity / 2, high: capacity))
            var channel = made.takeChannel()
            var boxes: [SourceBox] = []
            for _ in 1..<producerCount {
                boxes.append(SourceBox(made.source.makeAdditionalSource()))
            }
            boxes.append(SourceBox(made.source))
            let start = monotonicNanos()
            for box in boxes {
                Task {
                    var source = box.take()
                    for value in 0..<perProducer { try await source.send(value) }
                    // Dropping the last source finishes the channel.
                }
            }
            boxes.removeAll()
            var received = 0
            while await channel.next() != nil { received += 1 }
            return (received, monotonicNanos() - start)
        }
        return mpscMetrics(received: received, perProducer: perProducer, nanos: nanos)
    })
    return Workload(
        name: "mpsc", primaryMetric: "msgs_per_s", higherIsBetter: true, entries: entries)
}

/// Creates the channel and starts the producers as Swift tasks; returns the receiving side. The
/// sender is local to this function, so that when the producers finish the channel closes.
private func startSwiftProducers(perProducer: Int) throws -> Receiver<Int> {
    let (sender, receiver) = try Channel<Int>.bounded(capacity: capacity)
    for _ in 0..<producerCount {
        Tide.spawn {
            for value in 0..<perProducer { try await sender.send(value) }
        }
    }
    return receiver
}

/// As `startSwiftProducers`, with the producers as poll tasks.
private func startPollProducers(on runtime: Runtime, perProducer: Int) throws -> Receiver<Int> {
    let (sender, receiver) = try Channel<Int>.bounded(capacity: capacity)
    for _ in 0..<producerCount {
        try runtime.spawn(Producer(output: sender, count: perProducer))
    }
    return receiver
}

private func mpscMetrics(received: Int, perProducer: Int, nanos: Int64)
    -> [(name: String, value: Double)]
{
    precondition(received == producerCount * perProducer, "mpsc: received \(received)")
    return [("msgs_per_s", Double(received) / (Double(nanos) / 1e9))]
}

/// Moves one non-copyable channel source into the task that produces with it.
private final class SourceBox: @unchecked Sendable {
    typealias Source = MultiProducerSingleConsumerAsyncChannel<Int, Never>.Source
    private var source: Source?

    init(_ source: consuming Source) { self.source = consume source }

    func take() -> Source {
        guard let source = source.take() else { preconditionFailure("source taken twice") }
        return source
    }
}

/// Poll-task producer: sends 0..<count, one `SendFuture` at a time.
struct Producer: Future {
    let output: Sender<Int>
    let count: Int
    var next = 0
    var sending: SendFuture<Int>?

    init(output: Sender<Int>, count: Int) {
        self.output = output
        self.count = count
    }

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            if sending == nil {
                if next == count { return .ready(()) }
                sending = output.sendFuture(next)
                next += 1
            }
            guard case .ready = sending!.poll(&context) else { return .pending }
            sending = nil
        }
    }
}

/// Poll-task consumer: receives until the channel is closed and drained; outputs the count.
struct Consumer: Future {
    let input: Receiver<Int>
    var received = 0
    var receiving: ReceiveFuture<Int>?

    init(input: Receiver<Int>) { self.input = input }

    mutating func poll(_ context: inout Context) -> Poll<Int> {
        while true {
            if receiving == nil { receiving = input.receiveFuture() }
            guard case .ready(let value) = receiving!.poll(&context) else { return .pending }
            receiving = nil
            if value == nil { return .ready(received) }
            received += 1
        }
    }
}
