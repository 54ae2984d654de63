/* controller.c: DRLMemNet composed of the layers (controller.h).
 *
 * The forward keeps every activation the backward and the memory write
 * need in one activation arena laid out for cap_B x cap_T rows; a smaller
 * batch uses the first B*T rows of each buffer (each buffer is contiguous
 * (B,T,...) from its start), a larger one regrows the arena once. Backward
 * walks the same chain in reverse with per-stage gradient buffers that are
 * zeroed and then accumulated into, since every layer's backward adds. */
#include "core/controller.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/memory.h"
#include "core/nn.h"
#include "core/vmath.h"

/* Activation arena entries, in layout order. */
enum {
    A_EMB,      /* (N,E) */
    A_QPRE,     /* (N,D) fc_query output before GELU */
    A_QUERY,    /* (N,D) */
    A_WEIGHTS,  /* (N,M) attention softmax */
    A_MEMOUT,   /* (N,D) */
    A_GRUCACHE, /* gru cache */
    A_RNNOUT,   /* (N,H) */
    A_FC1PRE,   /* (N,H) */
    A_FC1ACT,   /* (N,H) */
    A_MASK,     /* (N,H) dropout multipliers: 0 or 1/(1-p) */
    A_HIDDEN,   /* (N,H) */
    A_OUTPRE,   /* (N,V) fc_output before the output GELU (= logits for "none") */
    A_LOGITS,   /* (N,V) (gelu only; 16 floats otherwise) */
    A_DOUTPRE,  /* (N,V) backward */
    A_DH1,      /* (N,H) backward, two ping-pong buffers */
    A_DH2,      /* (N,H) */
    A_DMEMOUT,  /* (N,D) */
    A_DQUERY,   /* (N,D) */
    A_DQPRE,    /* (N,D) */
    A_DEMB,     /* (N,E) */
    A_GRUSCR,   /* gru backward scratch */
    A_MEMSCR,   /* (N,M) memory backward scratch */
    A_QM,       /* (N,D) write */
    A_VM,       /* (N,D) write */
    A_QT,       /* (B,D) write */
    A_VT,       /* (B,D) write */
    A_EPIOUT,   /* (N,H) reinforce: h + gate * episodic read, fc1's input */
    A_DEPI,     /* (N,H) reinforce: gradient w.r.t. the GRU output */
    A_COUNT
};

static const char *act_names[A_COUNT] = {
    "embedded", "fc_query_pre", "query", "mem_weights", "mem_out", "gru_cache", "rnn_out",
    "fc1_pre", "fc1_act", "dropout_mask", "hidden", "fc_output_pre", "logits", "d_fc_output_pre",
    "d_h1", "d_h2", "d_mem_out", "d_query", "d_fc_query_pre", "d_embedded", "gru_scratch",
    "mem_scratch", "write_qm", "write_vm", "write_qm_mean", "write_vm_mean", "episodic_out",
    "d_episodic_in"};

static float *P(const dm_controller *c, int i) { return dm_arena_ptr(&c->params, i); }
static float *G(const dm_controller *c, int i) { return dm_arena_ptr(&c->grads, i); }
static float *A(const dm_controller *c, int i) { return dm_arena_ptr(&c->acts, i); }

dm_controller_config dm_controller_config_default(int64_t vocab_size)
{
    dm_controller_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = vocab_size;
    cfg.embedding_dim = 128;
    cfg.memory_embedding_dim = 128;
    cfg.memory_size = 512;
    cfg.hidden_size = 256;
    cfg.num_layers = 2;
    cfg.dropout = 0.3;
    cfg.output_activation = DM_OUTPUT_GELU;
    cfg.write_policy = DM_WRITE_POLICY_SEED;
    cfg.episodic_slots = 16;
    cfg.policy_bias_init = -2.0;
    cfg.rl = dm_reinforce_config_default();
    cfg.write_actions = DM_WRITE_ACTIONS_POLICY;
    cfg.random_write_rate = 0.1;
    return cfg;
}

const char *dm_output_act_name(dm_output_act a) { return a == DM_OUTPUT_NONE ? "none" : "gelu"; }

int dm_output_act_parse(const char *s, dm_output_act *out, dm_error *err)
{
    if (s && strcmp(s, "gelu") == 0) {
        *out = DM_OUTPUT_GELU;
        return 0;
    }
    if (s && strcmp(s, "none") == 0) {
        *out = DM_OUTPUT_NONE;
        return 0;
    }
    return dm_fail(err, "Controller: output_activation must be \"gelu\" or \"none\", got \"%s\"",
                   s ? s : "(null)");
}

