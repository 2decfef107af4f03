#if canImport(Glibc)
import Glibc
#endif
import Testing
import Tide

/// The README's examples, compiled and run, so the front page stays true.
@Suite("README examples")
struct ReadmeExamplesTests {
    @Test func usingItExample() throws {
        let runtime = try Runtime.currentThread()
        let total = try runtime.run {
            let handle = Tide.spawn { () async throws -> Int in
                try await Tide.sleep(for: .milliseconds(10))
                return 1
            }
            let light = try runtime.spawn(ready(41))
            let answer = try await Tide.timeout(.seconds(1)) { try await handle.value + light.value }
            for await _ in try Tide.interval(every: .milliseconds(5)) { break }
            try await Task.sleep(for: .milliseconds(1), clock: TideClock())
            return answer
        }
        #expect(total == 42)
    }

    @Test func channelsSelectAndMutexExample() throws {
        let runtime = try Runtime.currentThread()
        let seen = try runtime.run { () async throws -> [String] in
            var seen: [String] = []
            let (tx, rx) = try Channel<Int>.bounded(capacity: 1024)
            try await tx.send(1)
            let value = try await rx.receive()
            seen.append("received \(value ?? -1)")
            let branch = try await select { s in
                s.receive(rx) { value in "got \(value as Any)" }
                s.future(Sleep(until: .now.advanced(by: .milliseconds(5)), on: runtime)) { "timeout" }
            }
            seen.append(branch)
            let mutex = AsyncMutex(0)
            try await mutex.withLock { $0 += 1 }
            seen.append("count \(try await mutex.withLock { $0 })")
            return seen
        }
        #expect(seen == ["received 1", "timeout", "count 1"])
    }

    @Test func multiThreadExample() throws {
        let runtime = try Runtime.multiThread(workers: 4)
        let answer = try runtime.run {
            try await Tide.spawnBlocking { usleep(10_000); return 42 }
        }
        #expect(answer == 42)
        #expect(runtime.metrics.workers.count == 4)
        runtime.shutdown()
    }
}
