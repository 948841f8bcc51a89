#ifndef SERENDIP_CPOLL_H
#define SERENDIP_CPOLL_H
// Waits for one descriptor to become ready for `events` (POLLIN, POLLOUT) for up to `nanos`
// nanoseconds. poll(2) counts whole milliseconds, too coarse for a wait of a few hundred
// microseconds, and Swift's Glibc module does not declare ppoll (glibc does only under _GNU_SOURCE).
// Returns as poll(2) does: 1 ready, 0 timed out, -1 with errno set.
int serendip_poll_ns(int fd, short events, long long nanos);
#endif
