/*
 TimerWheel: a hierarchical timing wheel with 250 µs ticks.

 Level 0 has 16384 slots of one tick (the next ~4 s, one slot per 250 µs); levels 1 to 5 have 64
 slots each, a slot at level L covering 16384 * 64^(L-1) ticks, up to about 139 years (later
 deadlines wait in the last level and are re-inserted). An entry goes to the level of the
 highest bit in which its deadline differs from `elapsed` (the last tick processed): bits 0-13
 are level 0, then 6 bits per level; its slot is its deadline's bits at that level. Inserting and
 cancelling are O(1): each slot is an intrusive doubly-linked list, and occupancy is a bitmap
 (level 0: 256 words and a 4-word summary), so finding the next expiration is a few bit scans.

 Why the tick is 250 µs: deadlines round up to a tick (a timer never fires early), so the tick
 is the lateness every timer starts with. With 1 ms ticks, 200,000 sleeps had a median lateness
 of 0.9 ms and a p99 near 2 ms; with 250 µs ticks, 0.27 ms and about 0.6 ms. The driver wakes
 at most once per occupied tick.

 Why level 0 is wide: when a slot of a higher level comes due, all its entries are re-inserted
 at once, touching every entry (about 200 ns each, cache misses). With 64-slot levels, 200,000
 sleeps spread over 500 ms cascaded 25,000 entries every 64 ms: a 5 ms pause of the loop each
 time, and the p99 lateness of the whole workload. With 16384 slots, deadlines within ~4 s never
 cascade, and a cascade happens once per ~4 s of deadlines.

 Processing (`advance(now:)`): find the earliest occupied slot (the lowest level that has one:
 every entry at a lower level expires before any entry at a higher level); if its start is not
 after `now`, move `elapsed` to it, take the whole slot, fire entries whose deadline has passed
 and re-insert the rest (they cascade to a lower level). Deadlines are rounded up to the next
 tick and an entry fires only when `now >= deadline`, so a timer never fires early. Wakers are
 collected in batches of at most 256 and woken outside the lock: a batch that fills up inside a
 level-0 slot (whose entries all share one tick) puts the rest of the slot back; a higher-level
 slot is still emptied whole, its due entries beyond the batch re-inserted one level down, so
 that the ordering between levels above always holds.

 Concurrency: one mutex guards the wheel and every entry's fields (links, deadline, waker, state).
 Entries are not retained by the wheel: an entry that is deallocated removes itself in `deinit`
 (taking the mutex first), and the wheel touches entries only while holding the mutex. Firing
 takes each entry's waker out under the mutex and wakes them after unlocking. The last write to a
 fired entry, still under the mutex, is its atomic `isFired` flag (release): once it reads true
 (acquire), the entry is out of the wheel for good and nothing of it is touched again, so its
 next poll and its `deinit` skip the mutex. A sleep that completes costs two lock round trips
 fewer, and the firing thread no longer waits for those of every sleeper it woke.
*/

#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import TideCore

/// Reads CLOCK_MONOTONIC in nanoseconds.
@usableFromInline
func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// One timer in the wheel: a deadline and the waker to call when it passes.
final class TimerEntry: @unchecked Sendable {
    enum State { case idle, linked, fired }

    let wheel: TimerWheel
    /// Deadline in nanoseconds of CLOCK_MONOTONIC.
    let deadlineNanoseconds: UInt64
    // Everything below is guarded by wheel.lock.
    @exclusivity(unchecked) var tick: UInt64 = 0
    @exclusivity(unchecked) var state = State.idle
    @exclusivity(unchecked) var level = 0
    @exclusivity(unchecked) var slot = 0
    @exclusivity(unchecked) var next: Unmanaged<TimerEntry>?
    @exclusivity(unchecked) var previous: Unmanaged<TimerEntry>?
    @exclusivity(unchecked) var waker: Waker?
    /// Set (under the lock, last) when `state` becomes `fired`; read without the lock.
    let isFired = Atomic<Bool>(false)

    init(wheel: TimerWheel, deadlineNanoseconds: UInt64) {
        self.wheel = wheel
        self.deadlineNanoseconds = deadlineNanoseconds
    }

    deinit {
        // Fired: unlinked and its waker taken; the wheel never touches it again.
        if isFired.load(ordering: .acquiring) { return }
        wheel.remove(self)
    }

    /// Ready once the deadline passed; otherwise stores the task's waker and arms the timer.
    func poll(_ context: inout Context) -> Poll<Void> {
        if isFired.load(ordering: .acquiring) { return .ready(()) }
        return wheel.poll(self, &context)
    }

    /// Under the wheel's lock: the entry is unlinked and its waker taken. The last write to it.
    fileprivate func markFired() {
        state = .fired
        isFired.store(true, ordering: .releasing)
    }
}

