/*
 KeyDecoder: bytes from a terminal in, KeyEvents out.

 The decoder is a small state machine that consumes one byte at a time, so input may be split
 anywhere: a read that ends after `ESC` or in the middle of a UTF-8 character simply leaves the
 machine in a non-ground state until the next `feed`.

     ground ──ESC──▶ escape ──'['──▶ csi ──final '['──▶ linuxFunction ──A..E──▶ F1..F5
       │               │ ──'O'──▶ ss3 ──final──▶ event
       │               │ ──ESC──▶ emit .escape, stay in escape
       │               │ ──UTF-8 lead──▶ utf8(alt: true)
       │               └──other byte──▶ emit .alt(key of that byte)
       └──UTF-8 lead──▶ utf8(alt: false) ──continuations──▶ emit .character

   - `csi` collects parameter bytes (0x30-0x3F) and intermediate bytes (0x20-0x2F) until a final
     byte (0x40-0x7E); any other byte aborts the sequence. At most `maximumSequenceLength` bytes are
     kept, so a stream of parameter bytes cannot grow memory without bound.
   - Whenever a byte cannot continue the pending sequence, the pending bytes become an event
     (`.unknown(bytes)`, or `.alt("[")` / `.alt("O")` when only `ESC [` / `ESC O` was pending)
     and the byte is processed again from `ground`. No byte is dropped and none is reinterpreted
     as part of a sequence it does not belong to.

 The one ambiguity a byte stream cannot resolve is time: `ESC` followed by nothing may be the
 Escape key or the first byte of an arrow key whose rest is still in flight. The decoder never
 guesses. It reports `hasPendingEscape`, and the reader decides: wait up to `escapeTimeout` for
 more bytes, then call `flushPending()`. At end of input, `finish()` resolves everything.
 */

/// An incremental decoder that turns the bytes a terminal sends into ``KeyEvent`` values.
///
/// Use one decoder per input stream. Feed it every chunk you read, in order, then take events
/// with ``next()`` until it returns `nil`:
///
/// ```swift
/// var decoder = KeyDecoder()
/// decoder.feed(chunk)
/// while let key = decoder.next() { handle(key) }
/// if decoder.hasPendingEscape {
///     // Wait up to KeyDecoder.escapeTimeout for the next chunk. If one arrives, feed it;
///     // otherwise the user pressed Escape:
///     decoder.flushPending()
/// }
/// ```
///
/// At the end of the input (EOF on a pipe, the terminal closed), call ``finish()`` to turn an
/// incomplete sequence into events. The decoder never fails: bytes it cannot decode come out as
/// ``KeyEvent/unknown(_:)`` holding exactly those bytes.
///
/// Supported input: printable ASCII and UTF-8 (2 to 4 bytes), the control bytes listed on
/// ``KeyEvent``, `ESC [` sequences for arrows, Home, End, Insert, Delete, Page Up/Down and F1-F12,
/// `ESC O` (SS3) sequences for arrows, Home, End and F1-F4, the Linux console's `ESC [ [ A`-`E`
/// for F1-F5, and Alt+key as `ESC` followed by the key. Sequences with modifier parameters, such
/// as `ESC [ 1 ; 5 A` for Ctrl-Up, come out as ``KeyEvent/unknown(_:)`` rather than as the plain
/// arrow, so the modifier is never silently lost.
public struct KeyDecoder: Sendable {
    /// How long a reader should wait for more bytes after a chunk that ended with
    /// ``hasPendingEscape`` set, before calling ``flushPending()``: 25 milliseconds.
    ///
    /// A terminal writes an escape sequence in one write, so its bytes arrive together even over
    /// ssh; a person cannot type a second key that fast after Escape. Shorter waits risk
    /// splitting arrow keys on slow links, longer ones make the Escape key feel slow.
    public static let escapeTimeout: Duration = .milliseconds(25)

    /// The longest escape sequence the decoder keeps; a longer one becomes
    /// ``KeyEvent/unknown(_:)`` and decoding continues after it.
    public static let maximumSequenceLength = 32

