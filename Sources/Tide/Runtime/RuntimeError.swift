/// Misuse of a runtime, reported instead of trapping or hanging.
public enum RuntimeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `run` was called while the runtime is already running (on this or another thread).
    case alreadyRunning
    /// The runtime was shut down; it cannot run or spawn any more.
    case shutDown
    /// A Tide operation that needs a runtime (timers, I/O) was used outside of one.
    case noCurrentRuntime
    /// The runtime could not create an OS resource (epoll, eventfd, a thread).
    case system(SystemError)
    /// `Runtime.multiThread(workers:)` was given fewer than one worker.
    case invalidWorkerCount(Int)
    /// The stall threshold was zero or negative.
    case invalidStallThreshold(Duration)
    /// Tide is already Swift's global executor (installation happens once per process).
    case globalExecutorAlreadyInstalled
    /// The Swift runtime does not offer the hooks needed to install a global executor.
    case globalExecutorHooksUnavailable

    public var description: String {
        switch self {
        case .alreadyRunning: return "the runtime is already running"
        case .shutDown: return "the runtime has been shut down"
        case .noCurrentRuntime:
            return "no Tide runtime on this thread: call this from inside runtime.run { ... }"
        case .system(let error): return "runtime set-up failed: \(error)"
        case .invalidWorkerCount(let count):
            return "a multi-thread runtime needs at least one worker, got \(count)"
        case .invalidStallThreshold(let threshold):
            return "the stall threshold must be positive, got \(threshold)"
        case .globalExecutorAlreadyInstalled:
            return "Tide is already installed as Swift's global executor"
        case .globalExecutorHooksUnavailable:
            return "this Swift runtime does not export swift_task_enqueueGlobal_hook"
        }
    }
}
