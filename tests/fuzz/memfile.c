/* memfile.c -- the harnesses' scratch file: the kernel opens files by path, so each
 * input is written into one memfd and handed over as /proc/self/fd/N (falling back to
 * a file in /tmp where memfd_create is missing). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

const char *sbfuzz_file(const uint8_t *data, size_t size) {
    static char path[64];
    static int fd = -1;
    if (fd < 0) {
#ifdef MFD_CLOEXEC
        fd = memfd_create("sbfuzz", MFD_CLOEXEC);
        if (fd >= 0) snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
#endif
        if (fd < 0) {
            snprintf(path, sizeof path, "/tmp/sbfuzz-%ld", (long)getpid());
            fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) abort();
        }
    }
    if (ftruncate(fd, 0) != 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    return path;
}