final class TimerWheel: @unchecked Sendable {
    static let levels = 6
    /// Level 0: 2^14 slots of one tick each.
    static let level0Bits = 14
    /// Levels 1 and up: 2^6 slots each.
    static let upperBits = 6
    /// Ticks covered by the wheel: 2^(14 + 5 * 6) ticks of 250 µs, about 139 years.
    static let range: UInt64 = 1 << UInt64(level0Bits + upperBits * (levels - 1))
    /// Words of level 0's occupancy bitmap (the words for levels 1... follow, one each).
    static let level0Words = (1 << level0Bits) / 64
    /// Words of level 0's summary: bit w set when occupancy word w is not zero.
    static let summaryWords = level0Words / 64

    /// The lowest deadline bit a level looks at.
    @inline(__always)
    static func shift(_ level: Int) -> Int { level == 0 ? 0 : level0Bits + upperBits * (level - 1) }
    /// Slots at `level`.
    @inline(__always)
    static func slots(_ level: Int) -> Int { level == 0 ? 1 << level0Bits : 1 << upperBits }
    /// Index of the level's first slot in `heads`.
    @inline(__always)
    static func base(_ level: Int) -> Int {
        level == 0 ? 0 : (1 << level0Bits) + (1 << upperBits) * (level - 1)
    }

    let lock = SyncLock()
    /// CLOCK_MONOTONIC nanoseconds at tick 0.
    let originNanoseconds: UInt64
    // Guarded by lock.
    @exclusivity(unchecked) private var elapsed: UInt64 = 0
    @exclusivity(unchecked) private var heads: [Unmanaged<TimerEntry>?]
    /// Occupancy bits: `level0Words` words for level 0, then one word per upper level.
    @exclusivity(unchecked) private var occupied: [UInt64]
    /// Bit w % 64 of word w / 64 set when level 0's occupancy word w is not zero.
    @exclusivity(unchecked) private var level0Summary: [UInt64]
    @exclusivity(unchecked) private(set) var count = 0
    /// Called (outside the lock) when an insert made the earliest deadline earlier; the runtime
    /// uses it to wake a driver that sleeps with a longer timeout. Set once, before use.
    var onEarlierDeadline: @Sendable () -> Void = {}
    @exclusivity(unchecked) private var armedUntil: UInt64 = .max
    /// What `advance` collects the wakers of fired timers in: allocated with the wheel, kept
    /// from one call to the next, never grown (at most `fireBatch` per batch). An array that
    /// grew (fresh per call, or kept but doubled for a larger batch) was a malloc request over
    /// 1 KiB on the thread that fires the timers, and glibc first consolidates its fast bins
    /// for those: every small chunk freed since, 10-15 ms at a time once 100,000 tasks had
    /// finished (with the other allocations of that kind, W5's whole p99).
    @exclusivity(unchecked) private var firedBuffer: [RawWaker] = []
    typealias RawWaker = (data: UnsafeRawPointer?, vtable: WakerVTable)

    init() {
        originNanoseconds = monotonicNanoseconds()
        heads = Array(repeating: nil, count: Self.base(Self.levels))
        occupied = Array(repeating: 0, count: Self.level0Words + Self.levels - 1)
        level0Summary = Array(repeating: 0, count: Self.summaryWords)
        firedBuffer.reserveCapacity(Self.fireBatch)
    }

    /// The length of a tick.
    static let tickNanoseconds: UInt64 = 250_000

    /// The tick at which a deadline may fire: rounded up, so never early.
    func tick(forDeadline nanoseconds: UInt64) -> UInt64 {
        if nanoseconds <= originNanoseconds { return 0 }
        let delta = nanoseconds - originNanoseconds
        // Rounded up without `delta + tick - 1`, which overflows for the farthest deadlines.
        return delta / Self.tickNanoseconds + (delta % Self.tickNanoseconds == 0 ? 0 : 1)
    }

    /// The current tick (rounded down).
    func currentTick(now: UInt64 = monotonicNanoseconds()) -> UInt64 {
        now <= originNanoseconds ? 0 : (now - originNanoseconds) / Self.tickNanoseconds
    }

    func makeEntry(deadlineNanoseconds: UInt64) -> TimerEntry {
        TimerEntry(wheel: self, deadlineNanoseconds: deadlineNanoseconds)
    }

