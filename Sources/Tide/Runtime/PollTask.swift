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
 next run drops the future instead of polling it and completes as cancelled. A cancel that finds
 the task `scheduled` changes nothing in the state word, so the run about to start must see the
 flag: a run that read it unset before its poll reads it again (sequentially consistent, as the
 canceller's store and state load are) after it has gone idle, and wakes the task if it is set.

 Self-wakes (a yield, a spent coop budget) take no atomic read-modify-write at all. `poller`
 holds the polling thread's id during a poll; a wake from that same thread can only come from
 inside the poll, so it just sets bit 0 of `poller` (only the polling thread writes `poller`).
 After such a poll the task stays `running` and goes straight back to the run queue, marked
 `selfQueued`; its next run starts from `running` (or `notified`, if another thread woke it
 meanwhile: that wake is covered by the poll about to run).

 Storage. The future and the output share one field, a `PollStage` (running: the future;
 finished: the output; consumed: neither), so a task is as large as the larger of the two, not
 their sum. Only code specialised for the future's type can read that field, so the task keeps
 one closure made where `spawn` is specialised, `step`: it polls the future, or copies the output
 out for a handle (which knows only the output's type).
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

    // Field order packs the object: two flags and the 32-bit state word share the last 8 bytes
    // of `AtomicWaker` (whose own state is 16 bits after its slot), `poller` and `liveSlot` are
    // 32 bits each, so the base's fields end at byte 56, and with the 16-byte `step` at 72. A
    // task whose stage (the larger of its future and output, and a tag) takes up to 16 bytes is
    // at most 88 bytes, a 96-byte malloc chunk; up to 32 bytes, a 112-byte one (glibc frees both
    // to a fast bin).
    let cancelRequested = Atomic<Bool>(false)
    /// Set (once) when the task first waits and takes its reference to the runtime; see
    /// `schedulerRef`. Written by the thread that owns the task's turn, read by `deinit`.
    @exclusivity(unchecked) var retainsScheduler = false
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
    /// The runtime the task belongs to. Unowned while the task has never waited: then only the
    /// runtime itself (running or queueing it) and wakes that find the task `scheduled`,
    /// `running` or `complete` (which never call it) can reach it. A task that goes idle (its
    /// first wait, `taskWillWait`) takes a strong reference, released by `deinit`: from then on
    /// a waker on any thread may call `schedule`, and the runtime must outlive the task. A task
    /// that completes in its first poll, as most spawned work does, never pays the two atomic
    /// reference-count operations on the runtime that a strong field cost every task.
    /// `Unmanaged`, used through `withScheduler`: an `unowned(unsafe)` field is retained and
    /// released around every call made through it.
    let schedulerRef: Unmanaged<Runtime>

    /// Calls `body` with the task's runtime, without retaining it (see `schedulerRef`).
    @inline(__always)
    final func withScheduler<R>(_ body: (Runtime) -> R) -> R {
        schedulerRef._withUnsafeGuaranteedRef(body)
    }
    /// Polls the future (`.poll`: the pointer is the `Context`; true when the task completed) or
    /// copies the output into an `Output?` (`.copyOutput`: true if there was one), and
    /// `.cancel` drops the future. Made where `spawn` is specialised for the future's type: the
    /// task's own generic methods are shared code that looks up type metadata on every call,
    /// this closure is not.
    @usableFromInline let step: (PollTaskBase, PollStep, UnsafeMutableRawPointer?) -> Bool

    @usableFromInline
    init(
        scheduler: Unmanaged<Runtime>,
        step: @escaping (PollTaskBase, PollStep, UnsafeMutableRawPointer?) -> Bool
    ) {
        self.schedulerRef = scheduler
        self.step = step
    }

    deinit {
        if retainsScheduler { schedulerRef.release() }
    }

    /// Polls the future once (state is `running`); returns true when the task completed.
    @inline(__always)
    final func pollFuture(_ context: inout Context) -> Bool {
        withUnsafeMutablePointer(to: &context) { step(self, .poll, UnsafeMutableRawPointer($0)) }
    }

    /// Drops the future; the task completes with no output (cancelled).
    final func cancelFuture() {
        _ = step(self, .cancel, nil)
    }

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
        // Sequentially consistent for `cancel()` (see the end of `runTurn`); on x86 and ARM64 the
        // same instruction as an acquiring load.
        var current = state.load(ordering: .sequentiallyConsistent)
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
                let queued = reference ?? Unmanaged.passRetained(self)
                withScheduler { $0.schedule(queued) }
                return reference != nil
            }
            current = original
        }
    }

    @usableFromInline
    final func cancel() {
        // Sequentially consistent, like the state load in `wakeTask` and the runner's re-check
        // after it goes idle (see the end of `runTurn`).
        cancelRequested.store(true, ordering: .sequentiallyConsistent)
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
        withScheduler { $0.taskFinished(self) }
        joinWaker.wakeAndClose()
    }

    /// Runs one scheduling turn of the task whose run-queue reference is `queued`, on the thread
    /// whose `ctide_thread_id()` is `thread`; called by the scheduler only. The reference is
    /// consumed: true means the task was woken while it ran and the caller must queue `queued`
    /// again (no retain and release per yield); false means it was released.
    @inline(__always)
    static func runQueued(_ queued: Unmanaged<PollTaskBase>, thread: UInt32) -> Bool {
        let requeue = queued._withUnsafeGuaranteedRef { $0.runTurn(thread: thread) }
        if !requeue { queued.release() }
        return requeue
    }

    /// One turn; true when the task must be queued again (it was woken while it ran).
    @inline(__always)
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
                vtable: withScheduler { $0.pollTaskVTable })
            finished = pollFuture(&context)
        }
        let wokeItself = poller.load(ordering: .relaxed) & 1 == 1
        if finished {
            poller.store(0, ordering: .relaxed)
            let flags = state.load(ordering: .acquiring) & ~Self.stateMask
            state.store(flags | Self.complete, ordering: .releasing)
            withScheduler { $0.taskFinished(self) }
            joinWaker.wakeAndClose()
            return false
        }
        if wokeItself {
            poller.store(Self.selfQueued, ordering: .relaxed)
            return true
        }
        poller.store(0, ordering: .relaxed)
        // About to wait: only the wakers will hold it, so shutdown must be able to find it.
        if liveSlot == Self.notListed { withScheduler { $0.taskWillWait(self) } }
        var observed = state.load(ordering: .acquiring)
        while true {
            let flags = observed & ~Self.stateMask
            let notified = observed & Self.stateMask == Self.notified
            let next = flags | (notified ? Self.scheduled : Self.idle)
            let (exchanged, original) = state.compareExchange(
                expected: observed, desired: next, ordering: .sequentiallyConsistent)
            if exchanged {
                // A `cancel()` that found the task `scheduled` relies on this turn to see its flag,
                // but the turn moved to `running` with a plain store and read the flag before the
                // poll: the canceller's store and this thread's read can pass each other
                // (store buffering), and the task would wait forever with the flag set. Both
                // sides are sequentially consistent (the flag store and the state load in
                // `cancel`, this exchange and the load below), so either the canceller saw this
                // exchange's `idle` and woke the task, or this load sees the flag.
                if !notified && cancelRequested.load(ordering: .sequentiallyConsistent) {
                    wakeTask()
                }
                return notified
            }
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

/// What `PollTaskBase.step` is asked to do.
@usableFromInline
enum PollStep {
    case poll
    case copyOutput
    case cancel
}

/// A poll task's future until it completes, then its output (see "Storage" above).
@usableFromInline
enum PollStage<F: Future> {
    case running(F)
    case finished(F.Output)
    /// Cancelled: the future was dropped and there is no output.
    case consumed

    /// Moves the future out, leaving `consumed`; nil if the task is not running.
    @inlinable
    mutating func takeFuture() -> F? {
        switch consume self {
        case .running(let future):
            self = .consumed
            return future
        case let other:
            self = other
            return nil
        }
    }
}

/// What a `PollTask` stores, named through this protocol so that the task class can take
/// `PollStage<F>` itself as its generic argument: the class's deinit is shared generic code, and
/// destroying a field whose type is a generic argument uses that argument's metadata directly,
/// whereas a field of type `PollStage<F>` made every deinit look it up in the runtime's
/// metadata cache.
@usableFromInline
protocol PollStageSlot {
    associatedtype Wrapped: Future
}

extension PollStage: PollStageSlot {
    @usableFromInline typealias Wrapped = F
}

@usableFromInline
final class PollTask<Stage: PollStageSlot>: PollTaskBase, @unchecked Sendable {
    // Touched only by the thread running the task (state `running`), and read by joiners only
    // after they observed `complete`.
    @exclusivity(unchecked) @usableFromInline var stage: Stage

    @inlinable
    init<F: Future>(future: F, scheduler: Unmanaged<Runtime>) where Stage == PollStage<F> {
        stage = .running(future)
        super.init(scheduler: scheduler) { base, request, pointer in
            let task = unsafeDowncast(base, to: PollTask<PollStage<F>>.self)
            switch request {
            case .poll:
                guard var current = task.stage.takeFuture() else { return true }
                let context = pointer.unsafelyUnwrapped.assumingMemoryBound(to: Context.self)
                if case .ready(let value) = current.poll(&context.pointee) {
                    task.stage = .finished(value)
                    return true
                }
                task.stage = .running(consume current)
                return false
            case .copyOutput:
                guard case .finished(let value) = task.stage else { return false }
                pointer.unsafelyUnwrapped.assumingMemoryBound(to: F.Output?.self).pointee = value
                return true
            case .cancel:
                task.stage = .consumed
                return true
            }
        }
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
    /// A task whose future's output is `Output`.
    @usableFromInline let task: PollTaskBase

    @inlinable
    init(_ task: PollTaskBase) {
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
        var output: Output? = nil
        // Copied, not moved: every join sees the output.
        _ = withUnsafeMutablePointer(to: &output) {
            task.step(task, .copyOutput, UnsafeMutableRawPointer($0))
        }
        if let output { return .success(output) }
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

