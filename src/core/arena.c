/* arena.c: layout and single allocation of named float buffers (arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

void dm_arena_init(dm_arena *a) { memset(a, 0, sizeof *a); }

int dm_arena_find(const dm_arena *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->entries[i].name, name) == 0) return i;
    return -1;
}

int dm_arena_add(dm_arena *a, const char *name, int ndim, const int64_t *shape, dm_error *err)
{
    if (a->data) return dm_fail(err, "arena: cannot add '%s' after allocation", name);
    if (strlen(name) >= DM_ARENA_NAME_MAX) return dm_fail(err, "arena: name '%s' is too long", name);
    if (ndim < 0 || ndim > DM_ARENA_MAX_DIMS)
        return dm_fail(err, "arena: '%s' has %d dimensions (at most %d)", name, ndim, DM_ARENA_MAX_DIMS);
    if (dm_arena_find(a, name) >= 0) return dm_fail(err, "arena: duplicate name '%s'", name);
    size_t numel;
    if (dm_size_mul(&numel, shape, ndim) != 0)
        return dm_fail(err, "arena: shape of '%s' is negative or too large", name);
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        dm_arena_entry *e = realloc(a->entries, (size_t)cap * sizeof *e);
        if (!e) return dm_fail(err, "arena: out of memory adding '%s'", name);
        a->entries = e;
        a->cap = cap;
    }
    dm_arena_entry *e = &a->entries[a->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->numel = numel;
    e->offset = a->numel;
    /* 16 floats = 64 bytes: every entry starts on a cache line. */
    size_t padded = (numel + 15) & ~(size_t)15;
    if (padded < numel || a->numel > SIZE_MAX / 4 - padded)
        return dm_fail(err, "arena: '%s' is too large", name);
    a->numel += padded;
    return a->n++;
}

int dm_arena_alloc(dm_arena *a, dm_error *err)
{
    if (a->data) return 0;
    if (a->numel > SIZE_MAX / sizeof(float)) return dm_fail(err, "arena: size overflow");
    a->data = dm_alloc(a->numel * sizeof(float));
    if (!a->data)
        return dm_fail(err, "arena: cannot allocate %zu floats (%.1f MiB)", a->numel,
                       (double)a->numel * 4.0 / 1048576.0);
    return 0;
}

int dm_arena_init_like(dm_arena *a, const dm_arena *src, dm_error *err)
{
    dm_arena_init(a);
    for (int i = 0; i < src->n; i++)
        if (dm_arena_add(a, src->entries[i].name, src->entries[i].ndim, src->entries[i].shape, err) < 0) {
            dm_arena_free(a);
            return -1;
        } else {
            a->entries[i].flags = src->entries[i].flags;
        }
    if (dm_arena_alloc(a, err) != 0) {
        dm_arena_free(a);
        return -1;
    }
    return 0;
}

float *dm_arena_ptr(const dm_arena *a, int i) { return a->data + a->entries[i].offset; }

void dm_arena_zero(dm_arena *a)
{
    if (a->data) memset(a->data, 0, a->numel * sizeof(float));
}

void dm_arena_free(dm_arena *a)
{
    dm_free(a->data);
    free(a->entries);
    dm_arena_init(a);
}
