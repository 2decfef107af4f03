/*
 BlockingPool: a pool of OS threads for work that blocks (file I/O, DNS, foreign code), so that
 it never runs on a runtime worker.

 Lock. One pthread mutex (`lock`) guards every field of `BlockingPoolState`: the job queue, the map of
 live threads, the counters and the shutdown flags. Two condition variables use it, both on
 CLOCK_MONOTONIC (pthread_condattr_setclock) so that a change of the wall clock neither wakes an
 idle thread early nor keeps it forever: `work` (idle threads wait here for a job) and `exited`
 (shutdown waits here for the last thread). The lock is never held while a job runs.

 Submit (any thread, lock held): refuse if shutting down (the closure is not run, the caller
 gets the error). Otherwise:
   - an idle thread exists: push the job, move one thread from `idle` to `notified` (so that a
     second submit before that thread wakes does not count it again) and signal `work`;
   - else fewer than `maximumThreads` threads live: start one (pthread_create under the lock; the
     new thread blocks on the lock until the submit returns), count it in `starting` until it
     first takes the lock, and push the job; if the thread cannot be started and no thread lives
     to take the job, the submit fails instead;
   - else every thread is busy: refuse if `queueCapacity` jobs already wait for one, else push
     the job: a busy thread takes it when it finishes its current one. Jobs waiting for a busy
     thread are the queued ones beyond the `notified + starting` threads already on their way
     to the queue, so a burst of submits that wakes or starts threads is never refused as full.
 So a queued job always has a thread that will look at the queue.

 Worker loop (lock held except while running a job): pop a job and run it; when the queue is
 empty and the pool is shutting down, exit; otherwise go idle (`idle += 1`) and wait on `work`
 until a deadline `keepAlive` from now. On waking:
   - `notified > 0`: a submit picked an idle thread; this one takes the turn (`notified -= 1`;
     the submit already removed it from `idle`) and pops again. Which idle thread wakes does not
     matter, only that one consumes each notification.
   - shutting down: leave `idle` and pop again (queued jobs still run; then exit).
   - the deadline passed: leave `idle` and retire (exit). A notification always wins over the
     timeout, so a thread never retires while a job counted on it.
   - otherwise (spurious wake): wait again for the same deadline.

 Joining. Every live thread's pthread_t is in `threads`. An exiting thread removes its own handle,
 puts it in `lastExited` and joins the handle that was there before (outside the lock), so
 threads that retire join each other in a chain and at most one exited thread is unjoined at a
 time. `shutdown()` sets `shuttingDown`, broadcasts `work`, waits on `exited` until no thread
 lives, then joins `lastExited`: since each thread joined its predecessor before exiting, that
 one join waits for all of them. A shutdown called from a job of the same pool cannot wait for its
 own thread: it stops intake and returns. Dropping the pool without shutdown does the same and
 detaches every handle so that no thread is left unjoined and undetached.
*/

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Why a ``BlockingPool`` could not be created or refused a job.
public enum BlockingPoolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `maximumThreads` was less than 1.
    case invalidMaximumThreads(Int)
    /// `queueCapacity` was less than 1.
    case invalidQueueCapacity(Int)
    /// `keepAlive` was negative.
    case negativeKeepAlive(Duration)
    /// The queue already held `capacity` jobs waiting for a thread; the job was not queued and
    /// its closure will not run. Retry later, or shed the load.
    case queueFull(capacity: Int)
    /// The pool was shut down; the job was not queued and its closure will not run.
    case shutDown
    /// No pool thread was running and a new one could not be started (`pthread_create` failed,
    /// typically for lack of memory or a process thread limit); the job was not queued.
    case threadStartFailed(SystemError)

    public var description: String {
        switch self {
        case .invalidMaximumThreads(let value):
            return "blocking pool: maximumThreads must be at least 1, got \(value)"
        case .invalidQueueCapacity(let value):
            return "blocking pool: queueCapacity must be at least 1, got \(value)"
        case .negativeKeepAlive(let value):
            return "blocking pool: keepAlive must not be negative, got \(value)"
        case .queueFull(let capacity):
            return "blocking pool: the queue is full (\(capacity) jobs waiting); the job was not run"
        case .shutDown:
            return "blocking pool: the pool has been shut down; the job was not run"
        case .threadStartFailed(let error):
            return "blocking pool: no thread could be started (\(error)); the job was not run"
        }
    }
}