int dm_controller_config_check(dm_controller_config *cfg, dm_error *err)
{
    /* Each size is bounded well below what int (BLAS) and int32 ids take. */
    const int64_t big = (int64_t)1 << 30;
    struct { const char *name; int64_t v; } f[] = {
        {"vocab_size", cfg->vocab_size},   {"embedding_dim", cfg->embedding_dim},
        {"memory_size", cfg->memory_size}, {"hidden_size", cfg->hidden_size},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v < 1 || f[i].v > big)
            return dm_fail(err, "Controller: %s must be in 1..%" PRId64 ", got %" PRId64, f[i].name,
                           big, f[i].v);
    }
    if (cfg->memory_embedding_dim == 0) cfg->memory_embedding_dim = cfg->embedding_dim;
    if (cfg->memory_embedding_dim < 1 || cfg->memory_embedding_dim > big)
        return dm_fail(err, "Controller: memory_embedding_dim must be in 1..%" PRId64 ", got %" PRId64,
                       big, cfg->memory_embedding_dim);
    if (cfg->num_layers < 1 || cfg->num_layers > DM_GRU_MAX_LAYERS)
        return dm_fail(err, "Controller: num_layers must be in 1..%d, got %" PRId64,
                       DM_GRU_MAX_LAYERS, cfg->num_layers);
    if (!(cfg->dropout >= 0.0 && cfg->dropout < 1.0))
        return dm_fail(err, "Controller: dropout must be in [0, 1), got %g", cfg->dropout);
    if (cfg->output_activation != DM_OUTPUT_GELU && cfg->output_activation != DM_OUTPUT_NONE)
        return dm_fail(err, "Controller: output_activation must be gelu or none, got %d",
                       (int)cfg->output_activation);
    if (cfg->no_memory != 0 && cfg->no_memory != 1)
        return dm_fail(err, "Controller: no_memory must be 0 or 1, got %d", cfg->no_memory);
    if (cfg->write_policy != DM_WRITE_POLICY_SEED && cfg->write_policy != DM_WRITE_POLICY_REINFORCE)
        return dm_fail(err, "Controller: write_policy must be seed or reinforce, got %d",
                       (int)cfg->write_policy);
    if (cfg->write_policy == DM_WRITE_POLICY_REINFORCE) {
        if (cfg->episodic_slots == 0) cfg->episodic_slots = 16;
        if (cfg->episodic_slots < 1 || cfg->episodic_slots > big)
            return dm_fail(err, "Controller: episodic_slots must be in 1..%" PRId64 ", got %" PRId64,
                           big, cfg->episodic_slots);
        if (!isfinite(cfg->policy_bias_init))
            return dm_fail(err, "Controller: policy_bias_init must be finite, got %g",
                           cfg->policy_bias_init);
        if ((int)cfg->write_actions < 0 || (int)cfg->write_actions > 2)
            return dm_fail(err, "Controller: write_actions must be policy, always or random, got %d",
                           (int)cfg->write_actions);
        if (!(cfg->random_write_rate >= 0.0 && cfg->random_write_rate <= 1.0))
            return dm_fail(err, "Controller: random_write_rate must be in [0, 1], got %g",
                           cfg->random_write_rate);
        if (dm_reinforce_config_check(&cfg->rl, err) != 0) return -1;
    }
    return 0;
}

static int add(dm_arena *a, const char *name, int64_t d0, int64_t d1, dm_error *err)
{
    int64_t shape[2] = {d0, d1};
    return dm_arena_add(a, name, d1 > 0 ? 2 : 1, shape, err);
}

