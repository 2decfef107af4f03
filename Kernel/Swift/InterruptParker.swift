/*
 InterruptParker: how the kernel's executor sleeps, and the race it must not lose.

 LocalExecutor parks only after it found its ready stack empty. The danger is an interrupt that
 wakes a task after that check but before the CPU halts: the task is pushed, `unpark()` runs, and
 then the CPU executes `hlt` and sleeps until the next interrupt, with a ready task waiting (with
 only the keyboard unmasked it could sleep forever). The seeds discuss exactly this race.

 The protocol:
 - `unpark()` (called from interrupt handlers, after the task is on the ready stack) sets `token`.
 - `park()` disables interrupts, then looks at the token. If it is set, it clears it, enables
   interrupts and returns: the executor goes back to the ready stack. Otherwise it runs
   `sti; hlt` as one C function. `sti` takes effect only after the next instruction (the
   interrupt shadow), so no interrupt can be taken between `sti` and `hlt`: an interrupt that
   arrives after the check is held pending until the CPU is halted, and then ends the `hlt`.
 - After `hlt` returns (some interrupt ran), `park()` checks again with interrupts off. A timer
   tick that woke nobody leaves the token clear and the CPU halts again, without a trip through
   the executor.
*/

import KernelSupport
import Synchronization
import TideCore

final class InterruptParker: Parker, @unchecked Sendable {
    private let token = Atomic<Bool>(false)
    /// How many times the CPU halted waiting for an interrupt (read by the summary line).
    nonisolated(unsafe) private(set) var halts = 0

    override func park() {
        while true {
            cpu_disable_interrupts()
            if token.exchange(false, ordering: .acquiringAndReleasing) {
                cpu_enable_interrupts()
                return
            }
            halts += 1
            cpu_enable_interrupts_and_halt()
        }
    }

    override func unpark() {
        token.store(true, ordering: .releasing)
    }
}
