import Synchronization
import Testing
import TideCore

/// Polls `future` with `waker` until ready, at most `limit` times; nil if still pending.
func drive<F: Future>(_ future: inout F, _ waker: borrowing Waker, limit: Int = 100) -> F.Output? {
    var context = Context(waker: waker)
    for _ in 0..<limit {
        if case .ready(let value) = future.poll(&context) { return value }
    }
    return nil
}

@Suite("Combinators")
struct CombinatorTests {
    @Test func readyMapAndThen() {
        let counter = WakerCounter()
        do {
            let waker = counter.makeWaker()
            var chain = ready(20).map { $0 + 1 }.then { value in YieldTimes(remaining: 3, value: value * 2) }
            #expect(drive(&chain, waker) == 42)
        }
        #expect(counter.live == 0)
    }

    @Test func lazyRunsOnFirstPollOnly() {
        nonisolated(unsafe) var runs = 0
        var future = lazy { () -> Int in
            runs += 1
            return 7
        }
        #expect(runs == 0)
        #expect(drive(&future, Waker.noop) == 7)
        #expect(runs == 1)
    }

    @Test func joinWaitsForEveryChildAndKeepsOrder() {
        let counter = WakerCounter()
        let left = TestSignal()
        let right = TestSignal()
        do {
            let waker = counter.makeWaker()
            var both = join(left.future("a"), right.future(1))
            var context = Context(waker: waker)
            #expect(!both.poll(&context).isReady)
            right.fire()
            #expect(!both.poll(&context).isReady)
            left.fire()
            guard case .ready(let (a, b)) = both.poll(&context) else {
                Issue.record("join not ready after both children")
                return
            }
            #expect(a == "a" && b == 1)
        }
        #expect(counter.live == 0)
        #expect(counter.wakes.load(ordering: .relaxed) == 2)
    }

    @Test func join3AndJoinAll() {
        var three = join(ready(1), YieldTimes(remaining: 2, value: 2), ready("x"))
        let result = drive(&three, Waker.noop)
        #expect(result?.0 == 1 && result?.1 == 2 && result?.2 == "x")

        var all = joinAll((0..<10).map { YieldTimes(remaining: 9 - $0, value: $0) })
        #expect(drive(&all, Waker.noop) == Array(0..<10))

        var empty = joinAll([Ready<Int>]())
        #expect(drive(&empty, Waker.noop) == [])
    }

    @Test func largeJoinAllPollsOnlyTheChildrenThatWoke() {
        let count = JoinAll<PollFn<Int>>.scanLimit * 10
        let counter = WakerCounter()
        let polls = Atomic<Int>(0)
        let signals = (0..<count).map { _ in TestSignal() }
        do {
            let waker = counter.makeWaker()
            var context = Context(waker: waker)
            var all = joinAll(signals.enumerated().map { index, signal in
                let inner = signal.future(index)
                return pollFn { context -> Poll<Int> in
                    polls.add(1, ordering: .relaxed)
                    var future = inner
                    return future.poll(&context)
                }
            })
            guard case .pending = all.poll(&context) else {
                Issue.record("no child is ready yet")
                return
            }
            #expect(polls.load(ordering: .relaxed) == count)
            var outputs: [Int]? = nil
            for (step, index) in (0..<count).shuffled().enumerated() {
                let wakesBefore = counter.totalWakes
                signals[index].fire()
                #expect(counter.totalWakes == wakesBefore + 1)
                if case .ready(let values) = all.poll(&context) {
                    #expect(step == count - 1)
                    outputs = values
                }
            }
            // A few scans, then one poll per wake: O(n) in all (scanning at every wake would
            // poll about count^2 / 2 = 51,200 times).
            #expect(polls.load(ordering: .relaxed) <= 7 * count)
            #expect(outputs == Array(0..<count))
        }
        #expect(counter.live == 0)
    }

    @Test func largeJoinAllOfSelfWakingChildren() {
        var all = joinAll((0..<100).map { YieldTimes(remaining: 99 - $0, value: $0) })
        #expect(drive(&all, Waker.noop, limit: 101) == Array(0..<100))
    }

    @Test func selectTakesTheFirstReadyAndDropsTheLoser() {
        let counter = WakerCounter()
        let slow = TestSignal()
        do {
            let waker = counter.makeWaker()
            var race = select(slow.future("slow"), YieldTimes(remaining: 2, value: 5))
            #expect(drive(&race, waker) == .right(5))
            // The loser registered a waker; forgetting it (what its cleanup does) releases it.
            slow.forget()
        }
        #expect(counter.live == 0)
    }

    @Test func selectPrefersTheEarlierBranchWhenBothAreReady() {
        var race = select(ready(1), ready(2))
        #expect(drive(&race, Waker.noop) == .left(1))
    }

    @Test func selectAllReportsTheWinnerIndex() {
        var race = selectAll([YieldTimes(remaining: 5, value: 0), YieldTimes(remaining: 1, value: 1),
                              YieldTimes(remaining: 3, value: 2)])
        let winner = drive(&race, Waker.noop)
        #expect(winner?.index == 1 && winner?.output == 1)
    }

    @Test func pendingNeverCompletes() {
        var never = pending(Int.self)
        #expect(drive(&never, Waker.noop, limit: 10) == nil)
    }
}
