/* layers.c: the stateless layers of nn.h and the memory read of memory.h
 * as parts (part.h): embedding, linear (+ optional GELU), GELU, dropout
 * and the memory read. The controller and the dm.nn modules run these same
 * parts. Each is a thin adapter: it names its tensors, sizes its
 * activations by rows (N = B*T) and calls the kernels, so the math lives in
 * one place (nn.c, memory.c) whether a controller or a dm.nn module runs
 * it. */
#include "core/part.h"

#include <inttypes.h>
#include <string.h>

#include "core/memory.h"
#include "core/nn.h"
#include "core/vmath.h"

static size_t rows(const dm_part_run *r) { return r->B * r->T; }

static int check_positive(const dm_part *p, dm_error *err)
{
    if (p->cfg.in == 0 || p->cfg.out == 0)
        return dm_fail(err, "%s: sizes must be >= 1 (in %zu, out %zu)", p->name, p->cfg.in,
                       p->cfg.out);
    return 0;
}

/* ---- embedding: out[i] = weight[tokens[i]]; in is unused ------------------ */

/* cfg.p > 0 is embedding dropout (AWD-LSTM's): in training a whole row of
 * the weight, one word type, is dropped for the batch with probability p
 * and the others scaled by 1/(1-p), so a word is dropped at every place it
 * occurs. The row mask (V) is an activation. */
static int embedding_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                           dm_error *err)
{
    if (check_positive(p, err) != 0) return -1;
    if (!(p->cfg.p >= 0.0 && p->cfg.p < 1.0))
        return dm_fail(err, "%s: embedding dropout must be in [0, 1), got %g", p->name, p->cfg.p);
    if (dm_part_add(p, params, 1, "weight", 2, (int64_t)p->cfg.in, (int64_t)p->cfg.out, 0, err) < 0)
        return -1;
    if (p->cfg.p > 0.0 && dm_part_add(p, acts, 0, "row_mask", 1, (int64_t)p->cfg.in, 0, 0, err) < 0)
        return -1;
    return 0;
}

/* The row mask of this forward, or NULL when no row is dropped. */
static const float *embedding_row_mask(const dm_part *p, const dm_part_run *r)
{
    return r->training && p->cfg.p > 0.0 ? dm_part_act(p, r->acts, 0) : NULL;
}

static void embedding_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    dm_init_normal(dm_part_param(p, params, 0), p->cfg.in * p->cfg.out, DM_INIT_EMBEDDING_STD, rng);
}

static int embedding_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                             dm_error *err)
{
    if (dm_embedding_forward(out, r->tokens, dm_part_param(p, r->params, 0), rows(r), p->cfg.in,
                             p->cfg.out, err) != 0)
        return -1;
    if (r->training && p->cfg.p > 0.0) {
        float *m = dm_part_act(p, r->acts, 0);
        dm_dropout_mask(m, 1, 1, p->cfg.in, (float)p->cfg.p, 0, r->rng);
        const size_t E = p->cfg.out;
        for (size_t i = 0; i < rows(r); i++)
            for (size_t e = 0; e < E; e++) out[i * E + e] *= m[r->tokens[i]];
    }
    return 0;
}

static int embedding_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                              const float *in, const float *out, dm_error *err)
{
    float *g = dm_part_grad(p, r->grads, 0);
    const float *m = embedding_row_mask(p, r);
    if (g && !m) dm_embedding_backward(g, dout, r->tokens, rows(r), p->cfg.out);
    if (g && m) {
        const size_t E = p->cfg.out;
        for (size_t i = 0; i < rows(r); i++) {
            const float k = m[r->tokens[i]];
            if (k == 0.0f) continue;
            float *gr = g + (size_t)r->tokens[i] * E;
            for (size_t e = 0; e < E; e++) gr[e] += dout[i * E + e] * k;
        }
    }
    return 0;
}

const dm_part_ops dm_embedding_part = {
    .kind = "embedding", .role = DM_ROLE_LAYER, .sizes = embedding_sizes,
    .init = embedding_init, .forward = embedding_forward, .backward = embedding_backward};

/* ---- linear: out = act(in @ weight^T + bias) ------------------------------ */

enum { LIN_PRE, LIN_DPRE }; /* activations, with act = GELU only */

