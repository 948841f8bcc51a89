#define _GNU_SOURCE
#include <poll.h>
#include <stddef.h>
#include <time.h>
#include "cpoll.h"

int serendip_poll_ns(int fd, short events, long long nanos) {
    struct pollfd entry = { .fd = fd, .events = events, .revents = 0 };
    struct timespec span = { .tv_sec = nanos / 1000000000LL, .tv_nsec = nanos % 1000000000LL };
    return ppoll(&entry, 1, &span, NULL);
}
