import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Tide

@main
struct TideCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tide",
        abstract: "Tide, an async runtime for Swift: demos of what it does.",
        subcommands: [Keys.self, Demo.self],
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
