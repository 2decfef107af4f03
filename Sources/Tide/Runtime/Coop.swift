/*
 Coop: the cooperative budget. Each task gets `budgetPerTurn` leaf operations per scheduling
 turn; the runtime runs each job or poll task inside `Coop.turn`, which sets the budget. A leaf operation that
 would complete at once first spends one unit; when the budget is spent it makes the task yield
 instead (a Swift task re-queues itself behind the others; a poll task wakes itself and returns
 `.pending`). So a task that always finds data ready (a full channel, a readable socket) still
 lets the other tasks on its worker run.

 The budget is per thread (a thread runs one task at a time), a C thread-local (`CTide`), and is
 only limited inside a turn (`Coop.turn`): outside one, including threads that are not runtime
 threads, it is `Int.max`, unlimited.
*/

#if canImport(Glibc)
import Glibc
#endif
import CTide
import TideCore

@usableFromInline
enum Coop {
    /// Leaf operations a task may complete per scheduling turn.
    static let budgetPerTurn = 128

    /// This thread's budget counter.
    @inlinable
    static var counter: UnsafeMutablePointer<Int> { ctide_coop_budget() }

    /// Runs one scheduling turn (a job or a poll task) with a fresh budget, then restores the
    /// budget the thread had before, so code that runs outside a runtime turn (a test's
    /// `LocalExecutor`, a nested runtime) never sees a budget spent by someone else. Returns the
    /// units the turn spent.
    @inline(__always)
    @discardableResult
    static func turn(_ body: () -> Void) -> Int {
        let counter = counter
        let saved = counter.pointee
        counter.pointee = budgetPerTurn
        body()
        let spent = budgetPerTurn - max(0, min(counter.pointee, budgetPerTurn))
        counter.pointee = saved
        return spent
    }

    /// What a turn that spent `units` of budget counts toward the next look at timers and I/O
    /// (every `driverInterval`): one for the turn, plus one per 8 units. Counting turns alone let
    /// 61 turns of 128 leaf operations each (a task draining a full channel, or awaiting
    /// thousands of finished handles) run between two looks, and every timer due meanwhile
    /// fired that much later.
    @inline(__always)
    static func cost(ofTurnSpending units: Int) -> Int { 1 &+ units &>> 3 }

    /// How much turn cost runs between two looks at timers and I/O on a busy thread (tokio's
    /// event interval, in turns of up to 8 leaf operations).
    static let driverInterval = 61

    /// Spends one unit; false when the budget is exhausted (the caller should yield).
    @usableFromInline
    static func spend() -> Bool {
        let counter = counter
        if counter.pointee <= 0 { return false }
        counter.pointee -= 1
        return true
    }

    /// Runs `body` with the budget lifted, then restores it. For checks whose meaning is "is
    /// anything ready right now" (a `select` with a default branch), where yielding would lie.
    @inlinable
    static func withUnlimitedBudget<R>(_ body: () -> R) -> R {
        let counter = counter
        let saved = counter.pointee
        counter.pointee = .max
        defer { counter.pointee = saved }
        return body()
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
