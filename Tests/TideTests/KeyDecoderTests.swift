import Testing
@testable import Tide

/// Decodes `bytes` fed in one chunk, followed by end of input.
private func decode(_ bytes: [UInt8]) -> [KeyEvent] {
    var decoder = KeyDecoder()
    decoder.feed(bytes)
    return decoder.finish()
}

private func decode(_ text: String) -> [KeyEvent] {
    decode(Array(text.utf8))
}

/// Decodes `bytes` fed one byte per `feed` call, taking events after each call.
private func decodeByteByByte(_ bytes: [UInt8]) -> [KeyEvent] {
    var decoder = KeyDecoder()
    var events: [KeyEvent] = []
    for byte in bytes {
        decoder.feed(CollectionOfOne(byte))
        while let event = decoder.next() { events.append(event) }
    }
    return events + decoder.finish()
}

private let esc: UInt8 = 0x1B

/// The bytes a terminal sends for each key the decoder names, as used by the round-trip test.
private let encodedKeys: [(KeyEvent, [UInt8])] = [
    (.enter, [0x0D]), (.enter, [0x0A]), (.backspace, [0x7F]), (.backspace, [0x08]), (.tab, [0x09]),
    (.up, [esc, 0x5B, 0x41]), (.down, [esc, 0x5B, 0x42]), (.right, [esc, 0x5B, 0x43]),
    (.left, [esc, 0x5B, 0x44]), (.home, [esc, 0x5B, 0x48]), (.end, [esc, 0x5B, 0x46]),
    (.up, [esc, 0x4F, 0x41]), (.down, [esc, 0x4F, 0x42]), (.right, [esc, 0x4F, 0x43]),
    (.left, [esc, 0x4F, 0x44]), (.home, [esc, 0x4F, 0x48]), (.end, [esc, 0x4F, 0x46]),
    (.home, Array("\u{1B}[1~".utf8)), (.insert, Array("\u{1B}[2~".utf8)),
    (.delete, Array("\u{1B}[3~".utf8)), (.end, Array("\u{1B}[4~".utf8)),
    (.pageUp, Array("\u{1B}[5~".utf8)), (.pageDown, Array("\u{1B}[6~".utf8)),
    (.home, Array("\u{1B}[7~".utf8)), (.end, Array("\u{1B}[8~".utf8)),
    (.function(1), Array("\u{1B}OP".utf8)), (.function(2), Array("\u{1B}OQ".utf8)),
    (.function(3), Array("\u{1B}OR".utf8)), (.function(4), Array("\u{1B}OS".utf8)),
    (.function(1), Array("\u{1B}[[A".utf8)), (.function(5), Array("\u{1B}[[E".utf8)),
    (.function(5), Array("\u{1B}[15~".utf8)), (.function(6), Array("\u{1B}[17~".utf8)),
    (.function(10), Array("\u{1B}[21~".utf8)), (.function(11), Array("\u{1B}[23~".utf8)),
    (.function(12), Array("\u{1B}[24~".utf8)),
    (.ctrl("a"), [0x01]), (.ctrl("c"), [0x03]), (.ctrl("z"), [0x1A]), (.ctrl("@"), [0x00]),
    (.ctrl("\\"), [0x1C]), (.ctrl("_"), [0x1F]),
    (.character("a"), [0x61]), (.character(" "), [0x20]), (.character("~"), [0x7E]),
    (.character("["), [0x5B]), (.character("O"), [0x4F]),
    (.character("é"), [0xC3, 0xA9]), (.character("日"), [0xE6, 0x97, 0xA5]),
    (.character("🙂"), [0xF0, 0x9F, 0x99, 0x82]),
    (.alt(.character("a")), [esc, 0x61]), (.alt(.backspace), [esc, 0x7F]),
    (.alt(.ctrl("a")), [esc, 0x01]), (.alt(.character("é")), [esc, 0xC3, 0xA9]),
    (.unknown(Array("\u{1B}[1;5A".utf8)), Array("\u{1B}[1;5A".utf8)),
    (.unknown(Array("\u{1B}[200~".utf8)), Array("\u{1B}[200~".utf8)),
    (.unknown([0xFF]), [0xFF]),
]

@Suite("KeyDecoder")
struct KeyDecoderTests {
    @Test("printable ASCII decodes to one character per byte")
    func printableASCII() {
        let text = String((0x20...0x7E).map { Character(Unicode.Scalar(UInt8($0))) })
        #expect(decode(text) == text.map { .character($0) })
    }

