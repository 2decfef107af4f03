/// Futures that are built from values and closures: `Ready`, `Pending`, `Lazy`, `PollFn`.

/// A future that is ready at once with a value. Polling it again returns the same value.
public struct Ready<Output>: Future {
    @usableFromInline let value: Output

    /// A future that completes with `value` on its first poll.
    @inlinable
    public init(_ value: Output) { self.value = value }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Output> { .ready(value) }
}

/// A future that never completes. Useful as the losing branch of a `select` and in tests.
public struct Pending<Output>: Future {
    /// A future that stays pending forever (and never wakes its task).
    @inlinable
    public init(of type: Output.Type = Output.self) {}

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Output> { .pending }
}

/// A future that runs a closure on its first poll and completes with its result.
public struct Lazy<Output>: Future {
    @usableFromInline var body: (() -> Output)?

    /// A future that calls `body` when first polled (not when created).
    @inlinable
    public init(_ body: @escaping () -> Output) { self.body = body }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Output> {
        guard let body = body.take() else {
            preconditionFailure("Lazy polled after it completed")
        }
        return .ready(body())
    }
}

/// A future whose `poll` is a closure: the quickest way to write a small leaf future.
public struct PollFn<Output>: Future {
    @usableFromInline let body: (inout Context) -> Poll<Output>

    /// A future that calls `body` on every poll. `body` follows the ``Future`` contract.
    @inlinable
    public init(_ body: @escaping (inout Context) -> Poll<Output>) { self.body = body }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Output> { body(&context) }
}

/// A future that is ready with `value` at once.
@inlinable
public func ready<T>(_ value: T) -> Ready<T> { Ready(value) }

/// A future that never completes.
@inlinable
public func pending<T>(_ type: T.Type = T.self) -> Pending<T> { Pending() }

/// A future that runs `body` on its first poll.
@inlinable
public func lazy<T>(_ body: @escaping () -> T) -> Lazy<T> { Lazy(body) }

/// A future whose poll function is `body`.
@inlinable
public func pollFn<T>(_ body: @escaping (inout Context) -> Poll<T>) -> PollFn<T> { PollFn(body) }

/// A future that transforms another future's output.
public struct Map<Base: Future, Output>: Future {
    @usableFromInline var base: Base
    @usableFromInline let transform: (Base.Output) -> Output

    @inlinable
    init(base: Base, transform: @escaping (Base.Output) -> Output) {
        self.base = base
        self.transform = transform
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Output> {
        switch base.poll(&context) {
        case .ready(let value): return .ready(transform(value))
        case .pending: return .pending
        }
    }
}

/// A future that runs a second future, made from the first one's output.
public struct Then<First: Future, Second: Future>: Future {
    @usableFromInline enum State {
        case first(First, (First.Output) -> Second)
        case second(Second)
        case done
    }

    @usableFromInline var state: State

    @inlinable
    init(first: First, next: @escaping (First.Output) -> Second) {
        state = .first(first, next)
    }

    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Second.Output> {
        while true {
            switch state {
            case .first(var first, let next):
                state = .done
                switch first.poll(&context) {
                case .pending:
                    state = .first(first, next)
                    return .pending
                case .ready(let value):
                    state = .second(next(value))
                }
            case .second(var second):
                state = .done
                switch second.poll(&context) {
                case .pending:
                    state = .second(second)
                    return .pending
                case .ready(let value):
                    return .ready(value)
                }
            case .done:
                preconditionFailure("Then polled after it completed")
            }
        }
    }
}

extension Future {
    /// A future that completes with `transform` applied to this future's output.
    @inlinable
    public func map<T>(_ transform: @escaping (Output) -> T) -> Map<Self, T> {
        Map(base: self, transform: transform)
    }

    /// A future that, when this one completes, runs the future that `next` makes from its output.
    @inlinable
    public func then<Next: Future>(_ next: @escaping (Output) -> Next) -> Then<Self, Next> {
        Then(first: self, next: next)
    }
}
