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
