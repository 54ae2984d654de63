/* memory.h: the differentiable key-value memory of DRLMemNet.
 *
 * A read is soft attention over M slots: scores = query . keys^T, weights =
 * softmax(scores), out = weights . values. It is differentiable in the query,
 * the keys and the values. Every read also bumps a usage counter by one for
 * each DISTINCT slot that won an argmax (PyTorch's `usage[idx] += 1` without
 * accumulation), counters that are never trained and only reported. The
 * write is not differentiable: it runs after the optimizer step and blends
 * the mean of L2-normalised new rows into every slot, then re-normalises the
 * rows (upstream `write_as_mean`, as the PyTorch reference README describes).
 *
 * Two layers of API. The pointer functions (dm_memory_read_forward, ...)
 * work on caller-owned buffers, so the controller keeps keys/values in its
 * own parameter arena. The dm_memory object wraps them for the standalone
 * Lua dm.Memory: it owns a parameter arena ("keys", "values", the usage
 * counters), a gradient arena of the same layout, and a working arena with
 * what the last read must keep for its backward, regrown for larger reads
 * as arena.h describes.
 *
 * NaN policy: a NaN (or an infinity that makes a score row non-finite) in a
 * query is not an error. The rows of `weights` and `out` that come from such
 * a query are NaN, as in PyTorch, and argmax follows torch.argmax: the first
 * NaN score wins, so usage still counts a valid slot index in [0, M). Other
 * rows are unaffected. Nothing crashes, nothing reads out of bounds. */
#ifndef DM_MEMORY_H
#define DM_MEMORY_H

#include "core/arena.h"
#include "core/common.h"
#include "core/rng.h"

/* ---- pointer API (buffers owned by the caller) ------------------------ */

/* scores = query . keys^T through one sgemm. */
void dm_memory_scores(float *scores /* (N,M) */, const float *query /* (N,D) */,
                      const float *keys /* (M,D) */, size_t N, size_t M, size_t D);

/* out = softmax(query . keys^T) . values. `weights` receives the softmax
 * (max-subtracted, so large scores do not overflow) and must be kept for the
 * backward. argmax (may be NULL) receives, per row, the index of the largest
 * SCORE, the first one on ties; see the NaN policy above. N may be 0. */
void dm_memory_read_forward(float *out /* (N,D) */, float *weights /* (N,M) */,
                            int32_t *argmax /* (N) or NULL */,
                            const float *query /* (N,D) */, const float *keys /* (M,D) */,
                            const float *values /* (M,D) */, size_t N, size_t M, size_t D);

/* usage[s] += 1 for every DISTINCT s among argmax[0..N) (duplicates count
 * once, as PyTorch's indexed += does). Indices outside [0,M) are ignored.
 * scratch is (M) int32 workspace. */
void dm_memory_usage_update(float *usage /* (M) */, const int32_t *argmax /* (N) */,
                            size_t N, size_t M, int32_t *scratch /* (M) */);

/* Backward of the read. ACCUMULATES (+=) into dquery (skipped when NULL),
 * dkeys and dvalues:
 *   dvalues += W^T dout;  dW = dout values^T;  dS = W * (dW - rowsum(dW*W))
 *   dquery  += dS keys;   dkeys += dS^T query
 * weights is the forward's softmax; scratch is (N,M) workspace. */
void dm_memory_read_backward(float *dquery /* (N,D) or NULL */, float *dkeys /* (M,D) */,
                             float *dvalues /* (M,D) */, const float *dout /* (N,D) */,
                             const float *weights /* (N,M) */, const float *query /* (N,D) */,
                             const float *keys /* (M,D) */, const float *values /* (M,D) */,
                             size_t N, size_t M, size_t D, float *scratch /* (N,M) */);

/* The upstream write (no gradient), in place on keys and values:
 *   mk = mean over the R rows of new_keys[r] / max(||new_keys[r]||, 1e-12)
 *   keys[i] <- (1-s) keys[i] + s mk          for every slot i
 *   keys[i] <- keys[i] / max(||keys[i]||, 1e-12)
 * and the same for values with new_values. Errors: R = 0, M = 0, D = 0, s
 * outside [0,1] or NaN, out of memory (it allocates 3*D floats). */
int dm_memory_write(float *keys /* (M,D) */, float *values /* (M,D) */,
                    const float *new_keys /* (R,D) */, const float *new_values /* (R,D) */,
                    size_t R, size_t M, size_t D, float s, dm_error *err);

/* The same write in two steps, for a batch split over processes: the
 * sums of the L2-normalised rows, then the blend of their means. Between
 * the two a data-parallel run adds every process's sums and counts (the
 * global batch's means are then the ones one process on the whole batch
 * takes, up to the order of the float additions); dm_memory_write is
 * sums then apply with count R, bit for bit.
 *   sums[0..D) = sum_r new_keys[r] / max(||new_keys[r]||, 1e-12), and
 *   sums[D..2D) the same for new_values; R = 0 gives zeros. Errors: D = 0,
 *   out of memory (it allocates D floats). */
int dm_memory_write_sums(float *sums /* (2,D) */, const float *new_keys /* (R,D) */,
                         const float *new_values /* (R,D) */, size_t R, size_t D, dm_error *err);
