// Runs one (workload, runtime) combination in a fresh process of this same binary, so that its
// memory measurement starts from a clean heap, and reads back the RESULT line the child prints.

#if canImport(Glibc)
import Glibc
#endif

struct ChildError: Error, CustomStringConvertible {
    let description: String
}

func runInChild(workload: String, runtime: String, scale: Double) throws
    -> [(name: String, value: Double)]
{
    let arguments = ["tide-benchmarks", "--child", workload, runtime, String(scale)]
    var pipeEnds: [Int32] = [0, 0]
    guard pipe(&pipeEnds) == 0 else { throw ChildError(description: "pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
    posix_spawn_file_actions_addclose(&actions, pipeEnds[0])
    posix_spawn_file_actions_addclose(&actions, pipeEnds[1])

    let cArguments = arguments.map { strdup($0) } + [nil]
    defer { for argument in cArguments { free(argument) } }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, "/proc/self/exe", &actions, nil, cArguments, environ)
    close(pipeEnds[1])
    guard status == 0 else {
        close(pipeEnds[0])
        throw ChildError(description: "posix_spawn failed: \(status)")
    }

    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(pipeEnds[0], $0.baseAddress, $0.count) }
        if count <= 0 { break }
        output.append(contentsOf: chunk[0..<count])
    }
    close(pipeEnds[0])
    var exitStatus: Int32 = 0
    waitpid(pid, &exitStatus, 0)

    let text = String(decoding: output, as: UTF8.self)
    let prefix = "RESULT \(runtime) \(workload) "
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else {
        throw ChildError(description: "child printed no result (exit status \(exitStatus)): \(text)")
    }
    var metrics: [(name: String, value: Double)] = []
    for field in line.dropFirst(prefix.count).split(separator: " ") {
        let parts = field.split(separator: "=")
        guard parts.count == 2, let value = Double(parts[1]) else {
            throw ChildError(description: "unreadable field \(field)")
        }
        metrics.append((String(parts[0]), value))
    }
    return metrics
}
