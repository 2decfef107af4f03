#if canImport(Glibc)
import Glibc
#endif
import CTide
import Synchronization
import Testing
@testable import Tide

/// A pipe whose read end is non-blocking; closed when dropped.
final class TestPipe: @unchecked Sendable {
    let readEnd: Int32
    let writeEnd: Int32
    private var closed: Set<Int32> = []

    init(nonBlocking: Bool = true) {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        readEnd = fds[0]
        writeEnd = fds[1]
        if nonBlocking {
            _ = ctide_fcntl_setfl(readEnd, ctide_fcntl_getfl(readEnd) | O_NONBLOCK)
        }
    }

    func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.write(writeEnd, $0.baseAddress, $0.count) }
    }

    /// Reads everything available; returns nil on EAGAIN with nothing read.
    func drain() -> [UInt8]? {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count <= 0 { return result.isEmpty && count < 0 ? nil : result }
            result += buffer[0..<count]
        }
    }

    func closeWriter() {
        if closed.insert(writeEnd).inserted { close(writeEnd) }
    }

    deinit {
        if !closed.contains(writeEnd) { close(writeEnd) }
        close(readEnd)
    }
}

@Suite("Reactor")
struct ReactorTests {
    @Test func pipeReadinessIsEdgeTriggeredAndReArms() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        let rounds = try runtime.run { () async throws -> [[UInt8]] in
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            defer { registration.deregister() }
            var received: [[UInt8]] = []
            for round in 0..<5 {
                let writer = Tide.spawn {
                    await Tide.yield()
                    pipe.write([UInt8(round), UInt8(round)])
                }
                // Wait, read until EAGAIN, clear, repeat: the protocol every reader follows.
                while true {
                    let event = try await registration.readiness(for: .readable)
                    #expect(event.readiness.contains(.readable))
                    if let bytes = pipe.drain(), !bytes.isEmpty {
                        received.append(bytes)
                        break
                    }
                    registration.clearReadiness(event)
                }
                try await writer.value
                // Drained: the next poll must wait for a new edge.
                let event = try await registration.readiness(for: .readable)
                #expect(pipe.drain() == nil)
                registration.clearReadiness(event)
                var context = Context(waker: Waker.noop)
                #expect(!registration.pollReady(.readable, context: &context).isReady)
            }
            return received
        }
        #expect(rounds == (0..<5).map { [UInt8($0), UInt8($0)] })
        #expect(runtime.metrics.ioRegistrations == 0)
    }

    /// A thread that never runs out of work never parks, so it sees I/O only through the
    /// non-blocking turns between tasks. Those skip epoll while nothing is registered; once a
    /// pipe is registered they must look again.
    @Test func aBusyRuntimeSeesReadinessOfARegistrationMadeWhileBusy() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        pipe.write([7])
        let yields = try runtime.run { () async throws -> Int in
            var yields = 0
            // Busy with nothing registered first: the turns skip epoll.
            for _ in 0..<1_000 { await Tide.yield() }
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            defer { registration.deregister() }
            let reader = Tide.spawn { () async throws -> [UInt8]? in
                _ = try await registration.readiness(for: .readable)
                return pipe.drain()
            }
            while !reader.isFinished && yields < 100_000 {
                await Tide.yield()
                yields += 1
            }
            #expect(try await reader.value == [7])
            return yields
        }
        #expect(yields < 100_000)
    }

    @Test func staleClearDoesNotHideANewerEvent() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        try runtime.run {
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            defer { registration.deregister() }
            pipe.write([1])
            let first = try await registration.readiness(for: .readable)
            // A new edge is delivered before the reader gets to clear the old observation.
            registration.deliver(.readable)
            registration.clearReadiness(first)
            #expect(registration.currentReadiness.contains(.readable))
            // Clearing the newest observation does clear it.
            let second = try await registration.readiness(for: .readable)
            _ = pipe.drain()
            registration.clearReadiness(second)
            #expect(!registration.currentReadiness.contains(.readable))
        }
    }

    @Test func closedWriterReportsReadClosed() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        let readiness = try runtime.run { () async throws -> Readiness in
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            defer { registration.deregister() }
            Tide.spawn { pipe.closeWriter() }
            var seen: Readiness = []
            while !seen.contains(.readClosed) {
                let event = try await registration.readiness(for: .readable)
                seen.formUnion(event.readiness)
                if !seen.contains(.readClosed) { registration.clearReadiness(event) }
            }
            return seen
        }
        #expect(readiness.contains(.readClosed))
    }

    @Test func socketPairIsWritableAtOnceAndReadableAfterASend() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let (leftFD, rightFD) = (fds[0], fds[1])
        defer { close(leftFD); close(rightFD) }
        for fd in fds { _ = ctide_fcntl_setfl(fd, ctide_fcntl_getfl(fd) | O_NONBLOCK) }
        let runtime = try Runtime.currentThread()
        let received = try runtime.run { () async throws -> UInt8 in
            let left = try runtime.reactor.register(fd: leftFD)
            let right = try runtime.reactor.register(fd: rightFD)
            defer { left.deregister(); right.deregister() }
            let writable = try await left.readiness(for: .writable)
            #expect(writable.readiness.contains(.writable))
            var byte: UInt8 = 7
            #expect(send(leftFD, &byte, 1, 0) == 1)
            _ = try await right.readiness(for: .readable)
            var got: UInt8 = 0
            #expect(recv(rightFD, &got, 1, 0) == 1)
            return got
        }
        #expect(received == 7)
    }

    @Test func deregisterWakesTheWaiterAndForgetsTheFd() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        let countWhileRegistered = try runtime.run { () async throws -> Int in
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            let count = runtime.metrics.ioRegistrations
            let waiter = Tide.spawn { () async throws -> Bool in
                var context = Context(waker: Waker.noop)
                _ = registration.pollReady(.readable, context: &context)
                let handle = try runtime.spawn(ReadinessFuture(registration: registration, interest: .readable))
                _ = handle
                return true
            }
            _ = try await waiter.value
            registration.deregister()
            registration.deregister()
            return count
        }
        #expect(countWhileRegistered == 1)
        #expect(runtime.metrics.ioRegistrations == 0)
    }

    /// A task waiting for readiness when another deregisters the fd gets an event that says so
    /// (both directions, and every later wait too); it used to poll again, find nothing and
    /// wait for ever for an event that could no longer come.
    @Test func aWaiterSeesTheDeregistrationInsteadOfWaitingForEver() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        try runtime.run {
            let registration = try runtime.reactor.register(fd: pipe.readEnd)
            // Bounded: without the deregistered flag the wait never ends, and the timeout fails it.
            let waiter = Tide.spawn {
                try await Tide.timeout(.seconds(10)) { try await registration.readiness(for: .readable) }
            }
            await Tide.yield()  // the waiter is parked
            registration.deregister()
            let event = try await waiter.value
            #expect(event.readiness == .deregistered)
            let later = try await registration.readiness(for: .writable)
            #expect(later.readiness == .deregistered)
            registration.clearReadiness(later)
            #expect(registration.currentReadiness.contains(.deregistered))
        }
    }

    /// A registration whose fd was closed without deregistering, and whose number a new
    /// registration now uses: deregistering the old one must leave the new one's epoll entry
    /// alone (it used to delete it, and the new registration never saw another event).
    @Test func deregisteringAStaleFdNumberLeavesItsNewOwnerAlone() throws {
        let runtime = try Runtime.currentThread()
        let first = TestPipe()
        let second = TestPipe()
        try runtime.run {
            let stale = try runtime.reactor.register(fd: first.readEnd)
            // The number `first.readEnd` now names `second`'s read side (the old file is closed,
            // which drops its epoll entry), as if a new fd had reused it.
            #expect(dup2(second.readEnd, first.readEnd) == first.readEnd)
            let current = try runtime.reactor.register(fd: first.readEnd)
            stale.deregister()
            second.write([7])
            let event = try await Tide.timeout(.seconds(10)) {
                try await current.readiness(for: .readable)
            }
            #expect(event.readiness.contains(.readable))
            current.deregister()
        }
    }

    /// A registration kept after its runtime (and so its reactor) is gone can still be
    /// deregistered: a no-op. It held the reactor `unowned(unsafe)`, and this read freed memory.
    @Test func aRegistrationOutlivingItsRuntimeDeregistersSafely() throws {
        let pipe = TestPipe()
        var registration: IORegistration?
        weak var weakReactor: Reactor?
        do {
            let runtime = try Runtime.currentThread()
            weakReactor = runtime.reactor
            registration = try runtime.reactor.register(fd: pipe.readEnd)
        }
        #expect(weakReactor == nil)
        registration?.deregister()
        #expect(registration?.currentReadiness == .deregistered)
    }

    @Test func registeringABadFdIsATypedError() throws {
        let runtime = try Runtime.currentThread()
        #expect(throws: SystemError.self) { try runtime.reactor.register(fd: -1) }
        do {
            _ = try runtime.reactor.register(fd: 9_999)
        } catch {
            #expect(error.code == EBADF)
        }
    }

    @Test func wakesFromManyThreadsAreNeverLost() throws {
        // Stress: many poll tasks each wait on a gate opened from one of several OS threads at
        // random moments; every task must complete (a lost wakeup would hang: bounded by count).
        let runtime = try Runtime.currentThread()
        let gates = (0..<2_000).map { _ in Gate() }
        let threadCount = 4
        let total = try runtime.run { () async throws -> Int in
            let handles = try gates.map { gate in try runtime.spawn(gate.future.map { 1 }) }
            let threads = (0..<threadCount).map { offset in
                TestThread {
                    var random = TestRandom(seed: UInt64(offset + 1))
                    var index = offset
                    while index < gates.count {
                        jitter(&random, upTo: 30)
                        gates[index].set()
                        index += threadCount
                    }
                }
            }
            var sum = 0
            for handle in handles { sum += try await handle.value }
            for thread in threads { thread.join() }
            return sum
        }
        #expect(total == gates.count)
    }
}

