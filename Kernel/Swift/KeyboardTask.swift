/*
 KeyboardTask: turns scancodes (set 1, US layout) into characters and prints them.

 A poll-based task: it loops on `NextScancode` until the queue is empty (then it is pending and
 registered with the keyboard's waker). Each printable key prints a `key 'c'` line, so that its
 output stays on lines of its own while the tick task prints in between. Enter ends the session:
 it prints the whole line, asks the tick task to stop and completes.
*/

import Synchronization
import TideCore

/// Decodes scancode set 1: tracks the shift keys and skips 0xE0-prefixed (extended) keys.
struct ScancodeDecoder {
    enum Key: Equatable {
        case character(UInt8)
        case enter
        case backspace
    }

    private var leftShift = false
    private var rightShift = false
    private var extended = false

    /// Runs of consecutive make codes: first code, unshifted and shifted characters.
    private static let rows: [(first: UInt8, plain: StaticString, shifted: StaticString)] = [
        (0x02, "1234567890-=", "!@#$%^&*()_+"),
        (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
        (0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
        (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
        (0x39, " ", " "),
    ]

    /// Feeds one scancode; returns the key it completes, if any.
    mutating func decode(_ code: UInt8) -> Key? {
        if code == 0xE0 {
            extended = true
            return nil
        }
        if extended {
            extended = false
            return nil
        }
        let released = code & 0x80 != 0
        switch code & 0x7F {
        case 0x2A: leftShift = !released; return nil
        case 0x36: rightShift = !released; return nil
        default: break
        }
        if released { return nil }
        switch code {
        case 0x1C: return .enter
        case 0x0E: return .backspace
        default: break
        }
        let shifted = leftShift || rightShift
        for row in Self.rows {
            let count = row.plain.utf8CodeUnitCount
            if code >= row.first && Int(code - row.first) < count {
                let text = shifted ? row.shifted : row.plain
                return .character(text.utf8Start[Int(code - row.first)])
            }
        }
        return nil
    }
}

struct KeyboardTask: Future {
    private var decoder = ScancodeDecoder()
    private var line: [UInt8] = []
    /// The line typed before Enter, for the summary.
    nonisolated(unsafe) static var finalLine: [UInt8] = []

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            var next = NextScancode()
            guard case .ready(let code) = next.poll(&context) else { return .pending }
            switch decoder.decode(code) {
            case .character(let character)?:
                line.append(character)
                Console.write("key '")
                Console.write(character)
                Console.write("'\n")
            case .backspace?:
                if !line.isEmpty { line.removeLast() }
                Console.write("key <backspace>\n")
            case .enter?:
                Console.write("line \"")
                for character in line { Console.write(character) }
                Console.write("\"\n")
                Self.finalLine = line
                Devices.stopRequested.store(true, ordering: .releasing)
                Devices.timer.waker.wake()
                return .ready(())
            case nil:
                break
            }
        }
    }
}
