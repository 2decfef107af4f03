import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Tide

@main
struct TideCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tide",
        abstract: "Tide, an async runtime for Swift: demos of what it does.",
        subcommands: [Keys.self, Demo.self, Global.self],
        defaultSubcommand: Demo.self
    )
}

/// Prints a line and flushes, so output interleaves correctly with a raw-mode terminal.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Echo each key as it arrives while another task ticks every second.",
        discussion: """
            Two cooperative tasks share one thread: one awaits key presses from the reactor, the \
            other awaits a timer. Press q or Ctrl-C to quit. On a pipe, the keys are read until \
            end of input: printf 'abc' | tide keys
            """
    )

    @Option(help: "Seconds between ticks.")
    var tick: Double = 1

    func run() throws {
        guard tick > 0 else { throw ValidationError("--tick must be positive") }
        let period = Duration.milliseconds(Int64(tick * 1000))
        let runtime = try Runtime.currentThread()
        let count = try runtime.run { () async throws -> Int in
            let ticker = Tide.spawn {
                var ticks = 0
                for await _ in try Tide.interval(every: period) {
                    ticks += 1
                    say("tick \(ticks)")
                }
            }
            defer { ticker.cancel() }
            let interactive = isatty(STDIN_FILENO) == 1
            if interactive { say("Press keys; q or Ctrl-C quits.") }
            var keys = 0
            for try await key in Terminal.keys() {
                keys += 1
                say("key \(describe(key))")
                if key == .character("q") || key == .ctrl("c") { break }
            }
            return keys
        }
        say("\(count) key\(count == 1 ? "" : "s") read")
    }

    func describe(_ key: KeyEvent) -> String {
        switch key {
        case .character(let character): return "'\(character)'"
        case .ctrl(let letter): return "Ctrl-\(letter.uppercased())"
        case .unknown(let bytes): return "unknown \(bytes)"
        default: return "\(key)"
        }
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the runtime at work: light tasks, Swift tasks, timers and I/O readiness."
    )

    @Option(help: "Number of light (poll-based) tasks to spawn.")
    var tasks = 200_000

    @Option(help: "Number of concurrent sleepers on the timing wheel.")
    var sleepers = 20_000

    func run() throws {
        let runtime = try Runtime.currentThread()
        let tasks = self.tasks
        let sleepers = self.sleepers
        try runtime.run {
            let clock = TideClock()

            var start = clock.now
            let handles = try (0..<tasks).map { index in try runtime.spawn(ready(index)) }
            var sum = 0
            for handle in handles { sum += try await handle.value }
            let spawnTime = start.duration(to: clock.now)
            say("spawned and joined \(tasks) poll tasks in \(spawnTime) (sum \(sum))")

            start = clock.now
            let swiftSum = await withTaskGroup(of: Int.self) { group in
                for index in 0..<10_000 { group.addTask { index } }
                return await group.reduce(0, +)
            }
            say("10000 Swift child tasks on the runtime thread in \(start.duration(to: clock.now)) (sum \(swiftSum))")

            var sleeping: [JoinHandle<Duration>] = []
            for index in 0..<sleepers {
                sleeping.append(Tide.spawn {
                    let deadline = clock.now.advanced(by: .milliseconds((index * 7919) % 500))
                    try await Tide.sleep(until: deadline)
                    return deadline.duration(to: clock.now)
                })
            }
            var lateness: [Duration] = []
            lateness.reserveCapacity(sleeping.count)
            for handle in sleeping { lateness.append(try await handle.value) }
            lateness.sort()
            let worst = lateness.last ?? .zero
            let p99 = lateness.isEmpty ? .zero : lateness[lateness.count * 99 / 100]
            say("\(sleepers) sleepers over 500 ms: p99 lateness \(p99), worst \(worst)")

            var fds: [Int32] = [0, 0]
            _ = pipe(&fds)
            defer { close(fds[0]); close(fds[1]) }
            let flags = fcntl(fds[0], F_GETFL)
            _ = fcntl(fds[0], F_SETFL, flags | O_NONBLOCK)
            let registration = try runtime.reactor.register(fd: fds[0])
            defer { registration.deregister() }
            let writeEnd = fds[1]
            let writer = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(20))
                var byte: UInt8 = 42
                _ = write(writeEnd, &byte, 1)
            }
            start = clock.now
            _ = try await registration.readiness(for: .readable)
            try await writer.value
            say("pipe became readable through epoll after \(start.duration(to: clock.now))")
            say("metrics: \(runtime.metrics)")
        }
    }
}

