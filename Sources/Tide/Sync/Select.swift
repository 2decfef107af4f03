/*
 select: wait for the first of several operations, Go-style, with one waker and no child tasks.

 How it works
 - The builder collects branches. Each branch is a poll-based future (a channel receive or send,
   any `Future`) plus an async handler; they are type-erased into `SelectBranch` boxes.
 - `SelectFuture` polls the branches with the caller's one context, starting at a random index and
   going round. The first branch whose future returns `.ready` wins and no further branch is
   polled in that round, so only the winner takes a message or pushes a value. Branches polled
   before it are registered with their sources (that is how one waker serves every branch).
 - Fairness: the random start gives every ready branch the same chance (Go's rule).
 - As soon as a branch wins, every other branch's future is dropped: their `Waiter`s deregister,
   and a wake they had received but not used is passed on to the next waiter of that source, so a
   losing branch never keeps or loses a message. Then the winner's handler runs (it may be async).
 - A `default` branch: the branches are polled once at once; if none is ready they are dropped
   and the default handler runs. Otherwise `select` suspends until a branch is ready.
 - Cancellation of the calling task is a branch too: it runs the `onCancel` handler if there is
   one, else `select` throws `CancellationError`.
*/

import Synchronization

/// Why `select` could not run.
public enum SelectError: Error, Equatable, Sendable {
    /// No branch and no default: the select could never complete.
    case noBranches
}

/// The branches of one ``select(_:)`` call; add them in the builder closure.
///
/// ```swift
/// let result = try await select { s in
///     s.receive(jobs) { job in "job \(job ?? -1)" }
///     s.receive(control) { _ in "control" }
///     s.future(deadline) { _ in "timed out" }
///     s.default { "nothing ready" }
/// }
/// ```
/// Handlers run after their branch won, on the caller's isolation; they may be async and may throw.
public final class SelectBuilder<Result> {
    @exclusivity(unchecked) @usableFromInline var branches: [SelectBranch<Result>] = []
    @exclusivity(unchecked) @usableFromInline var defaultHandler: (() async throws -> Result)?
    @exclusivity(unchecked) @usableFromInline var cancelHandler: (() async throws -> Result)?

    @usableFromInline
    init() {}

    /// A branch that receives from `receiver`; the handler gets the value, or `nil` if the channel
    /// is closed and drained. The value is taken only if this branch wins.
    @inlinable
    public func receive<Element>(
        _ receiver: Receiver<Element>, _ handler: @escaping (Element?) async throws -> Result
    ) {
        branches.append(FutureBranch(receiver.receiveFuture(), handler))
    }

    /// A branch that sends `value` on `sender` once there is room; the handler gets `.success` or
    /// `.failure(.closed(value))` if the channel is closed. The value is sent only if this branch
    /// wins.
    @inlinable
    public func send<Element>(
        _ sender: Sender<Element>, _ value: Element,
        _ handler: @escaping (Swift.Result<Void, SendError<Element>>) async throws -> Result
    ) {
        branches.append(FutureBranch(sender.sendFuture(value), handler))
    }

    /// A branch for any future: a timer or deadline, a oneshot or broadcast receive, a join. The
    /// future is dropped if another branch wins, so it should be cancel-safe.
    @inlinable
    public func future<F: Future>(_ future: F, _ handler: @escaping (F.Output) async throws -> Result) {
        branches.append(FutureBranch(future, handler))
    }

    /// Runs `handler` if no branch is ready when `select` starts (a non-blocking select).
    public func `default`(_ handler: @escaping () async throws -> Result) {
        defaultHandler = handler
    }

    /// Runs `handler` if the calling task is cancelled before a branch is ready. Without it, a
    /// cancelled `select` throws `CancellationError`.
    public func onCancel(_ handler: @escaping () async throws -> Result) {
        cancelHandler = handler
    }

    /// Drops every branch's future except `winner`'s (deregistering them).
    @usableFromInline
    func dropBranches(except winner: Int) {
        for index in branches.indices where index != winner {
            branches[index].drop()
        }
    }
}

