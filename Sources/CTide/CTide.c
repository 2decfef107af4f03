#define _GNU_SOURCE
#include "CTide.h"

int ctide_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
int ctide_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }

int ctide_timedjoin(pthread_t thread, const struct timespec *deadline) {
    return pthread_timedjoin_np(thread, NULL, deadline);
}