/// A snapshot of a ``BlockingPool``'s counters, for metrics and tests.
public struct BlockingPoolMetrics: Equatable, Sendable {
    /// Threads that exist now (running a job, idle, or about to take a job).
    public var threadsAlive: Int
    /// Threads waiting for work; each retires after the pool's keep-alive without any.
    public var idleThreads: Int
    /// Jobs accepted but not yet started.
    public var queuedJobs: Int
    /// Jobs running now.
    public var runningJobs: Int
    /// Jobs that have finished since the pool was created (returned or threw). A job is counted
    /// just after its result is delivered, so the count can briefly lag a handle that finished.
    public var completedJobs: Int
    /// Submissions refused because the queue was full.
    public var rejectedJobs: Int
}

/// A pool of OS threads that runs closures which block, away from the runtime's workers.
///
/// Use it (usually through ``Tide/spawnBlocking(_:)``) for anything that would stop a worker
/// thread: file system calls, `getaddrinfo`, a C library that sleeps or waits on a lock, a long
/// computation that has no suspension points. Async code must not block its thread: while it does,
/// every other task on that worker waits.
///
/// Threads are started on demand, up to `maximumThreads`: a job that finds no idle thread starts a
/// new one. An idle thread retires after `keepAlive` without work, so an unused pool holds no
/// threads. Jobs that find every thread busy wait in a FIFO queue of at most `queueCapacity`
/// jobs; past that, ``submit(_:)`` throws ``BlockingPoolError/queueFull(capacity:)`` and the
/// closure is not run, so the caller always knows what happened to its work.
///
/// Call ``shutdown()`` when done with a pool you created: it stops accepting jobs, lets queued and
/// running ones finish, and joins every thread. ``shared`` is the process-wide default pool.
public final class BlockingPool: @unchecked Sendable {
    /// The most threads this pool runs at once.
    public let maximumThreads: Int
    /// How long an idle thread waits for work before it exits.
    public let keepAlive: Duration
    /// The most jobs that may wait for a thread.
    public let queueCapacity: Int
    /// The name given to the pool's threads (cut to the 15 bytes Linux keeps), shown by `top -H`,
    /// `gdb` and `perf`.
    public let name: String

    let state: BlockingPoolState

    /// Creates a pool; no thread is started until the first job arrives.
    ///
    /// - Parameters:
    ///   - maximumThreads: the most threads running at once (at least 1). Blocking work mostly
    ///     waits, so this can be far above the core count; it bounds memory (each thread has its
    ///     own stack) and how many blocking calls run at the same time.
    ///   - keepAlive: how long an idle thread waits for work before it exits (zero or more).
    ///   - queueCapacity: the most jobs that may wait for a thread (at least 1).
    ///   - name: the threads' name.
    /// - Throws: ``BlockingPoolError/invalidMaximumThreads(_:)``,
    ///   ``BlockingPoolError/invalidQueueCapacity(_:)`` or
    ///   ``BlockingPoolError/negativeKeepAlive(_:)`` for an argument out of range.
    public convenience init(
        maximumThreads: Int = 512,
        keepAlive: Duration = .seconds(10),
        queueCapacity: Int = 65_536,
        name: String = "tide-blocking"
    ) throws(BlockingPoolError) {
        guard maximumThreads >= 1 else { throw .invalidMaximumThreads(maximumThreads) }
        guard queueCapacity >= 1 else { throw .invalidQueueCapacity(queueCapacity) }
        guard keepAlive >= .zero else { throw .negativeKeepAlive(keepAlive) }
        self.init(
            checkedMaximumThreads: maximumThreads, keepAlive: keepAlive,
            queueCapacity: queueCapacity, name: name)
    }

    /// Creates a pool from arguments already known to be valid.
    init(checkedMaximumThreads maximumThreads: Int, keepAlive: Duration, queueCapacity: Int, name: String) {
        self.maximumThreads = maximumThreads
        self.keepAlive = keepAlive
        self.queueCapacity = queueCapacity
        self.name = name
        state = BlockingPoolState(
            maximumThreads: maximumThreads, keepAlive: keepAlive, queueCapacity: queueCapacity,
            name: name)
    }

    deinit {
        state.abandon()
    }

