// System headers that Swift's Glibc module does not export, and thin wrappers for calls Swift
// cannot make directly (variadic functions). Linux only.
#ifndef CTIDE_H
#define CTIDE_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <pty.h>
#include <termios.h>
#include <fcntl.h>

// fcntl is variadic; Swift cannot call it.
int ctide_fcntl_getfl(int fd);
int ctide_fcntl_setfl(int fd, int flags);

#include <pthread.h>
#include <stdint.h>
#include <time.h>

// pthread_timedjoin_np is a GNU extension that Swift's Glibc module does not declare. `deadline`
// is on CLOCK_REALTIME. Returns 0 when joined, ETIMEDOUT when the deadline passed first.
int ctide_timedjoin(pthread_t thread, const struct timespec *deadline);

/* A CPU hint for a spin-wait loop (x86 `pause`, Arm `yield`): saves power and lets the sibling
   hyperthread run. Inline, so a spinning worker pays no call. */
static inline void ctide_spin_hint(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The calling thread's coop budget (see Coop.swift): leaf operations left in the current turn,
   LONG_MAX (unlimited) outside a turn and on threads that never ran one. A thread-local in the
   initial-exec model, so reading it is one instruction, not a pthread_getspecific call. */
extern __thread long ctide_coop_budget_value __attribute__((tls_model("initial-exec")));
static inline long *ctide_coop_budget(void) { return &ctide_coop_budget_value; }

/* A small id for the calling thread, for telling whether a wake comes from the thread that is
   polling a task: 4, 6, 8, ... (bits 0 and 1 stay free for the task's own flags), assigned by
   ctide_thread_id() on first use; ctide_thread_id_if_assigned() is 0 on a thread that never
   asked, which matches no task. Ids repeat only after 2^31 threads. */
extern __thread uint32_t ctide_thread_id_value __attribute__((tls_model("initial-exec")));
uint32_t ctide_thread_id_assign(void);
static inline uint32_t ctide_thread_id_if_assigned(void) { return ctide_thread_id_value; }
static inline uint32_t ctide_thread_id(void) {
    uint32_t id = ctide_thread_id_value;
    return id != 0 ? id : ctide_thread_id_assign();
}

// Waits for epoll events for at most `timeout_ns` nanoseconds (-1: forever). Uses epoll_pwait2
// (Linux 5.11) so a timer deadline is met to the microsecond instead of rounded up to the next
// millisecond; falls back to epoll_wait with the timeout rounded up where the kernel lacks it.
int ctide_epoll_wait_ns(int epfd, struct epoll_event *events, int maxevents, long long timeout_ns);

#include <stdint.h>

// The parking side of Tide's one-word lock (`WordLock`): a fixed table of futex words, one
// chosen by the lock's address. A contended locker reads its bucket's sequence, re-checks the
// lock, then sleeps until the sequence moves; an unlocker that saw contention bumps the
// sequence and wakes every sleeper on the bucket (collisions only cost a spurious wake-up).
uint32_t ctide_park_sequence(const void *key);
void ctide_park_wait(const void *key, uint32_t sequence);
void ctide_park_wake_all(const void *key);

#endif
