// What a workload is to the driver in main.swift: a name, the metric its ratio table compares,
// and one entry per runtime that can run it. A runtime that cannot run a workload sensibly simply
// has no entry (nothing is printed for it).

import Tide

/// One (runtime, workload) combination: runs it at a scale and returns its metrics. The driver
/// runs every entry in a child process of its own (see main.swift).
struct Entry {
    let runtime: String
    let run: (Double) throws -> [(name: String, value: Double)]

    init(_ runtime: String, _ run: @escaping (Double) throws -> [(name: String, value: Double)]) {
        self.runtime = runtime
        self.run = run
    }
}

/// A workload of WORKLOADS.md with the runtimes that implement it.
struct Workload {
    let name: String
    /// The metric the RATIO table compares against `swift-default`.
    let primaryMetric: String
    /// Whether a larger `primaryMetric` is better (throughput) or worse (time, bytes, lateness).
    let higherIsBetter: Bool
    let entries: [Entry]
}

/// The two Tide runtime flavours that run Swift tasks.
enum TideFlavor: CaseIterable {
    case currentThread
    case multiThread

    var name: String {
        switch self {
        case .currentThread: "tide-ct"
        case .multiThread: "tide-mt"
        }
    }

    func makeRuntime() throws -> Runtime {
        switch self {
        case .currentThread: try Runtime.currentThread()
        case .multiThread: try Runtime.multiThread(workers: 2)
        }
    }
}

/// Scales a workload size, never below 1.
func scaled(_ base: Int, _ scale: Double) -> Int {
    max(1, Int((Double(base) * scale).rounded()))
}

/// Runs `body` on a fresh current-thread runtime (the runtime poll tasks are spawned on).
func withPollRuntime<T: Sendable>(
    _ body: @escaping @Sendable (Runtime) async throws -> T
) throws -> T {
    let runtime = try Runtime.currentThread()
    defer { runtime.shutdown() }
    return try runtime.run { try await body(runtime) }
}

/// Runs `body` as a Swift task on a fresh Tide runtime of `flavor`.
func withTideRuntime<T: Sendable>(
    _ flavor: TideFlavor, _ body: @escaping @Sendable () async throws -> T
) throws -> T {
    let runtime = try flavor.makeRuntime()
    defer { runtime.shutdown() }
    return try runtime.run { try await body() }
}

/// Runs `body` on Swift's global executor and blocks the calling (main) thread until it is done.
func blockingOnGlobalExecutor<T: Sendable>(
    _ body: @escaping @Sendable () async throws -> T
) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchlessSemaphore()
    Task.detached {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

/// Carries a result from a task to the blocked main thread; `DispatchlessSemaphore` orders it.
final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
