/*
 Main: boot order. Console first (so that anything after can be seen), then the device state and
 the IDT/PICs/PIT with interrupts still off, then the executor and its two tasks, and only then
 `sti`. When both tasks finished, print a summary and leave through QEMU's isa-debug-exit port.
*/

import KernelSupport
import Synchronization
import TideCore

/// Written to the isa-debug-exit port when the session ends normally; QEMU exits with
/// `(exitCode << 1) | 1` = 33.
let exitCode: UInt8 = 0x10

@_cdecl("kernel_main")
func kernelMain() {
    Console.initialize()
    print("Tide kernel: TideCore LocalExecutor on bare x86 (Embedded Swift)")
    print("type a line and press Enter to exit")

    let timer = Devices.timer
    let keyboard = Devices.keyboard
    Interrupts.install()
    timer.start()
    keyboard.flush()

    let parker = InterruptParker()
    let executor = LocalExecutor(parker: parker)
    executor.spawn(KeyboardTask())
    executor.spawn(TickTask())
    cpu_enable_interrupts()
    executor.run()
    cpu_disable_interrupts()

    var line = ""
    for character in KeyboardTask.finalLine { line.append(Character(Unicode.Scalar(character))) }
    print("summary: line \"\(line)\", \(timer.ticks.load(ordering: .relaxed)) ticks, "
        + "\(executor.polls) polls, \(executor.parks) parks, \(parker.halts) halts, "
        + "\(keyboard.queue.dropped.load(ordering: .relaxed)) dropped scancodes, "
        + "heap \(heap_used_bytes() / 1024) KiB")
    print("exiting with code \(exitCode)")
    port_out8(0xF4, exitCode)
    cpu_halt_forever()
}