    /// The process-wide default pool: up to 512 threads, a 10-second keep-alive, room for 65,536
    /// queued jobs. ``Tide/spawnBlocking(_:)`` uses it.
    ///
    /// It lives for the whole process. Shutting it down is allowed but final: every later job
    /// submitted to it, including through ``Tide/spawnBlocking(_:)``, fails with
    /// ``BlockingPoolError/shutDown``.
    public static let shared = BlockingPool(
        checkedMaximumThreads: 512, keepAlive: .seconds(10), queueCapacity: 65_536,
        name: "tide-blocking")

    /// Queues `body` to run on one of the pool's threads and returns a handle to its result,
    /// without waiting.
    ///
    /// Use it from synchronous code, or to start several blocking jobs before awaiting any. The
    /// handle is a ``Future`` (it composes with Tide's combinators and `select`) and has an async
    /// ``BlockingHandle/value``. The closure runs exactly once if this returns, and never if it
    /// throws. Errors thrown by `body` are delivered through the handle.
    ///
    /// - Throws: ``BlockingPoolError/queueFull(capacity:)`` when `queueCapacity` jobs are already
    ///   waiting, ``BlockingPoolError/shutDown`` after ``shutdown()``, and
    ///   ``BlockingPoolError/threadStartFailed(_:)`` when the pool has no thread and cannot start
    ///   one.
    public func submit<T: Sendable>(
        _ body: @escaping @Sendable () throws -> T
    ) throws(BlockingPoolError) -> BlockingHandle<T> {
        let completion = BlockingCompletion<T>()
        try state.submit {
            let result: Result<T, any Error>
            do {
                result = .success(try body())
            } catch {
                result = .failure(error)
            }
            completion.complete(result)
        }
        return BlockingHandle(completion)
    }

    /// Runs `body` on one of the pool's threads and returns its result, suspending (not blocking)
    /// the calling task meanwhile.
    ///
    /// Errors thrown by `body` are rethrown. Cancellation: cancelling the calling task stops the
    /// wait at once with `CancellationError`, but it cannot interrupt `body`, which is ordinary
    /// blocking code on another thread: `body` still runs to the end (or starts later, if it was
    /// queued) and its result is dropped. Make long jobs check a flag of their own if they should
    /// stop early.
    ///
    /// - Throws: what `body` throws; `CancellationError` if the calling task is cancelled while
    ///   waiting; the ``BlockingPoolError`` of ``submit(_:)`` if the job was refused.
    public nonisolated(nonsending) func run<T: Sendable>(
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        try await submit(body).value
    }

    /// Stops accepting jobs, lets every queued and running job finish, and joins every thread.
    ///
    /// Blocks the calling thread until the last job has finished, so call it from synchronous code
    /// (the end of `main`, a test), not from a task on a runtime worker. Later submissions throw
    /// ``BlockingPoolError/shutDown``. Calling it again, or from several threads, is harmless: each
    /// call returns once the pool has stopped. Called from a job running on this same pool it
    /// cannot wait for its own thread: it stops intake and returns at once, and the threads exit
    /// on their own after the queue drains.
    public func shutdown() {
        _ = state.shutdown(deadline: nil)
    }

    /// Like ``shutdown()``, but waits at most `timeout` for the queued and running jobs.
    ///
    /// Returns `true` if every job finished and every thread was joined in time. Returns `false`
    /// if jobs were still running at the deadline (or if called from a job of this pool): the pool
    /// still refuses new work, and its threads finish the queue and exit on their own; a later
    /// call can wait for them. A zero or negative timeout only checks.
    @discardableResult
    public func shutdown(timeout: Duration) -> Bool {
        state.shutdown(deadline: BlockingPoolDeadline(after: timeout))
    }

    /// The pool's counters now (threads alive and idle, queued, running, completed and rejected
    /// jobs). Each field is exact at the moment of reading; they may change right after.
    public var metrics: BlockingPoolMetrics {
        state.metrics
    }
}