/* Lays out the parameter arena in torch's state_dict order. */
static int layout_params(dm_controller *c, dm_error *err)
{
    dm_controller_index *x = &c->ix;
    int64_t V = (int64_t)c->V, E = (int64_t)c->E, D = (int64_t)c->D, M = (int64_t)c->M,
            H = (int64_t)c->H;
    dm_arena *a = &c->params;
    char nm[DM_ARENA_NAME_MAX];
    if ((x->keys = add(a, "memory.keys", M, D, err)) < 0) return -1;
    if ((x->values = add(a, "memory.values", M, D, err)) < 0) return -1;
    if ((x->usage = add(a, "memory.usage_counts", M, 0, err)) < 0) return -1;
    if ((x->emb = add(a, "embedding.weight", V, E, err)) < 0) return -1;
    if ((x->fcq_w = add(a, "fc_query.weight", D, E, err)) < 0) return -1;
    if ((x->fcq_b = add(a, "fc_query.bias", D, 0, err)) < 0) return -1;
    for (size_t l = 0; l < c->L; l++) {
        int64_t in = l == 0 ? D : H;
        snprintf(nm, sizeof nm, "rnn.weight_ih_l%zu", l);
        if ((x->w_ih[l] = add(a, nm, 3 * H, in, err)) < 0) return -1;
        snprintf(nm, sizeof nm, "rnn.weight_hh_l%zu", l);
        if ((x->w_hh[l] = add(a, nm, 3 * H, H, err)) < 0) return -1;
        snprintf(nm, sizeof nm, "rnn.bias_ih_l%zu", l);
        if ((x->b_ih[l] = add(a, nm, 3 * H, 0, err)) < 0) return -1;
        snprintf(nm, sizeof nm, "rnn.bias_hh_l%zu", l);
        if ((x->b_hh[l] = add(a, nm, 3 * H, 0, err)) < 0) return -1;
    }
    if ((x->fc1_w = add(a, "fc1.weight", H, H, err)) < 0) return -1;
    if ((x->fc1_b = add(a, "fc1.bias", H, 0, err)) < 0) return -1;
    if ((x->fco_w = add(a, "fc_output.weight", V, H, err)) < 0) return -1;
    if ((x->fco_b = add(a, "fc_output.bias", V, 0, err)) < 0) return -1;
    if ((x->fcqm_w = add(a, "fc_query_memory.weight", D, D, err)) < 0) return -1;
    if ((x->fcqm_b = add(a, "fc_query_memory.bias", D, 0, err)) < 0) return -1;
    if ((x->fcvm_w = add(a, "fc_value_memory.weight", D, V, err)) < 0) return -1;
    if ((x->fcvm_b = add(a, "fc_value_memory.bias", D, 0, err)) < 0) return -1;
    for (int i = 0; i < DM_WP_NPARAMS; i++) x->wp[i] = -1;
    if (c->reinforce) {
        /* After every seed entry, so the seed's layout is unchanged. */
        for (int i = 0; i < DM_WP_NPARAMS; i++) {
            int64_t shape[2];
            int nd = dm_wp_shape(c->H, c->D, i, shape);
            if ((x->wp[i] = dm_arena_add(a, dm_wp_names[i], nd, shape, err)) < 0) return -1;
        }
    }
    return 0;
}

static void init_params(dm_controller *c, dm_rng *r)
{
    const dm_controller_index *x = &c->ix;
    size_t V = c->V, E = c->E, D = c->D, M = c->M, H = c->H;
    dm_memory_init_params(P(c, x->keys), P(c, x->values), M, D, r);
    dm_init_fill(P(c, x->usage), M, 1.0f);
    dm_init_normal(P(c, x->emb), V * E, DM_INIT_EMBEDDING_STD, r);
    dm_init_uniform(P(c, x->fcq_w), D * E, dm_init_kaiming_bound(E), r);
    dm_init_fill(P(c, x->fcq_b), D, 0.0f);
    float gb = dm_init_default_bound(H);
    for (size_t l = 0; l < c->L; l++) {
        size_t in = l == 0 ? D : H;
        dm_init_uniform(P(c, x->w_ih[l]), 3 * H * in, gb, r);
        dm_init_uniform(P(c, x->w_hh[l]), 3 * H * H, gb, r);
        dm_init_uniform(P(c, x->b_ih[l]), 3 * H, gb, r);
        dm_init_uniform(P(c, x->b_hh[l]), 3 * H, gb, r);
    }
    dm_init_uniform(P(c, x->fc1_w), H * H, dm_init_kaiming_bound(H), r);
    dm_init_fill(P(c, x->fc1_b), H, 0.0f);
    dm_init_uniform(P(c, x->fco_w), V * H, dm_init_kaiming_bound(H), r);
    dm_init_fill(P(c, x->fco_b), V, 0.0f);
    dm_init_uniform(P(c, x->fcqm_w), D * D, dm_init_default_bound(D), r);
    dm_init_uniform(P(c, x->fcqm_b), D, dm_init_default_bound(D), r);
    dm_init_uniform(P(c, x->fcvm_w), D * V, dm_init_default_bound(V), r);
    dm_init_uniform(P(c, x->fcvm_b), D, dm_init_default_bound(V), r);
    if (c->reinforce) {
        /* Drawn after every seed parameter: the seed's values do not move. */
        dm_wp_tensors wt;
        for (int i = 0; i < DM_WP_NPARAMS; i++) wt.t[i] = P(c, x->wp[i]);
        dm_wp_init_params(&wt, H, D, (float)c->cfg.policy_bias_init, r);
    }
}