    func poll(_ entry: TimerEntry, _ context: inout Context) -> Poll<Void> {
        var earlier = false
        let result: Poll<Void> = lock.withLock {
            switch entry.state {
            case .fired:
                return .ready(())
            case .linked:
                if entry.waker?.willWake(context) != true {
                    entry.waker = context.cloneWaker()
                }
                return .pending
            case .idle:
                let tick = tick(forDeadline: entry.deadlineNanoseconds)
                if tick <= currentTick() {
                    // Already due (this covers zero and negative durations): never enters the wheel.
                    entry.markFired()
                    return .ready(())
                }
                entry.tick = tick
                entry.waker = context.cloneWaker()
                insert(entry)
                if tick < armedUntil {
                    armedUntil = tick
                    earlier = true
                }
                return .pending
            }
        }
        if earlier { onEarlierDeadline() }
        return result
    }

    func remove(_ entry: TimerEntry) {
        let waker: Waker? = lock.withLock {
            if entry.state == .linked { unlink(entry) }
            let waker = entry.waker.take()
            entry.markFired()
            return waker
        }
        _ = consume waker
    }

    private func levelAndSlot(for tick: UInt64) -> (Int, Int) {
        // Deadlines past the wheel's range are parked in its last level and re-inserted when
        // that slot comes up. The cap keeps `elapsed`'s bits above the range (`elapsed + range
        // - 1` did not: it could differ from `elapsed` in the bit just above the top level, and
        // a deadline ~300 years away indexed a level that does not exist).
        let target = min(max(tick, elapsed), elapsed | (Self.range - 1))
        let differing = target ^ elapsed
        if differing >> UInt64(Self.level0Bits) == 0 {
            return (0, Int(target & UInt64(Self.slots(0) - 1)))
        }
        let significant = 63 - differing.leadingZeroBitCount
        let level = 1 + (significant - Self.level0Bits) / Self.upperBits
        let slot = Int((target >> UInt64(Self.shift(level))) & UInt64(Self.slots(level) - 1))
        return (level, slot)
    }

    private func markOccupied(_ level: Int, _ slot: Int) {
        if level == 0 {
            occupied[slot >> 6] |= 1 << UInt64(slot & 63)
            level0Summary[slot >> 12] |= 1 << UInt64((slot >> 6) & 63)
        } else {
            occupied[Self.level0Words + level - 1] |= 1 << UInt64(slot)
        }
    }

    private func clearOccupied(_ level: Int, _ slot: Int) {
        if level == 0 {
            occupied[slot >> 6] &= ~(1 << UInt64(slot & 63))
            if occupied[slot >> 6] == 0 {
                level0Summary[slot >> 12] &= ~(1 << UInt64((slot >> 6) & 63))
            }
        } else {
            occupied[Self.level0Words + level - 1] &= ~(1 << UInt64(slot))
        }
    }

    /// The first occupied slot of `level` at or after `from`, wrapping around; nil if empty.
    private func firstOccupied(_ level: Int, from: Int) -> Int? {
        if level > 0 {
            let word = occupied[Self.level0Words + level - 1]
            if word == 0 { return nil }
            let rotated = (word >> UInt64(from)) | (from == 0 ? 0 : word << UInt64(64 - from))
            return (rotated.trailingZeroBitCount + from) & 63
        }
        let fromWord = from >> 6
        let here = occupied[fromWord] & (~0 << UInt64(from & 63))
        if here != 0 { return fromWord << 6 | here.trailingZeroBitCount }
        // The first non-empty word after `fromWord`, else the first from the start (wrapping
        // around, which may be `fromWord` itself: its bits below `from`).
        var word = fromWord + 1
        while word < Self.level0Words {
            let bits = level0Summary[word >> 6] & (~0 << UInt64(word & 63))
            if bits != 0 {
                let found = (word >> 6) << 6 | bits.trailingZeroBitCount
                return found << 6 | occupied[found].trailingZeroBitCount
            }
            word = ((word >> 6) + 1) << 6
        }
        for index in 0..<Self.summaryWords where level0Summary[index] != 0 {
            let found = index << 6 | level0Summary[index].trailingZeroBitCount
            return found << 6 | occupied[found].trailingZeroBitCount
        }
        return nil
    }

    private func insert(_ entry: TimerEntry) {
        let (level, slot) = levelAndSlot(for: entry.tick)
        let index = Self.base(level) + slot
        entry.level = level
        entry.slot = slot
        entry.previous = nil
        entry.next = heads[index]
        let unmanaged = Unmanaged.passUnretained(entry)
        if let head = heads[index] { head.takeUnretainedValue().previous = unmanaged }
        heads[index] = unmanaged
        markOccupied(level, slot)
        entry.state = .linked
        count += 1
    }

