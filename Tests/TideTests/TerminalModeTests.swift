import Glibc
import Testing
@testable import Tide

/// A pseudo-terminal pair, closed on deinit. The tests put the slave side into raw mode and play
/// the user on the master side, so they never touch the test process's own stdin.
private final class PseudoTerminal {
    let master: Int32
    let slave: Int32

    init() throws {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, nil) == 0 else {
            throw TerminalError.systemCallFailed(call: "openpty", errno: errno)
        }
        self.master = master
        self.slave = slave
    }

    deinit {
        close(master)
        close(slave)
    }

    var slaveAttributes: termios {
        var attributes = termios()
        _ = tcgetattr(slave, &attributes)
        return attributes
    }
}

/// Writes all of `bytes` to `fd`.
private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}

/// Reads from `fd` until `count` bytes arrived or no byte arrived for `timeoutMilliseconds`.
private func readBytes(_ fd: Int32, count: Int, timeoutMilliseconds: Int32 = 2_000) -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 256)
    while result.count < count {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, timeoutMilliseconds) == 1 else { break }
        let got = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, count - result.count)) }
        guard got > 0 else { break }
        result += buffer[0..<got]
    }
    return result
}

private func controlCharacters(_ attributes: termios) -> [UInt8] {
    withUnsafeBytes(of: attributes.c_cc) { Array($0) }
}

/// Whether two termios values agree on everything `tcsetattr` sets.
private func sameSettings(_ a: termios, _ b: termios) -> Bool {
    a.c_iflag == b.c_iflag && a.c_oflag == b.c_oflag && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag && controlCharacters(a) == controlCharacters(b)
        && cfgetispeed([a]) == cfgetispeed([b]) && cfgetospeed([a]) == cfgetospeed([b])
}

private func isSet(_ flags: tcflag_t, _ flag: Int32) -> Bool {
    flags & tcflag_t(flag) != 0
}

/// Serialized: the signal test restores every registered terminal in a forked child, which
/// would disturb another test's terminal if they ran at the same time.
@Suite("TerminalMode", .serialized)
struct TerminalModeTests {
    @Test("enableRaw turns off canonical mode, echo, signals, flow control and CR translation")
    func rawFlags() throws {
        let pty = try PseudoTerminal()
        let mode = try TerminalMode.enableRaw(fd: pty.slave)
        let raw = pty.slaveAttributes
        for flag in [ICANON, ECHO, ECHONL, ISIG, IEXTEN] {
            #expect(!isSet(raw.c_lflag, flag), "c_lflag \(flag)")
        }
        for flag in [IXON, ICRNL, INLCR, IGNCR, ISTRIP, BRKINT] {
            #expect(!isSet(raw.c_iflag, flag), "c_iflag \(flag)")
        }
        #expect(isSet(raw.c_oflag, OPOST))
        #expect(raw.c_cflag & tcflag_t(CSIZE) == tcflag_t(CS8))
        #expect(controlCharacters(raw)[Int(VMIN)] == 1)
        #expect(controlCharacters(raw)[Int(VTIME)] == 0)
        #expect(mode.fileDescriptor == pty.slave)
        #expect(!mode.isRestored)
        mode.restore()
    }

    @Test("in raw mode typed bytes arrive unmodified and are not echoed")
    func bytesPassThrough() throws {
        let pty = try PseudoTerminal()
        let mode = try TerminalMode.enableRaw(fd: pty.slave)
        defer { mode.restore() }
        let typed: [UInt8] = Array("a\u{03}\r\u{1A}\u{1C}\u{13}\u{11}\u{16}\u{7F}\u{1B}[A".utf8) + [0xC3, 0xA9]
        writeAll(pty.master, typed)
        #expect(readBytes(pty.slave, count: typed.count) == typed)
        #expect(readBytes(pty.master, count: 1, timeoutMilliseconds: 50) == [])

        writeAll(pty.slave, Array("x\n".utf8))
        #expect(readBytes(pty.master, count: 3) == Array("x\r\n".utf8))
    }

    @Test("restore gives back exactly the original settings, and a second restore is harmless")
    func restoreIsExactAndIdempotent() throws {
        let pty = try PseudoTerminal()
        let before = pty.slaveAttributes
        let mode = try TerminalMode.enableRaw(fd: pty.slave)
        #expect(!sameSettings(pty.slaveAttributes, before))
        mode.restore()
        #expect(mode.isRestored)
        #expect(sameSettings(pty.slaveAttributes, before))
        var changed = before
        changed.c_lflag &= ~tcflag_t(ECHO)
        _ = tcsetattr(pty.slave, TCSANOW, &changed)
        mode.restore()
        #expect(sameSettings(pty.slaveAttributes, changed))
    }

