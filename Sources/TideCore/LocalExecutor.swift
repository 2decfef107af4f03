/*
 LocalExecutor: the minimal executor, the one the seeds build inside a kernel.

 - Tasks live in `tasks`, an array of slots indexed by task id (a free list reuses slots).
 - Each task is one object (`LocalTask`) that is also its own waker: the waker's data pointer is
   the task object (retained per waker), so creating the waker costs nothing at poll time (the
   "waker cache": the executor polls with a context over the task pointer, no clone at all).
 - Waking pushes the task onto `ReadyStack`, a lock-free intrusive stack (Treiber push, the
   executor takes the whole stack with one exchange, so there is no ABA, and reverses it in
   place into FIFO order: a turn allocates nothing). A per-task `scheduled`
   flag keeps a task on the stack at most once. Push works from any thread or interrupt handler.
 - After pushing, the waker unparks the executor's `Parker`. The executor parks only after finding
   the stack empty; `Parker`'s saved token covers a wake between that check and the park.
 - A wake after a task finished finds `finished` set and does nothing.
*/

import Synchronization

/// A task as the local executor sees it. Subclassed per future type (type erasure without
/// existentials, which Embedded Swift lacks).
class LocalTask: @unchecked Sendable {
    let queue: ReadyStack
    /// Set while the task is on the ready stack (or about to be pushed).
    let scheduled = Atomic<Bool>(false)
    /// Set once the task completed or the executor dropped it; wakes become no-ops.
    let finished = Atomic<Bool>(false)
    /// Intrusive link for the ready stack (not a retain: each pushed task carries the retain its
    /// push took). Only the pusher (before publishing) and the executor (after taking the stack)
    /// touch it.
    @exclusivity(unchecked) nonisolated(unsafe) var next: UnsafeRawPointer?
    let id: Int

    init(id: Int, queue: ReadyStack) {
        self.id = id
        self.queue = queue
    }

    /// Polls the future once; returns true when it completed.
    func pollOnce(_ context: inout Context) -> Bool {
        preconditionFailure("abstract")
    }

    /// Drops the future (cancellation at executor shutdown).
    func dropFuture() {}

    func schedule() {
        if finished.load(ordering: .acquiring) { return }
        if scheduled.exchange(true, ordering: .acquiringAndReleasing) { return }
        queue.push(self)
    }

    static let vtable = WakerVTable(
        clone: { data in
            _ = Unmanaged<LocalTask>.fromOpaque(data!).retain()
            return data
        },
        wake: { data in
            let task = Unmanaged<LocalTask>.fromOpaque(data!)
            task.takeUnretainedValue().schedule()
            task.release()
        },
        wakeByRef: { data in
            Unmanaged<LocalTask>.fromOpaque(data!).takeUnretainedValue().schedule()
        },
        drop: { data in
            Unmanaged<LocalTask>.fromOpaque(data!).release()
        }
    )
}

final class LocalFutureTask<F: Future>: LocalTask, @unchecked Sendable where F.Output == Void {
    @exclusivity(unchecked) var future: F?

    init(id: Int, queue: ReadyStack, future: F) {
        self.future = future
        super.init(id: id, queue: queue)
    }

    override func pollOnce(_ context: inout Context) -> Bool {
        guard var current = future.take() else { return true }
        if case .ready = current.poll(&context) {
            return true
        }
        future = current
        return false
    }

    override func dropFuture() {
        future = nil
    }
}

/// A lock-free stack of woken tasks: any thread pushes, the executor takes everything at once.
final class ReadyStack: @unchecked Sendable {
    private let head = Atomic<UnsafeRawPointer?>(nil)
    let parker: Parker

    init(parker: Parker) {
        self.parker = parker
    }

