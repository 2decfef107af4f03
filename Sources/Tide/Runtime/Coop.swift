/*
 Coop: the cooperative budget. Each task gets `budgetPerTurn` leaf operations per scheduling
 turn; the runtime resets the budget before it runs a job or a poll task. A leaf operation that
 would complete at once first spends one unit; when the budget is spent it makes the task yield
 instead (a Swift task re-queues itself behind the others; a poll task wakes itself and returns
 `.pending`). So a task that always finds data ready (a full channel, a readable socket) still
 lets the other tasks on its worker run.

 The budget is per thread (a thread runs one task at a time), kept behind a pthread key. Threads
 that are not runtime threads have an unlimited budget.
*/

#if canImport(Glibc)
import Glibc
#endif
import TideCore

@usableFromInline
enum Coop {
    /// Leaf operations a task may complete per scheduling turn.
    static let budgetPerTurn = 128

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            pointer?.assumingMemoryBound(to: Int.self).deallocate()
        }
        return key
    }()

    /// This thread's budget counter; nil on threads that never ran a runtime job.
    private static var counter: UnsafeMutablePointer<Int>? {
        pthread_getspecific(key)?.assumingMemoryBound(to: Int.self)
    }

    /// Refills the calling thread's budget (the runtime calls it before every job or poll task).
    static func reset() {
        if let counter {
            counter.pointee = budgetPerTurn
            return
        }
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: budgetPerTurn)
        pthread_setspecific(key, counter)
    }

    /// Spends one unit; false when the budget is exhausted (the caller should yield).
    @usableFromInline
    static func spend() -> Bool {
        guard let counter else { return true }
        if counter.pointee <= 0 { return false }
        counter.pointee -= 1
        return true
    }

    /// For poll-based leaf futures: spends one unit, or, when the budget is spent, wakes the task
    /// and returns false so that the leaf returns `.pending` (the task runs again after others).
    @usableFromInline
    static func proceed(_ context: inout Context) -> Bool {
        if spend() { return true }
        context.wake()
        return false
    }
}
