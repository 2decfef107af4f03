/*
 The one adapter between Swift async code and poll-based futures.

 Fairness: each await spends one unit of the coop budget before polling (and yields when it is
 spent); the leaf's own coop check is lifted while the adapter polls. A future that was woken
 during its own poll is polled again only after a yield, so a self-waking future cannot keep
 its task running forever inside one job.

 A Swift task awaits a future by polling it in place (the future lives in the async function's
 frame, which never moves) with a waker whose data pointer is a `ContinuationWaker`. When the
 future is pending, the task suspends with an unsafe continuation stored in that box; the waker
 resumes it, and the task polls again.

 ContinuationWaker states (one atomic word):
   idle      - polling, or about to; no continuation stored
   waiting   - suspended; `continuation` is set and owned by whoever moves the state out of waiting
   notified  - a wake came while idle; the next suspend resumes at once
 Before each poll the state is reset to idle (the poll itself observes everything that happened
 before it). A wake during the poll sets notified, so the suspend that follows does not sleep:
 no lost wakeup. Exactly one party moves waiting -> idle and resumes the continuation.

 Suspending without hops. Tide's suspension points (this adapter, the channel and oneshot
 receives, `Tide.yield`) use `_unsafeInheritExecutor_withTaskCancellationHandler` and
 `_unsafeInheritExecutor_withUnsafeContinuation`, the standard library's forms that run on the
 caller's executor, not the `isolation: #isolation` forms. Each of those ends with a hop back to
 its isolation (`swift_task_switch`), and on a task with an executor preference (every task
 Tide spawns) each hop calls `getPreferredTaskExecutor`, which takes the task's status-record
 lock: about a third of a channel round trip on a worker thread. The hops were no-ops here: a
 continuation resumes on the executor it suspended on, and the calling function (isolated or
 `nonisolated(nonsending)`) still hops back to its own isolation once after the await.
*/

import Synchronization
import TideCore

@usableFromInline
final class ContinuationWaker: @unchecked Sendable {
    @usableFromInline static let idle = 0
    static let waiting = 1
    @usableFromInline static let notified = 2

    @usableFromInline let state = Atomic<Int>(0)
    // Written by the task before it publishes `waiting`; taken by whoever leaves `waiting`.
    @exclusivity(unchecked) var continuation: UnsafeContinuation<Void, Never>?

    @usableFromInline
    init() {}

    @usableFromInline
    func wake() {
        var current = state.load(ordering: .acquiring)
        while true {
            switch current {
            case Self.waiting:
                let (exchanged, original) = state.compareExchange(
                    expected: Self.waiting, desired: Self.idle, ordering: .acquiringAndReleasing)
                if exchanged {
                    let continuation = self.continuation.take()
                    continuation?.resume()
                    return
                }
                current = original
            case Self.idle:
                let (exchanged, original) = state.compareExchange(
                    expected: Self.idle, desired: Self.notified, ordering: .acquiringAndReleasing)
                if exchanged { return }
                current = original
            default:
                // Already notified. Still a read-modify-write (it changes nothing): the task's
                // reset in `pollToCompletion` then either reads this wake, and so sees what
                // preceded it (a cancellation), or comes after it and is what it reads.
                let (exchanged, original) = state.compareExchange(
                    expected: current, desired: current, ordering: .acquiringAndReleasing)
                if exchanged { return }
                current = original
            }
        }
    }

    /// Stores the continuation and sleeps, unless a wake already arrived.
    @usableFromInline
    func suspend(_ continuation: UnsafeContinuation<Void, Never>) {
        self.continuation = continuation
        let (exchanged, _) = state.compareExchange(
            expected: Self.idle, desired: Self.waiting, ordering: .acquiringAndReleasing)
        if !exchanged {
            // Notified while we were polling: resume straight away.
            self.continuation = nil
            state.store(Self.idle, ordering: .releasing)
            continuation.resume()
        }
    }

