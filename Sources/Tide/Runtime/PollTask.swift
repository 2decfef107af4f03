/*
 PollTask: a light task that runs a poll-based `Future`: one allocation holding the state word,
 the future, its output and the join waker. The task object is its own waker (data pointer =
 the object, clone = retain, drop = release), so waking allocates nothing.

 State word and transitions:
   idle      --wake-->   scheduled (CAS; the waker pushes the task onto the run queue)
   scheduled --run-->    running   (a plain store: nobody else changes a scheduled task)
   running   --wake-->   notified  (CAS; woken while being polled: re-queued after the poll)
   running   --pending-> idle, or notified -> scheduled (CAS; pushed again, behind other work)
   running   --ready-->  complete  (output stored first; the join waker is woken)
 Wakes of a complete task do nothing. `cancel()` sets `cancelRequested` and wakes the task; the
 next run drops the future instead of polling it and completes as cancelled.

 Self-wakes (a yield, a spent coop budget) take no atomic read-modify-write at all. `poller`
 holds the polling thread's id during a poll; a wake from that same thread can only come from
 inside the poll, so it just sets bit 0 of `poller` (only the polling thread writes `poller`).
 After such a poll the task stays `running` and goes straight back to the run queue, marked
 `selfQueued`; its next run starts from `running` (or `notified`, if another thread woke it
 meanwhile: that wake is covered by the poll about to run).
*/

#if canImport(Glibc)
import Glibc
#endif
import CTide
import Synchronization
import TideCore

@usableFromInline
class PollTaskBase: AtomicWaker, @unchecked Sendable {
    static let idle: UInt32 = 0
    static let scheduled: UInt32 = 1
    static let running: UInt32 = 2
    static let notified: UInt32 = 3
    @usableFromInline static let complete: UInt32 = 4
    @usableFromInline static let stateMask: UInt32 = 7
    /// `poller` of a task that its own wake put back on the run queue.
    static let selfQueued: UInt32 = 2

    // Field order packs the object: the flag and the 32-bit state word share the last 8 bytes
    // of `AtomicWaker` (whose own state is 16 bits after its slot), `poller` and `liveSlot` are
    // 32 bits each, so the base's fields end at byte 56. With the 16-byte poll step of
    // `PollTask`, a task whose output and future take up to 32 bytes is at most 104 bytes: a
    // 112-byte malloc chunk (which glibc frees to a fast bin).
    let cancelRequested = Atomic<Bool>(false)
    @usableFromInline let state = Atomic<UInt32>(0)
    /// The polling thread's `ctide_thread_id()`, bit 0 set once the task woke itself in this
    /// poll; `selfQueued` between such a poll and the next; else 0. Written only by the thread
    /// that owns the task's turn; other threads only compare it with their own id.
    let poller = Atomic<UInt32>(0)
    /// The task's slot in the runtime's table of live tasks (from its first wait until it
    /// completes), `notListed` otherwise; written under the registry lock by the thread that owns
    /// the task's turn.
    @exclusivity(unchecked) var liveSlot = PollTaskBase.notListed
    static let notListed = UInt32.max
    /// The joiners' waker slot is the task itself (it inherits `AtomicWaker`): one allocation
    /// per task instead of two.
    @inlinable
    final var joinWaker: AtomicWaker { self }
    let scheduler: Runtime

    @usableFromInline
    init(scheduler: Runtime) {
        self.scheduler = scheduler
    }

    /// Polls the future once (state is `running`); returns true when the task completed.
    @usableFromInline
    func pollFuture(_ context: inout Context) -> Bool { preconditionFailure("abstract") }
    /// Drops the future and records cancellation as the result.
    @usableFromInline
    func cancelFuture() { preconditionFailure("abstract") }

    @inlinable
    final var isComplete: Bool { state.load(ordering: .acquiring) & Self.stateMask == Self.complete }

    /// Makes the task runnable (its waker's wake); `wake()` is the joiners' slot, inherited.
    final func wakeTask() {
        _ = wakeTask(handingOver: nil)
    }

    /// `wakeTask()` for a waker that gives up its reference (`wake`, not `wakeByRef`): if the
    /// wake queues the task, the queue takes over `reference` instead of taking a new one (an
    /// atomic retain and release fewer per wake). Returns whether it did; if not, the caller
    /// still owns `reference`.
    @inline(__always)
    final func wakeTask(handingOver reference: Unmanaged<PollTaskBase>?) -> Bool {
        let polling = poller.load(ordering: .relaxed)
        if polling > Self.selfQueued, polling & ~1 == ctide_thread_id_if_assigned() {
            // Woken from inside its own poll: re-queued when the poll returns.
            poller.store(polling | 1, ordering: .relaxed)
            return false
        }
        var current = state.load(ordering: .acquiring)
        while true {
            let next: UInt32
            switch current & Self.stateMask {
            case Self.idle: next = (current & ~Self.stateMask) | Self.scheduled
            case Self.running: next = (current & ~Self.stateMask) | Self.notified
            default: return false
            }
            let (exchanged, original) = state.compareExchange(
                expected: current, desired: next, ordering: .acquiringAndReleasing)
            if exchanged {
                guard current & Self.stateMask == Self.idle else { return false }
                scheduler.schedule(reference ?? Unmanaged.passRetained(self))
                return reference != nil
            }
            current = original
        }
    }

