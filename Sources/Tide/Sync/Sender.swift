/// The sending side of a ``Channel``: copy it freely, one copy per producer.
///
/// The channel closes when the last copy is gone (or on ``close()``); after that every send hands
/// its value back. Sends from one sender copy arrive in the order they were sent.
public struct Sender<Element: Sendable>: Sendable {
    @usableFromInline let handle: SenderHandle<Element>

    @inlinable
    init(handle: SenderHandle<Element>) { self.handle = handle }

    /// Sends `value`, suspending while a bounded channel is full (backpressure).
    ///
    /// Cancel-safe: if the task is cancelled while waiting for room, the value is not sent and
    /// comes back in ``SendError/cancelled(_:)``.
    /// - Throws: ``SendError/closed(_:)`` (with the value) if the channel is closed or every
    ///   receiver is gone; ``SendError/cancelled(_:)`` if the task was cancelled while waiting.
    @inlinable
    public nonisolated(nonsending) func send(_ value: Element) async throws(SendError<Element>) {
        if !Coop.spend() { await Tide.yield() }
        switch handle.storage.send(value, nil, nil) {
        case .done: return
        case .closed: throw .closed(value)
        case .blocked: break
        }
        let result: Result<Void, SendError<Element>>
        do {
            result = try await SendFuture(handle: handle, value: value).waitCancellable()
        } catch {
            throw .cancelled(value)
        }
        try result.get()
    }

    /// Sends `value` if that is possible right now, without suspending.
    ///
    /// - Throws: ``TrySendError/full(_:)`` if a bounded channel is full,
    ///   ``TrySendError/closed(_:)`` if it is closed; both carry the value back.
    @inlinable
    public func trySend(_ value: Element) throws(TrySendError<Element>) {
        switch handle.storage.send(value, nil, nil) {
        case .done: return
        case .closed: throw .closed(value)
        case .blocked: throw .full(value)
        }
    }

    /// The send as a poll-based future, to compose with TideCore's combinators, `select` or a
    /// poll task. It keeps `value` until it is pushed: dropping the future before it completes
    /// sends nothing (cancel-safe). Its output is `.failure(.closed(value))` on a closed channel.
    @inlinable
    public func sendFuture(_ value: Element) -> SendFuture<Element> {
        SendFuture(handle: handle, value: value)
    }

    /// Closes the channel for every sender. Receivers still get what is buffered, then `nil`;
    /// waiting senders get their values back. Closing twice does nothing.
    public func close() {
        handle.storage.close()
    }

    /// Whether the channel is closed (explicitly, or because every receiver is gone).
    public var isClosed: Bool { handle.storage.isClosed }
}

/// A poll-based channel send (see ``Sender/sendFuture(_:)``). Cancel-safe: the value is sent only
/// by the poll that returns `.ready(.success)`; until then it stays in the future.
public struct SendFuture<Element: Sendable>: Future {
    @usableFromInline let handle: SenderHandle<Element>
    @usableFromInline var value: Element?
    @usableFromInline var waiter: Waiter?

    @inlinable
    init(handle: SenderHandle<Element>, value: Element) {
        self.handle = handle
        self.value = value
    }

    /// Pushes the value if there is room; otherwise registers for a wake when room appears.
    @inlinable
    public mutating func poll(_ context: inout Context) -> Poll<Result<Void, SendError<Element>>> {
        guard let pending = value else { preconditionFailure("SendFuture polled after it completed") }
        guard Coop.proceed(&context) else { return .pending }
        // The handle keeps the storage alive: borrow it rather than retain it around each call.
        let attempt = Unmanaged.passUnretained(handle.storage)._withUnsafeGuaranteedRef {
            storage -> ChannelStorage<Element>.Attempt in
            if waiter == nil {
                let attempt = storage.send(pending, nil, nil)
                if attempt != .blocked { return attempt }
                waiter = Waiter(source: storage, tag: ChannelStorage<Element>.senderTag)
            }
            return storage.send(pending, waiter, context)
        }
        return attempt == .blocked ? .pending : finish(attempt, pending)
    }

    /// The send went through or found the channel closed: the value leaves the future.
    @inlinable
    mutating func finish(
        _ attempt: ChannelStorage<Element>.Attempt, _ pending: Element
    ) -> Poll<Result<Void, SendError<Element>>> {
        value = nil
        return .ready(attempt == .done ? .success(()) : .failure(.closed(pending)))
    }
}
