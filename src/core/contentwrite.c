/* contentwrite.c: the `content` write policy, a sibling of blend that
 * writes the learned memory where it was read instead of everywhere.
 *
 * The upstream post-step write (blend, memory.h) pulls EVERY slot toward
 * the same batch mean with strength s, so after a few dozen optimizer steps
 * all M slots hold one row and the read stops depending on the token. The
 * content write is NTM's and DNC's write with the read weights as the
 * write weights (erase = add = the written row): each of the R = B*T
 * tokens of the last forward writes its own L2-normalised key kh_r and
 * value vh_r (the rows the upstream write averages: GELU(fc_query_memory(
 * query_r)) and GELU(fc_value_memory(logits_r))) into the slots in
 * proportion to the attention w_ri its read gave them. All rows write at
 * once, against the weights of the forward (so the result does not depend
 * on the row order), and the total write mass of one step is s, as one
 * blend row's:
 *   a_i    = (1/R) sum_r w_ri                (slot i's share of the reads)
 *   keys_i <- (1 - s a_i) keys_i + (s/R) sum_r w_ri kh_r
 *   vals_i <- (1 - s a_i) vals_i + (s/R) sum_r w_ri vh_r
 * A slot that nobody read is left as the optimizer left it; no row is
 * renormalised. Under repeated writes with fixed weights slot i tends to
 * the attention-weighted mean of the rows that read it, so slots read by
 * different tokens stay apart (a soft k-means), where blend sends every
 * slot to one point. The state is the memory's keys and values alone (in
 * the parameter arena, so checkpoints and --resume carry it as they carry
 * blend's); the part has no parameters, no activations and no per-step
 * decision. */
#include "core/gemm.h"
#include <math.h>
#include <string.h>

#include "core/part.h"

/* x / max(||x||, 1e-12) of n rows of width D, from src into dst. */
static void normalized_rows(float *dst, const float *src, size_t n, size_t D)
{
    for (size_t r = 0; r < n; r++) {
        double ss = 0.0;
        for (size_t j = 0; j < D; j++) ss += (double)src[r * D + j] * src[r * D + j];
        double nrm = sqrt(ss);
        if (nrm < 1e-12) nrm = 1e-12;
        float fn = (float)nrm;
        for (size_t j = 0; j < D; j++) dst[r * D + j] = src[r * D + j] / fn;
    }
}

/* x_i <- (1 - s a_i) x_i + (s/R) (W^T rows)_i for every slot i. */
static void pull_slots(float *x /* (M,D) */, const float *mass /* (M) */,
                       const float *target /* (M,D) sum_r w_ri rows_r */, size_t M, size_t D,
                       size_t R, float s)
{
    const float sr = s / (float)R;
    for (size_t i = 0; i < M; i++) {
        const float keep = 1.0f - s * mass[i];
        for (size_t j = 0; j < D; j++) x[i * D + j] = keep * x[i * D + j] + sr * target[i * D + j];
    }
}

static int content_write(const dm_part *p, float *keys, float *values, size_t M, size_t D,
                         const float *new_keys, const float *new_values, const float *weights,
                         size_t R, float s, dm_error *err)
{
    (void)p;
    if (M == 0 || D == 0 || R == 0)
        return dm_fail(err, "content write: slots, width and rows must be >= 1, got %zu, %zu, %zu",
                       M, D, R);
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "content write: strength must be in [0, 1], got %g", (double)s);
    if (R > (size_t)INT32_MAX || M > (size_t)INT32_MAX || D > (size_t)INT32_MAX ||
        R > SIZE_MAX / sizeof(float) / D)
        return dm_fail(err, "content write: %zu rows x %zu is too large", R, D);
    /* (R,D) normalised rows, (M,D) weighted sums, (M) masses */
    size_t n = R * D + M * D + M;
    float *buf = dm_alloc(n * sizeof(float));
    if (!buf) return dm_fail(err, "content write: out of memory (%zu floats)", n);
    float *rows = buf, *target = rows + R * D, *mass = target + M * D;
    memset(mass, 0, M * sizeof(float));
    for (size_t r = 0; r < R; r++)
        for (size_t i = 0; i < M; i++) mass[i] += weights[r * M + i];
    for (size_t i = 0; i < M; i++) mass[i] /= (float)R;
    for (int k = 0; k < 2; k++) {
        normalized_rows(rows, k == 0 ? new_keys : new_values, R, D);
        /* target = W^T rows: (M,R) x (R,D) */
        dm_sgemm('T', 'N', M, D, R, 1.0f, weights, M, rows, D, 0.0f, target, D);
        pull_slots(k == 0 ? keys : values, mass, target, M, D, R, s);
    }
    dm_free(buf);
    return 0;
}

/* No parameters and no activations of its own. */
static int content_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                         dm_error *err)
{
    (void)p, (void)B, (void)T, (void)params, (void)acts, (void)err;
    return 0;
}

const dm_part_ops dm_content_part = {.kind = "content",
                                     .role = DM_ROLE_POLICY,
                                     .sizes = content_sizes,
                                     .memory_write = content_write};
