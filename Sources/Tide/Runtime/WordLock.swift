/*
 WordLock: a lock in one 32-bit word, for objects that are created in large numbers (a oneshot
 per request) where `SyncLock`'s separately allocated pthread mutex would double the object's
 memory. Critical sections must be a few instructions long and must never run a waker or drop
 a user value.

 Word: 0 unlocked, 1 locked, 2 locked and a thread may be asleep on it.
 - lock: CAS 0 -> 1. Contended: spin briefly on the word, then loop { read the park bucket's
   sequence; exchange the word to 2 (if it was 0 the lock is ours); sleep on the bucket until
   its sequence moves }.
 - unlock: exchange the word to 0; if it was 2, bump the bucket's sequence and wake its sleepers.
 The sleepers park on a fixed table of futex words in CTide, chosen by the owner's address (the
 `key`); two locks sharing a bucket only cost each other a spurious wake-up. No wake-up is lost:
 the sleeper reads the sequence before its exchange, the unlocker bumps it after its exchange,
 and both exchanges are acquire-release, so a bump the sleeper did not see makes its futex wait
 return at once.
 TSan sees the lock: its ordering comes from Swift atomics compiled into this module.
*/

import CTide
import Synchronization

@usableFromInline
struct WordLock: ~Copyable, @unchecked Sendable {
    @usableFromInline let word = Atomic<UInt32>(0)

    @inlinable
    init() {}

    /// Takes the lock; `key` is any address unique to the owning object (its own address).
    @inlinable
    func lock(key: UnsafeRawPointer) {
        if word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockContended(key: key)
    }

    @usableFromInline
    func lockContended(key: UnsafeRawPointer) {
        for _ in 0..<100 {
            ctide_spin_hint()
            if word.load(ordering: .relaxed) == 0,
                word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
            {
                return
            }
        }
        while true {
            let sequence = ctide_park_sequence(key)
            if word.exchange(2, ordering: .acquiringAndReleasing) == 0 { return }
            ctide_park_wait(key, sequence)
        }
    }

    /// Releases the lock taken with the same `key`.
    @inlinable
    func unlock(key: UnsafeRawPointer) {
        if word.exchange(0, ordering: .acquiringAndReleasing) == 2 { ctide_park_wake_all(key) }
    }

    /// Runs `body` with the lock held.
    @inlinable
    func withLock<Result: ~Copyable, Failure: Error>(
        key: UnsafeRawPointer, _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        lock(key: key)
        defer { unlock(key: key) }
        return try body()
    }
}
