/// A growable FIFO ring buffer for the scheduler's queues. Not thread-safe: the owner guards it.
struct RunQueue<Element> {
    private var storage: [Element?]
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 256) {
        var size = 2
        while size < capacity { size *= 2 }
        storage = Array(repeating: nil, count: size)
    }

    var isEmpty: Bool { count == 0 }

    mutating func push(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & (storage.count - 1)] = element
        count += 1
    }

    mutating func pop() -> Element? {
        if count == 0 { return nil }
        let element = storage[head].take()
        head = (head + 1) & (storage.count - 1)
        count -= 1
        return element
    }

    private mutating func grow() {
        var bigger = [Element?](repeating: nil, count: storage.count * 2)
        for index in 0..<count {
            bigger[index] = storage[(head + index) & (storage.count - 1)].take()
        }
        storage = bigger
        head = 0
    }
}