/* A tied linear (cfg.tied) has no weight entry of its own: its weight and
 * its gradient are those of the named entry (Press & Wolf's tied output
 * layer reads the embedding), so the embedding's backward and this one
 * both add into the one gradient. Its bias is then its entry 0. */
static float *lin_weight(const dm_part *p, const dm_arena *params)
{
    return p->cfg.tied ? dm_arena_ptr(params, dm_arena_find(params, p->cfg.tied))
                       : dm_part_param(p, params, 0);
}
static float *lin_weight_grad(const dm_part *p, const dm_arena *grads)
{
    if (!p->cfg.tied) return dm_part_grad(p, grads, 0);
    const int i = dm_arena_find(grads, p->cfg.tied);
    return grads->entries[i].flags & (DM_ENTRY_FROZEN | DM_ENTRY_BUFFER) ? NULL : dm_arena_ptr(grads, i);
}
static int lin_bias_index(const dm_part *p) { return p->cfg.tied ? 0 : 1; }

static int linear_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                        dm_error *err)
{
    if (check_positive(p, err) != 0) return -1;
    const int64_t in = (int64_t)p->cfg.in, out = (int64_t)p->cfg.out, n = (int64_t)(B * T);
    if (p->cfg.tied && params) {
        const int i = dm_arena_find(params, p->cfg.tied);
        if (i < 0 || params->entries[i].numel != (size_t)(in * out))
            return dm_fail(err, "%s: the tied weight %s must be laid out before it, as (%" PRId64
                                ",%" PRId64 ")", p->name, p->cfg.tied, out, in);
    }
    if ((!p->cfg.tied && dm_part_add(p, params, 1, "weight", 2, out, in, 0, err) < 0) ||
        (!p->cfg.no_bias && dm_part_add(p, params, 1, "bias", 1, out, 0, 0, err) < 0))
        return -1;
    if (p->cfg.act == DM_PART_ACT_GELU &&
        (dm_part_add(p, acts, 0, "pre", 2, n, out, 0, err) < 0 ||
         (!p->cfg.loss_grad && dm_part_add(p, acts, 0, "d_pre", 2, n, out, 0, err) < 0)))
        return -1;
    return 0;
}

static void linear_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    const size_t in = p->cfg.in, out = p->cfg.out;
    /* a tied weight is drawn by its owner */
    float *w = p->cfg.tied ? NULL : dm_part_param(p, params, 0);
    float *b = p->cfg.no_bias ? NULL : dm_part_param(p, params, lin_bias_index(p));
    if (p->cfg.init == DM_PART_INIT_DEFAULT) {
        if (w) dm_init_uniform(w, out * in, dm_init_default_bound(in), rng);
        if (b) dm_init_uniform(b, out, dm_init_default_bound(in), rng);
    } else {
        if (w) dm_init_uniform(w, out * in, dm_init_kaiming_bound(in), rng);
        if (b) dm_init_fill(b, out, 0.0f);
    }
}

static int linear_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                          dm_error *err)
{
    const size_t n = rows(r), C = p->cfg.in, OC = p->cfg.out;
    const int gelu = p->cfg.act == DM_PART_ACT_GELU;
    float *pre = gelu ? dm_part_act(p, r->acts, LIN_PRE) : out;
    dm_linear_forward(pre, in, lin_weight(p, r->params),
                      p->cfg.no_bias ? NULL : dm_part_param(p, r->params, lin_bias_index(p)), n, C,
                      OC);
    if (gelu) dm_gelu_forward(out, pre, n * OC);
    return 0;
}

void dm_linear_part_backward_pre(dm_part *p, const dm_part_run *r, const float *dpre,
                                 float *din, const float *in)
{
    dm_linear_backward(din, lin_weight_grad(p, r->grads),
                       p->cfg.no_bias ? NULL : dm_part_grad(p, r->grads, lin_bias_index(p)), dpre,
                       in, lin_weight(p, r->params), rows(r), p->cfg.in, p->cfg.out);
}

float *dm_linear_part_pre(const dm_part *p, const dm_arena *acts)
{
    return p->cfg.act == DM_PART_ACT_GELU ? dm_part_act(p, acts, LIN_PRE) : NULL;
}

