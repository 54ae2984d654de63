/* arena.h: named float32 buffers in one allocation.
 *
 * Parameters, gradients, optimizer moments and activations each live in one
 * arena: a table of entries (name, shape, offset) laid out first with
 * dm_arena_add, then backed by a single 64-byte aligned allocation with
 * dm_arena_alloc. The table is also what a checkpoint writes, so entry names
 * are PyTorch state_dict names ("rnn.weight_ih_l0"). A gradient arena is a
 * copy of the parameter arena's layout (dm_arena_init_like), so the i-th
 * entry of one matches the i-th of the other and an optimizer can walk both
 * as flat arrays.
 *
 * This is the one way the core owns working memory. Buffers whose size
 * depends on the batch (the controller's activations, the standalone
 * memory's kept read and scratch) live in an arena laid out from a size
 * table for a capacity of rows; a call with no more rows uses the first
 * rows of each entry, and a larger one regrows the arena: it is laid out
 * again from the same table for the new capacity and allocated with
 * dm_arena_add / dm_arena_alloc, the old one goes with dm_arena_free (the
 * memory allocates the fresh arena first, so a failed regrowth keeps its
 * last read), and the owner re-derives its pointers with dm_arena_ptr.
 * int32 buffers take one float-sized cell per value. Besides tensors'
 * own storage, only short-lived temporaries freed before a call returns
 * and inputs kept for a later call (the controller's injected dropout
 * mask) are allocated outside an arena. */
#ifndef DM_ARENA_H
#define DM_ARENA_H

#include "core/common.h"

#define DM_ARENA_NAME_MAX 64
#define DM_ARENA_MAX_DIMS 4

typedef struct dm_arena_entry {
    char name[DM_ARENA_NAME_MAX];
    int ndim;
    int64_t shape[DM_ARENA_MAX_DIMS];
    size_t offset; /* in floats from the arena's start; 16-float aligned */
    size_t numel;
    unsigned flags; /* the owner's marks (part.h: frozen, buffer); copied by init_like */
} dm_arena_entry;

typedef struct dm_arena {
    float *data;          /* (numel) one allocation, NULL until dm_arena_alloc */
    size_t numel;         /* floats laid out so far, padding included */
    dm_arena_entry *entries;
    int n, cap;
} dm_arena;

void dm_arena_init(dm_arena *a);
/* Lays out one entry; returns its index, or -1 (duplicate name, bad shape,
 * out of memory, or the arena is already allocated). */
int dm_arena_add(dm_arena *a, const char *name, int ndim, const int64_t *shape, dm_error *err);
/* Allocates and zeroes the storage for every entry laid out. */
int dm_arena_alloc(dm_arena *a, dm_error *err);
/* Copies src's layout (not its data) into a fresh arena and allocates it. */
int dm_arena_init_like(dm_arena *a, const dm_arena *src, dm_error *err);
/* Entry index by name, or -1. */
int dm_arena_find(const dm_arena *a, const char *name);
/* Pointer to entry i's first float (arena must be allocated). */
float *dm_arena_ptr(const dm_arena *a, int i);
void dm_arena_zero(dm_arena *a);
void dm_arena_free(dm_arena *a);

#endif