    /// Where the machine is between two bytes; see the diagram at the top of this file.
    enum State: Sendable, Equatable {
        /// No sequence pending; `pending` is empty.
        case ground
        /// `pending` is `[ESC]`.
        case escape
        /// `pending` is `ESC [` plus any parameter and intermediate bytes.
        case csi
        /// `pending` is `ESC O`.
        case ss3
        /// `pending` is `ESC [ [`.
        case linuxFunction
        /// `pending` holds a UTF-8 lead byte and the continuation bytes seen so far, preceded by
        /// `ESC` when `alt` is true; `remaining` more continuation bytes are expected.
        case utf8(remaining: Int, alt: Bool)
    }

    private static let esc: UInt8 = 0x1B

    private(set) var state: State = .ground
    private var pending: [UInt8] = []
    private var events: [KeyEvent] = []
    private var head = 0

    /// Creates a decoder with no pending input.
    public init() {}

    /// Whether the input so far ends with an `ESC` or an unfinished escape sequence that more
    /// bytes could still complete.
    ///
    /// When this is true after you have taken all events, wait up to ``escapeTimeout`` for more
    /// input; if none arrives, call ``flushPending()`` so that the Escape key (or Alt-[, or the
    /// incomplete sequence) is reported. Feeding more bytes instead continues the sequence.
    public var hasPendingEscape: Bool {
        switch state {
        case .escape, .csi, .ss3, .linuxFunction: true
        case .ground, .utf8: false
        }
    }

    /// Whether any bytes are held back because they do not form a complete event yet: an
    /// escape sequence (see ``hasPendingEscape``) or the first bytes of a UTF-8 character.
    ///
    /// An incomplete UTF-8 character is not resolved by ``flushPending()``, because its
    /// remaining bytes are already on their way; only ``finish()`` reports it as
    /// ``KeyEvent/unknown(_:)``.
    public var hasIncompleteInput: Bool {
        state != .ground
    }

