// W2 pingpong: two tasks exchange a token over two channels, R=200,000 round trips.
// Metric: ns_per_rt (wall time / R). The token is an Int incremented by each side.

import AsyncAlgorithms
import NIOCore
import NIOPosix
import Tide

private let baseRounds = 200_000

func pingPongWorkload() -> Workload {
    var entries: [Entry] = []
    for flavor in TideFlavor.allCases {
        entries.append(Entry(flavor.name) { scale in
            let rounds = scaled(baseRounds, scale)
            let nanos = try withTideRuntime(flavor) {
                let (pingTx, pingRx) = try Channel<Int>.bounded(capacity: 1)
                let (pongTx, pongRx) = try Channel<Int>.bounded(capacity: 1)
                let start = monotonicNanos()
                let ponger = Tide.spawn {
                    while let token = try await pingRx.receive() {
                        try await pongTx.send(token + 1)
                    }
                }
                var token = 0
                for _ in 0..<rounds {
                    try await pingTx.send(token)
                    token = try await pongRx.receive() ?? 0
                }
                pingTx.close()
                try await ponger.value
                precondition(token == rounds, "pingpong: lost a round")
                return monotonicNanos() - start
            }
            return [("ns_per_rt", Double(nanos) / Double(rounds))]
        })
    }
    entries.append(Entry("tide-poll") { scale in
        let rounds = scaled(baseRounds, scale)
        let nanos = try withPollRuntime { runtime in
            let (pingTx, pingRx) = try Channel<Int>.bounded(capacity: 1)
            let (pongTx, pongRx) = try Channel<Int>.bounded(capacity: 1)
            let start = monotonicNanos()
            let ponger = try runtime.spawn(Relay(input: pingRx, output: pongTx))
            let pinger = try runtime.spawn(Pinger(output: pingTx, input: pongRx, rounds: rounds))
            let token = try await pinger.value
            pingTx.close()
            try await ponger.value
            precondition(token == rounds, "pingpong: lost a round")
            return monotonicNanos() - start
        }
        return [("ns_per_rt", Double(nanos) / Double(rounds))]
    })
    entries.append(Entry("swift-default") { scale in try plainTaskPingPong(scale: scale) })
    entries.append(Entry("tide-global") { scale in
        try Tide.installAsGlobalExecutor(try Runtime.multiThread(workers: 2))
        return try plainTaskPingPong(scale: scale)
    })
    entries.append(Entry("nio") { scale in
        let rounds = scaled(baseRounds, scale)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let home = group.next()
        let away = group.next()
        precondition(home !== away, "pingpong: expected two different event loops")
        let done = home.makePromise(of: Int.self)
        let start = monotonicNanos()
        home.execute { bounce(token: 0, rounds: rounds, home: home, away: away, done: done) }
        let token = try done.futureResult.wait()
        precondition(token == rounds, "pingpong: lost a round")
        return [("ns_per_rt", Double(monotonicNanos() - start) / Double(rounds))]
    })
    entries.append(Entry("asyncalgo") { scale in
        let rounds = scaled(baseRounds, scale)
        let nanos = try blockingOnGlobalExecutor {
            let pings = AsyncChannel<Int>()
            let pongs = AsyncChannel<Int>()
            let start = monotonicNanos()
            let ponger = Task {
                for await token in pings { await pongs.send(token + 1) }
            }
            var iterator = pongs.makeAsyncIterator()
            var token = 0
            for _ in 0..<rounds {
                await pings.send(token)
                token = await iterator.next() ?? 0
            }
            pings.finish()
            await ponger.value
            precondition(token == rounds, "pingpong: lost a round")
            return monotonicNanos() - start
        }
        return [("ns_per_rt", Double(nanos) / Double(rounds))]
    })
    return Workload(
        name: "pingpong", primaryMetric: "ns_per_rt", higherIsBetter: false, entries: entries)
}

/// One NIO round trip: a promise completed on `away`, its result hopped back to `home`.
private func bounce(
    token: Int, rounds: Int, home: any EventLoop, away: any EventLoop, done: EventLoopPromise<Int>
) {
    if token == rounds {
        done.succeed(token)
        return
    }
    away.submit { token + 1 }.hop(to: home).whenSuccess { next in
        bounce(token: next, rounds: rounds, home: home, away: away, done: done)
    }
}

/// Poll-task side A: sends the token, waits for the answer, `rounds` times; outputs the token.
struct Pinger: Future {
    let output: Sender<Int>
    let input: Receiver<Int>
    let rounds: Int
    var token = 0
    var sending: SendFuture<Int>?
    var receiving: ReceiveFuture<Int>?

    init(output: Sender<Int>, input: Receiver<Int>, rounds: Int) {
        self.output = output
        self.input = input
        self.rounds = rounds
    }

    mutating func poll(_ context: inout Context) -> Poll<Int> {
        while true {
            if receiving != nil {
                guard case .ready(let answer) = receiving!.poll(&context) else { return .pending }
                receiving = nil
                token = answer ?? token
            }
            if sending == nil {
                if token >= rounds { return .ready(token) }
                sending = output.sendFuture(token)
            }
            guard case .ready = sending!.poll(&context) else { return .pending }
            sending = nil
            receiving = input.receiveFuture()
        }
    }
}

/// Poll-task side B: answers every token with token + 1 until its input closes.
struct Relay: Future {
    let input: Receiver<Int>
    let output: Sender<Int>
    var sending: SendFuture<Int>?
    var receiving: ReceiveFuture<Int>?

    init(input: Receiver<Int>, output: Sender<Int>) {
        self.input = input
        self.output = output
    }

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            if sending != nil {
                guard case .ready = sending!.poll(&context) else { return .pending }
                sending = nil
            }
            if receiving == nil { receiving = input.receiveFuture() }
            guard case .ready(let token) = receiving!.poll(&context) else { return .pending }
            receiving = nil
            guard let token else { return .ready(()) }
            sending = output.sendFuture(token + 1)
        }
    }
}

/// W2 with plain tasks and AsyncStream: swift-default, and tide-global after installing Tide.
private func plainTaskPingPong(scale: Double) throws -> [(name: String, value: Double)] {
    let rounds = scaled(baseRounds, scale)
    let nanos = try blockingOnGlobalExecutor {
        let (pings, pingIn) = AsyncStream.makeStream(of: Int.self)
        let (pongs, pongIn) = AsyncStream.makeStream(of: Int.self)
        let start = monotonicNanos()
        let ponger = Task {
            for await token in pings { pongIn.yield(token + 1) }
        }
        var iterator = pongs.makeAsyncIterator()
        var token = 0
        for _ in 0..<rounds {
            pingIn.yield(token)
            token = await iterator.next() ?? 0
        }
        pingIn.finish()
        await ponger.value
        precondition(token == rounds, "pingpong: lost a round")
        return monotonicNanos() - start
    }
    return [("ns_per_rt", Double(nanos) / Double(rounds))]
}