    @Test("control bytes: enter, backspace, tab and Ctrl-letters")
    func controlBytes() {
        #expect(decode([0x0D, 0x0A]) == [.enter, .enter])
        #expect(decode([0x7F, 0x08]) == [.backspace, .backspace])
        #expect(decode([0x09]) == [.tab])
        let letters: [UInt8] = Array(0x01...0x1A).filter { ![0x08, 0x09, 0x0A, 0x0D].contains($0) }
        #expect(decode(letters) == letters.map { .ctrl(Character(Unicode.Scalar($0 + 0x60))) })
        #expect(decode([0x00, 0x1C, 0x1D, 0x1E, 0x1F])
            == [.ctrl("@"), .ctrl("\\"), .ctrl("]"), .ctrl("^"), .ctrl("_")])
    }

    @Test("every named key decodes from its bytes, whole and byte by byte", arguments: encodedKeys.indices)
    func namedKey(index: Int) {
        let (key, bytes) = encodedKeys[index]
        #expect(decode(bytes) == [key])
        #expect(decodeByteByByte(bytes) == [key])
    }

    @Test("UTF-8 characters of 2, 3 and 4 bytes")
    func utf8Characters() {
        #expect(decode("é日🙂x") == [.character("é"), .character("日"), .character("🙂"), .character("x")])
        #expect(decodeByteByByte(Array("é日🙂x".utf8)) == decode("é日🙂x"))
    }

    @Test("a character of several scalars arrives as one event per scalar")
    func combiningScalars() {
        #expect(decode("e\u{301}") == [.character("e"), .character("\u{301}")])
    }

    @Test("a sequence split across two feeds decodes as one key")
    func splitAcrossFeeds() {
        var decoder = KeyDecoder()
        decoder.feed([esc])
        #expect(decoder.next() == nil)
        #expect(decoder.hasPendingEscape)
        decoder.feed(Array("[A".utf8))
        #expect(decoder.next() == .up)
        #expect(decoder.next() == nil)
        #expect(!decoder.hasIncompleteInput)
    }

    @Test("a lone ESC becomes .escape after flushPending or at the end of input")
    func loneEscape() {
        var decoder = KeyDecoder()
        decoder.feed(Array("a".utf8) + [esc])
        #expect(decoder.next() == .character("a"))
        #expect(decoder.next() == nil)
        #expect(decoder.hasPendingEscape)
        decoder.flushPending()
        #expect(decoder.next() == .escape)
        #expect(!decoder.hasPendingEscape)
        decoder.feed(Array("[A".utf8))
        #expect(decoder.finish() == [.character("["), .character("A")])
        #expect(decode([esc]) == [.escape])
    }

    @Test("ESC before a byte that cannot follow it is the Escape key or Alt")
    func escapeFollowedByOtherKeys() {
        #expect(decode([esc, esc]) == [.escape, .escape])
        #expect(decode([esc, esc] + Array("[A".utf8)) == [.escape, .up])
        #expect(decode([esc, 0x0D]) == [.alt(.enter)])
        #expect(decode([esc, 0x80]) == [.escape, .unknown([0x80])])
    }

    @Test("ESC [ and ESC O with nothing after them are Alt-[ and Alt-O")
    func altBracketAndO() {
        #expect(decode(Array("\u{1B}[".utf8)) == [.alt(.character("["))])
        #expect(decode(Array("\u{1B}O".utf8)) == [.alt(.character("O"))])
        #expect(decode(Array("\u{1B}[\r".utf8)) == [.alt(.character("[")), .enter])
        #expect(decode(Array("\u{1B}O\u{1B}".utf8)) == [.alt(.character("O")), .escape])
    }

    @Test("unsupported sequences come out as .unknown with exactly their bytes")
    func unknownSequences() {
        for text in ["\u{1B}[1;5A", "\u{1B}[3;2~", "\u{1B}[99~", "\u{1B}[Z", "\u{1B}[<0;3;4M", "\u{1B}OX",
                     "\u{1B}[[Z", "\u{1B}[123~"] {
            let bytes = Array(text.utf8)
            #expect(decode(bytes) == [.unknown(bytes)], "\(bytes)")
            #expect(decodeByteByByte(bytes) == [.unknown(bytes)], "\(bytes)")
        }
    }

    @Test("an escape sequence cut short keeps its bytes and the interrupting byte is decoded")
    func interruptedSequences() {
        #expect(decode(Array("\u{1B}[1;5".utf8)) == [.unknown(Array("\u{1B}[1;5".utf8))])
        #expect(decode(Array("\u{1B}[1;\ra".utf8))
            == [.unknown(Array("\u{1B}[1;".utf8)), .enter, .character("a")])
        #expect(decode(Array("\u{1B}[12\u{1B}[B".utf8)) == [.unknown(Array("\u{1B}[12".utf8)), .down])
        #expect(decode(Array("\u{1B}[[".utf8)) == [.unknown(Array("\u{1B}[[".utf8))])
        #expect(decode(Array("\u{1B}[[\u{1B}".utf8)) == [.unknown(Array("\u{1B}[[".utf8)), .escape])
    }

    @Test("an overlong escape sequence is cut at the maximum length and decoding continues")
    func overlongSequence() {
        let parameters = [UInt8](repeating: 0x31, count: 100)
        let bytes = [esc, 0x5B] + parameters + [0x7E] + Array("x".utf8)
        let events = decode(bytes)
        #expect(events.last == .character("x"))
        let unknownBytes = events.dropLast().flatMap { event -> [UInt8] in
            if case .unknown(let bytes) = event { return bytes }
            return event == .character("1") ? [0x31] : event == .character("~") ? [0x7E] : []
        }
        #expect(unknownBytes == Array(bytes.dropLast()))
        #expect(events.allSatisfy { if case .unknown(let b) = $0 { b.count <= KeyDecoder.maximumSequenceLength } else { true } })
    }

    @Test("invalid UTF-8 comes out as .unknown with the offending bytes")
    func invalidUTF8() {
        #expect(decode([0x80]) == [.unknown([0x80])])
        #expect(decode([0xC0, 0xAF]) == [.unknown([0xC0]), .unknown([0xAF])])
        #expect(decode([0xFF, 0x61]) == [.unknown([0xFF]), .character("a")])
        #expect(decode([0xC3, 0x61]) == [.unknown([0xC3]), .character("a")])
        #expect(decode([0xE6, 0x97, 0x0D]) == [.unknown([0xE6, 0x97]), .enter])
        #expect(decode([0xE0, 0x80, 0x80]) == [.unknown([0xE0]), .unknown([0x80]), .unknown([0x80])])
        #expect(decode([0xED, 0xA0, 0x80]) == [.unknown([0xED]), .unknown([0xA0]), .unknown([0x80])])
        #expect(decode([0xF4, 0x90, 0x80, 0x80]).first == .unknown([0xF4]))
        #expect(decode([0xE6, 0x97]) == [.unknown([0xE6, 0x97])])
        #expect(decode([esc, 0xC3]) == [.unknown([esc, 0xC3])])
    }

    @Test("an incomplete UTF-8 character waits for its continuation and ignores flushPending")
    func incompleteUTF8WaitsForMore() {
        var decoder = KeyDecoder()
        decoder.feed([0xE6, 0x97])
        #expect(!decoder.hasPendingEscape)
        #expect(decoder.hasIncompleteInput)
        decoder.flushPending()
        #expect(decoder.next() == nil)
        decoder.feed([0xA5])
        #expect(decoder.next() == .character("日"))
    }

    @Test("events are taken in order and finish empties the decoder")
    func queueBehaviour() {
        var decoder = KeyDecoder()
        #expect(decoder.next() == nil)
        decoder.feed(Array("ab".utf8))
        #expect(decoder.next() == .character("a"))
        decoder.feed(Array("c".utf8))
        #expect(decoder.finish() == [.character("b"), .character("c")])
        #expect(decoder.next() == nil)
        #expect(decoder.finish() == [])
    }

    @Test("an UnsafeRawBufferPointer filled by read(2) can be fed directly")
    func rawBuffer() {
        let bytes: [UInt8] = [esc, 0x5B, 0x42, 0x71]
        var decoder = KeyDecoder()
        bytes.withUnsafeBytes { decoder.feed($0) }
        #expect(decoder.finish() == [.down, .character("q")])
    }

    @Test("random keys fed in random chunk sizes decode to exactly the same keys", arguments: 0..<20)
    func randomizedRoundTrip(seed: Int) {
        var random = TestRandom(seed: UInt64(seed))
        var keys: [KeyEvent] = []
        var bytes: [UInt8] = []
        for _ in 0..<2_000 {
            let (key, encoding) = encodedKeys[Int(random.next() % UInt64(encodedKeys.count))]
            keys.append(key)
            bytes += encoding
        }
        // A lone ESC is only unambiguous when nothing follows it.
        keys.append(.escape)
        bytes.append(esc)

        var decoder = KeyDecoder()
        var decoded: [KeyEvent] = []
        var offset = 0
        while offset < bytes.count {
            let size = min(Int(random.next() % 9) + 1, bytes.count - offset)
            decoder.feed(bytes[offset..<(offset + size)])
            offset += size
            while let event = decoder.next() { decoded.append(event) }
        }
        decoded += decoder.finish()
        #expect(decoded == keys)
    }
}
