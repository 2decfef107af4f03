import Synchronization

/// The handle of a Swift task started with ``Tide/spawn(_:)`` or ``Runtime/spawn(_:)-(()->T)``.
///
/// Await ``value`` for the task's result; ``cancel()`` requests cancellation (the task sees
/// `Task.isCancelled` and Tide's operations throw `CancellationError`). Awaiting ``value`` more
/// than once returns the same result each time. Dropping the handle does not cancel the task.
public struct JoinHandle<Success: Sendable>: Sendable {
    let task: Task<Success, any Error>
    let finished: Body

    /// The task's body and its finished flag in one object: the task's closure captures only
    /// this object, so Swift uses it as the closure's context and spawning allocates nothing more.
    final class Body: @unchecked Sendable {
        let value = Atomic<Bool>(false)
        // Called once, by the task.
        let body: () async throws -> Success

        init(_ body: sending @escaping () async throws -> Success) { self.body = body }
    }

    init(executor: (any TaskExecutor)?, _ body: sending @escaping () async throws -> Success) {
        let box = Body(body)
        finished = box
        // The body is called from the task's closure itself, not through a method of `Body`:
        // every async call allocates its callee's frame in the task's allocator, and a task
        // whose first slab (about 1 KiB) runs out mallocs another.
        task = Task(executorPreference: executor) {
            defer { box.value.store(true, ordering: .releasing) }
            return try await box.body()
        }
    }

    /// The task's result: its return value, or the error it threw (`CancellationError` when it
    /// stopped because it was cancelled).
    public nonisolated(nonsending) var value: Success {
        get async throws {
            // A leaf operation for the coop budget: a loop over many finished handles (which
            // return at once) still lets the other tasks on this worker run, timers included.
            if !Coop.spend() { await Tide.yield() }
            return try await task.value
        }
    }

    /// Requests cancellation of the task.
    public func cancel() { task.cancel() }

    /// Whether the task has finished (returned or thrown).
    public var isFinished: Bool { finished.value.load(ordering: .acquiring) }

    /// Whether cancellation was requested.
    public var isCancelled: Bool { task.isCancelled }
}
