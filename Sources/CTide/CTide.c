#include "CTide.h"

int ctide_fcntl_getfl(int fd) { return fcntl(fd, F_GETFL); }
int ctide_fcntl_setfl(int fd, int flags) { return fcntl(fd, F_SETFL, flags); }