int dm_controller_create(dm_controller *c, const dm_controller_config *cfg_in, dm_rng *rng,
                         dm_error *err)
{
    memset(c, 0, sizeof *c);
    dm_controller_config cfg = *cfg_in;
    if (dm_controller_config_check(&cfg, err) != 0) return -1;
    c->cfg = cfg;
    c->V = (size_t)cfg.vocab_size;
    c->E = (size_t)cfg.embedding_dim;
    c->D = (size_t)cfg.memory_embedding_dim;
    c->M = (size_t)cfg.memory_size;
    c->H = (size_t)cfg.hidden_size;
    c->L = (size_t)cfg.num_layers;
    c->training = 1;
    c->rng = &dm_rng_global;
    c->reinforce = cfg.write_policy == DM_WRITE_POLICY_REINFORCE;
    if (c->reinforce) {
        if (dm_writepolicy_init(&c->wp, c->H, c->D, (size_t)cfg.episodic_slots, &cfg.rl, err) != 0)
            return -1;
        c->wp.actions = (int)cfg.write_actions;
        c->wp.random_rate = (float)cfg.random_write_rate;
    }
    dm_arena_init(&c->params);
    dm_arena_init(&c->grads);
    dm_arena_init(&c->acts);
    if (layout_params(c, err) != 0 || dm_arena_alloc(&c->params, err) != 0 ||
        dm_arena_init_like(&c->grads, &c->params, err) != 0)
        goto fail;
    c->usage_scratch = dm_alloc(c->M * sizeof(int32_t));
    if (!c->usage_scratch) {
        dm_fail(err, "Controller: out of memory");
        goto fail;
    }
    init_params(c, rng ? rng : &dm_rng_global);
    return 0;
fail:
    dm_controller_free(c);
    return -1;
}

void dm_controller_free(dm_controller *c)
{
    dm_arena_free(&c->params);
    dm_arena_free(&c->grads);
    dm_arena_free(&c->acts);
    dm_free(c->tokens);
    dm_free(c->argmax);
    dm_free(c->usage_scratch);
    dm_free(c->pending_mask);
    dm_writepolicy_free(&c->wp);
    c->tokens = c->argmax = c->usage_scratch = NULL;
    c->pending_mask = NULL;
    c->cap_B = c->cap_T = 0;
    c->has_forward = 0;
}

void dm_controller_set_rng(dm_controller *c, dm_rng *rng) { c->rng = rng ? rng : &dm_rng_global; }
void dm_controller_train(dm_controller *c) { c->training = 1; }
void dm_controller_eval(dm_controller *c) { c->training = 0; }

static dm_gru_dims gru_dims(const dm_controller *c, size_t B, size_t T)
{
    dm_gru_dims d = {B, T, c->D, c->H, c->L};
    return d;
}

