#define _GNU_SOURCE
#include "CTide.h"

int ctide_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
int ctide_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }

int ctide_timedjoin(pthread_t thread, const struct timespec *deadline) {
    return pthread_timedjoin_np(thread, NULL, deadline);
}

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ctide_no_pwait2 = 0;

int ctide_epoll_wait_ns(int epfd, struct epoll_event *events, int maxevents, long long timeout_ns) {
#ifdef SYS_epoll_pwait2
    if (!__atomic_load_n(&ctide_no_pwait2, __ATOMIC_RELAXED)) {
        struct timespec timeout;
        struct timespec *pointer = NULL;
        if (timeout_ns >= 0) {
            timeout.tv_sec = timeout_ns / 1000000000LL;
            timeout.tv_nsec = timeout_ns % 1000000000LL;
            pointer = &timeout;
        }
        long result = syscall(SYS_epoll_pwait2, epfd, events, maxevents, pointer, NULL, 0);
        if (result >= 0 || errno != ENOSYS) return (int)result;
        __atomic_store_n(&ctide_no_pwait2, 1, __ATOMIC_RELAXED);
    }
#endif
    int timeout_ms = -1;
    if (timeout_ns >= 0) {
        long long ms = (timeout_ns + 999999LL) / 1000000LL;
        timeout_ms = ms > 0x7fffffffLL ? 0x7fffffff : (int)ms;
    }
    return epoll_wait(epfd, events, maxevents, timeout_ms);
}

#include <linux/futex.h>
#include <limits.h>

#define CTIDE_PARK_BUCKETS 64

static uint32_t ctide_park_buckets[CTIDE_PARK_BUCKETS * 16];

static uint32_t *ctide_park_bucket(const void *key) {
    uint64_t hash = (uint64_t)(uintptr_t)key;
    hash ^= hash >> 17;
    hash *= 0x9E3779B97F4A7C15ull;
    // One bucket per 64-byte cache line, so unrelated sleepers do not share a line.
    return &ctide_park_buckets[(hash >> 58) * 16];
}

uint32_t ctide_park_sequence(const void *key) {
    return __atomic_load_n(ctide_park_bucket(key), __ATOMIC_ACQUIRE);
}

void ctide_park_wait(const void *key, uint32_t sequence) {
    syscall(SYS_futex, ctide_park_bucket(key), FUTEX_WAIT_PRIVATE, sequence, NULL, NULL, 0);
}

void ctide_park_wake_all(const void *key) {
    uint32_t *bucket = ctide_park_bucket(key);
    __atomic_fetch_add(bucket, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, bucket, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

__thread long ctide_coop_budget_value __attribute__((tls_model("initial-exec"))) = LONG_MAX;

__thread uint32_t ctide_thread_id_value __attribute__((tls_model("initial-exec"))) = 0;
static uint32_t ctide_thread_ids = 0;

uint32_t ctide_thread_id_assign(void) {
    uint32_t n = __atomic_fetch_add(&ctide_thread_ids, 1, __ATOMIC_RELAXED);
    uint32_t id = (n % 0x7FFFFFF0u) * 2u + 4u;
    ctide_thread_id_value = id;
    return id;
}
