/*
 Wait lists: the one mechanism every primitive in Sync/ uses to park and wake futures.

 Objects
 - `WaitNode`: an entry in a primitive's FIFO `WaitQueue`. It holds the waiting task's `Waker`,
   its links, a `signal` written by the waking side and two small integers (`tag`: which list or
   which kind of request; `amount`: permits, generation, ...). The queue keeps it alive while it
   is linked (strong `next`, unowned `prev`).
 - `Waiter`: the future's handle on its node. A future creates it lazily, the first time it must
   wait (the ready-at-once fast path allocates nothing), and the future's copies share it. Its
   `deinit` calls `source.abandon(node)`: that is how a future that is dropped while waiting
   (cancellation, a losing `select` branch) deregisters.

 Why two objects: the code that wakes waiters pops nodes while holding the primitive's lock. If the
 node itself deregistered in its deinit, the last release could happen under that lock and the
 deinit would then take the lock again (deadlock). The queue never references a `Waiter`, so a
 `Waiter` is only ever released by the future's owner, never under a primitive's lock.

 Protocol (every field of a node and every queue is guarded by the owning primitive's lock)
 - register: under the lock, re-check the condition; if still not ready, store the waker
   (`setWaker` keeps the old one if it `willWake` the same task), reset `signal` to `idle` and
   append the node unless it is already queued. Check and registration happen under one lock
   hold, so a wake cannot fall between them: no lost wakeups.
 - wake: under the lock, pop a node, set its `signal` and take its waker out; wake it after the
   lock is released (a waker must never run under our lock).
 - signals: `woken` (a wake-one: an item, a slot or a permit became available; if the future is
   dropped before it uses it, `abandon` passes the wake on to the next waiter), `wokenAll` (a
   broadcast such as close; nothing to pass on), `granted` (ownership was handed over, e.g. a lock
   or permits; if the future is dropped before it sees it, `abandon` releases what was granted).
 - abandon: under the lock, unlink the node if it is queued, else undo or pass on its signal.
*/

/// A primitive that futures wait on.
@usableFromInline
protocol WaitSource: AnyObject, Sendable {
    /// The future owning `node` was dropped: take the lock, unlink the node if it is queued, and
    /// pass on (or release) whatever its signal says it received but did not use.
    func abandon(_ node: WaitNode)
}

/// One waiting future's entry in a ``WaitQueue``.
@usableFromInline
final class WaitNode: @unchecked Sendable {
    /// Nothing happened since the node was (re)registered.
    @usableFromInline static let idle = 0
    /// Woken by a wake-one: pass it on if unused.
    @usableFromInline static let woken = 1
    /// Woken by a broadcast (close, notify-all, a new generation).
    @usableFromInline static let wokenAll = 2
    /// Handed ownership (a lock, permits): release it if unused.
    @usableFromInline static let granted = 3

    @exclusivity(unchecked) @usableFromInline var waker: Waker?
    @exclusivity(unchecked) @usableFromInline var next: WaitNode?
    @exclusivity(unchecked) @usableFromInline unowned(unsafe) var prev: WaitNode?
    @exclusivity(unchecked) @usableFromInline var isQueued = false
    @exclusivity(unchecked) @usableFromInline var signal = WaitNode.idle
    @exclusivity(unchecked) @usableFromInline var tag: Int
    @exclusivity(unchecked) @usableFromInline var amount: Int

    @inlinable
    init(tag: Int, amount: Int) {
        self.tag = tag
        self.amount = amount
    }

    /// Stores the waker of the task polling with `context`, unless the stored one already wakes it.
    @inlinable
    func setWaker(_ context: Context) {
        if let existing = waker.take() {
            if existing.willWake(context) {
                waker = consume existing
                return
            }
        }
        waker = context.cloneWaker()
    }
}

/// A future's handle on its ``WaitNode``; dropping it deregisters (see the file comment).
@usableFromInline
final class Waiter: @unchecked Sendable {
    @usableFromInline let node: WaitNode
    @usableFromInline let source: any WaitSource