    /// Pushes a task (the stack keeps a retain) and unparks the executor.
    func push(_ task: LocalTask) {
        let pointer = UnsafeRawPointer(Unmanaged.passRetained(task).toOpaque())
        var current = head.load(ordering: .relaxed)
        while true {
            task.next = current
            let (exchanged, original) = head.compareExchange(
                expected: current, desired: pointer, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        parker.unpark()
    }

    /// Takes every pushed task at once and returns them oldest first, as a list linked through
    /// `next` whose nodes each carry one retain. No allocation: the stack is reversed in place.
    func takeAll() -> UnsafeRawPointer? {
        var node = head.exchange(nil, ordering: .acquiringAndReleasing)
        var reversed: UnsafeRawPointer? = nil
        while let current = node {
            let task = Unmanaged<LocalTask>.fromOpaque(current).takeUnretainedValue()
            node = task.next
            task.next = reversed
            reversed = current
        }
        return reversed
    }

    /// Takes the first task of a list returned by `takeAll`, with its retain.
    static func pop(_ list: inout UnsafeRawPointer?) -> LocalTask? {
        guard let current = list else { return nil }
        let task = Unmanaged<LocalTask>.fromOpaque(current).takeRetainedValue()
        list = task.next
        task.next = nil
        return task
    }
}

/// The minimal single-thread executor: a task list, a ready queue, a waker per task created once,
/// and a `Parker` to sleep in when nothing is ready.
///
/// Spawn futures whose output is `Void` with ``spawn(_:)`` and drive them with ``run()`` (until
/// every task finished) or ``runUntilStalled()`` (until no task is ready). Wakes may come from any
/// thread or interrupt handler; everything else happens on the thread that owns the executor.
/// It is the executor a kernel uses (see `Kernel/`); Tide's runtimes build on the same types.
public final class LocalExecutor {
    @exclusivity(unchecked) private var tasks: [LocalTask?] = []
    @exclusivity(unchecked) private var freeSlots: [Int] = []
    private let ready: ReadyStack
    /// The number of tasks that have not finished yet.
    public private(set) var liveTasks = 0
    /// How many times a task was polled, in total.
    public private(set) var polls = 0
    /// How many times the executor went to sleep in its parker.
    public private(set) var parks = 0

    /// An executor that sleeps in `parker` when idle.
    public init(parker: Parker) {
        ready = ReadyStack(parker: parker)
    }

    deinit {
        for case let task? in tasks {
            task.finished.store(true, ordering: .releasing)
            task.dropFuture()
        }
        var leftovers = ready.takeAll()
        while let task = ReadyStack.pop(&leftovers) { task.dropFuture() }
    }

    /// Adds `future` as a task and schedules its first poll; returns the task's id.
    @discardableResult
    public func spawn<F: Future>(_ future: F) -> Int where F.Output == Void {
        let id: Int
        if let free = freeSlots.popLast() {
            id = free
        } else {
            id = tasks.count
            tasks.append(nil)
        }
        let task = LocalFutureTask(id: id, queue: ready, future: future)
        tasks[id] = task
        liveTasks += 1
        task.schedule()
        return id
    }

    /// Polls ready tasks until none is ready, without sleeping. Returns how many polls it made.
    @discardableResult
    public func runUntilStalled() -> Int {
        var count = 0
        while true {
            var batch = ready.takeAll()
            if batch == nil { return count }
            while let task = ReadyStack.pop(&batch) {
                task.scheduled.store(false, ordering: .releasing)
                if task.finished.load(ordering: .acquiring) { continue }
                var context = Context(
                    unownedData: UnsafeRawPointer(Unmanaged.passUnretained(task).toOpaque()),
                    vtable: LocalTask.vtable)
                count += 1
                polls += 1
                if task.pollOnce(&context) {
                    task.finished.store(true, ordering: .releasing)
                    task.dropFuture()
                    tasks[task.id] = nil
                    freeSlots.append(task.id)
                    liveTasks -= 1
                }
            }
        }
    }

    /// Runs until every spawned task has finished, sleeping in the parker whenever no task is
    /// ready. Tasks spawned while it runs are run too.
    public func run() {
        while true {
            runUntilStalled()
            if liveTasks == 0 { return }
            parks += 1
            ready.parker.park()
        }
    }
}
