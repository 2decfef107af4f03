/*
 Reactor: epoll plus an eventfd.

 - Every fd is registered edge-triggered for EPOLLIN | EPOLLOUT | EPOLLRDHUP with its
   `IORegistration` (retained) as epoll's user data. Events update the registration's readiness
   and wake its waiters (see IORegistration.swift).
 - The eventfd is registered level-triggered under the token 0; `wakeup()` writes it so that a
   thread blocked in `turn` returns at once. `turn` drains it.
 - Deregistration calls EPOLL_CTL_DEL at once but releases the registration at the start of the
   next `turn`, so events already returned by epoll_wait are never delivered to freed memory.
 - `owners` maps each fd number to the registration that holds it in epoll. A registration whose
   fd was closed before `deregister` (the kernel then dropped its epoll entry) no longer owns
   the number once a new registration reused it, and its `deregister` leaves epoll alone: a
   EPOLL_CTL_DEL there would remove the new registration's entry. Adding and deleting happen
   under the lock, with the map.
 - Only one thread calls `turn` at a time (the runtime thread that owns the reactor, or the one
   worker that drives it); `register`, `deregister` and `wakeup` may be called from anywhere.
*/

#if canImport(Glibc)
import Glibc
#endif
import CTide
import Synchronization

/// The runtime's I/O driver: waits for file-descriptor readiness with epoll.
///
/// You rarely use it directly: sockets, pipes and `Terminal.keys()` are built on it. Reach it as
/// `runtime.reactor` to register your own fds.
public final class Reactor: @unchecked Sendable {
    private let epoll: Int32
    private let eventFD: Int32
    private let lock = SyncLock()
    // Guarded by `lock`: registrations retained while registered, and those deregistered since
    // the last turn (released at the start of the next one).
    @exclusivity(unchecked) private var live: [ObjectIdentifier: IORegistration] = [:]
    @exclusivity(unchecked) private var pending: [IORegistration] = []
    @exclusivity(unchecked) private var owners: [Int32: ObjectIdentifier] = [:]
    /// `live.count`, readable without the lock: a turn that must not block skips epoll when it is
    /// zero.
    private let liveCount = Atomic<Int>(0)
    @exclusivity(unchecked) private var events: UnsafeMutablePointer<epoll_event>
    private let capacity: Int32 = 256
    /// Number of epoll events delivered to registrations so far.
    public private(set) var eventsDelivered = 0

    init() throws(SystemError) {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        if epoll < 0 { throw SystemError.last("epoll_create1") }
        let eventFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        if eventFD < 0 {
            let error = SystemError.last("eventfd")
            close(epoll)
            throw error
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = 0
        if epoll_ctl(epoll, EPOLL_CTL_ADD, eventFD, &event) < 0 {
            let error = SystemError.last("epoll_ctl(ADD eventfd)")
            close(eventFD)
            close(epoll)
            throw error
        }
        self.epoll = epoll
        self.eventFD = eventFD
        events = .allocate(capacity: Int(capacity))
    }

    deinit {
        close(eventFD)
        close(epoll)
        events.deallocate()
    }

    /// Registers `fd` (edge-triggered, both directions). The fd should be non-blocking. Throws the
    /// `epoll_ctl` failure: `EBADF` for a closed fd, `EPERM` for a regular file, `EEXIST` if it is
    /// already registered.
    public func register(fd: Int32) throws(SystemError) -> IORegistration {
        let registration = IORegistration(fd: fd, reactor: self)
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue
            | EPOLLET.rawValue
        event.data.u64 = UInt64(UInt(bitPattern: Unmanaged.passUnretained(registration).toOpaque()))
        let error: SystemError? = lock.withLock {
            if epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) < 0 {
                return SystemError.last("epoll_ctl(ADD fd \(fd))")
            }
            // An older owner of this number had its fd closed without deregistering.
            owners[fd] = ObjectIdentifier(registration)
            live[ObjectIdentifier(registration)] = registration
            liveCount.store(live.count, ordering: .relaxed)
            return nil
        }
        if let error { throw error }
        return registration
    }

    func deregister(_ registration: IORegistration) {
        let identity = ObjectIdentifier(registration)
        lock.withLock {
            if owners[registration.fd] == identity {
                owners[registration.fd] = nil
                var event = epoll_event()
                // The fd may already be closed (then there is no entry to delete).
                _ = epoll_ctl(epoll, EPOLL_CTL_DEL, registration.fd, &event)
            }
            if let removed = live.removeValue(forKey: identity) {
                pending.append(removed)
                liveCount.store(live.count, ordering: .relaxed)
            }
        }
    }

    /// Number of registered file descriptors.
    public var registrations: Int { lock.withLock { live.count } }

    /// Makes a thread blocked in `turn` return. Safe from any thread; cheap when called often
    /// (the eventfd counter just grows until drained).
    public func wakeup() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever, 0: just poll) for events and delivers them.
    /// Returns the number of fd events delivered.
    @discardableResult
    func turn(timeoutMilliseconds: Int32) -> Int {
        turn(timeoutNanoseconds: timeoutMilliseconds < 0 ? -1 : Int64(timeoutMilliseconds) * 1_000_000)
    }

    /// Waits up to `timeoutNanoseconds` (-1: forever, 0: just poll) for events and delivers them,
    /// with microsecond precision where the kernel has epoll_pwait2. Returns the number of fd
    /// events delivered.
    ///
    /// A turn that must not block (`0`) returns at once when no fd is registered: a busy thread
    /// looks every few dozen tasks, and the syscall was about a third of a poll task's yield. The
    /// eventfd needs no draining then (a thread that is running is not waiting for it); it stays
    /// readable until the next blocking turn. Deregistered registrations are released at the
    /// next turn that calls epoll.
    @discardableResult
    func turn(timeoutNanoseconds: Int64) -> Int {
        if timeoutNanoseconds == 0 && liveCount.load(ordering: .relaxed) == 0 { return 0 }
        let released = lock.withLock { () -> [IORegistration] in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        _ = consume released
        let count = ctide_epoll_wait_ns(epoll, events, capacity, timeoutNanoseconds)
        if count <= 0 { return 0 }
        var delivered = 0
        for index in 0..<Int(count) {
            let event = events[index]
            if event.data.u64 == 0 {
                var value: UInt64 = 0
                _ = read(eventFD, &value, 8)
                continue
            }
            let pointer = UnsafeRawPointer(bitPattern: UInt(event.data.u64))!
            let registration = Unmanaged<IORegistration>.fromOpaque(pointer).takeUnretainedValue()
            var ready: Readiness = []
            let bits = event.events
            if bits & EPOLLIN.rawValue != 0 { ready.insert(.readable) }
            if bits & EPOLLOUT.rawValue != 0 { ready.insert(.writable) }
            if bits & EPOLLRDHUP.rawValue != 0 { ready.insert(.readClosed) }
            if bits & EPOLLHUP.rawValue != 0 { ready.formUnion([.readClosed, .writeClosed]) }
            if bits & EPOLLERR.rawValue != 0 { ready.insert(.error) }
            registration.deliver(ready)
            delivered += 1
        }
        eventsDelivered += delivered
        return delivered
    }
}
