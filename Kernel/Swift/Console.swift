/*
 Console: text output to the first serial port (COM1, 0x3F8) and the VGA text buffer (0xB8000).

 Tasks and boot code print through it; an interrupt handler only does so when the kernel panics.
 It keeps the VGA cursor in plain statics: only the one CPU's thread of control writes them, and
 interrupt handlers do not print except to panic, after which nothing else runs.
 `putchar` is what Embedded Swift's `print` calls, so `print` goes to both screens.
*/

import KernelSupport

enum Console {
    private static let serialPort: UInt16 = 0x3F8
    private static let columns = 80
    private static let rows = 25
    /// White on black.
    private static let attribute: UInt16 = 0x0F00
    nonisolated(unsafe) private static var column = 0
    nonisolated(unsafe) private static var row = 0

    private static var vga: UnsafeMutablePointer<UInt16> {
        UnsafeMutablePointer(bitPattern: 0xB8000)!
    }

    /// Sets COM1 to 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on, no serial
    /// interrupts; clears the VGA screen.
    static func initialize() {
        port_out8(serialPort + 1, 0x00)
        port_out8(serialPort + 3, 0x80)
        port_out8(serialPort + 0, 0x01)
        port_out8(serialPort + 1, 0x00)
        port_out8(serialPort + 3, 0x03)
        port_out8(serialPort + 2, 0xC7)
        port_out8(serialPort + 4, 0x03)
        for cell in 0..<(columns * rows) { vga[cell] = attribute | 0x20 }
        column = 0
        row = 0
    }

    /// Writes one byte to both outputs; "\n" becomes "\r\n" on the serial line.
    static func write(_ byte: UInt8) {
        if byte == 0x0A { writeSerial(0x0D) }
        writeSerial(byte)
        writeScreen(byte)
    }

    static func write(_ text: StaticString) {
        text.withUTF8Buffer { bytes in
            for byte in bytes { write(byte) }
        }
    }

    /// Writes `value` as eight hex digits without allocating (safe in a panicking handler).
    static func writeHex(_ value: UInt32) {
        write("0x")
        for shift in stride(from: 28, through: 0, by: -4) {
            let digit = UInt8((value >> UInt32(shift)) & 0xF)
            write(digit < 10 ? 0x30 + digit : 0x57 + digit)
        }
    }

    private static func writeSerial(_ byte: UInt8) {
        while port_in8(serialPort + 5) & 0x20 == 0 {}
        port_out8(serialPort, byte)
    }

    private static func writeScreen(_ byte: UInt8) {
        switch byte {
        case 0x0A:
            newLine()
        case 0x0D:
            column = 0
        default:
            vga[row * columns + column] = attribute | UInt16(byte)
            column += 1
            if column == columns { newLine() }
        }
    }

    private static func newLine() {
        column = 0
        if row < rows - 1 {
            row += 1
            return
        }
        for cell in 0..<(columns * (rows - 1)) { vga[cell] = vga[cell + columns] }
        for cell in (columns * (rows - 1))..<(columns * rows) { vga[cell] = attribute | 0x20 }
    }
}

/// The C `putchar` that Embedded Swift's `print` writes through.
@_cdecl("putchar")
func putchar(_ character: CInt) -> CInt {
    Console.write(UInt8(truncatingIfNeeded: character))
    return character
}
