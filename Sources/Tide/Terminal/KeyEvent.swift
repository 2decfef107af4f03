/// One key press read from a terminal, as decoded by ``KeyDecoder``.
///
/// A terminal sends key presses as bytes: printable text as UTF-8, control keys as single control
/// bytes, and cursor or function keys as escape sequences. `KeyEvent` names the keys an
/// interactive program usually handles and keeps everything else as its raw bytes in
/// ``unknown(_:)``, so that no input is ever lost or turned into a wrong key.
///
/// Some keys share their byte with a control combination and cannot be told apart by any
/// terminal program. The decoder reports the named key:
///
/// | byte | reported as | also produced by |
/// |---|---|---|
/// | `0x09` | ``tab`` | Ctrl-I |
/// | `0x0D` (CR), `0x0A` (LF) | ``enter`` | Ctrl-M, Ctrl-J |
/// | `0x08`, `0x7F` (DEL) | ``backspace`` | Ctrl-H |
/// | `0x1B` alone | ``escape`` | Ctrl-[ |
public enum KeyEvent: Sendable, Equatable, Hashable {
    /// Printable text: one Unicode scalar, ASCII or a 2 to 4 byte UTF-8 sequence (`"é"`, `"日"`,
    /// `"🙂"`).
    ///
    /// A character made of several scalars (a letter followed by a combining accent, an emoji
    /// joined with U+200D) arrives as one event per scalar, in order.
    case character(Character)

    /// The Enter (Return) key: a carriage return `0x0D` (what a terminal in raw mode sends) or a
    /// line feed `0x0A` (what a pipe or a terminal with `ICRNL` delivers). Also Ctrl-M and Ctrl-J.
    ///
    /// A CR LF pair is two events: in raw mode a terminal never sends the pair for one key press.
    case enter

    /// The Backspace key: `0x7F` (DEL, what most terminals send) or `0x08` (BS, also Ctrl-H).
    case backspace

    /// The Tab key, byte `0x09` (also Ctrl-I).
    case tab

    /// The Escape key: an `ESC` byte (`0x1B`) that does not start an escape sequence, either
    /// because the following byte cannot continue one or because no further byte arrived in
    /// time (see ``KeyDecoder/hasPendingEscape``).
    case escape

    /// The Up arrow key (`ESC [ A` or `ESC O A`).
    case up

    /// The Down arrow key (`ESC [ B` or `ESC O B`).
    case down

    /// The Left arrow key (`ESC [ D` or `ESC O D`).
    case left

    /// The Right arrow key (`ESC [ C` or `ESC O C`).
    case right

    /// The Home key (`ESC [ H`, `ESC O H`, `ESC [ 1 ~` or `ESC [ 7 ~`).
    case home

    /// The End key (`ESC [ F`, `ESC O F`, `ESC [ 4 ~` or `ESC [ 8 ~`).
    case end

    /// The Insert key (`ESC [ 2 ~`).
    case insert

    /// The Delete (forward delete) key (`ESC [ 3 ~`); not to be confused with ``backspace``,
    /// which is the key that sends the DEL byte.
    case delete

    /// The Page Up key (`ESC [ 5 ~`).
    case pageUp

    /// The Page Down key (`ESC [ 6 ~`).
    case pageDown

    /// A function key F1 to F12, numbered from 1.
    ///
    /// F1 to F4 arrive as `ESC O P` to `ESC O S` (xterm) or `ESC [ [ A` to `ESC [ [ D` (Linux
    /// console, which also sends `ESC [ [ E` for F5); F1 to F12 as `ESC [ n ~` with the VT220
    /// numbers 11 to 15, 17 to 21, 23 and 24.
    case function(Int)

    /// A control combination that has no key of its own in this enum, as a lowercase letter:
    /// `.ctrl("a")` for Ctrl-A (`0x01`) through `.ctrl("z")` for Ctrl-Z (`0x1A`), except Ctrl-H,
    /// Ctrl-I, Ctrl-J and Ctrl-M, which are reported as ``backspace``, ``tab`` and ``enter``.
    ///
    /// The remaining control bytes are reported with the character a terminal uses to name
    /// them: `.ctrl("@")` for `0x00` (Ctrl-Space or Ctrl-@), `.ctrl("\\")` for `0x1C`,
    /// `.ctrl("]")` for `0x1D`, `.ctrl("^")` for `0x1E` and `.ctrl("_")` for `0x1F`.
    ///
    /// In raw mode (see ``TerminalMode``) Ctrl-C, Ctrl-Z and Ctrl-\\ arrive here instead of
    /// raising a signal, so the program decides what they mean.
    case ctrl(Character)

    /// A key pressed with Alt (or Meta): the terminal sent `ESC` immediately followed by the
    /// bytes of the key, such as `ESC a` for Alt-A (`.alt(.character("a"))`), `ESC DEL` for
    /// Alt-Backspace or `ESC 0x01` for Alt-Ctrl-A.
    ///
    /// The wrapped event is never ``alt(_:)``, ``escape`` or ``unknown(_:)``. Two keys cannot be
    /// told apart from other input: `ESC ESC` is reported as ``escape`` followed by whatever the
    /// second `ESC` starts, and Alt-[ and Alt-O are only recognised when no byte follows them
    /// in time, because `ESC [` and `ESC O` begin escape sequences.
    indirect case alt(KeyEvent)

    /// Bytes that are not a key this enum names, exactly as they arrived: an escape sequence the
    /// decoder does not support (`ESC [ 1 ; 5 A` for Ctrl-Up, bracketed-paste markers, mouse
    /// reports), an escape sequence cut short by the end of input, or bytes that are not valid
    /// UTF-8.
    ///
    /// The payload is never empty and holds only bytes of the input, so a program can pass
    /// unknown sequences through or match the ones it knows itself.
    case unknown([UInt8])
}