/// A waker whose wake sets a flag (the data pointer is the flag object, unretained: the test
/// keeps it alive).
private final class WakeFlag: Sendable {
    let woken = Atomic<Bool>(false)

    static let vtable = WakerVTable(
        clone: { $0 },
        wake: { Unmanaged<WakeFlag>.fromOpaque($0!).takeUnretainedValue().set() },
        wakeByRef: { Unmanaged<WakeFlag>.fromOpaque($0!).takeUnretainedValue().set() },
        drop: { _ in }
    )

    func set() { woken.store(true, ordering: .releasing) }

    var isWoken: Bool { woken.load(ordering: .acquiring) }

    func waker() -> Waker {
        Waker(
            data: UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()), vtable: Self.vtable)
    }
}

/// One round's one-time event: a flag, the slot its waiter registers in, the waiter's waker.
private final class OneTimeEvent: Sendable {
    let happened = Atomic<Bool>(false)
    let slot = AtomicWaker()
    let flag = WakeFlag()
}

@Suite("AtomicWaker stress")
struct AtomicWakerStressTests {
    /// One consumer thread registers and re-checks, several producer threads bump a counter and
    /// wake, with random delays. The consumer parks between polls, so a lost wakeup would leave
    /// it asleep forever; the producers' total is bounded, so the test ends.
    @Test func noLostWakeupsBetweenRegisterAndWake() {
        let producers = 4
        let perProducer = 5_000
        let produced = Atomic<Int>(0)
        let slot = AtomicWaker()
        let threads = (0..<producers).map { seed in
            TestThread {
                var random = TestRandom(seed: UInt64(seed) + 11)
                for _ in 0..<perProducer {
                    produced.add(1, ordering: .releasing)
                    slot.wake()
                    jitter(&random, upTo: 8)
                }
            }
        }
        var seen = 0
        let target = producers * perProducer
        blockOn(pollFn { context -> Poll<Void> in
            while true {
                let now = produced.load(ordering: .acquiring)
                if now >= target { return .ready(()) }
                if now > seen {
                    seen = now
                    continue
                }
                slot.register(context)
                if produced.load(ordering: .acquiring) != now { continue }
                return .pending
            }
        })
        for thread in threads { thread.join() }
        #expect(produced.load(ordering: .relaxed) == target)
    }

