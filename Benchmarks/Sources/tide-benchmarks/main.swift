/*
 tide-benchmarks: the workloads of shared/WORKLOADS.md on Tide and on what Tide is compared with.

 Run (from the repository root):

     swift run -c release --package-path Benchmarks tide-benchmarks [scale] [workload ...]

 `scale` (default 1.0) multiplies every N; workloads are spawn, pingpong, mpsc, idle, timers,
 stall and yield (all of them when none is named). Example: `... tide-benchmarks 0.1 spawn yield`.
 To profile one runtime, set TIDE_BENCH_RUNTIMES (comma-separated names) to run only those.

 Runtimes: tide-ct (current-thread runtime, Swift tasks), tide-mt (multi-thread runtime, 2
 workers, Swift tasks), tide-poll (poll-based light tasks on the current-thread runtime),
 tide-global (timers only: swift-default's code after Tide.installAsGlobalExecutor on a 2-worker
 runtime), swift-default (Swift's global executor),
 nio (SwiftNIO MultiThreadedEventLoopGroup with 2 loops), asyncalgo (swift-async-algorithms'
 AsyncChannel) and asyncalgo-mpsc (its MultiProducerSingleConsumerAsyncChannel).

 What is measured (one line per runtime and workload):
     RESULT <runtime> <workload> <metric>=<value> ...
 spawn     tasks_per_s, wall_s     N=1,000,000 tasks that return their index, awaited and summed
 pingpong  ns_per_rt               R=200,000 round trips of a token between two tasks
 mpsc      msgs_per_s              4 producers x 1,000,000 ints into one channel of capacity 1024
 idle      bytes_per_task, spawn_s N=200,000 tasks each parked on its own never-signalled wait;
                                   RSS (/proc/self/statm) before and after, in a child process
                                   per runtime (this program re-executes itself with --child)
 timers    wall_s, late_p50_ms, late_p99_ms
                                   N=200,000 tasks sleep a seeded-LCG duration in [0, 500) ms;
                                   lateness = wake time - deadline on CLOCK_MONOTONIC
 stall     worst_late_ms           two tasks busy-spin 1 s while 100 tasks tick every 10 ms; the
                                   worst lateness of ticks whose deadline falls inside the spin
 yield     ns_per_yield            one task yields 10,000,000 times
 After the RESULT lines, RATIO lines compare each runtime with swift-default on one metric per
 workload, oriented so that a ratio above 1 always means better than swift-default.

 Everything runs on the same machine with the same allocator settings, each (runtime, workload)
 in a child process of its own (this same binary, re-executed with --child), in rounds
 (TIDE_BENCH_ROUNDS, default 3): every runtime once per round, in an order rotated each round; the
 RESULT line is the run with the median primary metric, and a ROUNDS line lists every run's value.
 Combinations that make no sense are skipped and print nothing (see each workload's file).
*/

#if canImport(Glibc)
import Glibc
#endif

let allWorkloads: [Workload] = [
    spawnWorkload(),
    pingPongWorkload(),
    mpscWorkload(),
    idleWorkload(),
    timersWorkload(),
    stallWorkload(),
    yieldWorkload(),
]

let arguments = Array(CommandLine.arguments.dropFirst())

// Child mode: `--child <workload> <runtime> <scale>` runs one combination and prints its line.
if arguments.first == "--child" {
    guard arguments.count == 4, let scale = Double(arguments[3]),
        let workload = allWorkloads.first(where: { $0.name == arguments[1] }),
        let entry = workload.entries.first(where: { $0.runtime == arguments[2] })
    else {
        emit("usage: tide-benchmarks --child <workload> <runtime> <scale>")
        exit(2)
    }
    let metrics = try entry.run(scale)
    emit(Measurement(runtime: entry.runtime, workload: workload.name, metrics: metrics).line)
    // Tasks are still parked on purpose (idle); leave without tearing anything down.
    exit(0)
}