/* Makes the activation arena big enough for (B,T); keeps it when it is. */
static int ensure_acts(dm_controller *c, size_t B, size_t T, dm_error *err)
{
    if (c->acts.data && B <= c->cap_B && T <= c->cap_T) return 0;
    size_t nB = B > c->cap_B ? B : c->cap_B, nT = T > c->cap_T ? T : c->cap_T;
    dm_arena_free(&c->acts);
    dm_free(c->tokens);
    dm_free(c->argmax);
    c->tokens = c->argmax = NULL;
    c->cap_B = c->cap_T = 0;
    c->has_forward = 0;
    dm_arena_init(&c->acts);

    /* Rows reach BLAS as int. */
    if (nB > (size_t)INT32_MAX / nT)
        return dm_fail(err, "Controller.forward: batch %zu x %zu is too large", B, T);
    int64_t n = (int64_t)(nB * nT), dims[2];
    dm_gru_dims gd = gru_dims(c, nB, nT);
    int64_t V = (int64_t)c->V, E = (int64_t)c->E, D = (int64_t)c->D, M = (int64_t)c->M,
            H = (int64_t)c->H;
    int64_t sizes[A_COUNT][2] = {
        [A_EMB] = {n, E},      [A_QPRE] = {n, D},    [A_QUERY] = {n, D},
        [A_WEIGHTS] = {n, M},  [A_MEMOUT] = {n, D},  [A_GRUCACHE] = {(int64_t)dm_gru_cache_numel(&gd), 1},
        [A_RNNOUT] = {n, H},   [A_FC1PRE] = {n, H},  [A_FC1ACT] = {n, H},
        [A_MASK] = {n, H},     [A_HIDDEN] = {n, H},  [A_OUTPRE] = {n, V},
        [A_LOGITS] = {c->cfg.output_activation == DM_OUTPUT_GELU ? n : 1, c->cfg.output_activation == DM_OUTPUT_GELU ? V : 1},
        [A_DOUTPRE] = {n, V},  [A_DH1] = {n, H},     [A_DH2] = {n, H},
        [A_DMEMOUT] = {n, D},  [A_DQUERY] = {n, D},  [A_DQPRE] = {n, D},
        [A_DEMB] = {n, E},     [A_GRUSCR] = {(int64_t)dm_gru_scratch_numel(&gd), 1},
        [A_MEMSCR] = {n, M},   [A_QM] = {n, D},      [A_VM] = {n, D},
        [A_QT] = {(int64_t)nB, D}, [A_VT] = {(int64_t)nB, D},
        [A_EPIOUT] = {c->reinforce ? n : 1, c->reinforce ? H : 1},
        [A_DEPI] = {c->reinforce ? n : 1, c->reinforce ? H : 1},
    };
    for (int i = 0; i < A_COUNT; i++) {
        dims[0] = sizes[i][0];
        dims[1] = sizes[i][1];
        if (dm_arena_add(&c->acts, act_names[i], 2, dims, err) != i) goto fail;
    }
    if (dm_arena_alloc(&c->acts, err) != 0) goto fail;
    c->tokens = dm_alloc((size_t)n * sizeof(int32_t));
    c->argmax = dm_alloc((size_t)n * sizeof(int32_t));
    if (!c->tokens || !c->argmax) {
        dm_fail(err, "Controller.forward: out of memory for a %zu x %zu batch", nB, nT);
        goto fail;
    }
    c->cap_B = nB;
    c->cap_T = nT;
    return 0;
fail:
    dm_arena_free(&c->acts);
    dm_arena_init(&c->acts);
    dm_free(c->tokens);
    dm_free(c->argmax);
    c->tokens = c->argmax = NULL;
    return -1;
}

static void gru_params(const dm_controller *c, dm_gru_params *p)
{
    memset(p, 0, sizeof *p);
    for (size_t l = 0; l < c->L; l++) {
        p->w_ih[l] = P(c, c->ix.w_ih[l]);
        p->w_hh[l] = P(c, c->ix.w_hh[l]);
        p->b_ih[l] = P(c, c->ix.b_ih[l]);
        p->b_hh[l] = P(c, c->ix.b_hh[l]);
    }
}

/* The write policy's parameters (grads != 0: their gradients). */
static void wp_tensors(const dm_controller *c, dm_wp_tensors *wt, int grads)
{
    for (int i = 0; i < DM_WP_NPARAMS; i++)
        wt->t[i] = grads ? G(c, c->ix.wp[i]) : P(c, c->ix.wp[i]);
}

static float dropout_scale(double p) { return p >= 1.0 ? 0.0f : (float)(1.0 / (1.0 - p)); }