/// A type-erased select branch: a future and what to do with its output.
@usableFromInline
class SelectBranch<Result> {
    @usableFromInline
    init() {}

    /// Polls the future; true when it completed (its output is kept for ``run()``).
    @usableFromInline
    func poll(_ context: inout Context) -> Bool { false }

    /// Drops the future (deregisters it).
    @usableFromInline
    func drop() {}

    /// Runs the handler with the kept output.
    @usableFromInline
    func run() async throws -> Result { throw SelectError.noBranches }
}

@usableFromInline
final class FutureBranch<F: Future, Result>: SelectBranch<Result> {
    @exclusivity(unchecked) @usableFromInline var future: F?
    @exclusivity(unchecked) @usableFromInline var output: F.Output?
    @usableFromInline let handler: (F.Output) async throws -> Result

    @inlinable
    init(_ future: F, _ handler: @escaping (F.Output) async throws -> Result) {
        self.future = future
        self.handler = handler
    }

    @inlinable
    override func poll(_ context: inout Context) -> Bool {
        guard future != nil else { return false }
        guard case .ready(let value) = future!.poll(&context) else { return false }
        future = nil
        output = value
        return true
    }

    @inlinable
    override func drop() { future = nil }

    @inlinable
    override func run() async throws -> Result {
        guard let value = output.take() else { throw SelectError.noBranches }
        return try await handler(value)
    }
}

/// The state for fair random starts: a SplitMix64 sequence shared by every select.
private let selectSeed = Atomic<UInt64>(0x2545_F491_4F6C_DD1D)

@usableFromInline
func selectRandom() -> UInt64 {
    var z = selectSeed.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The poll-based select over a builder's branches; its output is the winning branch's index.
public struct SelectFuture<Result>: Future {
    @usableFromInline let builder: SelectBuilder<Result>

    @inlinable
    init(builder: SelectBuilder<Result>) { self.builder = builder }

    /// Polls the branches from a random start; the first ready one wins and the others are dropped.
    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Int> {
        let branches = builder.branches
        let count = branches.count
        guard count > 0 else { return .pending }
        let start = Int(selectRandom() % UInt64(count))
        var offset = 0
        while offset < count {
            var index = start + offset
            if index >= count { index -= count }
            if branches[index].poll(&context) {
                builder.dropBranches(except: index)
                return .ready(index)
            }
            offset += 1
        }
        return .pending
    }
}

/// Waits for the first ready branch, runs its handler and returns what the handler returns.
///
/// Go's `select` for Swift: `build` adds receive, send and future branches to the builder (see
/// ``SelectBuilder``), optionally a `default` (run when nothing is ready at once, making the select
/// non-blocking) and an `onCancel` handler. When several branches are ready, one is chosen at
/// random, so no branch starves. Only the chosen branch takes a message or sends its value; the
/// others are deregistered and lose nothing. One waker serves all branches; no task is spawned.
///
/// - Throws: ``SelectError/noBranches`` if there is neither a branch nor a default;
///   `CancellationError` if the task is cancelled while waiting and there is no `onCancel`
///   handler; otherwise whatever the chosen handler throws.
public nonisolated(nonsending) func select<Result>(
    _ build: (SelectBuilder<Result>) throws -> Void
) async throws -> Result {
    let builder = SelectBuilder<Result>()
    try build(builder)
    var future = SelectFuture(builder: builder)
    if let fallback = builder.defaultHandler {
        let noop = Waker.noop
        var context = Context(waker: noop)
        // The default branch means "nothing is ready": a spent coop budget must not fake that.
        let outcome = Coop.withUnlimitedBudget { future.poll(&context) }
        guard case .ready(let index) = outcome else {
            builder.dropBranches(except: -1)
            return try await fallback()
        }
        return try await builder.branches[index].run()
    }
    guard !builder.branches.isEmpty else { throw SelectError.noBranches }
    let index: Int
    do {
        index = try await future.waitCancellable()
    } catch {
        builder.dropBranches(except: -1)
        guard let onCancel = builder.cancelHandler else { throw error }
        return try await onCancel()
    }
    return try await builder.branches[index].run()
}
