/// A growable FIFO ring over a manually managed buffer: channel storage, the schedulers' queues
/// and the blocking pool's queue.
///
/// Power-of-two storage so indexing is a mask; it grows by doubling, and a pop that empties a ring
/// holding more than 64 KiB of storage shrinks it to 64 KiB, so a burst (200,000 spawns, a
/// flooded channel) does not pin its peak memory for the life of the queue. The owner
/// calls ``destroy()`` exactly once (it is a plain struct over a raw pointer so that it can live in
/// a locked class field without copy-on-write checks on every push and pop).
@usableFromInline
struct RingBuffer<Element> {
    @usableFromInline var storage: UnsafeMutablePointer<Element>?
    @usableFromInline var capacity = 0
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    @inlinable
    init() {}

    /// A ring whose storage is allocated now, at the size an emptied ring shrinks back to
    /// (`retainedCapacity`, rounded down to a power of two): a queue that a runtime thread fills
    /// in bursts (its run queues) then never allocates until a burst outgrows that.
    init(preallocated: Void) {
        shrinkEmptyStorage()
    }

    @inlinable
    var isEmpty: Bool { count == 0 }

    @inlinable
    mutating func append(_ element: Element) {
        if count == capacity { grow() }
        (storage.unsafelyUnwrapped + ((head &+ count) & (capacity &- 1))).initialize(to: element)
        count &+= 1
    }

    @inlinable
    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = (storage.unsafelyUnwrapped + head).move()
        head = (head &+ 1) & (capacity &- 1)
        count &-= 1
        if count == 0 && capacity > Self.retainedCapacity { shrinkEmptyStorage() }
        return element
    }

    /// The most elements an empty ring keeps storage for (64 KiB of them).
    @inlinable
    static var retainedCapacity: Int { 65_536 / Swift.max(1, MemoryLayout<Element>.stride) }

    /// Swaps the storage of an empty ring that grew past `retainedCapacity` for one of at most
    /// that size: a burst's storage goes back, and the next burst does not grow the ring from
    /// nothing again, in doubling steps that are each, past 1 KiB, a malloc request for which
    /// glibc first consolidates its fast bins (every small chunk freed since).
    @usableFromInline
    mutating func shrinkEmptyStorage() {
        storage?.deallocate()
        storage = .allocate(capacity: Self.retainedPowerOfTwo)
        capacity = Self.retainedPowerOfTwo
        head = 0
    }

    /// `retainedCapacity` rounded down to a power of two (the storage size must be one).
    static var retainedPowerOfTwo: Int {
        var size = 8
        while size * 2 <= retainedCapacity { size *= 2 }
        return size
    }

    /// Frees the storage of an empty ring.
    @usableFromInline
    mutating func releaseStorage() {
        storage?.deallocate()
        storage = nil
        capacity = 0
        head = 0
    }

    @usableFromInline
    mutating func grow() {
        let newCapacity = Swift.max(8, capacity * 2)
        let newStorage = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        if let old = storage {
            // The elements are at most two runs: head to the end of the storage, then the start.
            let firstRun = Swift.min(count, capacity - head)
            newStorage.moveInitialize(from: old + head, count: firstRun)
            if firstRun < count {
                (newStorage + firstRun).moveInitialize(from: old, count: count - firstRun)
            }
            old.deallocate()
        }
        storage = newStorage
        capacity = newCapacity
        head = 0
    }

    /// Moves every element out into a new ring and leaves this one empty (so the elements can be
    /// dropped after a lock is released).
    @usableFromInline
    mutating func takeAll() -> RingBuffer<Element> {
        let taken = self
        self = RingBuffer()
        return taken
    }

    /// Deinitializes the elements and frees the storage.
    @usableFromInline
    mutating func destroy() {
        // In place, not through `popFirst`: the pop that empties a large ring would allocate
        // the smaller storage that `releaseStorage` frees right after.
        if let storage {
            let firstRun = Swift.min(count, capacity - head)
            (storage + head).deinitialize(count: firstRun)
            if firstRun < count { storage.deinitialize(count: count - firstRun) }
        }
        count = 0
        releaseStorage()
    }
}
