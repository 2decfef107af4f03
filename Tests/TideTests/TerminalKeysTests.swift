#if canImport(Glibc)
import Glibc
#endif
import CTide
import Testing
@testable import Tide

@Suite("Terminal.keys()")
struct TerminalKeysTests {
    @Test func decodesKeysFromAPipeUntilEndOfInput() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe(nonBlocking: false)
        let keys = try runtime.run { () async throws -> [KeyEvent] in
            let writer = Tide.spawn {
                pipe.write(Array("hi".utf8))
                try await Tide.sleep(for: .milliseconds(5))
                pipe.write([0x1b, 0x5b])  // ESC [ ... split across writes
                pipe.write([0x41, 0x0d, 0x7f, 0x03, 0x1b, 0x5b, 0x39, 0x39, 0x7a])
                try await Tide.sleep(for: .milliseconds(5))
                pipe.write(Array("é".utf8))
                pipe.closeWriter()
            }
            var keys: [KeyEvent] = []
            for try await key in Terminal.keys(fileDescriptor: pipe.readEnd) { keys.append(key) }
            try await writer.value
            return keys
        }
        #expect(keys == [
            .character("h"), .character("i"), .up, .enter, .backspace, .ctrl("c"),
            .unknown([0x1b, 0x5b, 0x39, 0x39, 0x7a]), .character("é"),
        ])
        #expect(runtime.metrics.ioRegistrations == 0)
        // The reader made the pipe non-blocking while reading, and gave it back blocking.
        #expect(ctide_fcntl_getfl(pipe.readEnd) & O_NONBLOCK == 0)
    }

    @Test func aLoneEscapeIsTheEscapeKeyAfterAShortWait() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        let keys = try runtime.run { () async throws -> [KeyEvent] in
            pipe.write([0x1b])
            var keys: [KeyEvent] = []
            for try await key in Terminal.keys(fileDescriptor: pipe.readEnd) {
                keys.append(key)
                if keys.count == 1 { pipe.write(Array("x".utf8)) }
                if keys.count == 2 { break }
            }
            return keys
        }
        #expect(keys == [.escape, .character("x")])
    }

    @Test func closedInputEndsTheSequenceAtOnce() throws {
        let runtime = try Runtime.currentThread()
        let pipe = TestPipe()
        pipe.closeWriter()
        let count = try runtime.run { () async throws -> Int in
            var count = 0
            for try await _ in Terminal.keys(fileDescriptor: pipe.readEnd) { count += 1 }
            return count
        }
        #expect(count == 0)
    }

    @Test func outsideARuntimeIsATypedError() async {
        let pipe = TestPipe()
        var iterator = Terminal.keys(fileDescriptor: pipe.readEnd).makeAsyncIterator()
        await #expect(throws: RuntimeError.noCurrentRuntime) { try await iterator.next() }
    }

    @Test func pseudoTerminalIsRawWhileReadingAndRestoredAfter() throws {
        var masterFD: Int32 = -1
        var slaveFD: Int32 = -1
        #expect(openpty(&masterFD, &slaveFD, nil, nil, nil) == 0)
        let master = masterFD
        let slave = slaveFD
        defer { close(master); close(slave) }
        var before = termios()
        tcgetattr(slave, &before)
        let flagsBefore = ctide_fcntl_getfl(slave)

        let runtime = try Runtime.currentThread()
        let (keys, rawLflag) = try runtime.run { () async throws -> ([KeyEvent], tcflag_t) in
            var keys: [KeyEvent] = []
            var rawLflag: tcflag_t = 0
            let typist = Tide.spawn {
                try await Tide.sleep(for: .milliseconds(5))
                var bytes: [UInt8] = Array("ab".utf8) + [0x1b, 0x5b, 0x44, 0x03, 0x0d] + Array("q".utf8)
                _ = write(master, &bytes, bytes.count)
            }
            for try await key in Terminal.keys(fileDescriptor: slave) {
                if keys.isEmpty {
                    var during = termios()
                    tcgetattr(slave, &during)
                    rawLflag = during.c_lflag
                }
                keys.append(key)
                if key == .character("q") { break }
            }
            try await typist.value
            return (keys, rawLflag)
        }
        #expect(keys == [.character("a"), .character("b"), .left, .ctrl("c"), .enter, .character("q")])
        #expect(rawLflag & tcflag_t(ICANON | ECHO | ISIG) == 0)
        var after = termios()
        tcgetattr(slave, &after)
        #expect(after.c_lflag == before.c_lflag)
        #expect(after.c_iflag == before.c_iflag)
        #expect(after.c_oflag == before.c_oflag)
        #expect(ctide_fcntl_getfl(slave) == flagsBefore)
    }
}