struct Global: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install Tide as Swift's global executor and show where plain tasks run.",
        discussion: """
            Installs a multi-thread runtime with Tide.installAsGlobalExecutor, then starts work \
            the ordinary Swift way (Task {}, Task.detached, async let, a task group, a default \
            actor, Task.sleep) and prints, for each, whether it ran on a Tide worker. Exits \
            non-zero if any did not.
            """
    )

    func run() async throws {
        let runtime = try Runtime.multiThread(workers: 2)
        try Tide.installAsGlobalExecutor(runtime)
        var failures = 0
        func report(_ name: String, _ passed: Bool) {
            if !passed { failures += 1 }
            say("\(passed ? "ok  " : "FAIL") \(name)")
        }
        let second = Result { () throws(RuntimeError) in try Tide.installAsGlobalExecutor(runtime) }
        var refused = false
        if case .failure(.globalExecutorAlreadyInstalled) = second { refused = true }
        report("second install is refused with a typed error", refused)
        report("Task {} runs on a Tide worker", await onTide(runtime))
        report("Task.detached runs on a Tide worker", await Task.detached { Runtime.current === runtime }.value)
        report("async let runs on a Tide worker", await Self.asyncLet(runtime))
        report("task group children run on Tide workers", await Self.group(runtime))
        // From a task that already runs on Tide: `run()` itself may still be on the main thread
        // (where the async main started), and Swift lets a call into a free actor run inline on
        // the caller's thread.
        report("default actor runs on a Tide worker", await Task.detached { await Probe().check(runtime) }.value)
        report("Tide.yield in a plain task resumes it on a Tide worker", await Task.detached { () -> Bool in
            for _ in 0..<100 { await Tide.yield() }
            return Runtime.current === runtime
        }.value)
        report("Tide.yield in a default actor resumes it on a Tide worker", await Task.detached {
            await Probe().yieldAndCheck(runtime)
        }.value)
        let (slept, sleptOnTide) = await Task.detached { () -> (Duration, Bool) in
            let clock = ContinuousClock()
            let start = clock.now
            try? await Task.sleep(for: .milliseconds(20))
            return (start.duration(to: clock.now), Runtime.current === runtime)
        }.value
        report("Task.sleep(for: 20 ms) waited \(slept) on Tide's timers", slept >= .milliseconds(20) && sleptOnTide)
        let sleeper = Task { try? await Task.sleep(for: .milliseconds(200)) }
        var armed = 0
        for _ in 0..<200 where armed == 0 {
            try? await Task.sleep(for: .milliseconds(1))
            armed = runtime.metrics.timersArmed
        }
        sleeper.cancel()
        report("Task.sleep arms Tide's timing wheel (\(armed) armed)", armed >= 1)
        say("the main actor keeps its own executor: @MainActor code runs on the main thread")
        if failures > 0 { throw ExitCode(1) }
    }

    nonisolated func onTide(_ runtime: Runtime) async -> Bool {
        await Task { Runtime.current === runtime }.value
    }

    static func asyncLet(_ runtime: Runtime) async -> Bool {
        async let child = Runtime.current === runtime
        return await child
    }

    static func group(_ runtime: Runtime) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { Runtime.current === runtime } }
            var all = true
            for await onTide in group { all = all && onTide }
            return all
        }
    }
}

actor Probe {
    func check(_ runtime: Runtime) -> Bool { Runtime.current === runtime }

    func yieldAndCheck(_ runtime: Runtime) async -> Bool {
        for _ in 0..<100 { await Tide.yield() }
        return Runtime.current === runtime
    }
}
