/*
 OnceCell<Value>: a value set at most once, initialised lazily by the first caller.

 State (guarded by `lock`): `value`, `initializing` (one caller holds the right to initialise),
 `waiters` (callers waiting for that one to finish).
 Claim (poll): value present -> return it; nobody initialising -> take the right; else register.
 Publish: store the value, drop the right, wake every waiter (`wokenAll`).
 Failure or cancellation of the initialiser: drop the right and wake the first waiter (`woken`),
   which then claims the right itself. If that waiter is dropped before it used the wake,
   `abandon` passes it on, so a waiting caller never hangs on an abandoned initialisation.
*/

/// Errors from ``OnceCell``.
public enum OnceCellError: Error, Equatable, Sendable {
    /// The cell already has a value (or is being initialised by another caller).
    case alreadyInitialized
    /// The task was cancelled while waiting for another caller's initialisation.
    case cancelled
}

/// A value that is computed once, on first use, even when many tasks ask at the same time.
///
/// ``getOrInit(_:)`` runs the initialiser in exactly one caller; the others wait for its result.
/// If the initialiser throws, the next waiting caller runs its own initialiser.
public final class OnceCell<Value: Sendable>: WaitSource, @unchecked Sendable {
    enum Claim {
        case value(Value)
        case claimed
        case waiting
    }

    let lock = WordLock()
    @exclusivity(unchecked) var value: Value?
    @exclusivity(unchecked) var initializing = false
    @exclusivity(unchecked) var waiters = WaitQueue()

    /// An empty cell.
    public init() {}

    /// The value, if it was set.
    public func get() -> Value? {
        lock.withLock { value }
    }

    /// Sets the value if the cell is empty and nobody is initialising it.
    /// - Throws: ``OnceCellError/alreadyInitialized`` otherwise (the cell is unchanged).
    public func set(_ newValue: Value) throws(OnceCellError) {
        var list = WakeList()
        let stored: Bool = lock.withLock {
            guard value == nil && !initializing else { return false }
            value = newValue
            waiters.wakeAll(into: &list)
            return true
        }
        list.wakeAll()
        if !stored { throw .alreadyInitialized }
    }

    func claim(_ waiter: Waiter?, _ context: Context?) -> Claim {
        lock.withLock { () -> Claim in
            if let value {
                if let waiter { waiters.remove(waiter.node) }
                return .value(value)
            }
            if !initializing {
                initializing = true
                if let waiter { waiters.remove(waiter.node) }
                return .claimed
            }
            if let waiter, let context { waiters.register(waiter.node, context) }
            return .waiting
        }
    }

    func publish(_ newValue: Value) {
        var list = WakeList()
        lock.withLock {
            value = newValue
            initializing = false
            waiters.wakeAll(into: &list)
        }
        list.wakeAll()
    }

    func giveUpClaim() {
        let wake = lock.withLock {
            initializing = false
            return waiters.wakeFirst()
        }
        wake?.wake()
    }

    @usableFromInline
    func abandon(_ node: WaitNode) {
        let wake: Waker? = lock.withLock {
            guard waiters.withdraw(node, handed: WaitNode.woken) == .wasHanded else { return nil }
            return value == nil && !initializing ? waiters.wakeFirst() : nil
        }
        wake?.wake()
    }

    /// Returns the value, running `initializer` first if nobody has yet. Concurrent callers wait
    /// for the one running initialiser instead of running their own.
    ///
    /// - Throws: whatever `initializer` throws (the cell stays empty and the next caller tries);
    ///   ``OnceCellError/cancelled`` if the task is cancelled while waiting for another caller.
    public nonisolated(nonsending) func getOrInit(
        _ initializer: () async throws -> Value
    ) async throws -> Value {
        let outcome: Claim
        switch claim(nil, nil) {
        case .waiting:
            do {
                outcome = try await OnceCellClaimFuture(cell: self).waitCancellable()
            } catch {
                throw OnceCellError.cancelled
            }
        case let other:
            outcome = other
        }
        if case .value(let value) = outcome { return value }
        do {
            let value = try await initializer()
            publish(value)
            return value
        } catch {
            giveUpClaim()
            throw error
        }
    }
}

/// Waits until the cell has a value or the right to initialise it is free.
struct OnceCellClaimFuture<Value: Sendable>: Future {
    let cell: OnceCell<Value>
    var waiter: Waiter?

    init(cell: OnceCell<Value>) { self.cell = cell }

    mutating func poll(_ context: inout Context) -> Poll<OnceCell<Value>.Claim> {
        if waiter == nil { waiter = Waiter(source: cell) }
        let claim = cell.claim(waiter, context)
        if case .waiting = claim { return .pending }
        return .ready(claim)
    }
}
