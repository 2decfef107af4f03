import Testing
import TideCore

@Suite("Waker and Context")
struct WakerTests {
    @Test func cloneAndDropBalance() {
        let counter = WakerCounter()
        do {
            let waker = counter.makeWaker()
            let second = waker.clone()
            let third = second.clone()
            let check1 = waker.willWake(third)
            #expect(check1)
            third.wake()
            _ = consume second
            _ = consume waker
        }
        #expect(counter.live == 0)
        #expect(counter.wakes.load(ordering: .relaxed) == 1)
    }

    @Test func contextClonesAndWakesByReference() {
        let counter = WakerCounter()
        do {
            let waker = counter.makeWaker()
            let context = Context(waker: waker)
            let check2 = waker.willWake(context)
            #expect(check2)
            context.wake()
            let kept = context.cloneWaker()
            kept.wakeByRef()
            _ = consume kept
        }
        #expect(counter.live == 0)
        #expect(counter.wakesByRef.load(ordering: .relaxed) == 2)
    }

    @Test func willWakeDistinguishesTasks() {
        let first = WakerCounter()
        let second = WakerCounter()
        let a = first.makeWaker()
        let b = second.makeWaker()
        let check3 = !a.willWake(b)
        #expect(check3)
        let check4 = a.willWake(a.clone())
        #expect(check4)
        let check5 = !Waker.noop.willWake(a)
        #expect(check5)
        _ = consume a
        _ = consume b
        #expect(first.live == 0 && second.live == 0)
    }

    @Test func noopWakerIsHarmless() {
        let waker = Waker.noop
        waker.wakeByRef()
        waker.clone().wake()
        waker.wake()
    }

    @Test func intoRawTransfersOwnership() {
        let counter = WakerCounter()
        let raw = counter.makeWaker().intoRaw()
        #expect(counter.live == 1)
        Waker(data: raw.data, vtable: raw.vtable).wake()
        #expect(counter.live == 0)
    }
}

@Suite("AtomicWaker")
struct AtomicWakerTests {
    @Test func registerThenWakeWakesOnce() {
        let counter = WakerCounter()
        let slot = AtomicWaker()
        do {
            let waker = counter.makeWaker()
            slot.register(Context(waker: waker))
            slot.register(Context(waker: waker))
            slot.wake()
            slot.wake()
        }
        #expect(counter.wakes.load(ordering: .relaxed) == 1)
        #expect(counter.live == 0)
    }

    @Test func registeringAnotherWakerReleasesThePrevious() {
        let first = WakerCounter()
        let second = WakerCounter()
        let slot = AtomicWaker()
        do {
            let a = first.makeWaker()
            let b = second.makeWaker()
            slot.register(Context(waker: a))
            slot.register(Context(waker: b))
            #expect(first.live == 1)
            slot.clear()
        }
        #expect(first.live == 0 && second.live == 0)
        #expect(first.totalWakes == 0 && second.totalWakes == 0)
    }

    @Test func slotReleasesItsWakerWhenDeallocated() {
        let counter = WakerCounter()
        do {
            let slot = AtomicWaker()
            let waker = counter.makeWaker()
            slot.register(Context(waker: waker))
        }
        #expect(counter.live == 0)
    }
}