    private func unlink(_ entry: TimerEntry) {
        let index = Self.base(entry.level) + entry.slot
        if let previous = entry.previous {
            previous.takeUnretainedValue().next = entry.next
        } else {
            heads[index] = entry.next
        }
        if let next = entry.next { next.takeUnretainedValue().previous = entry.previous }
        if heads[index] == nil { clearOccupied(entry.level, entry.slot) }
        entry.next = nil
        entry.previous = nil
        entry.state = .idle
        count -= 1
    }

    /// The earliest occupied slot: its level, slot and the tick at which it starts.
    private func nextExpiration() -> (level: Int, slot: Int, tick: UInt64)? {
        for level in 0..<Self.levels {
            let shift = UInt64(Self.shift(level))
            let slotRange = UInt64(1) << shift
            let levelRange = slotRange &* UInt64(Self.slots(level))
            let nowSlot = Int((elapsed >> shift) & UInt64(Self.slots(level) - 1))
            guard let slot = firstOccupied(level, from: nowSlot) else { continue }
            let levelStart = elapsed & ~(levelRange &- 1)
            var tick = levelStart &+ UInt64(slot) &* slotRange
            // A slot behind the current position belongs to the level's next rotation.
            if tick < elapsed { tick &+= levelRange }
            return (level, slot, max(tick, elapsed))
        }
        return nil
    }

    /// The earliest tick at which something may fire, or nil when the wheel is empty.
    func nextDeadlineTick() -> UInt64? {
        lock.withLock {
            let next = nextExpiration()?.tick
            armedUntil = next ?? .max
            return next
        }
    }

    /// Nanoseconds until the next possible expiration (0 if due), or nil when empty: the epoll
    /// timeout, aimed at the start of the tick rather than rounded to whole milliseconds.
    func nanosecondsUntilNext(now: UInt64 = monotonicNanoseconds()) -> Int64? {
        guard let tick = nextDeadlineTick() else { return nil }
        let due = originNanoseconds &+ tick &* Self.tickNanoseconds
        return due <= now ? 0 : Int64(clamping: due - now)
    }

    /// Fires every entry whose deadline passed; returns how many fired.
    ///
    /// In batches of at most `fireBatch` wakers: the lock is taken per batch, and the wakers are
    /// woken after releasing it. A batch that fills up in the middle of a level-0 slot puts the
    /// rest of the slot back, and the next batch starts there.
    @discardableResult
    func advance(now: UInt64 = monotonicNanoseconds()) -> Int {
        let nowTick = currentTick(now: now)
        var firedCount = 0
        while true {
            var fired: [RawWaker] = []
            var full = false
            lock.withLock {
                swap(&fired, &firedBuffer)
                collecting: while let expiration = nextExpiration(), expiration.tick <= nowTick {
                    elapsed = expiration.tick
                    let index = Self.base(expiration.level) + expiration.slot
                    var node = heads[index]
                    heads[index] = nil
                    clearOccupied(expiration.level, expiration.slot)
                    while let current = node {
                        if fired.count == Self.fireBatch && expiration.level == 0 {
                            // Every entry of a level-0 slot is due: the rest of the chain goes
                            // back as it is, and the next batch starts with it.
                            current.takeUnretainedValue().previous = nil
                            heads[index] = current
                            markOccupied(expiration.level, expiration.slot)
                            full = true
                            break collecting
                        }
                        let entry = current.takeUnretainedValue()
                        node = entry.next
                        entry.next = nil
                        entry.previous = nil
                        count -= 1
                        if entry.tick <= nowTick && fired.count < Self.fireBatch {
                            let waker = entry.waker.take()
                            entry.markFired()
                            if let waker { fired.append(waker.intoRaw()) }
                        } else {
                            // Not due (cascades to a lower level), or due with the batch full:
                            // a higher-level slot is emptied whole, so that no entry of a lower
                            // level is ever later than one left behind in it, and its due
                            // entries wait one level down for the next batch.
                            if entry.tick <= nowTick { full = true }
                            insert(entry)
                        }
                    }
                    if full { break collecting }
                }
                if !full {
                    if nowTick > elapsed { elapsed = nowTick }
                    armedUntil = .max
                }
            }
            for raw in fired { Waker(data: raw.data, vtable: raw.vtable).wake() }
            firedCount += fired.count
            // Nothing to hand back (no timer fired and no buffer was taken): skip the lock.
            if fired.capacity > 0 {
                fired.removeAll(keepingCapacity: true)
                lock.withLock {
                    if fired.capacity > firedBuffer.capacity { swap(&fired, &firedBuffer) }
                }
            }
            if !full { return firedCount }
        }
    }

    /// The most wakers `advance` collects under the lock at once: its buffer, allocated with the
    /// wheel, never grows.
    static let fireBatch = 256

    /// The capacity of the kept buffer (for tests).
    var firedBufferCapacity: Int { lock.withLock { firedBuffer.capacity } }
}