    @inlinable
    init(source: any WaitSource, tag: Int = 0, amount: Int = 0) {
        self.source = source
        node = WaitNode(tag: tag, amount: amount)
    }

    deinit {
        source.abandon(node)
    }
}

/// An intrusive FIFO of wait nodes. Guarded by its owner's lock.
@usableFromInline
struct WaitQueue {
    @usableFromInline var head: WaitNode?
    @usableFromInline unowned(unsafe) var tail: WaitNode?

    @inlinable
    init() {}

    @inlinable
    var isEmpty: Bool { head == nil }

    @inlinable
    var first: WaitNode? { head }

    /// The number of queued nodes, by walking the list (for tests and diagnostics).
    var count: Int {
        var count = 0
        var node = head
        while let current = node {
            count += 1
            node = current.next
        }
        return count
    }

    @inlinable
    mutating func append(_ node: WaitNode) {
        node.next = nil
        node.prev = tail
        if let last = tail {
            last.next = node
        } else {
            head = node
        }
        tail = node
        node.isQueued = true
    }

    /// Unlinks `node` if it is queued.
    @inlinable
    mutating func remove(_ node: WaitNode) {
        guard node.isQueued else { return }
        let after = node.next
        let before = node.prev
        if let before {
            before.next = after
        } else {
            head = after
        }
        if let after {
            after.prev = before
        } else {
            tail = before
        }
        node.next = nil
        node.prev = nil
        node.isQueued = false
    }

    /// What `withdraw` found when a waiter gave up.
    @usableFromInline
    enum Withdrawal {
        /// It was still waiting: now unlinked, nothing else to do.
        case dequeued
        /// It had already been handed the signal (a lock, a permit, a notification) that it
        /// will never use: the caller must pass that on to the next waiter.
        case wasHanded
        /// Neither: nothing to undo.
        case nothing
    }

    /// The shared first half of every primitive's `abandon`: unlinks a queued node, or, if the
    /// node had been handed `signal`, resets it and reports that the signal must be passed on.
    @usableFromInline
    mutating func withdraw(_ node: WaitNode, handed signal: Int) -> Withdrawal {
        if node.isQueued {
            remove(node)
            return .dequeued
        }
        guard node.signal == signal else { return .nothing }
        node.signal = WaitNode.idle
        return .wasHanded
    }

    /// Stores the waker, clears the signal and appends the node if it is not queued yet.
    @inlinable
    mutating func register(_ node: WaitNode, _ context: Context) {
        node.setWaker(context)
        node.signal = WaitNode.idle
        if !node.isQueued { append(node) }
    }

    /// Pops the first node, marks it with `signal` and returns its waker (wake it after unlocking).
    @inlinable
    mutating func wakeFirst(signal: Int = WaitNode.woken) -> Waker? {
        guard let node = head else { return nil }
        remove(node)
        node.signal = signal
        return node.waker.take()
    }

    /// Pops every node, marking each with `signal`; their wakers go to `list`.
    @inlinable
    mutating func wakeAll(signal: Int = WaitNode.wokenAll, into list: inout WakeList) {
        while let node = head {
            remove(node)
            node.signal = signal
            list.add(node.waker.take())
        }
    }
}

/// Wakers collected under a lock, to wake once it is released.
@usableFromInline
struct WakeList: @unchecked Sendable {
    @usableFromInline var raw: [(data: UnsafeRawPointer?, vtable: WakerVTable)] = []

    @inlinable
    init() {}

    @inlinable
    mutating func add(_ waker: consuming Waker?) {
        guard let waker = waker.take() else { return }
        raw.append(waker.intoRaw())
    }

    /// Wakes (and thereby releases) every collected waker.
    @inlinable
    consuming func wakeAll() {
        for entry in raw {
            Waker(data: entry.data, vtable: entry.vtable).wake()
        }
    }
}
