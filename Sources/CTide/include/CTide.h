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

#endif