    /// Decodes `bytes`, which continue the input fed so far, and queues the resulting events for
    /// ``next()``.
    ///
    /// Any split of the input into chunks gives the same events, as long as ``flushPending()``
    /// is only called when no more bytes arrived within ``escapeTimeout``. An
    /// `UnsafeRawBufferPointer` filled by `read(2)` can be passed directly.
    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            consume(byte)
        }
    }

    /// Returns the next decoded event, or `nil` when every event decoded so far has been taken.
    ///
    /// `nil` does not mean the input ended: feed more bytes and call it again.
    public mutating func next() -> KeyEvent? {
        guard head < events.count else { return nil }
        let event = events[head]
        head += 1
        if head == events.count {
            events.removeAll(keepingCapacity: true)
            head = 0
        }
        return event
    }

    /// Resolves a pending escape sequence as if no more bytes will follow it soon, and queues
    /// the result for ``next()``.
    ///
    /// Call it when ``hasPendingEscape`` is true and no input arrived within ``escapeTimeout``.
    /// A lone `ESC` becomes ``KeyEvent/escape``, `ESC [` and `ESC O` become Alt-[ and Alt-O, and a
    /// longer unfinished sequence becomes ``KeyEvent/unknown(_:)`` with its bytes. Does nothing
    /// when no escape sequence is pending; an incomplete UTF-8 character stays pending.
    public mutating func flushPending() {
        switch state {
        case .ground, .utf8:
            return
        case .escape:
            emit(.escape)
        case .csi where pending.count == 2:
            emit(.alt(.character("[")))
        case .ss3:
            emit(.alt(.character("O")))
        case .csi, .linuxFunction:
            emit(.unknown(pending))
        }
        reset()
    }

    /// Ends the input: resolves anything still pending and returns every event not yet taken.
    ///
    /// Call it once the stream has reached its end. A pending escape sequence is resolved as
    /// ``flushPending()`` does; an incomplete UTF-8 character becomes ``KeyEvent/unknown(_:)``.
    /// The decoder is then empty and can be reused for a new stream.
    public mutating func finish() -> [KeyEvent] {
        if case .utf8 = state {
            emit(.unknown(pending))
            reset()
        } else {
            flushPending()
        }
        let remaining = Array(events[head...])
        events.removeAll()
        head = 0
        return remaining
    }

    // MARK: - The state machine

    private mutating func consume(_ byte: UInt8) {
        switch state {
        case .ground:
            ground(byte)
        case .escape:
            afterEscape(byte)
        case .csi:
            inCSI(byte)
        case .ss3:
            if (0x40...0x7E).contains(byte) {
                pending.append(byte)
                emit(Self.ss3Key(final: byte) ?? .unknown(pending))
                reset()
            } else {
                abort(then: byte)
            }
        case .linuxFunction:
            if (0x41...0x45).contains(byte) {
                emit(.function(Int(byte - 0x40)))
                reset()
            } else if (0x40...0x7E).contains(byte) {
                pending.append(byte)
                emit(.unknown(pending))
                reset()
            } else {
                abort(then: byte)
            }
        case .utf8(let remaining, let alt):
            inUTF8(byte, remaining: remaining, alt: alt)
        }
    }

    private mutating func ground(_ byte: UInt8) {
        if byte == Self.esc {
            state = .escape
            pending = [byte]
        } else if byte < 0x80 {
            emit(Self.singleByteKey(byte))
        } else if let length = Self.utf8Length(lead: byte) {
            state = .utf8(remaining: length - 1, alt: false)
            pending = [byte]
        } else {
            emit(.unknown([byte]))
        }
    }

    private mutating func afterEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "["):
            state = .csi
            pending.append(byte)
        case UInt8(ascii: "O"):
            state = .ss3
            pending.append(byte)
        case Self.esc:
            emit(.escape)
        case 0x00..<0x80:
            emit(.alt(Self.singleByteKey(byte)))
            reset()
        default:
            if let length = Self.utf8Length(lead: byte) {
                state = .utf8(remaining: length - 1, alt: true)
                pending.append(byte)
            } else {
                emit(.escape)
                reset()
                ground(byte)
            }
        }
    }

    private mutating func inCSI(_ byte: UInt8) {
        switch byte {
        case 0x20...0x3F:
            pending.append(byte)
            if pending.count >= Self.maximumSequenceLength {
                emit(.unknown(pending))
                reset()
            }
        case UInt8(ascii: "[") where pending.count == 2:
            state = .linuxFunction
            pending.append(byte)
        case 0x40...0x7E:
            pending.append(byte)
            emit(Self.csiKey(pending) ?? .unknown(pending))
            reset()
        default:
            abort(then: byte)
        }
    }

    private mutating func inUTF8(_ byte: UInt8, remaining: Int, alt: Bool) {
        let lead = pending[alt ? 1 : 0]
        let isFirstContinuation = pending.count == (alt ? 2 : 1)
        guard Self.isContinuation(byte, lead: lead, first: isFirstContinuation) else {
            emit(.unknown(pending))
            reset()
            ground(byte)
            return
        }
        pending.append(byte)
        guard remaining == 1 else {
            state = .utf8(remaining: remaining - 1, alt: alt)
            return
        }
        let key = Self.decodeScalar(pending[(alt ? 1 : 0)...]).map { KeyEvent.character(Character($0)) }
        switch key {
        case .some(let key):
            emit(alt ? .alt(key) : key)
        case .none:
            emit(.unknown(pending))
        }
        reset()
    }

    /// Ends the pending escape sequence because `byte` cannot continue it, then decodes `byte`
    /// from the ground state.
    private mutating func abort(then byte: UInt8) {
        flushPending()
        ground(byte)
    }

    private mutating func emit(_ event: KeyEvent) {
        events.append(event)
    }

    private mutating func reset() {
        state = .ground
        pending.removeAll(keepingCapacity: true)
    }

    // MARK: - Tables

    /// The key for a byte below 0x80 other than ESC.
    private static func singleByteKey(_ byte: UInt8) -> KeyEvent {
        switch byte {
        case 0x09: .tab
        case 0x0A, 0x0D: .enter
        case 0x08, 0x7F: .backspace
        case 0x00: .ctrl("@")
        case 0x01...0x1A: .ctrl(Character(Unicode.Scalar(byte + 0x60)))
        case 0x1C...0x1F: .ctrl(Character(Unicode.Scalar(byte + 0x40)))
        default: .character(Character(Unicode.Scalar(byte)))
        }
    }

    /// The key for `ESC O final`, or `nil` if unsupported.
    private static func ss3Key(final: UInt8) -> KeyEvent? {
        switch final {
        case UInt8(ascii: "A"): .up
        case UInt8(ascii: "B"): .down
        case UInt8(ascii: "C"): .right
        case UInt8(ascii: "D"): .left
        case UInt8(ascii: "H"): .home
        case UInt8(ascii: "F"): .end
        case UInt8(ascii: "P")...UInt8(ascii: "S"): .function(Int(final - UInt8(ascii: "P")) + 1)
        default: nil
        }
    }

    /// The key for a complete CSI sequence (`ESC [ params final`), or `nil` if unsupported.
    private static func csiKey(_ sequence: [UInt8]) -> KeyEvent? {
        guard let final = sequence.last else { return nil }
        let parameters = sequence[2..<(sequence.count - 1)]
        if parameters.isEmpty {
            switch final {
            case UInt8(ascii: "A"): return .up
            case UInt8(ascii: "B"): return .down
            case UInt8(ascii: "C"): return .right
            case UInt8(ascii: "D"): return .left
            case UInt8(ascii: "H"): return .home
            case UInt8(ascii: "F"): return .end
            default: return nil
            }
        }
        guard final == UInt8(ascii: "~"), parameters.count <= 2,
              parameters.allSatisfy({ (0x30...0x39).contains($0) })
        else { return nil }
        let number = parameters.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        switch number {
        case 1, 7: return .home
        case 2: return .insert
        case 3: return .delete
        case 4, 8: return .end
        case 5: return .pageUp
        case 6: return .pageDown
        case 11...15: return .function(number - 10)
        case 17...21: return .function(number - 11)
        case 23, 24: return .function(number - 12)
        default: return nil
        }
    }

    /// The length of the UTF-8 sequence a lead byte starts, or `nil` if `lead` cannot start one
    /// (a continuation byte, an overlong lead 0xC0/0xC1, or 0xF5 and above).
    private static func utf8Length(lead: UInt8) -> Int? {
        switch lead {
        case 0xC2...0xDF: 2
        case 0xE0...0xEF: 3
        case 0xF0...0xF4: 4
        default: nil
        }
    }

    /// Whether `byte` may follow in a sequence started by `lead`. The first continuation byte
    /// has a narrower range for some leads, which excludes overlong forms, UTF-16 surrogates and
    /// scalars above U+10FFFF (RFC 3629, table 3-7 of the Unicode standard).
    private static func isContinuation(_ byte: UInt8, lead: UInt8, first: Bool) -> Bool {
        guard first else { return (0x80...0xBF).contains(byte) }
        switch lead {
        case 0xE0: return (0xA0...0xBF).contains(byte)
        case 0xED: return (0x80...0x9F).contains(byte)
        case 0xF0: return (0x90...0xBF).contains(byte)
        case 0xF4: return (0x80...0x8F).contains(byte)
        default: return (0x80...0xBF).contains(byte)
        }
    }

    /// Decodes a complete, validated UTF-8 sequence.
    private static func decodeScalar(_ bytes: ArraySlice<UInt8>) -> Unicode.Scalar? {
        guard let lead = bytes.first else { return nil }
        var value = UInt32(lead) & (lead >= 0xF0 ? 0x07 : lead >= 0xE0 ? 0x0F : 0x1F)
        for byte in bytes.dropFirst() {
            value = value << 6 | UInt32(byte & 0x3F)
        }
        return Unicode.Scalar(value)
    }
}
