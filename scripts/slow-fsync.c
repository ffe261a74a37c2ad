/* A slower disk for scripts/bench: preloaded into warren (LD_PRELOAD), it
 * makes every fsync and fdatasync take SLOW_FSYNC_US microseconds longer,
 * so the group commit can be measured at the 10-90 fsyncs/s that busy
 * disks give, on a machine whose disk is faster. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void slow_down(void) {
  static long us = -1;
  if (us < 0) {
    const char *v = getenv("SLOW_FSYNC_US");
    us = v ? atol(v) : 0;
  }
  struct timespec t = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&t, 0);
}

/* Calls the real function, then waits. */
#define SLOWED(name)                                              \
  int name(int fd) {                                              \
    static int (*real)(int);                                      \
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #name);      \
    int r = real(fd);                                             \
    slow_down();                                                  \
    return r;                                                     \
  }

SLOWED(fsync)
SLOWED(fdatasync)