    @usableFromInline
    final func cancel() {
        cancelRequested.store(true, ordering: .releasing)
        wakeTask()
    }

    /// Completes the task as cancelled while no thread can be running it (runtime shut down).
    final func cancelAtShutdown() {
        if isComplete { return }
        completeCancelled()
    }

    /// Like `cancelAtShutdown`, for a shutdown that timed out with a worker still running: only
    /// a task that is waiting (idle) is cancelled, after claiming it with the `running` state so
    /// that no thread can poll it meanwhile. Queued or running tasks are left alone.
    final func cancelIfWaiting() {
        let current = state.load(ordering: .acquiring)
        guard current & Self.stateMask == Self.idle else { return }
        let claimed = (current & ~Self.stateMask) | Self.running
        guard state.compareExchange(
            expected: current, desired: claimed, ordering: .acquiringAndReleasing
        ).exchanged else { return }
        completeCancelled()
    }

    /// Drops the future and completes the task as cancelled; the caller owns the task (no
    /// thread can poll it meanwhile).
    private final func completeCancelled() {
        cancelFuture()
        cancelRequested.store(true, ordering: .relaxed)
        poller.store(0, ordering: .relaxed)
        state.store(Self.complete, ordering: .releasing)
        scheduler.taskFinished(self)
        joinWaker.wake()
    }

    /// Runs one scheduling turn of the task whose run-queue reference is `queued`, on the thread
    /// whose `ctide_thread_id()` is `thread`; called by the scheduler only. The reference is
    /// consumed: true means the task was woken while it ran and the caller must queue `queued`
    /// again (no retain and release per yield); false means it was released.
    static func runQueued(_ queued: Unmanaged<PollTaskBase>, thread: UInt32) -> Bool {
        let requeue = queued._withUnsafeGuaranteedRef { $0.runTurn(thread: thread) }
        if !requeue { queued.release() }
        return requeue
    }

    /// One turn; true when the task must be queued again (it was woken while it ran).
    private final func runTurn(thread: UInt32) -> Bool {
        if poller.load(ordering: .relaxed) == Self.selfQueued {
            // Still `running` since its self-wake; a wake from elsewhere since then made it
            // `notified`, which the poll below covers.
            var observed = state.load(ordering: .acquiring)
            while observed & Self.stateMask == Self.notified {
                let (exchanged, original) = state.compareExchange(
                    expected: observed, desired: (observed & ~Self.stateMask) | Self.running,
                    ordering: .acquiringAndReleasing)
                if exchanged { break }
                observed = original
            }
        } else {
            let current = state.load(ordering: .acquiring)
            guard current & Self.stateMask == Self.scheduled else { return false }
            state.store((current & ~Self.stateMask) | Self.running, ordering: .releasing)
        }
        poller.store(thread, ordering: .relaxed)
        let finished: Bool
        if cancelRequested.load(ordering: .acquiring) {
            cancelFuture()
            finished = true
        } else {
            var context = Context(
                unownedData: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()),
                vtable: scheduler.pollTaskVTable)
            finished = pollFuture(&context)
        }
        let wokeItself = poller.load(ordering: .relaxed) & 1 == 1
        if finished {
            poller.store(0, ordering: .relaxed)
            let flags = state.load(ordering: .acquiring) & ~Self.stateMask
            state.store(flags | Self.complete, ordering: .releasing)
            scheduler.taskFinished(self)
            joinWaker.wake()
            return false
        }
        if wokeItself {
            poller.store(Self.selfQueued, ordering: .relaxed)
            return true
        }
        poller.store(0, ordering: .relaxed)
        // About to wait: only the wakers will hold it, so shutdown must be able to find it.
        if liveSlot == Self.notListed { scheduler.taskWillWait(self) }
        var observed = state.load(ordering: .acquiring)
        while true {
            let flags = observed & ~Self.stateMask
            let notified = observed & Self.stateMask == Self.notified
            let next = flags | (notified ? Self.scheduled : Self.idle)
            let (exchanged, original) = state.compareExchange(
                expected: observed, desired: next, ordering: .acquiringAndReleasing)
            if exchanged { return notified }
            observed = original
        }
    }

    static let vtable = WakerVTable(
        clone: { data in
            _ = Unmanaged<PollTaskBase>.fromOpaque(data!).retain()
            return data
        },
        wake: { data in
            let task = Unmanaged<PollTaskBase>.fromOpaque(data!)
            let handedOver = task._withUnsafeGuaranteedRef { $0.wakeTask(handingOver: task) }
            if !handedOver { task.release() }
        },
        wakeByRef: { data in
            Unmanaged<PollTaskBase>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.wakeTask() }
        },
        drop: { data in
            Unmanaged<PollTaskBase>.fromOpaque(data!).release()
        }
    )
}

