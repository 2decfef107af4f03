/*
 A Waker is how a leaf operation says "schedule this task again".

 It is two words: an opaque data pointer and a pointer to a static table of four functions
 (clone, wake, wakeByRef, drop), the same shape as Rust's RawWaker. Whoever creates the data
 pointer decides what it means: a reference-counted task header, a continuation box, a parker.
 Cloning, waking and dropping cost whatever the vtable's functions cost (for Tide's tasks: one
 atomic increment, one queue push, one atomic decrement) and never allocate.

 Ownership: a `Waker` owns one reference to its data. `Waker` is `~Copyable`, so the compiler
 makes every copy explicit (`clone()`) and runs `drop` exactly once when the value goes away
 (its `deinit`) unless `wake()` consumed it. `Context` is a non-owning view of a waker that a
 poll borrows for the duration of one `poll` call.
*/

/// The four functions behind a ``Waker``, created once per kind of waker and never freed.
///
/// Build one as a `static let` for each kind of waker you define; every function receives the
/// waker's data pointer. `clone` must return a data pointer that owns a new reference (it may be
/// the same pointer), `wake` consumes the reference it is given, `wakeByRef` leaves it alone and
/// `drop` releases it. All four may be called from any thread (or interrupt handler) at any time
/// while a reference is alive, so they must be thread-safe.
public struct WakerVTable: @unchecked Sendable, Equatable {
    /// Returns a data pointer holding a new reference.
    public typealias Clone = @convention(c) (UnsafeRawPointer?) -> UnsafeRawPointer?
    /// Acts on a data pointer (wake, wake by reference, or drop).
    public typealias Action = @convention(c) (UnsafeRawPointer?) -> Void

    /// The functions themselves. Stored out of line so that a `Waker` stays two words.
    @usableFromInline
    struct Functions {
        @usableFromInline let clone: Clone
        @usableFromInline let wake: Action
        @usableFromInline let wakeByRef: Action
        @usableFromInline let drop: Action
    }

    @usableFromInline
    let functions: UnsafePointer<Functions>

    /// Creates a vtable. Call this once per kind of waker (a `static let`): the table is
    /// allocated once and lives for the rest of the process.
    public init(clone: Clone, wake: Action, wakeByRef: Action, drop: Action) {
        let table = UnsafeMutablePointer<Functions>.allocate(capacity: 1)
        table.initialize(to: Functions(clone: clone, wake: wake, wakeByRef: wakeByRef, drop: drop))
        functions = UnsafePointer(table)
    }

    /// Two vtables are equal when they are the same table.
    public static func == (lhs: WakerVTable, rhs: WakerVTable) -> Bool {
        lhs.functions == rhs.functions
    }
}

/// A handle that schedules a task to be polled again.
///
/// A future that returns `.pending` keeps a waker (cloned from its ``Context``) wherever the event
/// it waits for will be noticed: a channel's wait list, the reactor, a timer. When the event
/// happens, that code calls ``wake()``. Waking a task that already finished, or waking twice, is
/// harmless: the executor polls a task at most once per wake and ignores finished tasks.
///
/// `Waker` is `~Copyable`: use ``clone()`` to get a second handle; the handle releases its
/// reference when it goes out of scope.
@frozen
public struct Waker: ~Copyable, @unchecked Sendable {
    /// The opaque data pointer the vtable's functions receive.
    public let data: UnsafeRawPointer?
    /// The functions that clone, wake and drop this waker.
    public let vtable: WakerVTable

    /// Wraps a data pointer that owns one reference. The waker releases it with `vtable`'s
    /// `drop` when it goes away, or hands it to `wake` when woken.
    @inlinable
    public init(data: UnsafeRawPointer?, vtable: WakerVTable) {
        self.data = data
        self.vtable = vtable
    }

    deinit {
        vtable.functions.pointee.drop(data)
    }

    /// Returns a second waker for the same task.
    @inlinable
    public func clone() -> Waker {
        Waker(data: vtable.functions.pointee.clone(data), vtable: vtable)
    }

    /// Schedules the task, consuming this waker.
    @inlinable
    public consuming func wake() {
        let data = self.data
        let vtable = self.vtable
        discard self
        vtable.functions.pointee.wake(data)
    }

    /// Schedules the task and keeps this waker.
    @inlinable
    public func wakeByRef() {
        vtable.functions.pointee.wakeByRef(data)
    }

    /// Whether waking `other` would wake the same task as waking this one (same data pointer
    /// and vtable). Futures use it to skip replacing a stored waker with an identical one.
    @inlinable
    public func willWake(_ other: borrowing Waker) -> Bool {
        data == other.data && vtable == other.vtable
    }

    /// Whether this waker wakes the same task as the one `context` carries.
    @inlinable
    public func willWake(_ context: Context) -> Bool {
        data == context.data && vtable == context.vtable
    }

    /// Gives up ownership without dropping: returns the data pointer and vtable. The caller
    /// becomes responsible for calling `drop` (or rebuilding a `Waker` with ``init(data:vtable:)``).
    @inlinable
    public consuming func intoRaw() -> (data: UnsafeRawPointer?, vtable: WakerVTable) {
        let result = (data, vtable)
        discard self
        return result
    }

    /// A waker that does nothing when woken. Use it to poll a future once when nobody needs
    /// to be told about progress.
    public static var noop: Waker { Waker(data: nil, vtable: noopVTable) }

    /// Runs `body` with a ``Context`` that borrows this waker.
    @inlinable
    public func withContext<R>(_ body: (inout Context) -> R) -> R {
        var context = Context(waker: self)
        return body(&context)
    }
}

private let noopVTable = WakerVTable(
    clone: { $0 },
    wake: { _ in },
    wakeByRef: { _ in },
    drop: { _ in }
)

/// What a future receives when it is polled: a borrowed view of the waker for the task that is
/// polling it.
///
/// A `Context` does not own its waker; it is valid only during the `poll` call it was passed to.
/// A future that needs to be woken later stores ``cloneWaker()``, never the context.
@frozen
public struct Context {
    /// The data pointer of the borrowed waker.
    public let data: UnsafeRawPointer?
    /// The vtable of the borrowed waker.
    public let vtable: WakerVTable

    /// A context that borrows `waker`. The waker must outlive every use of the context.
    @inlinable
    public init(waker: borrowing Waker) {
        data = waker.data
        vtable = waker.vtable
    }

    /// A context over a data pointer and vtable that the caller keeps alive for the duration of
    /// the poll (an executor's cached task waker: no reference is taken).
    @inlinable
    public init(unownedData data: UnsafeRawPointer?, vtable: WakerVTable) {
        self.data = data
        self.vtable = vtable
    }

    /// Returns an owned waker for the polling task, to keep until the event happens.
    @inlinable
    public func cloneWaker() -> Waker {
        Waker(data: vtable.functions.pointee.clone(data), vtable: vtable)
    }

    /// Wakes the polling task without taking a reference: the task will be polled again. A
    /// future that wants to yield returns `.pending` after calling this.
    @inlinable
    public func wake() {
        vtable.functions.pointee.wakeByRef(data)
    }
}