/// A point in CLOCK_MONOTONIC time, as the `timespec` that `pthread_cond_timedwait` takes.
fileprivate struct BlockingPoolDeadline {
    var time: timespec

    /// `duration` from now; negative durations are now, and huge ones are clamped to about a
    /// century (far enough to mean "never", small enough not to overflow `tv_sec`).
    init(after duration: Duration) {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        // A negative duration under a second has 0 seconds and negative attoseconds: clamped
        // whole, or the `tv_nsec` could come out negative, which `pthread_cond_timedwait`
        // rejects with EINVAL at once, without waiting or unlocking.
        let components = duration > .zero ? duration.components : (seconds: 0, attoseconds: 0)
        let century: Int64 = 100 * 365 * 24 * 3600
        var seconds = Swift.min(components.seconds, century)
        var nanoseconds = components.attoseconds / 1_000_000_000
        nanoseconds += Int64(now.tv_nsec)
        seconds += Int64(now.tv_sec)
        if nanoseconds >= 1_000_000_000 {
            nanoseconds -= 1_000_000_000
            seconds += 1
        }
        time = timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds))
    }
}

/// The shared part of a pool: what its threads and its owner both see. See the comment at the top
/// of this file for the protocol.
final class BlockingPoolState: @unchecked Sendable {
    typealias Job = @Sendable () -> Void

    let maximumThreads: Int
    let keepAlive: Duration
    let queueCapacity: Int
    let threadName: [CChar]

    let lock = SyncLock()
    private let work = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let exited = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    // Everything below is guarded by `lock`.
    private var queue = RingBuffer<Job>()
    private var threads: [Int: pthread_t] = [:]
    private var nextThreadID = 0
    private var lastExited: pthread_t?
    private var threadsAlive = 0
    private var idle = 0
    private var notified = 0
    private var running = 0
    /// Threads started by a submit that have not taken the lock yet (each takes a queued job).
    private var starting = 0
    private var completed = 0
    private var rejected = 0
    private var shuttingDown = false
    private var joining = false
    private var joined = false

