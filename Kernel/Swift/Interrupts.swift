/*
 Interrupts: the IDT, the two 8259 PICs and the dispatch from boot.S's stubs to the handlers.

 - Vectors 0..31 are CPU exceptions: the kernel prints the vector, error code and faulting eip
   and stops (there is nothing to recover in a kernel this small).
 - The PICs are remapped to vectors 32..47 (their power-on mapping collides with the
   exceptions). Only IRQ 0 (PIT timer, vector 32) and IRQ 1 (keyboard, vector 33) are unmasked.
 - Every gate is an interrupt gate (the CPU clears IF on entry), so a handler runs to the end
   without being interrupted; it must not block, spin or allocate.
 - End of interrupt: a handler's IRQ is acknowledged after the handler ran. IRQ 7 and IRQ 15
   are masked, so they only arrive as spurious interrupts: IRQ 7 gets no EOI (the PIC did not
   set its in-service bit), IRQ 15 only the master's (which did see the cascade).
*/

import KernelSupport

enum Interrupts {
    static let timerVector: UInt32 = 32
    static let keyboardVector: UInt32 = 33
    private static let masterCommand: UInt16 = 0x20
    private static let masterData: UInt16 = 0x21
    private static let slaveCommand: UInt16 = 0xA0
    private static let slaveData: UInt16 = 0xA1

    /// Builds and loads the IDT and remaps the PICs with every IRQ but 0 and 1 masked.
    /// Interrupts stay disabled; the caller enables them when the handlers' state is ready.
    static func install() {
        let count = Int(interrupt_stub_count())
        let table = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
        let selector = UInt64(cpu_code_selector())
        for vector in 0..<count {
            let offset = UInt64(interrupt_stub_address(UInt32(vector)))
            // Present, ring 0, 32-bit interrupt gate (type 0xE).
            table[vector] = (offset & 0xFFFF) | (selector << 16) | (0x8E << 40)
                | ((offset >> 16) << 48)
        }
        cpu_load_idt(table, UInt16(count))
        remapPICs()
    }

    private static func remapPICs() {
        port_out8(masterCommand, 0x11)   // ICW1: initialise, ICW4 follows
        ioWait()
        port_out8(slaveCommand, 0x11)
        ioWait()
        port_out8(masterData, 0x20)      // ICW2: vector offsets
        ioWait()
        port_out8(slaveData, 0x28)
        ioWait()
        port_out8(masterData, 0x04)      // ICW3: slave on IRQ 2
        ioWait()
        port_out8(slaveData, 0x02)
        ioWait()
        port_out8(masterData, 0x01)      // ICW4: 8086 mode
        ioWait()
        port_out8(slaveData, 0x01)
        ioWait()
        port_out8(masterData, 0xFC)      // unmask IRQ 0 and IRQ 1 only
        port_out8(slaveData, 0xFF)
    }

    private static func ioWait() {
        port_out8(0x80, 0)
    }

    static func endOfInterrupt(vector: UInt32) {
        if vector >= 40 { port_out8(slaveCommand, 0x20) }
        port_out8(masterCommand, 0x20)
    }
}

/// Called by boot.S's `interrupt_common` with interrupts disabled.
@_cdecl("tide_interrupt")
func tideInterrupt(_ vector: UInt32, _ errorCode: UInt32, _ eip: UInt32) {
    switch vector {
    case Interrupts.timerVector:
        Devices.timer.interrupt()
        Interrupts.endOfInterrupt(vector: vector)
    case Interrupts.keyboardVector:
        Devices.keyboard.interrupt()
        Interrupts.endOfInterrupt(vector: vector)
    case 39:
        return
    case 47:
        port_out8(0x20, 0x20)
    case 0..<32:
        Console.write("\nKERNEL PANIC: CPU exception ")
        Console.writeHex(vector)
        Console.write(" error ")
        Console.writeHex(errorCode)
        Console.write(" at eip ")
        Console.writeHex(eip)
        Console.write("\n")
        port_out8(0xF4, 0x7F)
        cpu_halt_forever()
    default:
        Interrupts.endOfInterrupt(vector: vector)
    }
}
