// TEMPORARY SHIM — delete this file when the Tide library provides `Runtime.multiThread(workers:)`.
//
// The multi-thread runtime is being written on another branch. Until it lands, `tide-mt` runs on
// a current-thread runtime so that the benchmark compiles and every tide-mt code path is exercised;
// its numbers are therefore current-thread numbers (one thread, not two workers) until then.

import Tide

extension Runtime {
    static func multiThread(workers: Int) throws -> Runtime {
        try Runtime.currentThread()
    }
}