    /// `wakeAndClose` racing a registration, as a task's completion races its joiner: in every
    /// round the waiter either sees the event after registering or is woken. A lost wake-up
    /// leaves a waiter that registered, saw nothing, and is never woken.
    @Test func wakeAndCloseLosesNoWaiter() {
        let rounds = 20_000
        let events = (0..<rounds).map { _ in OneTimeEvent() }
        let lost = Atomic<Int>(0)
        let waiterRound = Atomic<Int>(-1)
        let registered = Atomic<Int>(0)
        let waiter = TestThread {
            var random = TestRandom(seed: 11)
            for (round, event) in events.enumerated() {
                // The signaller starts each round when the waiter does: the two race inside it.
                waiterRound.store(round, ordering: .releasing)
                jitter(&random, upTo: 4)
                if event.happened.load(ordering: .acquiring) { continue }
                event.slot.register(Context(waker: event.flag.waker()))
                registered.add(1, ordering: .relaxed)
                if event.happened.load(ordering: .acquiring) { continue }
                // Registered and saw nothing: the signaller must wake this waker. Bounded wait.
                let deadline = monotonicNow() + 2_000_000_000
                while !event.flag.isWoken {
                    if monotonicNow() > deadline {
                        lost.add(1, ordering: .relaxed)
                        return
                    }
                    sched_yield()
                }
            }
        }
        let signaller = TestThread {
            var random = TestRandom(seed: 12)
            for (round, event) in events.enumerated() {
                while waiterRound.load(ordering: .acquiring) < round {
                    if lost.load(ordering: .relaxed) > 0 { return }
                    sched_yield()
                }
                jitter(&random, upTo: 4)
                event.happened.store(true, ordering: .releasing)
                event.slot.wakeAndClose()
            }
        }
        waiter.join()
        signaller.join()
        #expect(lost.load(ordering: .relaxed) == 0)
        // The race was real: in many rounds the waiter registered before the event.
        #expect(registered.load(ordering: .relaxed) > rounds / 20)
    }

    /// After `wakeAndClose`, the waiter registered before it was woken once, and every later
    /// registration wakes its own waker at once instead of being stored.
    @Test func aClosedSlotWakesLateRegistrantsAtOnce() {
        let slot = AtomicWaker()
        let first = WakeFlag()
        let late = WakeFlag()
        slot.register(Context(waker: first.waker()))
        slot.wakeAndClose()
        #expect(first.isWoken)
        slot.wakeAndClose()
        slot.register(Context(waker: late.waker()))
        #expect(late.isWoken)
    }
}
