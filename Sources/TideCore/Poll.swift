/// The result of polling a ``Future`` once.
///
/// `.pending` means the future could not finish yet and has arranged for the waker in the
/// ``Context`` it was polled with to be called when it can make progress. `.ready` carries the
/// output; a future returns it exactly once.
@frozen
public enum Poll<Value> {
    /// The future finished with this value.
    case ready(Value)
    /// The future is waiting; it will wake the task when it can make progress.
    case pending

    /// Whether this is `.ready`.
    @inlinable
    public var isReady: Bool {
        if case .ready = self { return true }
        return false
    }

    /// Transforms the ready value, leaving `.pending` as it is.
    @inlinable
    public func map<T>(_ transform: (Value) -> T) -> Poll<T> {
        switch self {
        case .ready(let value): return .ready(transform(value))
        case .pending: return .pending
        }
    }
}

extension Poll: Sendable where Value: Sendable {}