var scale = 1.0
var selected = arguments
if let first = arguments.first, let value = Double(first) {
    scale = value
    selected.removeFirst()
}
guard scale > 0 else {
    emit("error: scale must be positive")
    exit(2)
}
let unknown = selected.filter { name in !allWorkloads.contains { $0.name == name } }
guard unknown.isEmpty else {
    emit("error: unknown workload(s) \(unknown.joined(separator: ", ")); known: "
        + allWorkloads.map(\.name).joined(separator: ", "))
    exit(2)
}
let workloads = selected.isEmpty ? allWorkloads : allWorkloads.filter { selected.contains($0.name) }

// Optional, for profiling one runtime: TIDE_BENCH_RUNTIMES=tide-poll,nio limits the runtimes.
let runtimeFilter: Set<String>? = getenv("TIDE_BENCH_RUNTIMES").map { value in
    Set(String(cString: value).split(separator: ",").map(String.init))
}

// Every (runtime, workload) runs in a child process of its own, in rounds: each round starts
// every runtime of the workload once, each round in a rotated order, and the reported line is the
// run with the median primary metric. In one shared process, what earlier workloads left behind
// (threads, grown and fragmented heaps) moved later results: W5's p99 read 1.5-17 ms where a
// fresh process read 0.4-0.8 ms. tide-mt's W3 read 2.9-3.2M msgs/s in some full runs and
// 6.8-8.2M in twelve fresh processes, though one fresh round has read 3.7M since, so that one
// is not only the shared process. Single child runs of W1 read up to 3x apart, and the first
// child of a run paid about twice the system time of later ones: rounds spread that over all
// runtimes and the median drops it. TIDE_BENCH_ROUNDS=1 runs each once.
let rounds: Int =
    getenv("TIDE_BENCH_ROUNDS").flatMap { Int(String(cString: $0)) }.map { max(1, $0) } ?? 3

var measurements: [Measurement] = []
for workload in workloads {
    let entries = workload.entries.filter { runtimeFilter?.contains($0.runtime) ?? true }
    if entries.isEmpty { continue }
    var runs: [String: [Measurement]] = [:]
    for round in 0..<rounds {
        for offset in entries.indices {
            let entry = entries[(round + offset) % entries.count]
            do {
                let metrics = try runInChild(
                    workload: workload.name, runtime: entry.runtime, scale: scale)
                runs[entry.runtime, default: []].append(
                    Measurement(runtime: entry.runtime, workload: workload.name, metrics: metrics))
            } catch {
                emit("ERROR \(entry.runtime) \(workload.name) round \(round + 1): \(error)")
            }
        }
    }
    for entry in entries {
        guard let results = runs[entry.runtime], !results.isEmpty else { continue }
        let sorted = results.sorted {
            let metric = workload.primaryMetric
            return ($0.value(of: metric) ?? 0) < ($1.value(of: metric) ?? 0)
        }
        let median = sorted[sorted.count / 2]
        measurements.append(median)
        emit(median.line)
        if results.count > 1 {
            let values = results.map { format($0.value(of: workload.primaryMetric) ?? .nan) }
            emit("ROUNDS \(entry.runtime) \(workload.name) \(workload.primaryMetric)="
                + values.joined(separator: ","))
        }
    }
}

emit("")
emit("RATIO <workload> <metric> <runtime>=<ratio> ...  (vs swift-default; above 1 = better)")
for workload in workloads {
    let results = measurements.filter { $0.workload == workload.name }
    guard let base = results.first(where: { $0.runtime == "swift-default" })?
        .value(of: workload.primaryMetric)
    else { continue }
    var fields: [String] = []
    for result in results {
        guard let value = result.value(of: workload.primaryMetric) else { continue }
        let ratio: Double
        if workload.higherIsBetter {
            ratio = value / base
        } else {
            // Lower is better; clamp at 1 µs-scale values so that a zero does not divide.
            ratio = base / max(value, 0.001)
        }
        fields.append("\(result.runtime)=\(format(ratio, decimals: 2))")
    }
    emit("RATIO \(workload.name) \(workload.primaryMetric) " + fields.joined(separator: " "))
}
