import Synchronization
import Testing
@testable import Tide

@Suite("LocalQueue")
struct LocalQueueTests {
    /// A steal takes the older half: the newest of it to run now, the rest in the stealer's
    /// queue in order; a stealer whose own queue is over half full takes nothing.
    @Test func stealTakesTheOlderHalfAndDeclinesIntoAFullQueue() {
        let victim = LocalQueue()
        let thief = LocalQueue()
        for value in UInt(0)..<10 { #expect(victim.push(RunnableRef(bits: value)) == nil) }
        #expect(victim.steal(into: thief) == RunnableRef(bits: 4))
        #expect(victim.count == 5)
        #expect(thief.count == 4)
        for value in UInt(0)..<4 { #expect(thief.pop() == RunnableRef(bits: value)) }
        #expect(thief.pop() == nil)

        let full = LocalQueue()
        for value in UInt(100)..<(100 + UInt(LocalQueue.capacity) / 2 + 1) {
            #expect(full.push(RunnableRef(bits: value)) == nil)
        }
        #expect(victim.steal(into: full) == nil)
        #expect(victim.count == 5)
        for value in UInt(5)..<10 { #expect(victim.pop() == RunnableRef(bits: value)) }
    }

    /// A batch push keeps order behind what was queued and is visible to stealers at once.
    @Test func aBatchPushKeepsOrderAndCanBeStolen() {
        let queue = LocalQueue()
        #expect(queue.push(RunnableRef(bits: 1)) == nil)
        var next: UInt = 2
        queue.push(count: 9) {
            defer { next += 1 }
            return next
        }
        #expect(queue.count == 10)
        #expect(queue.room == Int(LocalQueue.capacity) - 10)
        let thief = LocalQueue()
        #expect(queue.steal(into: thief) == RunnableRef(bits: 5))
        for value in UInt(6)...10 { #expect(queue.pop() == RunnableRef(bits: value)) }
        #expect(queue.pop() == nil)
        for value in UInt(1)...4 { #expect(thief.pop() == RunnableRef(bits: value)) }
    }

    /// One owner pushes (overflowing now and then) and pops while three threads steal into
    /// their own queues and pop them, with random pauses: every value comes out exactly once.
    @Test func concurrentStealsLoseAndDuplicateNothing() {
        let total = runningUnderThreadSanitizer ? 20_000 : 200_000
        let victim = LocalQueue()
        let ownerDone = DoneFlag()
        let seen = (0..<4).map { _ in SeenValues() }

        let stealers = (1...3).map { index in
            TestThread {
                let own = LocalQueue()
                var random = TestRandom(seed: UInt64(index))
                var mine: [Int] = []
                while true {
                    let finished = ownerDone.isSet
                    if let first = victim.steal(into: own) {
                        mine.append(Int(first.bits))
                        while let next = own.pop() { mine.append(Int(next.bits)) }
                    } else if finished {
                        break
                    }
                    jitter(&random, upTo: 4)
                }
                seen[index].values = mine
            }
        }

        var random = TestRandom(seed: 99)
        var mine: [Int] = []
        for value in 0..<total {
            if let start = victim.push(RunnableRef(bits: UInt(value))) {
                // Full: the claimed older half and the value itself leave the queue here.
                for offset in 0..<LocalQueue.overflowCount {
                    mine.append(Int(victim.claimed(at: start &+ UInt32(offset))))
                }
                mine.append(value)
            }
            if random.next(3) == 0, let popped = victim.pop() { mine.append(Int(popped.bits)) }
            if random.next(64) == 0 { jitter(&random, upTo: 8) }
        }
        while let popped = victim.pop() { mine.append(Int(popped.bits)) }
        ownerDone.set()
        for stealer in stealers { stealer.join() }
        seen[0].values = mine

        var counts = [Int](repeating: 0, count: total)
        for part in seen { for value in part.values { counts[value] += 1 } }
        #expect(counts.allSatisfy { $0 == 1 })
        #expect(seen[1...].contains { !$0.values.isEmpty })
    }
}

/// Set once by the owner thread when it has emptied its queue.
private final class DoneFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

/// What one thread took, read after it was joined.
private final class SeenValues: @unchecked Sendable {
    var values: [Int] = []
}
