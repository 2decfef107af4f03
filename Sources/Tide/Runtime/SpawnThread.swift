#if canImport(Glibc)
import Glibc
#endif

/// Starts an OS thread that runs `body`, joinable unless `detached`, its handle stored in
/// `thread`. Returns `pthread_create`'s result: 0, or the error (`EAGAIN` at a thread or pid
/// limit), in which case `body` is released without running.
func spawnThread(
    _ thread: inout pthread_t, detached: Bool, _ body: @escaping @Sendable () -> Void
) -> Int32 {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
    let result = pthread_create(&thread, &attributes, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    pthread_attr_destroy(&attributes)
    if result != 0 { Unmanaged<ThreadBody>.fromOpaque(box).release() }
    return result
}

/// The closure a started thread runs (a class, so it can pass through pthread's `void *`).
private final class ThreadBody {
    let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
    }
}