    init(maximumThreads: Int, keepAlive: Duration, queueCapacity: Int, name: String) {
        self.maximumThreads = maximumThreads
        self.keepAlive = keepAlive
        self.queueCapacity = queueCapacity
        threadName = Self.truncatedThreadName(name)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(work, &attributes)
        pthread_cond_init(exited, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        queue.destroy()
        pthread_cond_destroy(work)
        pthread_cond_destroy(exited)
        work.deallocate()
        exited.deallocate()
    }

    /// Linux keeps 15 bytes of a thread's name; cut on a UTF-8 character boundary.
    private static func truncatedThreadName(_ name: String) -> [CChar] {
        var bytes = Array(name.utf8.prefix(15))
        if bytes.count == 15, name.utf8.count > 15 {
            // Drop a partial trailing character: continuation bytes, then its lead byte.
            while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
            if let last = bytes.last, last & 0x80 != 0 { bytes.removeLast() }
        }
        return bytes.map { CChar(bitPattern: $0) } + [0]
    }

    var metrics: BlockingPoolMetrics {
        lock.withLock {
            BlockingPoolMetrics(
                threadsAlive: threadsAlive, idleThreads: idle, queuedJobs: queue.count,
                runningJobs: running, completedJobs: completed, rejectedJobs: rejected)
        }
    }

    // MARK: Submit

    func submit(_ job: @escaping Job) throws(BlockingPoolError) {
        pthread_mutex_lock(lock.mutex)
        defer { pthread_mutex_unlock(lock.mutex) }
        if shuttingDown { throw .shutDown }
        if idle > 0 {
            idle -= 1
            notified += 1
            queue.append(job)
            pthread_cond_signal(work)
            return
        }
        if threadsAlive < maximumThreads {
            switch startThread() {
            case .success:
                starting += 1
                queue.append(job)
                return
            case .failure(let error):
                if threadsAlive == 0 { throw .threadStartFailed(error) }
            }
        }
        // Every thread is busy: the job waits for one, in the bounded part of the queue.
        if queue.count - notified - starting >= queueCapacity {
            rejected += 1
            throw .queueFull(capacity: queueCapacity)
        }
        queue.append(job)
    }

    /// Starts one worker thread. Lock held.
    private func startThread() -> Result<Void, SystemError> {
        let id = nextThreadID
        nextThreadID += 1
        var thread = pthread_t()
        let result = spawnThread(&thread, detached: false) { self.workerMain(id: id) }
        if result != 0 { return .failure(SystemError("pthread_create", code: result)) }
        threads[id] = thread
        threadsAlive += 1
        return .success(())
    }

    // MARK: Worker

    private func workerMain(id: Int) {
        nameThisThread()
        pthread_mutex_lock(lock.mutex)
        starting -= 1
        while true {
            if !queue.isEmpty {
                var job = queue.popFirst()
                running += 1
                pthread_mutex_unlock(lock.mutex)
                job?()
                // Release the closure (and what it captured) before taking the lock again.
                job = nil
                pthread_mutex_lock(lock.mutex)
                running -= 1
                completed += 1
                continue
            }
            if shuttingDown { break }
            if !waitForWork() { break }
        }
        exitWorker(id: id)
    }

    /// Names the calling thread. `pthread_setname_np` and `prctl` are not callable from Swift on
    /// Linux, so this writes the name where they would: the thread's `comm` file.
    private func nameThisThread() {
        #if os(Linux)
        let descriptor = open("/proc/thread-self/comm", O_WRONLY)
        guard descriptor >= 0 else { return }
        threadName.withUnsafeBufferPointer { name in
            _ = write(descriptor, name.baseAddress, name.count - 1)
        }
        close(descriptor)
        #endif
    }

    /// Waits idle for a job; returns false when the thread should retire. Lock held.
    private func waitForWork() -> Bool {
        idle += 1
        var deadline = BlockingPoolDeadline(after: keepAlive).time
        while true {
            let result = pthread_cond_timedwait(work, lock.mutex, &deadline)
            if notified > 0 {
                // A submit counted on an idle thread (and already took it out of `idle`).
                notified -= 1
                return true
            }
            if shuttingDown {
                idle -= 1
                return true
            }
            if result == ETIMEDOUT {
                idle -= 1
                return false
            }
        }
    }

    /// Leaves the pool: joins the previously exited thread (outside the lock) in its place, see
    /// "Joining" above. Called with the lock held; releases it.
    private func exitWorker(id: Int) {
        threadsAlive -= 1
        var predecessor: pthread_t? = nil
        if let me = threads.removeValue(forKey: id) {
            predecessor = lastExited
            lastExited = me
        }
        if threadsAlive == 0 { pthread_cond_broadcast(exited) }
        pthread_mutex_unlock(lock.mutex)
        if let predecessor { pthread_join(predecessor, nil) }
    }

    // MARK: Shutdown

    /// See ``BlockingPool/shutdown(timeout:)``; a nil deadline waits as long as it takes.
    fileprivate func shutdown(deadline: BlockingPoolDeadline?) -> Bool {
        pthread_mutex_lock(lock.mutex)
        if !shuttingDown {
            shuttingDown = true
            pthread_cond_broadcast(work)
        }
        let me = pthread_self()
        if threads.values.contains(where: { pthread_equal($0, me) != 0 }) {
            // A job of this pool: waiting would wait for this very thread.
            pthread_mutex_unlock(lock.mutex)
            return false
        }
        var time = deadline?.time
        while threadsAlive > 0 || (joining && !joined) {
            if time == nil {
                pthread_cond_wait(exited, lock.mutex)
            } else if pthread_cond_timedwait(exited, lock.mutex, &time!) != 0 {
                // ETIMEDOUT (or EINVAL, which would return at once forever: give up either way).
                let done = threadsAlive == 0 && (!joining || joined)
                if !done {
                    pthread_mutex_unlock(lock.mutex)
                    return false
                }
            }
        }
        if joined {
            pthread_mutex_unlock(lock.mutex)
            return true
        }
        // No thread lives; the last one to exit joined the others in a chain.
        joining = true
        let last = lastExited
        lastExited = nil
        pthread_mutex_unlock(lock.mutex)
        if let last { pthread_join(last, nil) }
        lock.withLock {
            joined = true
            pthread_cond_broadcast(exited)
        }
        return true
    }

    /// The owner dropped the pool: stop intake without waiting and detach every thread, so none is
    /// left unjoined; the threads finish the queue and exit on their own.
    func abandon() {
        lock.withLock {
            if !shuttingDown {
                shuttingDown = true
                pthread_cond_broadcast(work)
            }
            for thread in threads.values { pthread_detach(thread) }
            threads.removeAll()
            if !joining, let last = lastExited {
                pthread_detach(last)
                lastExited = nil
            }
        }
    }
}