static int linear_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                           const float *in, const float *out, dm_error *err)
{
    const size_t n = rows(r), OC = p->cfg.out;
    if (p->cfg.act != DM_PART_ACT_GELU) {
        dm_linear_part_backward_pre(p, r, dout, din, in);
        return 0;
    }
    /* Overwritten rather than zeroed and added into: one pass. The output
     * layer keeps no d_pre between steps (its loss gradient is formed over
     * pre); a gradient handed from outside gets a buffer for this call. */
    float *d = p->cfg.loss_grad ? dm_alloc(n * OC * sizeof *d) : dm_part_act(p, r->acts, LIN_DPRE);
    if (!d) return dm_fail(err, "%s: out of memory for the gradient (%zu floats)", p->name, n * OC);
    dm_vgelu_backward(d, dout, dm_part_act(p, r->acts, LIN_PRE), n * OC, 0);
    dm_linear_part_backward_pre(p, r, d, din, in);
    if (p->cfg.loss_grad) dm_free(d);
    return 0;
}

const dm_part_ops dm_linear_part = {
    .kind = "linear", .role = DM_ROLE_LAYER, .sizes = linear_sizes, .init = linear_init,
    .forward = linear_forward, .backward = linear_backward};

/* ---- GELU on its own; cfg.in = cfg.out = width --------------------------- */

static int gelu_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                      dm_error *err)
{
    return check_positive(p, err);
}

static int gelu_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                        dm_error *err)
{
    dm_gelu_forward(out, in, rows(r) * p->cfg.out);
    return 0;
}

static int gelu_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                         const float *in, const float *out, dm_error *err)
{
    if (din) dm_gelu_backward(din, dout, in, rows(r) * p->cfg.out);
    return 0;
}

const dm_part_ops dm_gelu_part = {
    .kind = "gelu", .role = DM_ROLE_LAYER, .sizes = gelu_sizes, .forward = gelu_forward,
    .backward = gelu_backward};

/* ---- dropout (inverted); cfg.in = cfg.out = width, cfg.p in [0, 1] (1 drops
 * everything) --------------------------------------------------------------- */

static int dropout_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                         dm_error *err)
{
    if (check_positive(p, err) != 0) return -1;
    if (!(p->cfg.p >= 0.0 && p->cfg.p <= 1.0))
        return dm_fail(err, "%s: p must be in [0, 1], got %g", p->name, p->cfg.p);
    return dm_part_add(p, acts, 0, "mask", 2, (int64_t)(B * T), (int64_t)p->cfg.out, 0, err) < 0
               ? -1
               : 0;
}

static int dropout_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                           dm_error *err)
{
    const size_t n = rows(r) * p->cfg.out;
    float *mask = dm_part_act(p, r->acts, 0);
    if (r->training && r->dropout_keep) {
        /* PyTorch's replay of a recorded mask: in * (keep * (1/(1-p))), the
         * product in float. */
        const float scale = p->cfg.p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p->cfg.p));
        for (size_t i = 0; i < n; i++) {
            mask[i] = r->dropout_keep[i] * scale;
            out[i] = in[i] * mask[i];
        }
    } else if (r->training && p->cfg.variational && p->cfg.p > 0.0) {
        dm_dropout_mask(mask, r->B, r->T, p->cfg.out, (float)p->cfg.p, 1, r->rng);
        for (size_t i = 0; i < n; i++) out[i] = in[i] * mask[i];
    } else {
        dm_dropout_forward(out, mask, in, n, (float)p->cfg.p, r->training, r->rng);
    }
    return 0;
}

static int dropout_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                            const float *in, const float *out, dm_error *err)
{
    if (din) dm_dropout_backward(din, dout, dm_part_act(p, r->acts, 0), rows(r) * p->cfg.out);
    return 0;
}

const dm_part_ops dm_dropout_part = {
    .kind = "dropout", .role = DM_ROLE_LAYER, .sizes = dropout_sizes,
    .forward = dropout_forward, .backward = dropout_backward};

/* ---- memory read: out = softmax(in keys^T) values; cfg.in = cfg.out = D,
 * cfg.slots = M. Usage counts add one per distinct argmax slot per forward.
 * cfg.frozen is the ablation's "no memory": the part passes its input
 * through (out = in), reads nothing, counts nothing, and the memory's
 * tensors stay in the arena (untrained) so checkpoints keep one layout. */

enum { MEM_KEYS, MEM_VALUES, MEM_USAGE };
enum { MEM_WEIGHTS, MEM_ARGMAX, MEM_USAGE_SCRATCH, MEM_SCRATCH };