    @Test("releasing the TerminalMode restores the terminal")
    func deinitRestores() throws {
        let pty = try PseudoTerminal()
        let before = pty.slaveAttributes
        do {
            let mode = try TerminalMode.enableRaw(fd: pty.slave)
            #expect(!sameSettings(pty.slaveAttributes, before))
            _ = mode
        }
        #expect(sameSettings(pty.slaveAttributes, before))
    }

    @Test("a pipe is not a terminal")
    func pipeIsNotATerminal() throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(throws: TerminalError.notATerminal) { try TerminalMode.enableRaw(fd: fds[0]) }
    }

    @Test("a closed file descriptor is reported with EBADF")
    func closedDescriptor() {
        #expect(throws: TerminalError.systemCallFailed(call: "isatty", errno: EBADF)) {
            try TerminalMode.enableRaw(fd: -1)
        }
    }

    @Test("a second raw mode on the same terminal is refused until the first is restored")
    func secondModeOnSameTerminal() throws {
        let pty = try PseudoTerminal()
        let first = try TerminalMode.enableRaw(fd: pty.slave)
        let duplicate = dup(pty.slave)
        defer { close(duplicate) }
        #expect(throws: TerminalError.alreadyInRawMode) { try TerminalMode.enableRaw(fd: duplicate) }
        first.restore()
        let second = try TerminalMode.enableRaw(fd: duplicate)
        second.restore()
    }

    @Test("setNonBlocking sets O_NONBLOCK and restore clears only that bit")
    func nonBlockingFlag() throws {
        let pty = try PseudoTerminal()
        let before = fcntl(pty.slave, F_GETFL)
        #expect(before & O_NONBLOCK == 0)
        let mode = try TerminalMode.enableRaw(fd: pty.slave)
        try mode.setNonBlocking()
        try mode.setNonBlocking()
        #expect(fcntl(pty.slave, F_GETFL) & O_NONBLOCK != 0)
        mode.restore()
        #expect(fcntl(pty.slave, F_GETFL) == before)
        #expect(throws: TerminalError.alreadyRestored) { try mode.setNonBlocking() }
    }

    @Test("the exit hook's restoreAll gives back every registered terminal and its flags")
    func restoreAllRestoresEverything() throws {
        let first = try PseudoTerminal()
        let second = try PseudoTerminal()
        let firstBefore = first.slaveAttributes
        let secondBefore = second.slaveAttributes
        let flagsBefore = fcntl(first.slave, F_GETFL)
        let firstMode = try TerminalMode.enableRaw(fd: first.slave)
        let secondMode = try TerminalMode.enableRaw(fd: second.slave)
        try firstMode.setNonBlocking()
        TerminalRegistry.restoreAll()
        #expect(sameSettings(first.slaveAttributes, firstBefore))
        #expect(sameSettings(second.slaveAttributes, secondBefore))
        #expect(fcntl(first.slave, F_GETFL) == flagsBefore)
        firstMode.restore()
        secondMode.restore()
    }

    @Test(
        "SIGTERM restores the terminal and still ends the process with SIGTERM",
        .disabled(
            if: runningUnderThreadSanitizer,
            "TSan defers signal delivery and does not support raising one in a forked child")
    )
    func signalRestoresAndReraises() throws {
        let pty = try PseudoTerminal()
        let before = pty.slaveAttributes
        let mode = try TerminalMode.enableRaw(fd: pty.slave)
        defer { mode.restore() }
        var handler = sigaction()
        _ = sigaction(SIGTERM, nil, &handler)
        try #require(handler.__sigaction_handler.sa_handler != nil, "SIGTERM handler was not installed")

        // Test threads may block SIGTERM (dispatch's workers do), and the forked child inherits
        // the mask of the forking thread, so the child unblocks it first. Between fork and its
        // death the child calls only async-signal-safe functions.
        var terminate = sigset_t()
        sigemptyset(&terminate)
        sigaddset(&terminate, SIGTERM)
        let child = fork()
        if child == 0 {
            _ = pthread_sigmask(SIG_UNBLOCK, &terminate, nil)
            _ = raise(SIGTERM)
            _exit(99)
        }
        try #require(child > 0)
        var status: Int32 = 0
        var waited: Int32 = 0
        var attempts = 0
        while waited == 0 && attempts < 500 {
            waited = waitpid(child, &status, WNOHANG)
            if waited == 0 { usleep(10_000) }
            attempts += 1
        }
        if waited == 0 {
            kill(child, SIGKILL)
            _ = waitpid(child, &status, 0)
            Issue.record("the child did not exit within 5 seconds")
            return
        }
        let signalled = status & 0x7F
        #expect(signalled == SIGTERM, "raw wait status \(status)")
        #expect(sameSettings(pty.slaveAttributes, before))
    }
}
