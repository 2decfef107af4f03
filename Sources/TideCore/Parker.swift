import Synchronization

/// How a thread (or a CPU) sleeps until it is woken: the one platform hook the core needs.
///
/// `park()` returns when `unpark()` has been called since the last `park()` returned (a saved
/// token, so an `unpark` that comes first is never lost), and may return spuriously. `unpark()`
/// may be called from any thread or interrupt handler. TideCore makes no OS calls, so the
/// implementation comes from outside: Tide's `ThreadParker` uses a futex, a kernel uses
/// `sti; hlt`. Subclass it and override both methods.
open class Parker: @unchecked Sendable {
    /// Creates a parker.
    public init() {}

    /// Sleeps until `unpark()` is (or was already) called.
    open func park() {
        preconditionFailure("Parker.park() must be overridden")
    }

    /// Wakes the parked thread, or makes its next `park()` return at once.
    open func unpark() {
        preconditionFailure("Parker.unpark() must be overridden")
    }
}

/// Wakers that unpark a `Parker`: data is a retained `Parker`.
enum ParkerWaker {
    static let vtable = WakerVTable(
        clone: { data in
            _ = Unmanaged<Parker>.fromOpaque(data!).retain()
            return data
        },
        wake: { data in
            let parker = Unmanaged<Parker>.fromOpaque(data!)
            parker._withUnsafeGuaranteedRef { $0.unpark() }
            parker.release()
        },
        wakeByRef: { data in
            Unmanaged<Parker>.fromOpaque(data!)._withUnsafeGuaranteedRef { $0.unpark() }
        },
        drop: { data in
            Unmanaged<Parker>.fromOpaque(data!).release()
        }
    )

    static func make(_ parker: Parker) -> Waker {
        Waker(data: UnsafeRawPointer(Unmanaged.passRetained(parker).toOpaque()), vtable: vtable)
    }
}

extension Waker {
    /// A waker that unparks `parker` when woken. `blockOn` uses it; so can any code that waits
    /// for a future on a plain thread.
    public static func unparking(_ parker: Parker) -> Waker {
        ParkerWaker.make(parker)
    }
}

/// Runs `future` to completion on the calling thread, sleeping in `parker` (never spinning)
/// while it is pending, and returns its output.
///
/// Use it at the edge of a program (a `main` that is not async, a test) or in a kernel. It
/// blocks the calling thread, so never call it from inside a task.
public func blockOn<F: Future>(_ future: F, parker: Parker) -> F.Output {
    var future = future
    let waker = ParkerWaker.make(parker)
    var context = Context(waker: waker)
    while true {
        if case .ready(let output) = future.poll(&context) {
            return output
        }
        parker.park()
    }
}
