/*
 LocalQueue: a worker's bounded run queue. The owner pushes and pops without locks; other
 threads steal half of it. The same protocol as tokio's multi-thread local queue.

 Storage is a ring of `capacity` (power of two) raw pointers, each an encoded `Runnable`.
 Positions are 32-bit counters that only grow (wrapping); slot = position & mask.

 - `tail` (Atomic<UInt32>) is written only by the owner: the next position to push at.
 - `head` (Atomic<UInt64>) packs two positions: `real` (low 32 bits), the next position to pop or
   steal, and `steal` (high 32 bits), the start of a range a stealer has claimed but not finished
   copying. When no steal is in progress, steal == real.

 Owner push: if tail - steal < capacity there is room: write the slot, then store tail+1 with
 release (the slot write happens-before any reader that acquires the tail). If the queue is full
 the caller moves half of it to the global queue, claiming those slots with a CAS on head exactly
 like a pop and copying them out before its next push.
 Owner pop: CAS head from (steal, real) to (steal', real+1), where steal' follows real when no
 steal is in progress; the CAS makes the slot ours.
 Steal (any thread): load head; if a steal is in progress (steal != real) give up. Claim n = half
 of (tail - real) by CAS-ing head to (real, real+n): `real` moves on, so neither the owner nor
 other stealers take those slots, and `steal` stays behind, so the owner cannot overwrite them
 (push checks room against `steal`). Copy the n slots into the stealer's own queue, then CAS
 head's steal half forward to the new real, ending the claim.
*/

import Synchronization

/// A runnable encoded in one word: a Swift job (an `UnownedJob`'s pointer) or a retained poll
/// task (an object pointer with the low bit set; objects are at least 16-byte aligned).
struct RunnableRef: Equatable {
    let bits: UInt

    init(job: UnownedJob) {
        bits = unsafeBitCast(job, to: UInt.self)
    }

    /// A job that reached Tide through Swift's global executor (a task with no executor
    /// preference): it runs on the generic executor, as Swift's own global executor runs it.
    init(globalJob job: UnownedJob) {
        bits = unsafeBitCast(job, to: UInt.self) | 2
    }

    /// A poll task; the ref holds the queue's reference `task` until it is taken.
    init(task: Unmanaged<PollTaskBase>) {
        bits = UInt(bitPattern: task.toOpaque()) | 1
    }

    init(bits: UInt) { self.bits = bits }

    var isTask: Bool { bits & 1 == 1 }

    /// Whether the job came through the global executor; only for `!isTask`.
    var isGlobalJob: Bool { bits & 2 == 2 }

    /// The job; only for `!isTask`.
    var job: UnownedJob { unsafeBitCast(bits & ~3, to: UnownedJob.self) }

    /// The queue's reference to the task; only for `isTask`, taken once.
    var task: Unmanaged<PollTaskBase> {
        Unmanaged<PollTaskBase>.fromOpaque(UnsafeRawPointer(bitPattern: bits & ~1)!)
    }
}

final class LocalQueue: @unchecked Sendable {
    static let capacity: UInt32 = 256
    static let mask: UInt32 = capacity - 1

    private let head = Atomic<UInt64>(0)
    private let tail = Atomic<UInt32>(0)
    private let slots: UnsafeMutablePointer<UInt>

    init() {
        slots = .allocate(capacity: Int(Self.capacity))
        slots.initialize(repeating: 0, count: Int(Self.capacity))
    }

    deinit {
        slots.deallocate()
    }

    private static func unpack(_ value: UInt64) -> (steal: UInt32, real: UInt32) {
        (UInt32(truncatingIfNeeded: value >> 32), UInt32(truncatingIfNeeded: value))
    }

    private static func pack(steal: UInt32, real: UInt32) -> UInt64 {
        (UInt64(steal) << 32) | UInt64(real)
    }

    /// Number of runnables queued (approximate when read by another thread).
    var count: Int {
        let (_, real) = Self.unpack(head.load(ordering: .acquiring))
        return Int(tail.load(ordering: .acquiring) &- real)
    }

    var isEmpty: Bool { count == 0 }

    /// Owner only. Pushes `item` and returns nil. If the queue is full, claims its older half
    /// instead (`overflowCount` slots) and returns the position of the first claimed slot: the
    /// caller reads them with `claimed(at:)` before its next push and moves them, and `item`, to
    /// the global queue. Nothing is allocated: an array per overflow was a malloc request over
    /// 1 KiB, for which glibc consolidates every small chunk freed since.
    func push(_ item: RunnableRef) -> UInt32? {
        while true {
            let (steal, _) = Self.unpack(head.load(ordering: .acquiring))
            let tail = self.tail.load(ordering: .relaxed)
            if tail &- steal < Self.capacity {
                slots[Int(tail & Self.mask)] = item.bits
                self.tail.store(tail &+ 1, ordering: .releasing)
                return nil
            }
            if let start = claimHalfForOverflow(tail: tail) { return start }
            // A stealer moved head meanwhile; there is room now or soon. Retry.
        }
    }

