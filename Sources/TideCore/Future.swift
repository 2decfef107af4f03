/// A computation that finishes later, driven by polling.
///
/// `poll(_:)` runs the computation as far as it can without blocking. If it finishes it returns
/// `.ready(output)`. If it must wait, it arranges for `context`'s waker to be woken when it can
/// make progress (stores `context.cloneWaker()` with whatever will produce the event), then
/// returns `.pending`. Register first, then re-check readiness: an event that arrives between the
/// check and the registration must still wake the task.
///
/// A future returns `.ready` exactly once. Polling it again afterwards is a contract violation:
/// Tide's combinators stop the program with a precondition failure rather than run a computation
/// twice. Executors never do it; `JoinHandle`s keep the output so that joining twice is safe.
///
/// Futures do not need pinning in Swift: a future is polled in place (inside a task's allocation
/// or an async function's frame, neither of which moves). A hand-written future that hands out
/// pointers into itself should be a class.
public protocol Future<Output> {
    /// What the future produces.
    associatedtype Output

    /// Advances the computation; see the protocol's documentation for the contract.
    mutating func poll(_ context: inout Context) -> Poll<Output>
}