int dm_controller_forward(dm_controller *c, const int32_t *tokens, size_t B, size_t T,
                          dm_error *err)
{
    c->has_forward = 0;
    if (B == 0 || T == 0)
        return dm_fail(err, "Controller.forward: tokens must be a non-empty (B,T) batch, got %zux%zu",
                       B, T);
    if (T > SIZE_MAX / B) return dm_fail(err, "Controller.forward: batch %zu x %zu is too large", B, T);
    const size_t N = B * T, V = c->V, E = c->E, D = c->D, M = c->M, H = c->H;
    /* Every id is checked before anything changes, usage counts included. */
    for (size_t i = 0; i < N; i++) {
        if (tokens[i] < 0 || (size_t)tokens[i] >= V)
            return dm_fail(err,
                           "Controller.forward: token id %" PRId32 " at (batch %zu, time %zu) is out "
                           "of range for vocabulary size %zu",
                           tokens[i], i / T + 1, i % T + 1, V);
    }
    int use_pending = c->training && c->pending_mask;
    if (use_pending && (c->pending_B != B || c->pending_T != T))
        return dm_fail(err,
                       "Controller.forward: the injected dropout mask is for a %zux%zu batch, the "
                       "tokens are %zux%zu",
                       c->pending_B, c->pending_T, B, T);
    if (ensure_acts(c, B, T, err) != 0) return -1;
    const dm_controller_index *x = &c->ix;
    memcpy(c->tokens, tokens, N * sizeof(int32_t));

    float *emb = A(c, A_EMB), *qpre = A(c, A_QPRE), *query = A(c, A_QUERY);
    if (dm_embedding_forward(emb, tokens, P(c, x->emb), N, V, E, err) != 0) return -1;
    dm_linear_forward(qpre, emb, P(c, x->fcq_w), P(c, x->fcq_b), N, E, D);
    dm_gelu_forward(query, qpre, N * D);

    /* no_memory: the GRU reads the query itself (the ablation's control). */
    float *memout = c->cfg.no_memory ? query : A(c, A_MEMOUT);
    if (!c->cfg.no_memory) {
        dm_memory_read_forward(memout, A(c, A_WEIGHTS), c->argmax, query, P(c, x->keys),
                               P(c, x->values), N, M, D);
        dm_memory_usage_update(P(c, x->usage), c->argmax, N, M, c->usage_scratch);
    } else {
        memset(A(c, A_WEIGHTS), 0, N * M * sizeof(float));
        memset(c->argmax, 0, N * sizeof(int32_t));
    }

    dm_gru_dims gd = gru_dims(c, B, T);
    dm_gru_params gp;
    gru_params(c, &gp);
    float *rnnout = A(c, A_RNNOUT);
    dm_gru_forward(rnnout, A(c, A_GRUCACHE), memout, &gp, &gd);

    /* reinforce: the episodic read joins the GRU output before fc1; its
     * write decisions draw from c->rng before the dropout mask does. */
    const float *fc1in = rnnout;
    if (c->reinforce) {
        dm_wp_tensors wt;
        wp_tensors(c, &wt, 0);
        if (dm_writepolicy_forward(&c->wp, A(c, A_EPIOUT), rnnout, &wt, B, T, c->training, c->rng,
                                   err) != 0)
            return -1;
        fc1in = A(c, A_EPIOUT);
    }

    float *fc1pre = A(c, A_FC1PRE), *fc1act = A(c, A_FC1ACT), *mask = A(c, A_MASK),
          *hidden = A(c, A_HIDDEN);
    dm_linear_forward(fc1pre, fc1in, P(c, x->fc1_w), P(c, x->fc1_b), N, H, H);
    dm_gelu_forward(fc1act, fc1pre, N * H);
    if (use_pending) {
        /* PyTorch's replay: hidden * (mask * (1/(1-p))), the product in float. */
        float scale = dropout_scale(c->cfg.dropout);
        for (size_t i = 0; i < N * H; i++) {
            mask[i] = c->pending_mask[i] * scale;
            hidden[i] = fc1act[i] * mask[i];
        }
        dm_free(c->pending_mask);
        c->pending_mask = NULL;
    } else {
        dm_dropout_forward(hidden, mask, fc1act, N * H, (float)c->cfg.dropout, c->training, c->rng);
    }

    float *outpre = A(c, A_OUTPRE);
    dm_linear_forward(outpre, hidden, P(c, x->fco_w), P(c, x->fco_b), N, H, V);
    if (c->cfg.output_activation == DM_OUTPUT_GELU) dm_gelu_forward(A(c, A_LOGITS), outpre, N * V);

    c->last_B = B;
    c->last_T = T;
    c->has_forward = 1;
    return 0;
}

const float *dm_controller_logits(const dm_controller *c)
{
    if (!c->has_forward) return NULL;
    return c->cfg.output_activation == DM_OUTPUT_GELU ? A(c, A_LOGITS) : A(c, A_OUTPRE);
}
const float *dm_controller_query(const dm_controller *c)
{
    return c->has_forward ? A(c, A_QUERY) : NULL;
}
const float *dm_controller_attention(const dm_controller *c)
{
    return c->has_forward ? A(c, A_WEIGHTS) : NULL;
}
const int32_t *dm_controller_argmax(const dm_controller *c)
{
    return c->has_forward ? c->argmax : NULL;
}

