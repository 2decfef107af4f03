/*
 TickTask: prints a line every second of PIT time until a stop is requested. It sleeps with the
 `SleepUntil` leaf future, so between lines it is pending and costs nothing.
*/

import Synchronization
import TideCore

struct TickTask: Future {
    private var seconds: UInt32 = 0
    private var sleep = SleepUntil(tick: TickTimer.hertz)

    mutating func poll(_ context: inout Context) -> Poll<Void> {
        while true {
            guard case .ready = sleep.poll(&context) else { return .pending }
            if Devices.stopRequested.load(ordering: .acquiring) { return .ready(()) }
            seconds += 1
            print("tick \(seconds) s (\(Devices.timer.ticks.load(ordering: .relaxed)) PIT ticks)")
            sleep = SleepUntil(tick: (seconds + 1) * TickTimer.hertz)
        }
    }
}
