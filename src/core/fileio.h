/* fileio.h: whole-file reads and crash-safe whole-file writes.
 *
 * Every artefact drlmem writes (checkpoints, exported models, final metrics)
 * goes through dm_file_write_atomic: the bytes land in a temporary file
 * beside the target (`<path>.tmp.<pid>`), are flushed to disk, and only then
 * renamed over the target, so a crash, a full disk or a killed process
 * leaves either the old file or the new one, never a torn one. The
 * directory is synced after the rename so the new name itself survives a
 * power cut. Errors name the path and carry strerror (ENOSPC for a full
 * disk, EACCES for an unwritable folder, ENOENT for a missing one); on any
 * failure before the rename the temporary is removed and the previous file
 * is untouched. (Should only the final directory sync fail, the new file is
 * already in place and the error says so.) Tests of what a kill during a
 * write leaves set DRLMEM_TEST_WRITE_DELAY_MS: each atomic write then
 * sleeps that long between writing its temporary and the rename. */
#ifndef DM_FILEIO_H
#define DM_FILEIO_H

#include <stddef.h>

#include "core/common.h"

/* One piece of a gathered write: n bytes at data (data may be NULL when
 * n == 0). */
typedef struct dm_file_part {
    const void *data;
    size_t n;
} dm_file_part;

/* Writes buf[0..n) to path atomically (see above). Returns 0, or -1 with a
 * message "write PATH: ...: strerror" in err. */
int dm_file_write_atomic(const char *path, const void *buf, size_t n, dm_error *err);

/* As dm_file_write_atomic, writing the parts back to back, so a caller with
 * a header and several payloads needs no single concatenated copy. */
int dm_file_write_atomic_parts(const char *path, const dm_file_part *parts, size_t nparts,
                               dm_error *err);

/* Writes all n bytes to the open descriptor fd, retrying short writes and
 * EINTR. `path` only names the file in the message. This is the step that
 * meets a full disk; it is exposed so tests can aim it at /dev/full. */
int dm_fd_write_all(int fd, const void *buf, size_t n, const char *path, dm_error *err);

/* Reads the whole regular file at path into a fresh 64-byte aligned buffer
 * (free with dm_free) of *n bytes; refuses files larger than max_bytes.
 * The buffer has one extra zero byte after the data, so text can be used as
 * a C string. Returns 0, or -1 with "read PATH: strerror" in err. */
int dm_file_read_all(const char *path, size_t max_bytes, void **out, size_t *n, dm_error *err);

/* --- run folders ----------------------------------------------------------
 * What a training run needs to own its output folder: an exclusive lock
 * that a second run sees (with the holder's pid) and that the kernel drops
 * when the holder dies, even by SIGKILL (flock(2) locks belong to the open
 * file, so no stale lock can outlive its process), and whether a pid is
 * alive (whether a temporary of a killed write is stale). */

/* Takes an exclusive flock on path (created 0666 when missing) without
 * waiting. Returns 0 with the open descriptor in *fd (the lock lasts until
 * it is closed; our pid is written into the file), 1 when another process
 * holds it (*holder_pid: the pid written in the file, 0 if unreadable), or
 * -1 with "lock PATH: strerror" in err. */
int dm_file_lock(const char *path, int *fd, long *holder_pid, dm_error *err);

/* Releases a lock from dm_file_lock (closes fd; the file stays). */
void dm_file_unlock(int fd);

/* 1 when a process with this pid exists (also one of another user), else 0. */
int dm_pid_alive(long pid);

#endif