int dm_controller_backward(dm_controller *c, const float *dlogits, size_t B, size_t T,
                           dm_error *err)
{
    if (!c->has_forward)
        return dm_fail(err, "Controller.backward: no forward to differentiate (call forward first)");
    if (B != c->last_B || T != c->last_T)
        return dm_fail(err,
                       "Controller.backward: dlogits is for a %zux%zu batch, the last forward was "
                       "%zux%zu",
                       B, T, c->last_B, c->last_T);
    const size_t N = B * T, V = c->V, E = c->E, D = c->D, M = c->M, H = c->H;
    const dm_controller_index *x = &c->ix;

    const float *doutpre = dlogits;
    if (c->cfg.output_activation == DM_OUTPUT_GELU) {
        /* Overwritten, not zeroed then accumulated: one pass over N*V. */
        float *d = A(c, A_DOUTPRE);
        dm_vgelu_backward(d, dlogits, A(c, A_OUTPRE), N * V, 0);
        doutpre = d;
    }
    float *dh1 = A(c, A_DH1), *dh2 = A(c, A_DH2);
    /* hidden */
    memset(dh1, 0, N * H * sizeof(float));
    dm_linear_backward(dh1, G(c, x->fco_w), G(c, x->fco_b), doutpre, A(c, A_HIDDEN),
                       P(c, x->fco_w), N, H, V);
    /* fc1_act */
    memset(dh2, 0, N * H * sizeof(float));
    dm_dropout_backward(dh2, dh1, A(c, A_MASK), N * H);
    /* fc1_pre */
    memset(dh1, 0, N * H * sizeof(float));
    dm_gelu_backward(dh1, dh2, A(c, A_FC1PRE), N * H);
    /* rnn_out (reinforce: the episodic output, then back through it) */
    memset(dh2, 0, N * H * sizeof(float));
    dm_linear_backward(dh2, G(c, x->fc1_w), G(c, x->fc1_b), dh1,
                       c->reinforce ? A(c, A_EPIOUT) : A(c, A_RNNOUT), P(c, x->fc1_w), N, H, H);
    if (c->reinforce) {
        dm_wp_tensors wt, wg;
        wp_tensors(c, &wt, 0);
        wp_tensors(c, &wg, 1);
        float *depi = A(c, A_DEPI);
        memset(depi, 0, N * H * sizeof(float));
        if (dm_writepolicy_backward(&c->wp, depi, dh2, A(c, A_RNNOUT), &wt, &wg, err) != 0)
            return -1;
        dh2 = depi;
    }
    /* mem_out */
    float *dmem = A(c, A_DMEMOUT);
    memset(dmem, 0, N * D * sizeof(float));
    dm_gru_dims gd = gru_dims(c, B, T);
    dm_gru_params gp;
    gru_params(c, &gp);
    dm_gru_grads gg;
    memset(&gg, 0, sizeof gg);
    for (size_t l = 0; l < c->L; l++) {
        gg.w_ih[l] = G(c, x->w_ih[l]);
        gg.w_hh[l] = G(c, x->w_hh[l]);
        gg.b_ih[l] = G(c, x->b_ih[l]);
        gg.b_hh[l] = G(c, x->b_hh[l]);
    }
    dm_gru_backward(dmem, &gg, dh2, A(c, A_GRUCACHE),
                    c->cfg.no_memory ? A(c, A_QUERY) : A(c, A_MEMOUT), &gp, &gd, A(c, A_GRUSCR));
    /* query, keys, values (no_memory: the GRU's input was the query) */
    float *dq = dmem;
    if (!c->cfg.no_memory) {
        dq = A(c, A_DQUERY);
        memset(dq, 0, N * D * sizeof(float));
        dm_memory_read_backward(dq, G(c, x->keys), G(c, x->values), dmem, A(c, A_WEIGHTS),
                                A(c, A_QUERY), P(c, x->keys), P(c, x->values), N, M, D,
                                A(c, A_MEMSCR));
    }
    /* fc_query_pre */
    float *dqpre = A(c, A_DQPRE);
    memset(dqpre, 0, N * D * sizeof(float));
    dm_gelu_backward(dqpre, dq, A(c, A_QPRE), N * D);
    /* embedded */
    float *demb = A(c, A_DEMB);
    memset(demb, 0, N * E * sizeof(float));
    dm_linear_backward(demb, G(c, x->fcq_w), G(c, x->fcq_b), dqpre, A(c, A_EMB), P(c, x->fcq_w),
                       N, E, D);
    dm_embedding_backward(G(c, x->emb), demb, c->tokens, N, E);
    return 0;
}

void dm_controller_zero_grad(dm_controller *c) { dm_arena_zero(&c->grads); }

int dm_controller_reinforce(dm_controller *c, const int32_t *targets, int32_t ignore_index,
                            dm_reinforce_stats *stats, dm_error *err)
{
    if (!c->reinforce)
        return dm_fail(err, "Controller.reinforce: write_policy is seed (set write_policy = "
                            "reinforce for the episodic memory and its policy)");
    if (!c->has_forward)
        return dm_fail(err, "Controller.reinforce: no forward (the rewards come from the last "
                            "forward's logits)");
    dm_wp_tensors wg;
    wp_tensors(c, &wg, 1);
    return dm_writepolicy_reinforce(&c->wp, stats, dm_controller_logits(c), targets, c->V,
                                    ignore_index, A(c, A_RNNOUT), &wg, err);
}

