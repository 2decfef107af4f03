/*
 TerminalMode: raw mode on a TTY, and the guarantee that the terminal is given back.

 A program that leaves a terminal in raw mode leaves the user's shell without echo and without
 line editing, so the original termios (and the O_NONBLOCK flag, see `setNonBlocking()`) must be
 restored on every way out of the process that can run code:

   - `restore()`, called explicitly (idempotent), or from `deinit`;
   - `atexit`, for a normal exit while a TerminalMode is still alive;
   - SIGINT, SIGTERM, SIGHUP and SIGQUIT, through a handler that restores every registered
     terminal, resets the signal to its default action and raises it again, so the process still
     dies of that signal with the usual exit status. The handler is installed (once, on the first
     `enableRaw`) only for signals whose disposition is still the default: a program that ignores
     a signal or handles it itself keeps its choice, and must then call `restore()` on its own
     way out.

 SIGKILL and crashes (SIGSEGV, traps) cannot be covered; `stty sane` repairs the terminal then.

 The registry and its protocol
 -----------------------------
 The signal handler must find the saved termios without locks or allocation. The registry is a
 fixed array of `capacity` records in memory allocated once and never freed, plus three atomics:

   claimed (inside `state`, a Mutex)  which records belong to a live TerminalMode
   activeAttributes (Atomic<UInt32>)  bit i set: record i's fd and termios are complete and must be
                                      restored by a handler
   activeFlags (Atomic<UInt32>)       bit i set: record i's file status flags must be restored too
   handlersInside (Atomic<Int>)       number of handlers currently reading records

 Ordinary threads (enableRaw, setNonBlocking, restore, deinit) serialise on the Mutex; only they
 write records. A signal handler never takes the Mutex (it may have interrupted its holder) and
 only reads: it increments handlersInside, loads the two masks, restores each record whose bit
 is set, and decrements handlersInside.

   - Publishing: a thread fills record i completely, then sets bit i (sequentially consistent).
     A handler that sees the bit therefore sees the complete record.
   - Retiring: `restore()` restores the terminal itself, then clears bit i, then frees the slot. A
     handler running concurrently restores the same original values again, which is harmless.
   - Reusing: a handler that loaded the mask before bit i was cleared may still be reading record
     i. Before overwriting a free record, the claiming thread therefore waits until
     handlersInside is zero. All these accesses are sequentially consistent, so either the
     handler's increment is visible to that wait, or the handler's load of the mask already sees
     bit i clear and never touches the record. The wait is short: a handler does a few syscalls,
     and a handler on the claiming thread itself cannot be waited for because it finished before
     the interrupted thread resumed.

 The handler and the atexit hook run only code that makes no allocation, takes no lock and
 calls only async-signal-safe functions (tcsetattr, fcntl, sigaction, raise): the records are
 trivial C structs reached through a raw pointer, the loops are plain `while` loops over Int,
 and every global they touch is initialised by `enableRaw` before the handler is installed.

 Why these termios flags
 -----------------------
 Input: no ICANON (bytes arrive as typed, not per line), no ECHO/ECHONL (the program draws),
 no ISIG (Ctrl-C, Ctrl-Z and Ctrl-\ arrive as bytes 0x03, 0x1A, 0x1C instead of signals), no
 IEXTEN (Ctrl-V and Ctrl-O are not swallowed), no IXON (Ctrl-S and Ctrl-Q arrive as bytes), no
 ICRNL/INLCR/IGNCR (Enter arrives as CR, untranslated), no BRKINT/PARMRK/ISTRIP (no bit is stripped
 from UTF-8), 8-bit characters, VMIN=1 and VTIME=0 (a read returns as soon as one byte is there).
 Output processing (OPOST, with ONLCR) is kept on purpose, unlike cfmakeraw: "\n" written by the
 program or by a library that knows nothing of raw mode still moves to the start of the next line.
 Changes use TCSANOW: no typed-ahead input is discarded, and nothing waits for output to drain.
 */

import Glibc
import Synchronization

