/*
 WordLock: a lock stored inline in its owner, for objects that are created in large numbers (a
 oneshot per request, a channel per connection) where `SyncLock`'s separately allocated pthread
 mutex would add an allocation and 48 bytes to each. Used by every primitive in Sync/. Critical
 sections must be a few instructions long and must never run a waker or drop a user value.

 Word: 0 unlocked, 1 locked, 2 locked and a thread may be asleep on it.
 - lock: CAS 0 -> 1. Contended: spin briefly on the word, then loop { read the park bucket's
   sequence; exchange the word to 2 (if it was 0 the lock is ours); sleep on the bucket until
   its sequence moves }.
 - unlock: exchange the word to 0; if it was 2, bump the bucket's sequence and wake its sleepers.
 Sleepers park on a fixed table of futex words in CTide, chosen by the lock's `key` (a number
 handed out at init: Swift gives no stable address for an inline atomic); two locks sharing a
 bucket only cost each other a spurious wake-up. No wake-up is lost: the sleeper reads the
 sequence before its exchange, the unlocker bumps it after its exchange, and both exchanges are
 acquire-release, so a bump the sleeper did not see makes its futex wait return at once.
 TSan sees the lock: its ordering comes from Swift atomics compiled into this module.
*/

import CTide
import Synchronization

/// Hands out park-table keys so that locks spread over the buckets.
private let wordLockKeys = Atomic<UInt>(0)

@usableFromInline
struct WordLock: ~Copyable, @unchecked Sendable {
    @usableFromInline let word = Atomic<UInt32>(0)
    @usableFromInline let key: UInt32

    @usableFromInline
    init() {
        // Successive multiples of a large odd constant: consecutive locks land in different buckets.
        key = UInt32(truncatingIfNeeded: wordLockKeys.wrappingAdd(1, ordering: .relaxed).newValue &* 0x9E37_79B9)
    }

    @inlinable
    var parkKey: UnsafeRawPointer { UnsafeRawPointer(bitPattern: UInt(key) &* 64 &+ 64).unsafelyUnwrapped }

    /// Takes the lock.
    @inlinable
    func lock() {
        if word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockContended()
    }

    @usableFromInline
    func lockContended() {
        for _ in 0..<100 {
            ctide_spin_hint()
            if word.load(ordering: .relaxed) == 0,
                word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
            {
                return
            }
        }
        while true {
            let sequence = ctide_park_sequence(parkKey)
            if word.exchange(2, ordering: .acquiringAndReleasing) == 0 { return }
            ctide_park_wait(parkKey, sequence)
        }
    }

    /// Releases the lock.
    @inlinable
    func unlock() {
        if word.exchange(0, ordering: .acquiringAndReleasing) == 2 { ctide_park_wake_all(parkKey) }
    }

    /// Runs `body` with the lock held.
    @inlinable
    func withLock<Result: ~Copyable, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        lock()
        defer { unlock() }
        return try body()
    }
}