/* Divides sums by count (in place: they become the means) and blends them
 * into every slot as dm_memory_write does. Errors: M = 0, D = 0, count < 1,
 * s outside [0,1] or NaN. */
int dm_memory_write_apply(float *keys /* (M,D) */, float *values /* (M,D) */,
                          float *sums /* (2,D) */, double count, size_t M, size_t D, float s,
                          dm_error *err);

/* Fills keys and values with kaiming_uniform_ of an (M,D) tensor, as
 * PyTorch does: fan_in = D, bound = sqrt(2)*sqrt(3/D) = sqrt(6/D), U(-b, b)
 * drawn from rng, keys first then values, row-major. */
void dm_memory_init_params(float *keys /* (M,D) */, float *values /* (M,D) */, size_t M,
                           size_t D, dm_rng *rng);

/* ---- the standalone object (Lua dm.Memory) ---------------------------- */

typedef struct dm_memory {
    size_t M, D;            /* slots, width */
    dm_arena params;        /* "keys" (M,D), "values" (M,D), "usage" (M) */
    dm_arena grads;         /* same layout as params; "usage" stays zero */
    float *keys, *values;   /* (M,D) each, into params */
    float *dkeys, *dvalues; /* (M,D) each, into grads */
    float *usage;           /* (M) into params, starts at ones */
    /* The last read (for backward and for `m:weights()`). last_n = 0 and
     * has_last = 0 until a read happens. The working buffers below live in
     * the work arena, laid out for cap_n rows and regrown (arena.h) when a
     * read has more; the pointers follow each regrowth. */
    int has_last;
    int written;            /* a write happened after the last read: its
                               backward would mix old weights with new keys */
    size_t last_n;
    size_t cap_n;
    dm_arena work;          /* the entries below, in this order */
    float *last_query;      /* (cap_n,D), first last_n rows valid */
    float *last_weights;    /* (cap_n,M) */
    int32_t *last_argmax;   /* (cap_n) */
    float *scratch;         /* (cap_n,M) backward workspace */
    int32_t *iscratch;      /* (M) usage workspace */
} dm_memory;

/* M slots of width D; keys/values from dm_memory_init_params(rng), usage
 * ones, grads zero. Errors: M = 0 or D = 0 ("Memory: slots must be >= 1,
 * got 0"), out of memory. On failure *m is left freed (dm_memory_free is
 * still safe). */
int dm_memory_create(dm_memory *m, size_t M, size_t D, dm_rng *rng, dm_error *err);
/* Frees everything; safe on a zeroed or already freed object. */
void dm_memory_free(dm_memory *m);

/* Reads N query rows: out (N,D) and, when weights_out is not NULL, a copy of
 * the softmax (N,M). Updates usage once for the whole call (one forward of
 * N = B*T rows) and keeps query/weights for dm_memory_backward. Errors: out
 * of memory when the keep buffers must grow. */
int dm_memory_read(dm_memory *m, float *out /* (N,D) */, float *weights_out /* (N,M) or NULL */,
                   const float *query /* (N,D) */, size_t N, dm_error *err);

/* Backward of the last read: ACCUMULATES into m->dkeys, m->dvalues and into
 * dquery (may be NULL). Errors: no read yet, N != rows of the last read, a
 * write since the last read. */
int dm_memory_backward(dm_memory *m, float *dquery /* (N,D) or NULL */,
                       const float *dout /* (N,D) */, size_t N, dm_error *err);

/* The object's write: dm_memory_write on m->keys / m->values. The kept last
 * read stays readable (its weights describe the memory before the write) but
 * can no longer be differentiated. */
int dm_memory_update(dm_memory *m, const float *new_keys /* (R,D) */,
                     const float *new_values /* (R,D) */, size_t R, float s, dm_error *err);

/* The k slots with the largest attention weight for each query row, a peek
 * that changes neither usage nor the kept last read. Sorted by weight
 * descending, lower slot first on ties. idx is 0-based. Errors: k = 0 or
 * k > M, out of memory. */
int dm_memory_topk(const dm_memory *m, float *top_w /* (N,k) */, int64_t *top_idx /* (N,k) */,
                   const float *query /* (N,D) */, size_t N, size_t k, dm_error *err);

/* What a binding reads: slots M, width D, the keys and values (M,D) and
 * their gradients (M,D), the usage counters (M), whether a read is kept,
 * and the kept read's weights (n,M) with its n (NULL and n = 0 when no
 * read is kept; n may be NULL). The pointers stay valid while m lives. */
size_t dm_memory_slots(const dm_memory *m);
size_t dm_memory_width(const dm_memory *m);
float *dm_memory_keys(const dm_memory *m);
float *dm_memory_values(const dm_memory *m);
float *dm_memory_key_grad(const dm_memory *m);
float *dm_memory_value_grad(const dm_memory *m);
const float *dm_memory_usage(const dm_memory *m);
int dm_memory_has_read(const dm_memory *m);
const float *dm_memory_last_weights(const dm_memory *m, size_t *n);

/* usage <- ones (the value upstream starts from). */
void dm_memory_reset_usage(dm_memory *m);
/* grads <- 0. */
void dm_memory_zero_grad(dm_memory *m);

#endif
