/// The internal lock of Tide's long-lived structures: the runtime's queues, the reactor's
/// registration lists, the timing wheel and the blocking pool (which waits on condition
/// variables with it). The Sync primitives, created in large numbers, use the inline
/// `WordLock` instead.
///
/// A glibc adaptive pthread mutex (it spins briefly before sleeping, which suits critical
/// sections of a few instructions). It is used instead of `Synchronization.Mutex` because
/// ThreadSanitizer cannot see the latter's futex-based lock on Linux (its slow path lives in an
/// uninstrumented library), so every access it guards was reported as a race; pthread mutexes
/// are intercepted by TSan, so the whole test suite can be checked under `--sanitize=thread`.
/// Never held while a waker runs or a user value is dropped.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@usableFromInline
struct SyncLock: ~Copyable, @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    @usableFromInline
    init() {
        mutex = .allocate(capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        #if canImport(Glibc)
        // PTHREAD_MUTEX_ADAPTIVE_NP (glibc's value; the constant is not imported without _GNU_SOURCE).
        pthread_mutexattr_settype(&attributes, 3)
        #endif
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held.
    @inlinable
    func withLock<Result: ~Copyable, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
