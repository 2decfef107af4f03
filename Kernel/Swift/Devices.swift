/*
 Devices: the state that interrupt handlers share with tasks, and the leaf futures over it.

 Each device has one `AtomicWaker` (TideCore's ISR-safe waker slot) and lock-free state. The
 handlers follow one rule: read the hardware, update atomics, wake. They never block, spin or
 allocate. The leaf futures follow TideCore's rule: register the waker, then re-check, so an
 interrupt between the check and the registration still wakes the task.

 `Devices.timer` and `Devices.keyboard` are lazily initialised statics; `kernel_main` touches
 both before it enables interrupts, so a handler never runs an initialiser.
*/

import KernelSupport
import Synchronization
import TideCore

enum Devices {
    static let timer = TickTimer()
    static let keyboard = KeyboardDevice()
    /// Set by the keyboard task when the user ends the session; the tick task then finishes.
    static let stopRequested = Atomic<Bool>(false)
}

/// The PIT (8253/8254) channel 0 as a tick counter with one sleeper.
final class TickTimer: Sendable {
    static let hertz: UInt32 = 100
    /// Ticks since `start()`; written only by the interrupt handler.
    let ticks = Atomic<UInt32>(0)
    /// The tick at which to wake the sleeper (`UInt32.max`: nobody is waiting).
    let deadline = Atomic<UInt32>(.max)
    let waker = AtomicWaker()

    /// Programs channel 0 as a rate generator at `hertz`.
    func start() {
        let divisor = UInt32(1_193_182) / Self.hertz
        port_out8(0x43, 0x34)
        port_out8(0x40, UInt8(truncatingIfNeeded: divisor))
        port_out8(0x40, UInt8(truncatingIfNeeded: divisor >> 8))
    }

    /// IRQ 0: count the tick, wake the sleeper if its deadline came.
    func interrupt() {
        let now = ticks.wrappingAdd(1, ordering: .relaxed).newValue
        if now >= deadline.load(ordering: .relaxed) {
            deadline.store(.max, ordering: .relaxed)
            waker.wake()
        }
    }
}

/// Completes when the timer reaches `tick`, or when a stop was requested. One sleeper at a time
/// (the timer has one waker slot and one deadline).
struct SleepUntil: Future {
    let tick: UInt32

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        let timer = Devices.timer
        if timer.ticks.load(ordering: .relaxed) >= tick || Devices.stopRequested.load(ordering: .acquiring) {
            return .ready(())
        }
        timer.waker.register(context)
        timer.deadline.store(tick, ordering: .relaxed)
        if timer.ticks.load(ordering: .relaxed) >= tick || Devices.stopRequested.load(ordering: .acquiring) {
            return .ready(())
        }
        return .pending
    }
}

/// The PS/2 keyboard (through the i8042 controller, which hands out scancode set 1).
final class KeyboardDevice: Sendable {
    let queue = ScancodeQueue()
    let waker = AtomicWaker()

    /// Discards whatever the controller buffered before the handler was installed.
    func flush() {
        while port_in8(0x64) & 1 != 0 { _ = port_in8(0x60) }
    }

    /// IRQ 1: read the scancode, queue it (or count the drop), wake the keyboard task.
    func interrupt() {
        queue.push(port_in8(0x60))
        waker.wake()
    }
}

/// Completes with the next scancode the keyboard produced.
struct NextScancode: Future {
    mutating func poll(_ context: inout Context) -> Poll<UInt8> {
        let keyboard = Devices.keyboard
        if let code = keyboard.queue.pop() { return .ready(code) }
        keyboard.waker.register(context)
        if let code = keyboard.queue.pop() { return .ready(code) }
        return .pending
    }
}