int dm_controller_set_write_options(dm_controller *c, int soft, double eta, int sample_eval,
                                    dm_error *err)
{
    if (!c->reinforce)
        return dm_fail(err, "Controller.set_write_options: write_policy is seed");
    if (!(eta >= 0.0 && isfinite(eta)))
        return dm_fail(err, "Controller.set_write_options: eta must be >= 0 and finite, got %g", eta);
    c->wp.mode = soft ? DM_WRITE_SOFT : DM_WRITE_HARD;
    c->wp.rl.eta = (float)eta;
    c->wp.sample_eval = sample_eval != 0;
    return 0;
}

int dm_controller_write_memory(dm_controller *c, float s, dm_error *err)
{
    if (!c->has_forward)
        return dm_fail(err, "Controller.write_memory: no forward yet (the write uses the last "
                            "forward's query and logits)");
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "Controller.write_memory: strength must be in [0, 1], got %g", (double)s);
    if (c->cfg.no_memory) return 0; /* nothing reads the memory */
    const size_t B = c->last_B, T = c->last_T, N = B * T, V = c->V, D = c->D;
    const dm_controller_index *x = &c->ix;
    float *qm = A(c, A_QM), *vm = A(c, A_VM), *qt = A(c, A_QT), *vt = A(c, A_VT);
    dm_linear_forward(qm, A(c, A_QUERY), P(c, x->fcqm_w), P(c, x->fcqm_b), N, D, D);
    dm_gelu_forward(qm, qm, N * D);
    dm_linear_forward(vm, dm_controller_logits(c), P(c, x->fcvm_w), P(c, x->fcvm_b), N, V, D);
    dm_gelu_forward(vm, vm, N * D);
    /* Time means over all T positions, pads included (upstream). */
    for (size_t b = 0; b < B; b++) {
        for (size_t d = 0; d < D; d++) {
            double sq = 0.0, sv = 0.0;
            for (size_t t = 0; t < T; t++) {
                sq += qm[(b * T + t) * D + d];
                sv += vm[(b * T + t) * D + d];
            }
            qt[b * D + d] = (float)(sq / (double)T);
            vt[b * D + d] = (float)(sv / (double)T);
        }
    }
    return dm_memory_write(P(c, x->keys), P(c, x->values), qt, vt, B, c->M, D, s, err);
}

int dm_controller_set_dropout_mask(dm_controller *c, const float *mask, size_t B, size_t T,
                                   dm_error *err)
{
    dm_free(c->pending_mask);
    c->pending_mask = NULL;
    if (!mask) return 0;
    if (B == 0 || T == 0 || T > SIZE_MAX / B || B * T > SIZE_MAX / sizeof(float) / c->H)
        return dm_fail(err, "Controller.set_dropout_mask: bad batch shape %zux%zu", B, T);
    size_t n = B * T * c->H;
    c->pending_mask = dm_alloc(n * sizeof(float));
    if (!c->pending_mask)
        return dm_fail(err, "Controller.set_dropout_mask: out of memory (%zu floats)", n);
    memcpy(c->pending_mask, mask, n * sizeof(float));
    c->pending_B = B;
    c->pending_T = T;
    return 0;
}

int dm_controller_entry_trained(const dm_controller *c, int i)
{
    const dm_controller_index *x = &c->ix;
    if (c->cfg.no_memory && (i == x->keys || i == x->values)) return 0;
    return !(i == x->usage || i == x->fcqm_w || i == x->fcqm_b || i == x->fcvm_w ||
             i == x->fcvm_b);
}

size_t dm_controller_num_params(const dm_controller *c) { return (size_t)c->params.n - 1; }

void dm_controller_param_refs(const dm_controller *c, dm_param_ref *refs)
{
    size_t k = 0;
    for (int i = 0; i < c->params.n; i++) {
        if (i == c->ix.usage) continue;
        refs[k].name = c->params.entries[i].name;
        refs[k].param = P(c, i);
        refs[k].grad = dm_controller_entry_trained(c, i) ? G(c, i) : NULL;
        refs[k].numel = c->params.entries[i].numel;
        k++;
    }
}

size_t dm_controller_param_count(const dm_controller *c)
{
    size_t n = 0;
    for (int i = 0; i < c->params.n; i++)
        if (i != c->ix.usage) n += c->params.entries[i].numel;
    return n;
}
