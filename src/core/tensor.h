/* tensor.h: the n-dimensional array behind dm.Tensor.
 *
 * A tensor is a strided view (shape, strides in elements, offset) of a
 * reference-counted storage. Views (reshape of a contiguous tensor,
 * transpose, narrow, select) share the storage; clone and contiguous copy.
 * A storage either owns its bytes or borrows them from another object (a
 * parameter arena of a layer or of the memory): a borrowed storage never
 * frees them, and the Lua binding keeps the owner alive for as long as the
 * view lives. Element types: float32 (numbers) and int32 (token ids).
 *
 * Every operation that can fail takes a dm_error and returns 0 / -1; the
 * message names the operation and the offending shapes or values. */
#ifndef DM_TENSOR_H
#define DM_TENSOR_H

#include "core/common.h"
#include "core/rng.h"

#define DM_MAX_DIMS 8

typedef enum dm_dtype { DM_F32 = 0, DM_I32 = 1 } dm_dtype;

typedef struct dm_storage {
    void *data;
    size_t nbytes;
    int refcount;
    int owned; /* 1: data freed with the storage; 0: borrowed */
} dm_storage;

typedef struct dm_tensor {
    dm_storage *storage; /* NULL for an empty (not yet created) tensor */
    size_t offset;       /* in elements */
    dm_dtype dtype;
    int ndim;            /* 0 for a scalar tensor */
    int64_t shape[DM_MAX_DIMS];
    int64_t stride[DM_MAX_DIMS]; /* in elements */
} dm_tensor;

/* Creates a fresh contiguous zero-filled tensor. Fails on a negative or
 * absurd size (allocation failure) with a message naming `who`. */
int dm_tensor_init(dm_tensor *t, dm_dtype dtype, int ndim, const int64_t *shape,
                   const char *who, dm_error *err);
/* Makes t a contiguous view of borrowed memory (never freed by the tensor). */
int dm_tensor_init_borrowed(dm_tensor *t, void *data, dm_dtype dtype, int ndim,
                            const int64_t *shape, dm_error *err);
/* Makes dst another view of src's storage (refcount + 1). */
void dm_tensor_init_view(dm_tensor *dst, const dm_tensor *src);
/* Drops this view's reference; frees owned storage at the last one. */
void dm_tensor_release(dm_tensor *t);

size_t dm_tensor_numel(const dm_tensor *t);
int dm_tensor_is_contiguous(const dm_tensor *t);
/* Pointer to the first element (storage + offset). */
void *dm_tensor_data(const dm_tensor *t);
static inline float *dm_tensor_f32(const dm_tensor *t) { return (float *)dm_tensor_data(t); }
static inline int32_t *dm_tensor_i32(const dm_tensor *t) { return (int32_t *)dm_tensor_data(t); }
/* "2x3x4" (or "scalar") into buf; returns buf. */
const char *dm_tensor_shape_str(const dm_tensor *t, char *buf, size_t n);

#endif
