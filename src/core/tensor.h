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
/* "float32" or "int32". */
const char *dm_dtype_name(dm_dtype d);

/* Conventions below: `dst` (and any other output) is passed in EMPTY
 * (storage NULL, e.g. zeroed) and is initialised only on success, so a
 * failing call leaves nothing to release. Dimensions and indices are
 * 0-based in C; the error messages print them 1-based, as the Lua user
 * wrote them. `who` names the calling operation in messages (NULL: a
 * default). */

/* ---- element access (tensor.c) ---- */

/* Walks the elements of t in row-major order, whatever its strides:
 *   for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it)) ... it.off
 * off is the element offset into t->storage->data (t->offset included). */
typedef struct dm_iter {
    const dm_tensor *t;
    size_t pos, n;
    int64_t off;
    int64_t idx[DM_MAX_DIMS];
} dm_iter;
void dm_iter_init(dm_iter *it, const dm_tensor *t);
void dm_iter_next(dm_iter *it);
/* Element at a storage offset (as produced by dm_iter or dm_tensor_offset),
 * converted to/from double whatever the dtype. */
double dm_tensor_get_at(const dm_tensor *t, int64_t off);
void dm_tensor_set_at(dm_tensor *t, int64_t off, double v);
/* Storage offset of the element at 0-based idx[0..n-1]; fails on a wrong
 * index count or an index out of range. */
int dm_tensor_offset(const dm_tensor *t, int n, const int64_t *idx, int64_t *off,
                     const char *who, dm_error *err);
/* Fails unless v is an integer representable in int32. */
int dm_tensor_check_int32_value(double v, const char *who, dm_error *err);
void dm_tensor_fill(dm_tensor *t, double v);

/* ---- views: share the storage (tensor.c) ---- */

/* Contiguous src only; one entry of shape may be -1 (inferred). */
int dm_tensor_reshape(dm_tensor *dst, const dm_tensor *src, int ndim, const int64_t *shape,
                      const char *who, dm_error *err);
int dm_tensor_transpose(dm_tensor *dst, const dm_tensor *src, int d0, int d1, dm_error *err);
/* Elements start .. start+len-1 of dimension dim. */
int dm_tensor_narrow(dm_tensor *dst, const dm_tensor *src, int dim, int64_t start, int64_t len,
                     dm_error *err);
/* Index i of dimension dim; the result has one dimension fewer. */
int dm_tensor_select(dm_tensor *dst, const dm_tensor *src, int dim, int64_t i, dm_error *err);

/* ---- copies (tensor.c) ---- */

/* Element-wise copy into an existing tensor of the same shape (any layout;
 * int32 -> float32 converts, float32 -> int32 is refused). */
int dm_tensor_copy(dm_tensor *dst, const dm_tensor *src, dm_error *err);
/* Fresh contiguous copy. */
int dm_tensor_clone(dm_tensor *dst, const dm_tensor *src, dm_error *err);
/* A view of src when it is contiguous, else a contiguous copy. */
int dm_tensor_contiguous(dm_tensor *dst, const dm_tensor *src, dm_error *err);
/* Fresh copy converted to dtype (float -> int32 truncates toward zero). */
int dm_tensor_to_dtype(dm_tensor *dst, const dm_tensor *src, dm_dtype dtype, dm_error *err);

/* ---- fills (tensor.c) ---- */

/* Fill float32 t in row-major order with dm_rng_uniform / dm_rng_normal
 * draws from r (one draw per element), so a seed fixes every value. */
int dm_tensor_rand_(dm_tensor *t, dm_rng *r, const char *who, dm_error *err);
int dm_tensor_randn_(dm_tensor *t, dm_rng *r, const char *who, dm_error *err);
/* 1-d tensor start, start+step, ... up to but excluding end (PyTorch). */
int dm_tensor_arange(dm_tensor *dst, double start, double end, double step, dm_dtype dtype,
                     dm_error *err);

/* ---- arithmetic (tensor_ops.c); float32 only ---- */

typedef enum dm_binop { DM_ADD, DM_SUB, DM_MUL, DM_DIV } dm_binop;
typedef enum dm_unop {
    DM_NEG, DM_EXP, DM_LOG, DM_TANH, DM_SIGMOID, DM_SQRT, DM_ABS,
    DM_POW,   /* x^p1 */
    DM_CLAMP, /* min(max(x, p1), p2) */
} dm_unop;

/* out = a OP b with NumPy broadcasting (shapes aligned at the trailing
 * dimension; each pair equal or one of them 1). out empty: allocated with
 * the broadcast shape; out not empty (e.g. out == a for in place): must
 * already have the broadcast shape. */
int dm_tensor_binary(dm_tensor *out, const dm_tensor *a, const dm_tensor *b, dm_binop op,
                     const char *who, dm_error *err);
/* out = a OP s, or s OP a when reversed (2 - t). out as above. */
int dm_tensor_binary_scalar(dm_tensor *out, const dm_tensor *a, double s, dm_binop op,
                            int reversed, const char *who, dm_error *err);
/* out = f(a). out empty (allocated) or of a's shape (out == a: in place). */
int dm_tensor_unary(dm_tensor *out, const dm_tensor *a, dm_unop op, double p1, double p2,
                    const char *who, dm_error *err);

/* ---- reductions (tensor_ops.c); float32 only ---- */

typedef enum dm_redop { DM_SUM, DM_MEAN, DM_MAX, DM_MIN, DM_NORM } dm_redop;

/* Over all elements: *value (and for MAX/MIN the flat row-major index of
 * the first extreme element, when index is not NULL). Sums accumulate in
 * double. MAX/MIN of an empty tensor fail. */
int dm_tensor_reduce_all(const dm_tensor *a, dm_redop op, double *value, int64_t *index,
                         dm_error *err);
/* Along dimension dim: values (float32) and, for MAX/MIN when indices is
 * not NULL, the position of the first extreme along dim as int32 values
 * counted from index_base (1 for Lua). keepdim keeps dim with size 1. */
int dm_tensor_reduce_dim(dm_tensor *values, dm_tensor *indices, const dm_tensor *a, dm_redop op,
                         int dim, int keepdim, int index_base, dm_error *err);
/* (log-)softmax over the last dimension, computed as x - max first so that
 * inputs like 1000 or -1000 stay finite. out empty or of a's shape. */
int dm_tensor_softmax(dm_tensor *out, const dm_tensor *a, int log_space, dm_error *err);
/* The k largest along the last dimension, sorted descending (ties: lower
 * index first); indices int32 counted from index_base. */
int dm_tensor_topk(dm_tensor *values, dm_tensor *indices, const dm_tensor *a, int64_t k,
                   int index_base, dm_error *err);
/* |a - b| <= atol + rtol * |b| everywhere (NaN never close); shapes must
 * match. */
int dm_tensor_allclose(const dm_tensor *a, const dm_tensor *b, double rtol, double atol,
                       int *result, dm_error *err);

/* ---- matrix product (tensor_ops.c) ---- */

/* (M,K)x(K,N) -> (M,N); (B,M,K)x(B,K,N) -> (B,M,N); (B,M,K)x(K,N) ->
 * (B,M,N). Through cblas_sgemm; a transposed view of a contiguous matrix is
 * passed as CblasTrans without copying. out is empty (allocated). */
int dm_tensor_matmul(dm_tensor *out, const dm_tensor *a, const dm_tensor *b, dm_error *err);

#endif
