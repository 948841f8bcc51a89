#ifndef SERENDIP_CSERIALPORT_SHIM_H
#define SERENDIP_CSERIALPORT_SHIM_H
#include <stddef.h>
#include <fcntl.h>
#include <unistd.h>
// libserialport is used only to list ports with their USB identity; serial I/O is done with
// termios because Debian's libserialport 0.1.1 cannot open pseudo-terminals.
#include <libserialport.h>

// glibc declares these only under _XOPEN_SOURCE/_GNU_SOURCE, which Swift's Glibc module does not
// set (and defining it here would make this module's fd_set differ from Dispatch's).
extern int posix_openpt(int flags);
extern int grantpt(int fd);
extern int unlockpt(int fd);
extern int ptsname_r(int fd, char *buf, size_t buflen);

// Opens the primary side of a new pseudo-terminal and writes the secondary's path into name.
// Returns the primary's descriptor, or -1 with errno set. Close-on-exec: a child another thread
// spawns meanwhile must not keep the primary open, or an unplugged device would not hang up.
static inline int serendip_open_pty(char *name, size_t size) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, name, size) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
#endif
