/*
 Terminal.keys(): key presses as an AsyncSequence, read through the reactor.

 The first `next()` prepares the file descriptor: raw mode if it is a TTY (TerminalMode, which
 also promises to restore it on exit and on fatal signals), O_NONBLOCK (saved and restored), and
 a reactor registration. A regular file cannot be registered with epoll (EPERM); it never blocks
 either, so it is read directly.

 Each `next()` first hands out decoded events; when none is left it reads. A read that returns
 EAGAIN clears the readiness it observed and waits for the next edge. When the chunk ended in a
 bare ESC and the fd is drained, the reader waits for more input for at most
 KeyDecoder.escapeTimeout (a select between readiness and a timer), then resolves it as the
 Escape key. EOF (or a hang-up) flushes the
 decoder and ends the sequence. Cancellation of the reading task ends it too. Whichever way it
 ends, or when the iterator is dropped, the terminal mode and flags are restored and the fd is
 deregistered; the fd itself is never closed.
*/

#if canImport(Glibc)
import Glibc
#endif
import CTide
import TideCore

/// Terminal input for programs running on a Tide runtime.
public enum Terminal {
    /// The keys pressed on `fileDescriptor` (standard input by default), as they arrive.
    ///
    /// On a terminal, input switches to raw mode for as long as the sequence is being read (keys
    /// arrive one by one, without echo; Ctrl-C arrives as `.ctrl("c")` instead of a signal) and
    /// is always restored: when the sequence ends, when the iterator is dropped, at exit, and on
    /// SIGINT/SIGTERM/SIGHUP/SIGQUIT. On a pipe or file the bytes are decoded the same way until
    /// end of input. The sequence ends at end of input (a closed stdin ends it at once) and when
    /// the reading task is cancelled.
    ///
    /// Iterate it from a task on a Tide runtime. `next()` throws
    /// ``RuntimeError/noCurrentRuntime`` outside one, and a ``SystemError`` if the descriptor
    /// cannot be read (e.g. it is not open).
    public static func keys(fileDescriptor: Int32 = STDIN_FILENO) -> KeySequence {
        KeySequence(fileDescriptor: fileDescriptor)
    }
}

/// The sequence returned by ``Terminal/keys(fileDescriptor:)``.
public struct KeySequence: AsyncSequence, Sendable {
    public typealias Element = KeyEvent
    /// The descriptor the keys are read from.
    public let fileDescriptor: Int32

    public func makeAsyncIterator() -> Iterator {
        Iterator(reader: KeyReader(fileDescriptor: fileDescriptor))
    }

    /// Reads and decodes keys; see ``Terminal/keys(fileDescriptor:)``.
    public struct Iterator: AsyncIteratorProtocol {
        let reader: KeyReader

        /// The next key, or `nil` at end of input or after cancellation.
        public mutating func next() async throws -> KeyEvent? {
            try await reader.next()
        }
    }
}

/// The state behind one key iterator. A class so that dropping the iterator restores the fd.
final class KeyReader {
    let fd: Int32
    private var decoder = KeyDecoder()
    private var pending: [KeyEvent] = []
    private var prepared = false
    private var finished = false
    private var mode: TerminalMode?
    private var savedFlags: Int32?
    private var registration: IORegistration?
    private var buffer = [UInt8](repeating: 0, count: 4096)

    init(fileDescriptor: Int32) {
        fd = fileDescriptor
    }

    deinit {
        release()
    }

    func next() async throws -> KeyEvent? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            if let key = decoder.next() { return key }
            if finished { return nil }
            if Task.isCancelled {
                end()
                return nil
            }
            if !prepared { try prepare() }
            try await fill()
        }
    }

    private func prepare() throws {
        guard let runtime = Runtime.current else { throw RuntimeError.noCurrentRuntime }
        prepared = true
        switch enterRawMode() {
        case .success(let raw):
            mode = raw
        case .failure(.notATerminal):
            try makeNonBlocking()
        case .failure(.systemCallFailed(let call, let code)):
            throw SystemError(call, code: code)
        case .failure(let other):
            throw other
        }
        switch registerWith(runtime.reactor) {
        case .success(let registered):
            registration = registered
        case .failure(let error) where error.code == EPERM:
            // A regular file: epoll refuses it, and reads from it never block.
            registration = nil
        case .failure(let error):
            throw error
        }
    }

    private func enterRawMode() -> Result<TerminalMode, TerminalError> {
        Result { () throws(TerminalError) -> TerminalMode in
            let raw = try TerminalMode.enableRaw(fd: fd)
            try raw.setNonBlocking()
            return raw
        }
    }

    private func registerWith(_ reactor: Reactor) -> Result<IORegistration, SystemError> {
        Result { () throws(SystemError) -> IORegistration in try reactor.register(fd: fd) }
    }

    private func makeNonBlocking() throws(SystemError) {
        let flags = ctide_fcntl_getfl(fd)
        if flags < 0 { throw SystemError.last("fcntl(F_GETFL) on fd \(fd)") }
        if flags & O_NONBLOCK == 0 {
            savedFlags = flags
            _ = ctide_fcntl_setfl(fd, flags | O_NONBLOCK)
        }
    }

    /// Reads one chunk (waiting for readiness as needed) into the decoder.
    private func fill() async throws {
        while true {
            var observed: ReadyEvent? = nil
            if let registration {
                do {
                    observed = try await registration.readiness(for: .readable)
                } catch {
                    end()
                    return
                }
                if observed?.readiness.contains(.deregistered) == true {
                    end()
                    return
                }
            }
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                decoder.feed(buffer[0..<count])
                return
            }
            if count == 0 {
                end()
                return
            }
            let code = errno
            if code == EINTR { continue }
            guard code == EAGAIN || code == EWOULDBLOCK, let registration, let observed else {
                end()
                throw SystemError("read(fd \(fd))", code: code)
            }
            // Drained: forget the readiness we acted on (unless a newer edge arrived meanwhile).
            registration.clearReadiness(observed)
            if decoder.hasPendingEscape, await !moreInputArrives(registration) {
                decoder.flushPending()
                return
            }
        }
    }

    /// Input ended in a bare ESC and is drained: waits up to `KeyDecoder.escapeTimeout` for more
    /// bytes. False means none came, so the ESC was the Escape key.
    private func moreInputArrives(_ registration: IORegistration) async -> Bool {
        guard let runtime = Runtime.current else { return false }
        let deadline = TideClock.Instant.now.advanced(by: KeyDecoder.escapeTimeout)
        let race = select(
            ReadinessFuture(registration: registration, interest: .readable),
            Sleep(until: deadline, on: runtime))
        if case .left = try? await race.waitCancellable() { return true }
        return false
    }

    private func end() {
        if finished { return }
        finished = true
        pending.append(contentsOf: decoder.finish())
        release()
    }

    private func release() {
        registration?.deregister()
        registration = nil
        mode?.restore()
        mode = nil
        if let flags = savedFlags {
            _ = ctide_fcntl_setfl(fd, flags)
            savedFlags = nil
        }
    }
}
