/*
 ScancodeQueue: a fixed-size ring of bytes from one producer (the keyboard interrupt handler) to
 one consumer (the keyboard task).

 - `tail` is written only by the producer, `head` only by the consumer; both only grow (wrapping),
   and `tail - head` is the number of bytes queued.
 - push: if the ring is full, count a drop and return; otherwise write the slot, then publish it
   with a releasing store of `tail`. pop: an acquiring load of `tail` makes the slot's byte
   visible, read it, then free the slot with a releasing store of `head`.
 - The storage is allocated once, up front; push never allocates, blocks or spins, so it is safe
   in an interrupt handler.
*/

import Synchronization

final class ScancodeQueue: @unchecked Sendable {
    /// Number of slots; a power of two so that indices wrap with a mask.
    static let capacity = 64
    private let storage: UnsafeMutablePointer<UInt8>
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    /// Scancodes dropped because the ring was full.
    let dropped = Atomic<Int>(0)

    init() {
        storage = UnsafeMutablePointer<UInt8>.allocate(capacity: Self.capacity)
        storage.initialize(repeating: 0, count: Self.capacity)
    }

    deinit {
        storage.deallocate()
    }

    /// Producer side. Returns false (and counts the drop) when the ring is full.
    @discardableResult
    func push(_ byte: UInt8) -> Bool {
        let end = tail.load(ordering: .relaxed)
        let start = head.load(ordering: .acquiring)
        if end &- start == Self.capacity {
            dropped.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        storage[end & (Self.capacity - 1)] = byte
        tail.store(end &+ 1, ordering: .releasing)
        return true
    }

    /// Consumer side. Returns nil when the ring is empty.
    func pop() -> UInt8? {
        let start = head.load(ordering: .relaxed)
        let end = tail.load(ordering: .acquiring)
        if start == end { return nil }
        let byte = storage[start & (Self.capacity - 1)]
        head.store(start &+ 1, ordering: .releasing)
        return byte
    }
}
