/// The receiving side of a ``Channel``; also an `AsyncSequence` that ends when the channel is
/// closed and drained.
///
/// Copies share the queue: several tasks can receive from copies of one receiver, and each message
/// goes to exactly one of them (a work queue). When the last copy is gone, sends fail and the
/// buffered values are dropped.
public struct Receiver<Element: Sendable>: Sendable {
    @usableFromInline let handle: ReceiverHandle<Element>

    @inlinable
    init(handle: ReceiverHandle<Element>) { self.handle = handle }

    /// Receives the next value, suspending while the channel is empty; `nil` once it is closed
    /// and drained.
    ///
    /// Cancel-safe: a value is taken out of the channel only when it is returned, so a cancelled
    /// receive leaves every value in the channel.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    @inlinable
    public nonisolated(nonsending) func receive() async throws(CancellationError) -> Element? {
        if !Coop.spend() { await Tide.yield() }
        var attempt = ChannelStorage<Element>.Attempt.blocked
        let storage = handle.storage
        let element = storage.tryReceive(&attempt)
        if attempt != .blocked { return element }
        let (closed, reservation) = storage.reserveReceive()
        if closed { return nil }
        guard let reservation else {
            // Another receiver waits (or a value just arrived): the queued, fair path.
            return try await receiveQueued()
        }
        // The executor-inheriting forms: see "Suspending without hops" in FutureAwait.swift.
        let outcome = await _unsafeInheritExecutor_withTaskCancellationHandler {
            await _unsafeInheritExecutor_withUnsafeContinuation { continuation in
                storage.parkReceive(continuation)
            }
        } onCancel: {
            storage.cancelParkedReceive(reservation)
        }
        switch outcome {
        case .element(let value): return value
        case .closed: return nil
        case .cancelled: throw CancellationError()
        }
    }

    /// The receive through a `ReceiveFuture` (a call of its own, so that its frame is not part
    /// of every receive's frame).
    @usableFromInline
    nonisolated(nonsending) func receiveQueued() async throws(CancellationError) -> Element? {
        try await ReceiveFuture(handle: handle).waitCancellable()
    }

    /// Takes a value if one is buffered, without suspending.
    ///
    /// - Throws: ``TryReceiveError/empty`` if nothing is buffered, ``TryReceiveError/closed`` if
    ///   the channel is closed and drained.
    @inlinable
    public func tryReceive() throws(TryReceiveError) -> Element {
        var attempt = ChannelStorage<Element>.Attempt.blocked
        let element = handle.storage.tryReceive(&attempt)
        switch attempt {
        case .done: return element.unsafelyUnwrapped
        case .closed: throw .closed
        case .blocked: throw .empty
        }
    }

    /// The receive as a poll-based future (output `nil` = closed and drained), for `select`,
    /// combinators and poll tasks. Cancel-safe: it dequeues only in the poll that returns.
    @inlinable
    public func receiveFuture() -> ReceiveFuture<Element> {
        ReceiveFuture(handle: handle)
    }

    /// Closes the channel from the receiving side: senders start failing, and receivers still
    /// drain what is buffered.
    public func close() {
        handle.storage.close()
    }

    /// How many values are buffered right now.
    public var count: Int { handle.storage.bufferedCount }
}

/// A poll-based channel receive (see ``Receiver/receiveFuture()``). Cancel-safe.
public struct ReceiveFuture<Element: Sendable>: Future {
    @usableFromInline let handle: ReceiverHandle<Element>
    @usableFromInline var waiter: Waiter?

    @inlinable
    init(handle: ReceiverHandle<Element>) { self.handle = handle }

    /// Takes a value if there is one; `nil` if closed and drained; otherwise registers.
    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Element?> {
        guard Coop.proceed(&context) else { return .pending }
        var attempt = ChannelStorage<Element>.Attempt.blocked
        // The handle keeps the storage alive: borrow it rather than retain it around the call.
        let element = Unmanaged.passUnretained(handle.storage)._withUnsafeGuaranteedRef {
            $0.receive(&waiter, context, &attempt)
        }
        if attempt != .blocked { return .ready(element) }
        return .pending
    }
}

extension Receiver: AsyncSequence {
    /// Receives until the channel is closed and drained. Iteration also ends (returns `nil`)
    /// when the iterating task is cancelled; no value is lost by that.
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let receiver: Receiver<Element>

        @inlinable
        init(receiver: Receiver<Element>) { self.receiver = receiver }

        /// The next value, or `nil` at the end or on cancellation.
        @inlinable
        public mutating func next() async -> Element? {
            await next(isolation: nil)
        }

        /// The next value, or `nil` at the end or on cancellation.
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Element? {
            do {
                return try await receiver.receive()
            } catch {
                return nil
            }
        }
    }

    /// An iterator over the values of this channel.
    @inlinable
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(receiver: self)
    }
}
