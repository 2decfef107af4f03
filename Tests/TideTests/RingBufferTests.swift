import Testing
@testable import Tide

@Suite("RingBuffer")
struct RingBufferTests {
    @Test func keepsOrderAcrossWrapAndGrowth() {
        var ring = RingBuffer<Int>()
        defer { ring.destroy() }
        var expected = 0
        var next = 0
        // Interleave pushes and pops so the head wraps while the ring grows.
        for round in 1...200 {
            for _ in 0..<(round % 7 + 3) {
                ring.append(next)
                next += 1
            }
            for _ in 0..<(round % 5 + 1) {
                guard let value = ring.popFirst() else { break }
                #expect(value == expected)
                expected += 1
            }
        }
        while let value = ring.popFirst() {
            #expect(value == expected)
            expected += 1
        }
        #expect(expected == next)
    }

    /// An emptied ring that grew past `retainedCapacity` shrinks to it (not to nothing), then
    /// takes a burst of that size without growing; it keeps working either way.
    @Test func anEmptiedLargeRingShrinksToItsRetainedCapacityAndStillWorks() {
        var ring = RingBuffer<Int>()
        defer { ring.destroy() }
        let retained = RingBuffer<Int>.retainedCapacity
        let burst = retained * 4
        for value in 0..<burst { ring.append(value) }
        #expect(ring.capacity >= burst)
        for value in 0..<burst { #expect(ring.popFirst() == value) }
        #expect(ring.capacity == retained)
        #expect(ring.popFirst() == nil)
        for value in 0..<retained { ring.append(value) }
        #expect(ring.capacity == retained)
        for value in 0..<retained { #expect(ring.popFirst() == value) }
        ring.append(7)
        #expect(ring.popFirst() == 7)
        #expect(ring.capacity == retained)
    }

    @Test func destroyReleasesTheElements() {
        final class Tracked {
            let onDeinit: () -> Void
            init(_ onDeinit: @escaping () -> Void) { self.onDeinit = onDeinit }
            deinit { onDeinit() }
        }
        var released = 0
        var ring = RingBuffer<Tracked>()
        for _ in 0..<100 { ring.append(Tracked { released += 1 }) }
        _ = ring.popFirst()
        ring.destroy()
        #expect(released == 100)
        #expect(ring.capacity == 0)
    }
}
