/* fileio.c: atomic whole-file writes (temporary + fsync + rename + directory
 * fsync) and whole-file reads, for every artefact drlmem saves or loads.
 * Plain POSIX descriptors are used rather than stdio, because fsync needs
 * the descriptor anyway and write(2) reports ENOSPC at the call that met it
 * instead of at a later fflush. See fileio.h for the contract. */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <time.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dm_fd_write_all(int fd, const void *buf, size_t n, const char *path, dm_error *err)
{
    const char *p = buf;
    while (n > 0) {
        /* Some kernels refuse single writes above 2 GiB; chunk below that. */
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return dm_fail(err, "write %s: %s", path, strerror(errno));
        }
        if (w == 0) return dm_fail(err, "write %s: no progress (0 bytes written)", path);
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The folder holding path ("." when the path has no slash), into buf. */
static int parent_dir(const char *path, char *buf, size_t bufn)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, bufn, ".");
        return 0;
    }
    size_t len = (size_t)(slash - path);
    if (len == 0) len = 1; /* "/name" lives in "/" */
    if (len >= bufn) return -1;
    memcpy(buf, path, len);
    buf[len] = '\0';
    return 0;
}

/* fsync of the folder makes the rename durable. Filesystems that cannot
 * sync a directory say EINVAL (or EROFS/ENOTSUP); the data is already safe
 * there, so only real I/O errors are reported. */
static int sync_dir(const char *path, dm_error *err)
{
    char dir[PATH_MAX];
    if (parent_dir(path, dir, sizeof dir) != 0)
        return dm_fail(err, "write %s: folder name too long", path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return dm_fail(err, "write %s: cannot open folder %s to sync it: %s", path, dir,
                                strerror(errno));
    int rc = 0;
    if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP)
        rc = dm_fail(err, "write %s: written, but cannot sync folder %s: %s", path, dir,
                     strerror(errno));
    close(dfd);
    return rc;
}

/* The test hook of fileio.h: a pause between the temporary and the rename,
 * so a test can kill the process while the temporary exists. */
static void test_write_delay(void)
{
    const char *ms = getenv("DRLMEM_TEST_WRITE_DELAY_MS");
    if (!ms || !*ms) return;
    long v = strtol(ms, NULL, 10);
    if (v <= 0 || v > 60000) return;
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

int dm_file_write_atomic_parts(const char *path, const dm_file_part *parts, size_t nparts,
                               dm_error *err)
{
    if (!path || !*path) return dm_fail(err, "dm_file_write_atomic: empty path");
    size_t plen = strlen(path);
    if (path[plen - 1] == '/')
        return dm_fail(err, "write %s: path names a folder, not a file", path);
    char tmp[PATH_MAX];
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (tn < 0 || (size_t)tn >= sizeof tmp) return dm_fail(err, "write %s: path too long", path);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return dm_fail(err, "write %s: cannot create temporary file %s: %s", path, tmp,
                               strerror(errno));
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].n == 0) continue;
        if (dm_fd_write_all(fd, parts[i].data, parts[i].n, path, err) != 0) goto fail_open;
    }
    test_write_delay();
    if (fsync(fd) != 0) {
        dm_fail(err, "write %s: fsync: %s", path, strerror(errno));
        goto fail_open;
    }
    /* close can report a deferred write error (NFS, some quota setups). */
    if (close(fd) != 0) {
        dm_fail(err, "write %s: close: %s", path, strerror(errno));
        goto fail_closed;
    }
    if (rename(tmp, path) != 0) {
        dm_fail(err, "write %s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto fail_closed;
    }
    return sync_dir(path, err);

fail_open:
    close(fd);
fail_closed:
    unlink(tmp);
    return -1;
}

int dm_file_write_atomic(const char *path, const void *buf, size_t n, dm_error *err)
{
    dm_file_part part = {buf, n};
    return dm_file_write_atomic_parts(path, &part, 1, err);
}

int dm_file_read_all(const char *path, size_t max_bytes, void **out, size_t *n, dm_error *err)
{
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dm_fail(err, "read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dm_fail(err, "read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return dm_fail(err, "read %s: not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return dm_fail(err, "read %s: file is %lld bytes, more than the limit of %zu", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = dm_alloc(size + 1);
    if (!buf) {
        close(fd);
        return dm_fail(err, "read %s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            dm_free(buf);
            close(fd);
            return dm_fail(err, "read %s: %s", path, strerror(e));
        }
        if (r == 0) break; /* shrank while reading: keep what is there */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *n = got;
    return 0;
}

int dm_file_lock(const char *path, int *fd, long *holder_pid, dm_error *err)
{
    *fd = -1;
    *holder_pid = 0;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (f < 0) return dm_fail(err, "lock %s: %s", path, strerror(errno));
    while (flock(f, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) {
            char buf[32];
            ssize_t r = pread(f, buf, sizeof buf - 1, 0);
            if (r > 0) {
                buf[r] = '\0';
                *holder_pid = strtol(buf, NULL, 10);
            }
            close(f);
            return 1;
        }
        int e = errno;
        close(f);
        return dm_fail(err, "lock %s: %s", path, strerror(e));
    }
    /* The pid is for the message a second run prints; the lock itself is
     * the flock, so a failed write here only costs that message. */
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) == 0 && pwrite(f, buf, (size_t)n, 0) == n) (void)fsync(f);
    *fd = f;
    return 0;
}

void dm_file_unlock(int fd)
{
    if (fd >= 0) close(fd);
}

int dm_pid_alive(long pid)
{
    if (pid <= 0) return 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}
