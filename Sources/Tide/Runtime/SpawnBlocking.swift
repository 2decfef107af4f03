/*
 The result side of a blocking job.

 The pool thread stores the result, then sets `done` (release), then wakes `waker`. A poll loads
 `done` (acquire): set means the result is there to read. Otherwise it registers its waker, then
 loads `done` again: a completion that ran between the first load and the registration is seen by
 the second load, and one that runs after the registration finds the waker. No lost wakeup.
*/

import Synchronization
import TideCore

/// Where a blocking job leaves its result for its handle.
final class BlockingCompletion<T: Sendable>: @unchecked Sendable {
    let done = Atomic<Bool>(false)
    let waker = AtomicWaker()
    // Written once, by the pool thread, before `done` becomes true; read only after seeing `done`.
    private var result: Result<T, any Error>?

    func complete(_ result: Result<T, any Error>) {
        self.result = result
        done.store(true, ordering: .releasing)
        waker.wake()
    }

    /// The result, if the job has finished.
    func finished() -> Result<T, any Error>? {
        guard done.load(ordering: .acquiring) else { return nil }
        return result
    }
}

/// The result of a closure running on a ``BlockingPool``, returned by ``BlockingPool/submit(_:)``.
///
/// Await ``value`` from Swift code, or poll the handle as a ``Future`` (its output is the
/// closure's `Result`) so that it composes with Tide's combinators, `select` and poll tasks. The
/// result is kept: awaiting or polling again returns it again, and copies of the handle share it.
/// The handle holds one waiting task at a time, like every single-waiter future: await or poll a
/// handle (and its copies) from one task at a time. Dropping the handle does not stop the closure;
/// its result is then discarded.
public struct BlockingHandle<T: Sendable>: Future, Sendable {
    let completion: BlockingCompletion<T>

    init(_ completion: BlockingCompletion<T>) {
        self.completion = completion
    }

    /// Whether the closure has finished (returned or thrown).
    public var isFinished: Bool { completion.done.load(ordering: .acquiring) }

    /// Ready with the closure's return value or thrown error once it has finished; until then
    /// pending, with the polling task's waker registered to be woken by the pool thread.
    public mutating func poll(_ context: inout Context) -> Poll<Result<T, any Error>> {
        if let result = completion.finished() { return .ready(result) }
        completion.waker.register(context)
        if let result = completion.finished() { return .ready(result) }
        return .pending
    }

    /// Waits for the closure and returns its value, or rethrows the error it threw.
    ///
    /// Suspends the calling task, never its thread. Cancelling the waiting task stops the wait
    /// with `CancellationError`; the closure keeps running (blocking code cannot be interrupted)
    /// and its result stays in the handle.
    public nonisolated(nonsending) var value: T {
        get async throws {
            if let result = completion.finished() { return try result.get() }
            let result: Result<T, any Error>
            do {
                result = try await self.waitCancellable()
            } catch {
                // Leave no waker behind: the job would otherwise keep it until it finishes.
                completion.waker.clear()
                throw error
            }
            return try result.get()
        }
    }
}

extension Tide {
    /// Runs `body` on the blocking pool and returns its result, suspending (never blocking) the
    /// calling task meanwhile.
    ///
    /// Use it for work that blocks its thread: file I/O, DNS (`getaddrinfo`), a C library that
    /// waits, a long computation with no suspension points. Run on a runtime worker, such work
    /// would stop every other task of that worker until it returned. `body` runs on a thread of
    /// the current runtime's ``Runtime/blockingPool`` (``BlockingPool/shared`` outside a runtime).
    ///
    /// Errors thrown by `body` are rethrown. Cancellation: cancelling the calling task stops the
    /// wait at once with `CancellationError`, but cannot interrupt `body` (blocking code on
    /// another thread has no way to be stopped): it runs to the end and its result is dropped.
    ///
    /// - Throws: what `body` throws; `CancellationError` if the calling task is cancelled while
    ///   waiting; ``BlockingPoolError/queueFull(capacity:)`` when the pool's queue is full (the
    ///   closure is not run), ``BlockingPoolError/shutDown`` after the pool was shut down.
    public static func spawnBlocking<T: Sendable>(
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await (Runtime.current?.blockingPool ?? BlockingPool.shared).run(body)
    }
}
