/* common.c: the error and allocation helpers every core file uses (see
 * common.h for the conventions). */
#include "core/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dm_fail(dm_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int dm_size_mul(size_t *out, const int64_t *dims, int n)
{
    size_t p = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] < 0) return -1;
        size_t d = (size_t)dims[i];
        if (d != 0 && p > SIZE_MAX / d) return -1;
        p *= d;
    }
    *out = p;
    return 0;
}

void *dm_alloc(size_t nbytes)
{
    /* Round up so aligned_alloc's size is a multiple of the alignment, and
     * refuse sizes that cannot be rounded or are beyond any real machine. */
    if (nbytes > ((size_t)1 << 46)) return NULL;
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

void dm_free(void *p) { free(p); }
