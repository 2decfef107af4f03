#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TideCore

/// A ``Parker`` for OS threads: a mutex, a condition variable and a saved wake token.
///
/// Use it with ``blockOn(_:parker:)`` or ``LocalExecutor`` on an ordinary thread. `unpark()` may be
/// called from any thread; `park()` must only be called by the thread that owns the parker.
public final class ThreadParker: Parker, @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `mutex`.
    private var token = false

    /// Creates a parker with no saved token.
    public override init() {
        pthread_mutex_init(mutex, nil)
        // Timed parks measure against the monotonic clock, so a wall-clock step cannot stretch
        // or cut them short.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        super.init()
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Blocks until a token is available, then consumes it.
    public override func park() {
        pthread_mutex_lock(mutex)
        while !token {
            pthread_cond_wait(condition, mutex)
        }
        token = false
        pthread_mutex_unlock(mutex)
    }

    /// Blocks until a token is available or `nanoseconds` have passed, and consumes the token if
    /// there is one. Returns whether it was woken by a token (rather than by the timeout).
    @discardableResult
    public func park(timeoutNanoseconds nanoseconds: UInt64) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let total = UInt64(deadline.tv_nsec) + nanoseconds % 1_000_000_000
        deadline.tv_sec += Int(nanoseconds / 1_000_000_000) + Int(total / 1_000_000_000)
        deadline.tv_nsec = Int(total % 1_000_000_000)
        pthread_mutex_lock(mutex)
        while !token {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
        }
        let woken = token
        token = false
        pthread_mutex_unlock(mutex)
        return woken
    }

    /// Makes a token available and wakes the parked thread, if any.
    public override func unpark() {
        pthread_mutex_lock(mutex)
        token = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// Runs `future` to completion on the calling thread, sleeping (not spinning) while it is pending.
///
/// Use it at the edge of synchronous code. It blocks the calling thread, so never call it from a
/// task running on a Tide runtime (that thread would stop running its other tasks).
public func blockOn<F: Future>(_ future: F) -> F.Output {
    blockOn(future, parker: ThreadParker())
}
