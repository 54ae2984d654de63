/* common.h: conventions shared by the whole C core of drlmem.
 *
 * The core never aborts or exits on bad input. A function that can fail
 * returns 0 on success and -1 on failure, and fills a caller-supplied
 * dm_error with a message that names the function, the argument and the
 * expected and actual values ("matmul: shapes 2x3 and 4x5 do not match
 * (3 != 4)"). The Lua bindings turn that message into a Lua error. Sizes and
 * indices that can be multiplied are size_t or int64_t, never int. */
#ifndef DM_COMMON_H
#define DM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define DM_ERRMSG_MAX 512

typedef struct dm_error {
    char msg[DM_ERRMSG_MAX];
} dm_error;

/* Formats a message into err (when err is not NULL) and returns -1, so that
 * a failing path reads `return dm_fail(err, "...", ...);`. */
int dm_fail(dm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A sum over the processes of a data-parallel run: fn replaces v[0..n)
 * by its sum over every process, in place, and returns 0, or -1 with a
 * message. Every process must call it with the same n at the same point.
 * The core stays free of MPI: a caller that trains across processes
 * installs a hook (dm_controller_set_reduce with dm_dist_reduce_sum); a
 * NULL fn means one process, where the sum is v itself. */
typedef int (*dm_reduce_fn)(double *v, size_t n, void *ctx, dm_error *err);
typedef struct dm_reduce {
    dm_reduce_fn fn; /* NULL: one process */
    void *ctx;
} dm_reduce;

/* Overflow-checked product of n sizes: returns 0 and sets *out, or -1 when
 * the product does not fit in size_t (an absurd shape). */
int dm_size_mul(size_t *out, const int64_t *dims, int n);

/* 64-byte aligned zeroed allocation of nbytes (NULL on failure or 0 bytes
 * requested -> a valid unique pointer). Free with dm_free. */
void *dm_alloc(size_t nbytes);
void dm_free(void *p);

#endif