/// A task's output slot; the handle sees tasks through this class, whatever their future type.
///
/// `OutputSlot` is always `Output?`, passed as the generic argument itself: the class's deinit is
/// shared generic code, and destroying a field whose type is a generic argument uses that
/// argument's metadata directly, whereas a field of type `Output?` made every deinit look up
/// `Optional<Output>` in the runtime's metadata cache (about 15% of the spawn workload).
@usableFromInline
class PollTaskOutput<OutputSlot>: PollTaskBase, @unchecked Sendable {
    // Written once before the state becomes `complete`; read only after observing `complete`.
    // `final`: read directly by the (specialised) handle instead of through a class getter, which
    // is shared generic code that looks up the slot's metadata on every call.
    @exclusivity(unchecked) @usableFromInline final var output: OutputSlot

    @usableFromInline
    init(scheduler: Runtime, emptyOutput: OutputSlot) {
        output = emptyOutput
        super.init(scheduler: scheduler)
    }
}

/// What a `PollTask` stores its future in: `Optional<F>`, named through this protocol so that
/// the task class can take `F?` itself as its generic argument (see `PollTaskOutput`).
@usableFromInline
protocol PollFutureSlot {
    associatedtype Wrapped: Future
    /// No future (completed or cancelled).
    static var empty: Self { get }
}

extension Optional: PollFutureSlot where Wrapped: Future {
    @inlinable
    static var empty: Self { nil }
}

@usableFromInline
final class PollTask<FutureSlot: PollFutureSlot>: PollTaskOutput<FutureSlot.Wrapped.Output?>,
    @unchecked Sendable
{
    // Touched only by the thread running the task (state `running`).
    @exclusivity(unchecked) @usableFromInline var future: FutureSlot
    /// The poll step, created where `spawn` is specialised for the future's type: the class's own
    /// methods are shared generic code that looks up type metadata on every call, this closure is
    /// not.
    @usableFromInline let step: (PollTask<FutureSlot>, inout Context) -> Bool

    @inlinable
    init<F: Future>(future: F, scheduler: Runtime) where FutureSlot == F? {
        self.future = future
        step = { task, context in
            guard var current = task.future.take() else { return true }
            if case .ready(let value) = current.poll(&context) {
                task.output = value
                return true
            }
            task.future = consume current
            return false
        }
        super.init(scheduler: scheduler, emptyOutput: nil)
    }

    @usableFromInline
    override func pollFuture(_ context: inout Context) -> Bool {
        step(self, &context)
    }

    @usableFromInline
    override func cancelFuture() {
        future = .empty
    }
}

/// Why joining a task produced no value.
public enum JoinError: Error, Equatable, Sendable {
    /// The task was cancelled before it completed.
    case cancelled
}

/// The handle of a poll-based task started with ``Runtime/spawn(_:)-(Future)``.
///
/// Await ``value`` from Swift code, or poll it as a `Future` from another poll task. Joining more
/// than once (or from several places) is fine: every join sees the same output. Dropping the
/// handle does not cancel the task; ``cancel()`` does.
public struct PollTaskHandle<Output>: Future, @unchecked Sendable {
    @usableFromInline let task: PollTaskOutput<Output?>

    @inlinable
    init(_ task: PollTaskOutput<Output?>) {
        self.task = task
    }

    /// Whether the task completed (with a value or by cancellation).
    @inlinable
    public var isFinished: Bool { task.isComplete }

    /// Asks the task to stop: its future is dropped at its next turn and joiners get
    /// ``JoinError/cancelled``. A task that already completed keeps its value.
    public func cancel() { task.cancel() }

    /// Ready with the task's output (or `.cancelled`) once it completed.
    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Result<Output, JoinError>> {
        // A leaf operation for the coop budget, like every await on a runtime resource.
        guard Coop.proceed(&context) else { return .pending }
        if let result = finished() { return .ready(result) }
        // The task is its own join slot; registering on it directly, not through `joinWaker`,
        // spares a retain and a release of the task per poll.
        task.register(context)
        if let result = finished() { return .ready(result) }
        return .pending
    }

    @inlinable
    func finished() -> Result<Output, JoinError>? {
        guard task.isComplete else { return nil }
        if let output = task.output { return .success(output) }
        return .failure(.cancelled)
    }

    /// Waits for the task and returns its output; throws ``JoinError/cancelled`` if it was
    /// cancelled. Cancelling the waiting Swift task stops the wait, not the joined task.
    @inlinable
    public nonisolated(nonsending) var value: Output {
        get async throws(JoinError) {
            if !Coop.spend() { await Tide.yield() }
            if let result = finished() { return try result.get() }
            let result: Result<Output, JoinError>
            do {
                result = try await self.waitCancellable()
            } catch {
                throw .cancelled
            }
            return try result.get()
        }
    }
}