/// Why a terminal operation failed.
public enum TerminalError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file descriptor is valid but is not a terminal (a pipe, a file, a socket). Read it
    /// without raw mode: its input is not typed by a person and needs no terminal settings.
    case notATerminal

    /// A ``TerminalMode`` for the same terminal device is still active. Restore it first: two
    /// active modes would save each other's settings and give back the wrong ones.
    case alreadyInRawMode

    /// As many terminals as the signal-safe registry holds (16) are already in raw mode.
    case tooManyTerminals

    /// The ``TerminalMode`` was already restored; it cannot change the terminal any more.
    case alreadyRestored

    /// A system call failed with `errno`, such as `EBADF` for a closed file descriptor or `EIO`
    /// for a terminal that hung up.
    case systemCallFailed(call: String, errno: Int32)

    /// A sentence that says what went wrong.
    public var description: String {
        switch self {
        case .notATerminal:
            "the file descriptor is not a terminal"
        case .alreadyInRawMode:
            "the terminal is already in raw mode through another TerminalMode"
        case .tooManyTerminals:
            "too many terminals in raw mode at once (at most \(TerminalRegistry.capacity))"
        case .alreadyRestored:
            "the TerminalMode was already restored"
        case .systemCallFailed(let call, let code):
            "\(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }
}

/// Raw mode on a terminal, restored when you are done, when the object goes away, at normal
/// process exit, and when SIGINT, SIGTERM, SIGHUP or SIGQUIT ends the process.
///
/// Use it before reading key presses (see ``KeyDecoder``) from an interactive terminal:
///
/// ```swift
/// let mode: TerminalMode?
/// do {
///     mode = try TerminalMode.enableRaw(fd: STDIN_FILENO)
/// } catch .notATerminal {
///     mode = nil   // input is a pipe or a file: read it as it is; other errors propagate
/// }
/// defer { mode?.restore() }
/// ```
///
/// In raw mode the terminal delivers every byte as soon as it is typed, without echo, line
/// editing, flow control or signal keys (Ctrl-C arrives as byte `0x03`). Output processing stays
/// on, so `"\n"` still starts a new line. The comment at the top of `TerminalMode.swift` lists
/// every flag and why.
public final class TerminalMode: Sendable {
    /// The file descriptor this mode changed.
    public let fileDescriptor: Int32

    /// The settings found by ``enableRaw(fd:)``, given back by ``restore()``.
    let originalAttributes: termios

    /// This mode's record in ``TerminalRegistry``.
    private let slot: Int

    /// Set once by ``restore()``; written only while holding the registry's lock.
    private let restored = Atomic<Bool>(false)

    private init(fileDescriptor: Int32, originalAttributes: termios, slot: Int) {
        self.fileDescriptor = fileDescriptor
        self.originalAttributes = originalAttributes
        self.slot = slot
    }

    deinit {
        restore()
    }

    /// Puts the terminal open on `fd` into raw mode and returns the object that restores it.
    ///
    /// Keep the returned object for as long as raw mode should last; ``restore()`` or releasing
    /// it gives the terminal back its original settings.
    ///
    /// - Throws: ``TerminalError/notATerminal`` if `fd` is not a terminal (a pipe or a file:
    ///   read it without raw mode); ``TerminalError/alreadyInRawMode`` if another live
    ///   `TerminalMode` controls the same terminal device; ``TerminalError/tooManyTerminals``
    ///   if 16 terminals are already in raw mode; ``TerminalError/systemCallFailed(call:errno:)``
    ///   if `fd` is not open or the terminal refuses the settings. When it throws, the terminal
    ///   is unchanged.
    public static func enableRaw(fd: Int32) throws(TerminalError) -> TerminalMode {
        guard isatty(fd) == 1 else {
            let code = errno
            if code == ENOTTY || code == EINVAL { throw .notATerminal }
            throw .systemCallFailed(call: "isatty", errno: code)
        }
        var original = termios()
        guard tcgetattr(fd, &original) == 0 else {
            throw .systemCallFailed(call: "tcgetattr", errno: errno)
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw .systemCallFailed(call: "fstat", errno: errno)
        }
        let slot = try TerminalRegistry.register(fd: fd, device: status.st_rdev, attributes: original)
        var raw = rawAttributes(from: original)
        guard setAttributes(fd, &raw) == 0 else {
            let code = errno
            TerminalRegistry.release(slot: slot)
            throw .systemCallFailed(call: "tcsetattr", errno: code)
        }
        return TerminalMode(fileDescriptor: fd, originalAttributes: original, slot: slot)
    }

    /// Whether ``restore()`` has run; after it, this object no longer changes the terminal.
    public var isRestored: Bool {
        restored.load(ordering: .acquiring)
    }

    /// Sets `O_NONBLOCK` on the file descriptor, and arranges for its original value to be put
    /// back with the terminal settings (by ``restore()``, `deinit`, exit or a fatal signal).
    ///
    /// Use it instead of calling `fcntl` yourself when a reactor reads the terminal: the
    /// terminal's open file description is shared with the shell and every other process
    /// started from it, and a shell whose terminal is left non-blocking fails its next read.
    /// Only the `O_NONBLOCK` bit is restored, other status flags keep their current values.
    /// Calling it again does nothing.
    ///
    /// - Throws: ``TerminalError/alreadyRestored`` after ``restore()``;
    ///   ``TerminalError/systemCallFailed(call:errno:)`` if `fcntl` fails, in which case the
    ///   flags are unchanged.
    public func setNonBlocking() throws(TerminalError) {
        try TerminalRegistry.state.withLock { (_) throws(TerminalError) in
            guard !restored.load(ordering: .relaxed) else { throw .alreadyRestored }
            try TerminalRegistry.saveStatusFlagsAndSetNonBlocking(slot: slot)
        }
    }

    /// Gives the terminal back the settings it had before ``enableRaw(fd:)``, and the original
    /// `O_NONBLOCK` flag if ``setNonBlocking()`` changed it.
    ///
    /// Safe to call more than once and from any thread; only the first call does anything.
    /// `deinit` calls it too. It cannot fail in a way the caller could act on: if the terminal
    /// has gone away (hung up, closed), there is nothing left to restore, and the registry entry
    /// is released either way.
    public func restore() {
        TerminalRegistry.state.withLock { state in
            guard !restored.load(ordering: .relaxed) else { return }
            restored.store(true, ordering: .releasing)
            TerminalRegistry.restoreAndRelease(slot: slot, in: &state)
        }
    }

    /// The raw-mode settings derived from `original`; see the top of this file for each flag.
    static func rawAttributes(from original: termios) -> termios {
        var raw = original
        raw.c_iflag &= ~tcflag_t(BRKINT | ICRNL | INLCR | IGNCR | ISTRIP | IXON | PARMRK)
        raw.c_lflag &= ~tcflag_t(ECHO | ECHONL | ICANON | ISIG | IEXTEN)
        raw.c_cflag &= ~tcflag_t(CSIZE | PARENB)
        raw.c_cflag |= tcflag_t(CS8)
        withUnsafeMutableBytes(of: &raw.c_cc) { controlCharacters in
            controlCharacters[Int(VMIN)] = 1
            controlCharacters[Int(VTIME)] = 0
        }
        return raw
    }
}

/// `tcsetattr(fd, TCSANOW, attributes)`, repeated while interrupted by a signal.
private func setAttributes(_ fd: Int32, _ attributes: inout termios) -> Int32 {
    while true {
        let result = tcsetattr(fd, TCSANOW, &attributes)
        if result == 0 || errno != EINTR { return result }
    }
}

/// What the signal handler and the atexit hook need to give one terminal back.
struct TerminalRecord {
    var fd: Int32 = -1
    var device: dev_t = 0
    var attributes = termios()
    /// The file status flags before ``TerminalMode/setNonBlocking()``.
    var statusFlags: Int32 = 0
}

/// The process-wide table of terminals in raw mode; the protocol is described at the top of
/// this file.
enum TerminalRegistry {
    /// How many terminals can be in raw mode at once: one bit each in the masks.
    static let capacity = 16

    /// State changed only by ordinary threads, never by a signal handler.
    struct State {
        /// Bit i set: record i belongs to a live ``TerminalMode``.
        var claimed: UInt32 = 0
        /// Whether the signal handlers and the atexit hook have been installed.
        var hooksInstalled = false
    }

    static let state = Synchronization.Mutex(State())
    static let activeAttributes = Atomic<UInt32>(0)
    static let activeFlags = Atomic<UInt32>(0)
    static let handlersInside = Atomic<Int>(0)

    /// The records, allocated once for the life of the process.
    nonisolated(unsafe) static let records: UnsafeMutablePointer<TerminalRecord> = {
        let records = UnsafeMutablePointer<TerminalRecord>.allocate(capacity: capacity)
        records.initialize(repeating: TerminalRecord(), count: capacity)
        return records
    }()

    /// The signals whose default action would leave the terminal raw.
    static let fatalSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// Claims a record for `fd`, publishes it to signal handlers, and installs the hooks on
    /// first use. Returns the slot index.
    static func register(fd: Int32, device: dev_t, attributes: termios) throws(TerminalError) -> Int {
        try state.withLock { (state) throws(TerminalError) -> Int in
            var slot = 0
            var free: Int?
            while slot < capacity {
                if state.claimed & (1 << slot) != 0 {
                    if records[slot].device == device { throw .alreadyInRawMode }
                } else if free == nil {
                    free = slot
                }
                slot += 1
            }
            guard let free else { throw .tooManyTerminals }
            while handlersInside.load(ordering: .sequentiallyConsistent) != 0 {
                sched_yield()
            }
            records[free] = TerminalRecord(fd: fd, device: device, attributes: attributes)
            state.claimed |= 1 << free
            activeAttributes.bitwiseOr(1 << free, ordering: .sequentiallyConsistent)
            if !state.hooksInstalled {
                state.hooksInstalled = true
                installHooks()
            }
            return free
        }
    }

    /// Undoes ``register(fd:device:attributes:)`` without touching the terminal, for when raw
    /// mode could not be set.
    static func release(slot: Int) {
        state.withLock { state in
            activeAttributes.bitwiseAnd(~(1 << slot), ordering: .sequentiallyConsistent)
            state.claimed &= ~(1 << slot)
        }
    }

    /// Saves the current status flags of the slot's fd, publishes them, then sets O_NONBLOCK.
    /// Call with the lock held.
    static func saveStatusFlagsAndSetNonBlocking(slot: Int) throws(TerminalError) {
        let bit: UInt32 = 1 << slot
        guard activeFlags.load(ordering: .sequentiallyConsistent) & bit == 0 else { return }
        let fd = records[slot].fd
        let flags = fcntl(fd, F_GETFL)
        guard flags != -1 else { throw .systemCallFailed(call: "fcntl(F_GETFL)", errno: errno) }
        records[slot].statusFlags = flags
        activeFlags.bitwiseOr(bit, ordering: .sequentiallyConsistent)
        guard fcntl(fd, F_SETFL, flags | O_NONBLOCK) != -1 else {
            let code = errno
            activeFlags.bitwiseAnd(~bit, ordering: .sequentiallyConsistent)
            throw .systemCallFailed(call: "fcntl(F_SETFL)", errno: code)
        }
    }

    /// Restores the slot's terminal (and flags), then retires the record. Call with the lock held.
    static func restoreAndRelease(slot: Int, in state: inout State) {
        let bit: UInt32 = 1 << slot
        if activeFlags.load(ordering: .sequentiallyConsistent) & bit != 0 {
            restoreStatusFlags(records[slot])
            activeFlags.bitwiseAnd(~bit, ordering: .sequentiallyConsistent)
        }
        var attributes = records[slot].attributes
        _ = setAttributes(records[slot].fd, &attributes)
        activeAttributes.bitwiseAnd(~bit, ordering: .sequentiallyConsistent)
        state.claimed &= ~bit
    }

    /// Restores every published terminal. Async-signal-safe: used by the signal handler and the
    /// atexit hook, so it takes no lock, allocates nothing and calls only tcsetattr and fcntl.
    static func restoreAll() {
        handlersInside.add(1, ordering: .sequentiallyConsistent)
        let flagsMask = activeFlags.load(ordering: .sequentiallyConsistent)
        let attributesMask = activeAttributes.load(ordering: .sequentiallyConsistent)
        var slot = 0
        while slot < capacity {
            if flagsMask & (1 << slot) != 0 {
                restoreStatusFlags(records[slot])
            }
            if attributesMask & (1 << slot) != 0 {
                var attributes = records[slot].attributes
                _ = tcsetattr(records[slot].fd, TCSANOW, &attributes)
            }
            slot += 1
        }
        handlersInside.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Puts back the record's O_NONBLOCK bit, leaving the other current flags alone.
    private static func restoreStatusFlags(_ record: TerminalRecord) {
        let current = fcntl(record.fd, F_GETFL)
        guard current != -1 else { return }
        let restored = (current & ~O_NONBLOCK) | (record.statusFlags & O_NONBLOCK)
        _ = fcntl(record.fd, F_SETFL, restored)
    }

    /// Installs the atexit hook and the signal handlers. Called once, with the lock held.
    ///
    /// Swift initialises globals lazily, and a first initialisation inside a signal handler
    /// would not be async-signal-safe, so every global the handler touches is read here first.
    private static func installHooks() {
        _ = records
        _ = activeAttributes.load(ordering: .relaxed)
        _ = activeFlags.load(ordering: .relaxed)
        _ = handlersInside.load(ordering: .relaxed)
        _ = capacity
        _ = atexit { TerminalRegistry.restoreAll() }
        var blocked = sigset_t()
        sigemptyset(&blocked)
        for signal in fatalSignals {
            sigaddset(&blocked, signal)
        }
        for signal in fatalSignals {
            var previous = sigaction()
            guard sigaction(signal, nil, &previous) == 0,
                  previous.sa_flags & SA_SIGINFO == 0,
                  previous.__sigaction_handler.sa_handler == nil
            else { continue }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = restoreTerminalsAndReraise
            action.sa_mask = blocked
            action.sa_flags = 0
            _ = sigaction(signal, &action, nil)
        }
    }
}

/// The handler for the fatal signals: restore every terminal, then die of the same signal.
///
/// The signal stays blocked while the handler runs, so `raise` only marks it pending; with the
/// default action back in place, it terminates the process as soon as the handler returns.
private func restoreTerminalsAndReraise(_ signal: Int32) {
    TerminalRegistry.restoreAll()
    var defaultAction = sigaction()
    sigemptyset(&defaultAction.sa_mask)
    _ = sigaction(signal, &defaultAction, nil)
    _ = raise(signal)
}
