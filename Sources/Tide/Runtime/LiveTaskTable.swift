/*
 LiveTaskTable: the runtime's table of poll tasks that wait, so that shutdown can find them.

 One word per slot. A listed task's slot holds its address (an object address: even). An empty
 slot holds the index of the next empty slot, as `(index + 1) << 1 | 1` (odd; `1` ends the
 chain), so the empty slots form a stack threaded through the table itself: listing takes the
 top one, unlisting pushes. Neither allocates once the table has grown to the most tasks that
 waited at once.

 Why not an array of free slot numbers beside the table: that array grew while a burst of tasks
 finished, in doubling steps, and each step past 1 KiB was a malloc request for which glibc
 first consolidates its fast bins: every small chunk freed since (the finished tasks), 10-15 ms
 with 100,000 of them, on the thread that runs the tasks.

 Not thread-safe: the runtime guards it with its registry lock.
*/

/// The poll tasks of a runtime that are waiting: each holds one retain for the table.
struct LiveTaskTable {
    private var slots: [UInt] = []
    /// The first empty slot, encoded as in an empty slot (`1`: none).
    private var freeHead: UInt = 1
    /// Tasks listed.
    private(set) var count = 0

    /// Lists `task` (the table takes over the caller's retain) and returns its slot.
    mutating func insert(_ task: Unmanaged<PollTaskBase>) -> UInt32 {
        let address = UInt(bitPattern: task.toOpaque())
        count += 1
        if freeHead != 1 {
            let slot = Int(freeHead >> 1) - 1
            freeHead = slots[slot]
            slots[slot] = address
            return UInt32(slot)
        }
        slots.append(address)
        return UInt32(slots.count - 1)
    }

    /// Unlists the task in `slot` and returns the table's reference to it, for the caller to
    /// release; nil if the slot holds no task.
    mutating func remove(at slot: UInt32) -> Unmanaged<PollTaskBase>? {
        let index = Int(slot)
        guard index < slots.count, slots[index] & 1 == 0 else { return nil }
        let task = Unmanaged<PollTaskBase>.fromOpaque(UnsafeRawPointer(bitPattern: slots[index])!)
        count -= 1
        if count == 0 && slots.count > 4096 {
            // Nobody waits any more: give back what a burst of waiting tasks grew.
            slots = []
            freeHead = 1
        } else {
            slots[index] = freeHead
            freeHead = (UInt(index) + 1) << 1 | 1
        }
        return task
    }

    /// The listed tasks, unretained (the table still holds its references).
    var tasks: [PollTaskBase] {
        slots.compactMap { word in
            guard word & 1 == 0, let pointer = UnsafeRawPointer(bitPattern: word) else { return nil }
            return Unmanaged<PollTaskBase>.fromOpaque(pointer).takeUnretainedValue()
        }
    }
}
