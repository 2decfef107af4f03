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

    @Test func anEmptiedLargeRingFreesItsStorageAndStillWorks() {
        var ring = RingBuffer<Int>()
        defer { ring.destroy() }
        let burst = RingBuffer<Int>.retainedCapacity * 4
        for value in 0..<burst { ring.append(value) }
        #expect(ring.capacity >= burst)
        for value in 0..<burst { #expect(ring.popFirst() == value) }
        #expect(ring.capacity == 0)
        #expect(ring.popFirst() == nil)
        ring.append(7)
        #expect(ring.popFirst() == 7)
        // A small ring keeps its storage when emptied: no reallocation per push.
        #expect(ring.capacity == 8)
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