static int memory_sizes(dm_part *p, size_t B, size_t T, dm_arena *params, dm_arena *acts,
                        dm_error *err)
{
    if (check_positive(p, err) != 0 || (p->cfg.slots == 0 && dm_fail(err, "%s: slots must be >= 1", p->name)))
        return -1;
    const int64_t M = (int64_t)p->cfg.slots, D = (int64_t)p->cfg.out, n = (int64_t)(B * T);
    if (dm_part_add(p, params, 1, "keys", 2, M, D, 0, err) < 0 ||
        dm_part_add(p, params, 1, "values", 2, M, D, 0, err) < 0 ||
        dm_part_add(p, params, 1, "usage_counts", 1, M, 0, DM_ENTRY_BUFFER, err) < 0)
        return -1;
    /* argmax and the usage scratch are int32, one float-sized cell each */
    if (dm_part_add(p, acts, 0, "weights", 2, n, M, 0, err) < 0 ||
        dm_part_add(p, acts, 0, "argmax", 1, n, 0, 0, err) < 0 ||
        dm_part_add(p, acts, 0, "usage_scratch", 1, M, 0, 0, err) < 0 ||
        dm_part_add(p, acts, 0, "scratch", 2, n, M, 0, err) < 0)
        return -1;
    return 0;
}

static void memory_init(dm_part *p, dm_arena *params, dm_rng *rng)
{
    dm_memory_init_params(dm_part_param(p, params, MEM_KEYS), dm_part_param(p, params, MEM_VALUES),
                          p->cfg.slots, p->cfg.out, rng);
    dm_init_fill(dm_part_param(p, params, MEM_USAGE), p->cfg.slots, 1.0f);
}

static int memory_forward(dm_part *p, const dm_part_run *r, const float *in, float *out,
                          dm_error *err)
{
    const size_t n = rows(r), M = p->cfg.slots, D = p->cfg.out;
    float *weights = dm_part_act(p, r->acts, MEM_WEIGHTS);
    int32_t *argmax = (int32_t *)dm_part_act(p, r->acts, MEM_ARGMAX);
    if (p->cfg.frozen) {
        memcpy(out, in, n * D * sizeof *out);
        memset(weights, 0, n * M * sizeof *weights);
        memset(argmax, 0, n * sizeof *argmax);
        return 0;
    }
    dm_memory_read_forward(out, weights, argmax, in, dm_part_param(p, r->params, MEM_KEYS),
                           dm_part_param(p, r->params, MEM_VALUES), n, M, D);
    dm_memory_usage_update(dm_part_param(p, r->params, MEM_USAGE), argmax, n, M,
                           (int32_t *)dm_part_act(p, r->acts, MEM_USAGE_SCRATCH));
    return 0;
}

static int memory_backward(dm_part *p, const dm_part_run *r, const float *dout, float *din,
                           const float *in, const float *out, dm_error *err)
{
    const size_t n = rows(r), M = p->cfg.slots, D = p->cfg.out;
    if (p->cfg.frozen) {
        if (din)
            for (size_t i = 0; i < n * D; i++) din[i] += dout[i];
        return 0;
    }
    dm_memory_read_backward(din, dm_part_grad(p, r->grads, MEM_KEYS),
                            dm_part_grad(p, r->grads, MEM_VALUES), dout,
                            dm_part_act(p, r->acts, MEM_WEIGHTS), in,
                            dm_part_param(p, r->params, MEM_KEYS),
                            dm_part_param(p, r->params, MEM_VALUES), n, M, D,
                            dm_part_act(p, r->acts, MEM_SCRATCH));
    return 0;
}

int dm_memory_part_write(const dm_part *p, dm_arena *params, const float *qt, const float *vt,
                         size_t R, float s, dm_error *err)
{
    if (p->cfg.frozen) return 0; /* nothing reads the memory */
    return dm_memory_write(dm_part_param(p, params, MEM_KEYS), dm_part_param(p, params, MEM_VALUES),
                           qt, vt, R, p->cfg.slots, p->cfg.out, s, err);
}

const dm_part_ops dm_memory_read_part = {
    .kind = "memory_read", .role = DM_ROLE_LAYER, .sizes = memory_sizes, .init = memory_init,
    .forward = memory_forward, .backward = memory_backward};
