/*
 TimerWheel: a hierarchical timing wheel with 1 ms ticks.

 Six levels of 64 slots. A slot at level L covers 64^L ticks, so level 0 holds the next 64 ms
 one tick per slot, level 1 the next ~4 s in 64 ms slots, and so on up to about 2.2 years (later deadlines wait in the last level and are re-inserted). An entry
 goes to the level of the highest bit in which its deadline differs from `elapsed` (the last tick
 processed), in the slot given by its deadline's 6 bits at that level. Inserting and cancelling
 are O(1): each slot is an intrusive doubly-linked list, and each level keeps a 64-bit occupancy
 mask, so finding the next expiration is a few bit scans.

 Processing (`advance(to:)`): find the earliest occupied slot (the lowest level that has one:
 every entry at a lower level expires before any entry at a higher level); if its start is not
 after `now`, move `elapsed` to it, take the whole slot, fire entries whose deadline has passed
 and re-insert the rest (they cascade to a lower level). Deadlines are rounded up to the next
 tick and an entry fires only when `now >= deadline`, so a timer never fires early.

 Concurrency: one mutex guards the wheel and every entry's fields (links, deadline, waker, state).
 Entries are not retained by the wheel: an entry that is deallocated removes itself in `deinit`
 (taking the mutex first), and the wheel touches entries only while holding the mutex. Firing
 takes each entry's waker out under the mutex and wakes them after unlocking.
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
    var tick: UInt64 = 0
    var state = State.idle
    var level = 0
    var slot = 0
    var next: Unmanaged<TimerEntry>?
    var previous: Unmanaged<TimerEntry>?
    var waker: Waker?

    init(wheel: TimerWheel, deadlineNanoseconds: UInt64) {
        self.wheel = wheel
        self.deadlineNanoseconds = deadlineNanoseconds
    }

    deinit {
        wheel.remove(self)
    }

    /// Ready once the deadline passed; otherwise stores the task's waker and arms the timer.
    func poll(_ context: inout Context) -> Poll<Void> {
        wheel.poll(self, &context)
    }
}

final class TimerWheel: @unchecked Sendable {
    static let levels = 6
    static let slotsPerLevel = 64
    /// Ticks covered by the wheel: 64^6 ms, about 2.2 years.
    static let range: UInt64 = 1 << 36

    let lock = SyncLock()
    /// CLOCK_MONOTONIC nanoseconds at tick 0.
    let originNanoseconds: UInt64
    // Guarded by lock.
    private var elapsed: UInt64 = 0
    private var heads: [Unmanaged<TimerEntry>?]
    private var occupied: [UInt64]
    private(set) var count = 0
    /// Called (outside the lock) when an insert made the earliest deadline earlier; the runtime
    /// uses it to wake a driver that sleeps with a longer timeout. Set once, before use.
    var onEarlierDeadline: @Sendable () -> Void = {}
    private var armedUntil: UInt64 = .max

    init() {
        originNanoseconds = monotonicNanoseconds()
        heads = Array(repeating: nil, count: Self.levels * Self.slotsPerLevel)
        occupied = Array(repeating: 0, count: Self.levels)
    }

    /// The tick at which a deadline may fire: rounded up, so never early.
    func tick(forDeadline nanoseconds: UInt64) -> UInt64 {
        if nanoseconds <= originNanoseconds { return 0 }
        let delta = nanoseconds - originNanoseconds
        return (delta + 999_999) / 1_000_000
    }

    /// The current tick (rounded down).
    func currentTick(now: UInt64 = monotonicNanoseconds()) -> UInt64 {
        now <= originNanoseconds ? 0 : (now - originNanoseconds) / 1_000_000
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
                    entry.state = .fired
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
            entry.state = .fired
            return entry.waker.take()
        }
        _ = consume waker
    }

    private func levelAndSlot(for tick: UInt64) -> (Int, Int) {
        // Deadlines past the wheel's range are parked in its last level and re-inserted when
        // that slot comes up.
        let target = min(max(tick, elapsed), elapsed + Self.range - 1)
        let masked = (target ^ elapsed) | UInt64(Self.slotsPerLevel - 1)
        let significant = 63 - masked.leadingZeroBitCount
        let level = significant / 6
        let slot = Int((target >> UInt64(6 * level)) & 63)
        return (level, slot)
    }

    private func insert(_ entry: TimerEntry) {
        let (level, slot) = levelAndSlot(for: entry.tick)
        let index = level * Self.slotsPerLevel + slot
        entry.level = level
        entry.slot = slot
        entry.previous = nil
        entry.next = heads[index]
        let unmanaged = Unmanaged.passUnretained(entry)
        if let head = heads[index] { head.takeUnretainedValue().previous = unmanaged }
        heads[index] = unmanaged
        occupied[level] |= 1 << UInt64(slot)
        entry.state = .linked
        count += 1
    }

    private func unlink(_ entry: TimerEntry) {
        let index = entry.level * Self.slotsPerLevel + entry.slot
        if let previous = entry.previous {
            previous.takeUnretainedValue().next = entry.next
        } else {
            heads[index] = entry.next
        }
        if let next = entry.next { next.takeUnretainedValue().previous = entry.previous }
        if heads[index] == nil { occupied[entry.level] &= ~(1 << UInt64(entry.slot)) }
        entry.next = nil
        entry.previous = nil
        entry.state = .idle
        count -= 1
    }

    /// The earliest occupied slot: its level, slot and the tick at which it starts.
    private func nextExpiration() -> (level: Int, slot: Int, tick: UInt64)? {
        for level in 0..<Self.levels where occupied[level] != 0 {
            let slotRange = UInt64(1) << UInt64(6 * level)
            let levelRange = slotRange << 6
            let nowSlot = Int((elapsed >> UInt64(6 * level)) & 63)
            let rotated = (occupied[level] >> UInt64(nowSlot))
                | (nowSlot == 0 ? 0 : occupied[level] << UInt64(64 - nowSlot))
            let slot = (rotated.trailingZeroBitCount + nowSlot) & 63
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

    /// Milliseconds until the next possible expiration (0 if due), or nil when empty. Used as the
    /// epoll timeout.
    func millisecondsUntilNext(now: UInt64 = monotonicNanoseconds()) -> Int32? {
        guard let tick = nextDeadlineTick() else { return nil }
        let current = currentTick(now: now)
        if tick <= current { return 0 }
        return Int32(clamping: tick - current)
    }

    /// Nanoseconds until the next possible expiration (0 if due), or nil when empty: the epoll
    /// timeout, aimed at the start of the tick rather than rounded to whole milliseconds.
    func nanosecondsUntilNext(now: UInt64 = monotonicNanoseconds()) -> Int64? {
        guard let tick = nextDeadlineTick() else { return nil }
        let due = originNanoseconds &+ tick &* 1_000_000
        return due <= now ? 0 : Int64(clamping: due - now)
    }

    /// Fires every entry whose deadline passed; returns how many fired.
    @discardableResult
    func advance(now: UInt64 = monotonicNanoseconds()) -> Int {
        let nowTick = currentTick(now: now)
        var fired: [(data: UnsafeRawPointer?, vtable: WakerVTable)] = []
        lock.withLock {
            while let expiration = nextExpiration(), expiration.tick <= nowTick {
                elapsed = expiration.tick
                let index = expiration.level * Self.slotsPerLevel + expiration.slot
                var node = heads[index]
                heads[index] = nil
                occupied[expiration.level] &= ~(1 << UInt64(expiration.slot))
                while let current = node {
                    let entry = current.takeUnretainedValue()
                    node = entry.next
                    entry.next = nil
                    entry.previous = nil
                    count -= 1
                    if entry.tick <= nowTick {
                        entry.state = .fired
                        if let waker = entry.waker.take() { fired.append(waker.intoRaw()) }
                    } else {
                        insert(entry)
                    }
                }
            }
            if nowTick > elapsed { elapsed = nowTick }
            armedUntil = .max
        }
        for raw in fired { Waker(data: raw.data, vtable: raw.vtable).wake() }
        return fired.count
    }
}
