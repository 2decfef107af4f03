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

    public var description: String {
        switch self {
        case .alreadyRunning: return "the runtime is already running"
        case .shutDown: return "the runtime has been shut down"
        case .noCurrentRuntime:
            return "no Tide runtime on this thread: call this from inside runtime.run { ... }"
        case .system(let error): return "runtime set-up failed: \(error)"
        }
    }
}