    @usableFromInline
    static let vtable = WakerVTable(
        clone: { data in
            _ = Unmanaged<ContinuationWaker>.fromOpaque(data!).retain()
            return data
        },
        wake: { data in
            let box = Unmanaged<ContinuationWaker>.fromOpaque(data!)
            box._withUnsafeGuaranteedRef { $0.wake() }
            box.release()
        },
        wakeByRef: { data in
            Unmanaged<ContinuationWaker>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.wake() }
        },
        drop: { data in
            Unmanaged<ContinuationWaker>.fromOpaque(data!).release()
        }
    )
}

extension Future {
    /// Awaits this future from Swift async code: polls it, suspends the task while it is pending,
    /// and returns its output. Cancellation of the calling task is ignored (the future runs to
    /// completion); use ``waitCancellable()`` for operations that should stop when the task is
    /// cancelled.
    ///
    /// Works on any executor (Tide's runtimes, Swift's global executor, an actor).
    @inlinable
    public nonisolated(nonsending) func wait() async -> Output {
        var future = self
        return await pollToCompletion(&future, cancellable: false)!
    }

    /// Awaits this future, or stops when the calling task is cancelled.
    ///
    /// On cancellation the future is dropped (whatever it registered is deregistered by its
    /// cleanup) and `CancellationError` is thrown. Whether data can be lost depends on the future:
    /// Tide's leaf operations document whether they are cancel-safe.
    @inlinable
    public nonisolated(nonsending) func waitCancellable() async throws(CancellationError) -> Output {
        var future = self
        guard let output = await pollToCompletion(&future, cancellable: true) else {
            throw CancellationError()
        }
        return output
    }
}

/// Polls `future` until it is ready; returns nil if `cancellable` and the task was cancelled.
@inlinable
nonisolated(nonsending) func pollToCompletion<F: Future>(
    _ future: inout F, cancellable: Bool
) async -> F.Output? {
    // Coop budget: a task whose operations are always ready still yields now and then.
    if !Coop.spend() {
        await Tide.yield()
    }
    // Fast path: many leaf operations are ready at once; poll before allocating anything.
    let noop = Waker.noop
    var probe = Context(waker: noop)
    if case .ready(let output) = future.poll(&probe) { return output }

    let box = ContinuationWaker()
    let waker = Waker(
        data: UnsafeRawPointer(Unmanaged.passRetained(box).toOpaque()),
        vtable: ContinuationWaker.vtable)
    var context = Context(waker: waker)
    // The executor-inheriting forms: see "Suspending without hops" at the top of this file.
    return await _unsafeInheritExecutor_withTaskCancellationHandler {
        while true {
            // Reset the wake state before looking at cancellation, with a read-modify-write:
            // the other order let a cancel land in between (its handler's wake then erased by the
            // reset), and a plain store could pass the `isCancelled` load (store buffering).
            // Now either the handler's wake follows this exchange (and the suspend below sees it)
            // or this exchange reads it, which orders the cancel before the check.
            _ = box.state.exchange(ContinuationWaker.idle, ordering: .acquiringAndReleasing)
            if cancellable && Task.isCancelled { return nil }
            // The adapter spent this await's coop unit above; the leaf must not yield again
            // inside the same job (it would be polled again at once, forever).
            let outcome = Coop.withUnlimitedBudget { future.poll(&context) }
            if case .ready(let output) = outcome {
                return output
            }
            if box.state.load(ordering: .acquiring) == ContinuationWaker.notified {
                // Woken while it was being polled (a future that wakes itself, or an event that
                // raced the poll): poll again, but after the other queued tasks had a turn.
                await Tide.yield()
                continue
            }
            await _unsafeInheritExecutor_withUnsafeContinuation { continuation in
                box.suspend(continuation)
            }
        }
    } onCancel: {
        if cancellable { box.wake() }
    }
}