    /// How many slots an overflowing `push` claims.
    static let overflowCount = Int(capacity / 2)

    /// Owner only. A slot claimed by the last overflowing `push`, by position; valid until the
    /// owner's next push (the claim moved `real` past it, so no other thread reads it, and only
    /// the owner writes slots).
    func claimed(at position: UInt32) -> UInt {
        slots[Int(position & Self.mask)]
    }

    private func claimHalfForOverflow(tail: UInt32) -> UInt32? {
        let current = head.load(ordering: .acquiring)
        let (steal, real) = Self.unpack(current)
        // Only when no steal is in progress and the queue is really full.
        guard steal == real, tail &- real == Self.capacity else { return nil }
        let half = UInt32(Self.overflowCount)
        let next = Self.pack(steal: real &+ half, real: real &+ half)
        guard head.compareExchange(expected: current, desired: next, ordering: .acquiringAndReleasing)
            .exchanged
        else { return nil }
        return real
    }

    /// Owner only. Free slots: a push of up to this many does not overflow (stealers only ever
    /// make more room).
    var room: Int {
        let (steal, _) = Self.unpack(head.load(ordering: .acquiring))
        return Int(Self.capacity &- (tail.load(ordering: .relaxed) &- steal))
    }

    /// Owner only. Pushes `count` runnables, each made by `next`, and publishes them with one
    /// store; `count` must not exceed `room`.
    func push(count: Int, _ next: () -> UInt) {
        precondition(count <= room, "a batch larger than the local queue's room")
        let tail = self.tail.load(ordering: .relaxed)
        for offset in 0..<UInt32(count) {
            slots[Int((tail &+ offset) & Self.mask)] = next()
        }
        self.tail.store(tail &+ UInt32(count), ordering: .releasing)
    }

    /// Owner only. Pops the oldest runnable.
    func pop() -> RunnableRef? {
        var current = head.load(ordering: .acquiring)
        while true {
            let (steal, real) = Self.unpack(current)
            let tail = self.tail.load(ordering: .relaxed)
            if real == tail { return nil }
            let nextReal = real &+ 1
            let next = steal == real
                ? Self.pack(steal: nextReal, real: nextReal)
                : Self.pack(steal: steal, real: nextReal)
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged {
                return RunnableRef(bits: slots[Int(real & Self.mask)])
            }
            current = original
        }
    }

    /// Any thread. Moves about half of this queue into `destination`, the calling worker's own
    /// queue, and returns one of the stolen runnables to run now; nil if there was nothing to
    /// take or `destination` is over half full. The runnables are copied straight into
    /// `destination`'s free slots: an array per steal was a malloc request of up to 1,056
    /// bytes, for which glibc consolidates every small chunk freed since.
    func steal(into destination: LocalQueue) -> RunnableRef? {
        // Only the destination's owner (the caller) pushes there, so its room can only grow.
        guard destination.room >= Int(Self.capacity / 2) else { return nil }
        var current = head.load(ordering: .acquiring)
        var claimedFrom: UInt32 = 0
        var claimed: UInt32 = 0
        while true {
            let (steal, real) = Self.unpack(current)
            if steal != real { return nil }
            let tail = self.tail.load(ordering: .acquiring)
            let available = tail &- real
            if available == 0 || available > Self.capacity { return nil }
            // At most half the capacity, which the destination has room for.
            let take = available - available / 2
            let next = Self.pack(steal: steal, real: real &+ take)
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged {
                claimedFrom = real
                claimed = take
                break
            }
            current = original
        }
        // Copy the claimed range past the destination's tail: the owner cannot overwrite it
        // while our `steal` lags behind, and no other thread reads the destination's slots
        // there before its tail moves.
        let destinationTail = destination.tail.load(ordering: .relaxed)
        for offset in 0..<claimed {
            destination.slots[Int((destinationTail &+ offset) & Self.mask)] =
                slots[Int((claimedFrom &+ offset) & Self.mask)]
        }
        // End the claim: move `steal` up to `real`.
        current = head.load(ordering: .acquiring)
        while true {
            let (_, real) = Self.unpack(current)
            let next = Self.pack(steal: real, real: real)
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        // The newest stolen runnable runs now; the others are published to the destination.
        let last = claimed - 1
        let first = RunnableRef(bits: destination.slots[Int((destinationTail &+ last) & Self.mask)])
        if last > 0 { destination.tail.store(destinationTail &+ last, ordering: .releasing) }
        return first
    }
}
