/* controller.c: DRLMemNet as a composition of parts (controller.h).
 *
 * compose() is the model as data: the only place that knows which parts
 * there are, their sizes and their order. The rest walks the lists: the
 * parameter arena is laid out from each part's size table in state_dict
 * order and initialised in that order (so the rng draws follow the
 * state_dict too); the activation arena holds every part's own
 * activations plus each chain step's output and output gradient, laid out
 * for cap_B x cap_T rows; a smaller batch uses the first B*T rows of each
 * buffer (each is contiguous (B,T,...) from its start), a larger one
 * regrows the arena once. Backward walks the chain in reverse; each step's
 * input gradient is zeroed and then accumulated into, since every part's
 * backward adds. */
#include "core/controller.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory.h"
#include "core/nn.h"
#include "core/writepolicy.h"

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
    strcpy(cfg.cell, "gru");
    cfg.use_memory = 1;
    strcpy(cfg.write_policy, "blend");
    cfg.episodic_slots = 16;
    cfg.policy_bias_init = -2.0;
    cfg.rl = dm_reinforce_config_default();
    cfg.write_actions = DM_WRITE_ACTIONS_POLICY;
    cfg.random_write_rate = 0.1;
    cfg.episodic_scale_init = 5.0;
    cfg.write_every = 2;
    cfg.gumbel_tau = 1.0;
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


#define F(name, type, member, check, flags, doc) \
    {name, type, offsetof(dm_controller_config, member), check, NULL, 0, flags, doc}

static const dm_config_field fields[] = {
    F("vocab_size", DM_FIELD_INT, vocab_size, "[1,inf)", DM_FIELD_REQUIRED | DM_FIELD_DERIVED,
      "vocabulary size V (from the data)"),
    F("embedding_dim", DM_FIELD_INT, embedding_dim, "[1,inf)", DM_FIELD_REQUIRED,
      "token embedding width E"),
    F("memory_embedding_dim", DM_FIELD_INT, memory_embedding_dim, "[1,inf)", DM_FIELD_ZERO_IS_NULL,
      "memory width D (null = embedding_dim)"),
    F("memory_size", DM_FIELD_INT, memory_size, "[1,inf)", DM_FIELD_REQUIRED,
      "number of memory slots M"),
    F("hidden_size", DM_FIELD_INT, hidden_size, "[1,inf)", DM_FIELD_REQUIRED,
      "recurrent cell and fc1 width H"),
    F("num_layers", DM_FIELD_INT, num_layers, "[1,16]", 0, "recurrent cell layers"),
    F("dropout", DM_FIELD_DOUBLE, dropout, "[0,1)", 0, "dropout probability after fc1"),
    F("output_activation", DM_FIELD_ENUM, output_activation, "gelu|none", 0,
      "activation on the logits (gelu as upstream)"),
    {"cell", DM_FIELD_PART, offsetof(dm_controller_config, cell), NULL, NULL, DM_ROLE_CELL,
     DM_FIELD_IF_CHANGED, "the recurrent cell (gru as upstream, or lstm)"},
    F("use_memory", DM_FIELD_BOOL, use_memory, NULL, DM_FIELD_IF_CHANGED,
      "false: the cell reads the query directly, bypassing the learned memory (ablation)"),
    {"write_policy", DM_FIELD_PART, offsetof(dm_controller_config, write_policy), NULL, NULL,
     DM_ROLE_POLICY, DM_FIELD_IF_CHANGED,
     "blend: the upstream model's post-step blend write; content: the post-step write goes to "
     "the slots each token read, in proportion to its attention; reinforce: per-sequence "
     "episodic memory with a write policy trained by REINFORCE (seed: the old name of blend)"},
    F("input_dropout", DM_FIELD_DOUBLE, input_dropout, "[0,1)", DM_FIELD_IF_CHANGED,
      "dropout probability on the embedding output, the recurrent part's input (training only; "
      "Zaremba et al. 2014)"),
    F("layer_dropout", DM_FIELD_DOUBLE, layer_dropout, "[0,1)", DM_FIELD_IF_CHANGED,
      "dropout probability between the recurrent layers, on the input of every layer above the "
      "first (GRU and LSTM; needs num_layers >= 2)"),
    F("output_dropout", DM_FIELD_DOUBLE, output_dropout, "[0,1)", DM_FIELD_IF_CHANGED,
      "dropout probability on the recurrent output, before fc1"),
    F("variational_dropout", DM_FIELD_BOOL, variational_dropout, NULL, DM_FIELD_IF_CHANGED,
      "true: input_dropout, layer_dropout and output_dropout draw one mask per sequence and reuse "
      "it at every time step (variational / locked dropout, AWD-LSTM)"),
    F("embedding_dropout", DM_FIELD_DOUBLE, embedding_dropout, "[0,1)", DM_FIELD_IF_CHANGED,
      "probability of dropping a whole word (a row of the embedding) for a batch, the others "
      "scaled by 1/(1-p) (AWD-LSTM)"),
    F("tie_weights", DM_FIELD_BOOL, tie_weights, NULL, DM_FIELD_IF_CHANGED,
      "true: the output layer's weight is the embedding matrix (Press & Wolf 2017), through a "
      "learned projection tie_proj.weight (hidden_size -> embedding_dim) when the widths differ"),
    F("episodic_slots", DM_FIELD_INT, episodic_slots, "[1,inf)", DM_FIELD_POLICY,
      "reinforce: episodic memory slots per sequence"),
    F("policy_bias_init", DM_FIELD_DOUBLE, policy_bias_init, NULL, DM_FIELD_POLICY,
      "reinforce: initial bias b of p = sigmoid(w.s + b) (-2: writes start rare)"),
    F("policy_gamma", DM_FIELD_FLOAT, rl.gamma, "[0,1]", DM_FIELD_POLICY,
      "reinforce: discount of the reward-to-go within a sequence"),
    F("write_cost", DM_FIELD_FLOAT, rl.write_cost, "[0,inf)", DM_FIELD_POLICY,
      "reinforce: cost subtracted from the reward of each write"),
    F("policy_alpha", DM_FIELD_FLOAT, rl.alpha, "[0,inf)", DM_FIELD_POLICY,
      "reinforce: weight of the policy (REINFORCE) loss"),
    F("baseline_beta", DM_FIELD_FLOAT, rl.beta, "[0,inf)", DM_FIELD_POLICY,
      "reinforce: weight of the baseline's squared error"),
    F("entropy_eta", DM_FIELD_FLOAT, rl.eta, "[0,inf)", DM_FIELD_POLICY,
      "reinforce: weight of the entropy bonus at epoch 0"),
    F("advantage_decay", DM_FIELD_FLOAT, rl.std_decay, "[0,1)", DM_FIELD_POLICY,
      "reinforce: decay of the running advantage scale"),
    F("normalize_advantage", DM_FIELD_BOOL, rl.normalize, NULL, DM_FIELD_POLICY,
      "reinforce: divide advantages by their running standard deviation"),
    F("write_actions", DM_FIELD_ENUM, write_actions, "policy|always|random|uniform|gumbel",
      DM_FIELD_POLICY,
      "reinforce: who decides writes: the policy, every step (always), "
      "Bernoulli(random_write_rate), every write_every-th step (uniform) (ablation controls), or "
      "the policy's logits through a straight-through Gumbel-sigmoid gate trained by the loss "
      "(gumbel, the differentiable control)"),
    F("gumbel_tau", DM_FIELD_DOUBLE, gumbel_tau, "(0,inf)", DM_FIELD_POLICY,
      "reinforce, write_actions gumbel: the gate's temperature tau in "
      "sigmoid((z + logistic noise) / tau)"),
    F("episodic_address", DM_FIELD_ENUM, episodic_address, "state|token", DM_FIELD_POLICY,
      "reinforce: queries and keys project the top cell state (state) or are learned rows of the "
      "step's token (token: the address free of the history the state mixes in)"),
    F("write_every", DM_FIELD_INT, write_every, "[1,inf)", DM_FIELD_POLICY,
      "reinforce, write_actions uniform: write at steps k, 2k, ... (step 0 is <sos>)"),
    F("random_write_rate", DM_FIELD_DOUBLE, random_write_rate, "[0,1]", DM_FIELD_POLICY,
      "reinforce, write_actions random: the write probability"),
    F("episodic_similarity", DM_FIELD_ENUM, episodic_similarity, "dot|cosine", DM_FIELD_POLICY,
      "reinforce: the read's score: dot (q.k / sqrt(Dk)) or cosine (scale * cos(q, k) of "
      "L2-normalised query and key, with a learned sharpness scale)"),
    F("episodic_key", DM_FIELD_ENUM, episodic_key, "state|previous", DM_FIELD_POLICY,
      "reinforce: the key written at step t projects the state of step t, or of step t-1 "
      "(previous: at a value token the key carries the key token before it)"),
    F("episodic_scale_init", DM_FIELD_DOUBLE, episodic_scale_init, "(0,inf)", DM_FIELD_POLICY,
      "reinforce, episodic_similarity cosine: initial sharpness of the read"),
};
#undef F

const dm_config_field *dm_controller_fields(size_t *n)
{
    *n = sizeof fields / sizeof fields[0];
    return fields;
}

/* Canonicalises a kind-name field ("" -> def, an alias -> the kind) and
 * checks it names a registered part of that role. */
static int check_kind(char *name, const char *field, const char *def, dm_part_role role,
                      dm_error *err)
{
    if (name[0] == '\0') strcpy(name, def);
    const dm_part_ops *ops =
        memchr(name, '\0', DM_KIND_NAME_MAX) ? dm_part_find(name, role) : NULL;
    if (!ops) {
        char kinds[128];
        return dm_fail(err, "Controller: %s must be one of %s, got \"%.*s\"", field,
                       dm_part_kinds(role, kinds, sizeof kinds), DM_KIND_NAME_MAX, name);
    }
    snprintf(name, DM_KIND_NAME_MAX, "%s", ops->kind);
    return 0;
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
    const struct { const char *name; double p; } drops[] = {
        {"input_dropout", cfg->input_dropout}, {"layer_dropout", cfg->layer_dropout},
        {"output_dropout", cfg->output_dropout}, {"embedding_dropout", cfg->embedding_dropout}};
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
        if (!(drops[i].p >= 0.0 && drops[i].p < 1.0))
            return dm_fail(err, "Controller: %s must be in [0, 1), got %g", drops[i].name, drops[i].p);
    if (cfg->layer_dropout > 0.0 && cfg->num_layers < 2)
        return dm_fail(err, "Controller: layer_dropout acts between recurrent layers, and num_layers "
                            "is %" PRId64 " (set num_layers >= 2, or use input_dropout/output_dropout)",
                       cfg->num_layers);
    if ((cfg->variational_dropout != 0 && cfg->variational_dropout != 1) ||
        (cfg->tie_weights != 0 && cfg->tie_weights != 1))
        return dm_fail(err, "Controller: variational_dropout and tie_weights must be 0 or 1");
    if (cfg->use_memory != 0 && cfg->use_memory != 1)
        return dm_fail(err, "Controller: use_memory must be 0 or 1, got %d", cfg->use_memory);
    if (check_kind(cfg->write_policy, "write_policy", "blend", DM_ROLE_POLICY, err) != 0 ||
        check_kind(cfg->cell, "cell", "gru", DM_ROLE_CELL, err) != 0)
        return -1;
    if (dm_part_find(cfg->write_policy, DM_ROLE_POLICY) == &dm_reinforce_part) {
        if (cfg->episodic_slots == 0) cfg->episodic_slots = 16;
        if (cfg->episodic_slots < 1 || cfg->episodic_slots > big)
            return dm_fail(err, "Controller: episodic_slots must be in 1..%" PRId64 ", got %" PRId64,
                           big, cfg->episodic_slots);
        if (!isfinite(cfg->policy_bias_init))
            return dm_fail(err, "Controller: policy_bias_init must be finite, got %g",
                           cfg->policy_bias_init);
        if ((int)cfg->write_actions < 0 || (int)cfg->write_actions > 4)
            return dm_fail(err,
                           "Controller: write_actions must be policy, always, random, uniform or "
                           "gumbel, got %d",
                           (int)cfg->write_actions);
        if (!(cfg->gumbel_tau > 0.0 && isfinite(cfg->gumbel_tau)))
            return dm_fail(err, "Controller: gumbel_tau must be > 0 and finite, got %g",
                           cfg->gumbel_tau);
        if ((int)cfg->episodic_address < 0 || (int)cfg->episodic_address > 1)
            return dm_fail(err, "Controller: episodic_address must be state or token, got %d",
                           (int)cfg->episodic_address);
        if (cfg->write_every < 1 || cfg->write_every > big)
            return dm_fail(err, "Controller: write_every must be in 1..%" PRId64 ", got %" PRId64, big,
                           cfg->write_every);
        if (!(cfg->random_write_rate >= 0.0 && cfg->random_write_rate <= 1.0))
            return dm_fail(err, "Controller: random_write_rate must be in [0, 1], got %g",
                           cfg->random_write_rate);
        if (dm_reinforce_config_check(&cfg->rl, err) != 0) return -1;
        if ((int)cfg->episodic_similarity < 0 || (int)cfg->episodic_similarity > 1)
            return dm_fail(err, "Controller: episodic_similarity must be dot or cosine, got %d",
                           (int)cfg->episodic_similarity);
        if ((int)cfg->episodic_key < 0 || (int)cfg->episodic_key > 1)
            return dm_fail(err, "Controller: episodic_key must be state or previous, got %d",
                           (int)cfg->episodic_key);
        if (!(cfg->episodic_scale_init > 0.0 && isfinite(cfg->episodic_scale_init)))
            return dm_fail(err, "Controller: episodic_scale_init must be a finite number > 0, got %g",
                           cfg->episodic_scale_init);
    }
    return 0;
}

/* ---- the model as data ------------------------------------------------------ */

/* Adds a part to c (state_dict order); -1 when the list is full or create fails. */
static int add_part(dm_controller *c, const dm_part_ops *ops, const char *name, dm_part_cfg cfg,
                    dm_error *err)
{
    if (c->nparts == DM_CONTROLLER_MAX_PARTS) return dm_fail(err, "Controller: too many parts");
    if (dm_part_init(&c->parts[c->nparts], ops, name, &cfg, err) != 0) return -1;
    return c->nparts++;
}

static void add_step(dm_controller *c, int part) { c->chain[c->nchain++] = part; }

/* The model. Parts are added in state_dict order (which is also the order
 * their parameters are drawn in); the chain lists the forward's order. */
static int compose(dm_controller *c, dm_error *err)
{
    const dm_controller_config *g = &c->cfg;
    const size_t V = c->V, E = c->E, D = c->D, M = c->M, H = c->H;
    dm_part_cfg memory = {.in = D, .out = D, .slots = M, .frozen = !g->use_memory};
    const int var = g->variational_dropout, tie = g->tie_weights, proj = tie && H != E;
    dm_part_cfg emb = {.in = V, .out = E, .p = g->embedding_dropout};
    dm_part_cfg indrop = {.in = E, .out = E, .p = g->input_dropout, .variational = var};
    dm_part_cfg fcq = {.in = E, .out = D, .act = DM_PART_ACT_GELU};
    dm_part_cfg cell = {.in = D, .out = H, .layers = c->L, .p = g->layer_dropout, .variational = var};
    dm_part_cfg outdrop = {.in = H, .out = H, .p = g->output_dropout, .variational = var};
    dm_part_cfg fc1 = {.in = H, .out = H, .act = DM_PART_ACT_GELU};
    dm_part_cfg drop = {.in = H, .out = H, .p = g->dropout};
    dm_part_cfg tproj = {.in = H, .out = E, .no_bias = 1};
    dm_part_cfg fco = {.in = tie ? E : H, .out = V, .tied = tie ? "embedding.weight" : NULL,
                       .act = g->output_activation == DM_OUTPUT_GELU ? DM_PART_ACT_GELU
                                                                     : DM_PART_ACT_NONE,
                       .loss_grad = 1};
    dm_part_cfg wq = {.in = D, .out = D, .act = DM_PART_ACT_GELU, .init = DM_PART_INIT_DEFAULT,
                      .frozen = 1};
    dm_part_cfg wv = {.in = V, .out = D, .act = DM_PART_ACT_GELU, .init = DM_PART_INIT_DEFAULT,
                      .frozen = 1};
    /* The optional parts exist only when asked for, so the default model's
     * parts, entries and draws are the upstream's. */
    int pm, pe, pi = -1, pq, pc, px = -1, p1, pd, pt = -1, po;
    if ((pm = add_part(c, &dm_memory_read_part, "memory", memory, err)) < 0 ||
        (pe = add_part(c, &dm_embedding_part, "embedding", emb, err)) < 0 ||
        (indrop.p > 0.0 && (pi = add_part(c, &dm_dropout_part, "input_dropout", indrop, err)) < 0) ||
        (pq = add_part(c, &dm_linear_part, "fc_query", fcq, err)) < 0 ||
        (pc = add_part(c, dm_part_find(g->cell, DM_ROLE_CELL), "rnn", cell, err)) < 0 ||
        (outdrop.p > 0.0 && (px = add_part(c, &dm_dropout_part, "output_dropout", outdrop, err)) < 0) ||
        (p1 = add_part(c, &dm_linear_part, "fc1", fc1, err)) < 0 ||
        (pd = add_part(c, &dm_dropout_part, "dropout", drop, err)) < 0 ||
        (proj && (pt = add_part(c, &dm_linear_part, "tie_proj", tproj, err)) < 0) ||
        (po = add_part(c, &dm_linear_part, "fc_output", fco, err)) < 0 ||
        (c->write_q = add_part(c, &dm_linear_part, "fc_query_memory", wq, err)) < 0 ||
        (c->write_v = add_part(c, &dm_linear_part, "fc_value_memory", wv, err)) < 0)
        return -1;
    /* The write policy, after every other part: the blend model's layout
     * and draws stay whatever the policy adds. */
    dm_wp_part_cfg pc_extra = {(size_t)g->memory_embedding_dim, g->rl, (float)g->policy_bias_init,
                               (int)g->write_actions, (float)g->random_write_rate,
                               g->episodic_similarity == DM_EPISODIC_COSINE,
                               g->episodic_key == DM_EPISODIC_KEY_PREVIOUS,
                               (float)g->episodic_scale_init, (size_t)g->write_every,
                               g->episodic_address == DM_EPISODIC_ADDRESS_TOKEN, V,
                               (float)g->gumbel_tau};
    dm_part_cfg wp = {.in = H, .out = H, .slots = (size_t)g->episodic_slots, .extra = &pc_extra};
    if ((c->policy = add_part(c, dm_part_find(g->write_policy, DM_ROLE_POLICY), "", wp, err)) < 0)
        return -1;
    c->memory = pm;
    c->cell = pc;
    c->dropout = pd;
    add_step(c, pe);
    if (pi >= 0) add_step(c, pi);
    add_step(c, pq);
    c->query_step = c->nchain - 1;
    add_step(c, pm);
    add_step(c, pc);
    /* A policy that decides per step runs between the cell and fc1 (on
     * the cell's output before any dropout of it). */
    c->policy_step = -1;
    if (c->parts[c->policy].ops->forward) {
        c->policy_step = c->nchain;
        add_step(c, c->policy);
    }
    if (px >= 0) add_step(c, px);
    add_step(c, p1);
    add_step(c, pd);
    if (pt >= 0) add_step(c, pt);
    add_step(c, po);
    return 0;
}

/* Lays out the parameters of every part, in part order. */
static int layout_params(dm_controller *c, dm_arena *params, dm_error *err)
{
    for (int i = 0; i < c->nparts; i++) {
        dm_part *p = &c->parts[i];
        p->p0 = -1;
        p->np = 0;
        if (p->ops->sizes(p, 1, 1, params, NULL, err) != 0) return -1;
    }
    return 0;
}

/* Lays out the activations for a (B,T) batch: the tokens, every part's
 * own, each chain step's output and output gradient, the write's means
 * and the loss gradient. */
static int layout_acts(dm_controller *c, size_t B, size_t T, dm_arena *acts, dm_error *err)
{
    const int64_t n = (int64_t)(B * T), nb = (int64_t)B, D = (int64_t)c->D, V = (int64_t)c->V;
    const int64_t one[1] = {n};
    if ((c->act_tokens = dm_arena_add(acts, "tokens", 1, one, err)) < 0) return -1;
    for (int i = 0; i < c->nparts; i++) {
        dm_part *p = &c->parts[i];
        p->a0 = -1;
        p->na = 0;
        if (p->ops->sizes(p, B, T, NULL, acts, err) != 0) return -1;
    }
    for (int s = 0; s < c->nchain; s++) {
        dm_part *p = &c->parts[c->chain[s]];
        char nm[DM_ARENA_NAME_MAX];
        int64_t shape[2] = {n, (int64_t)p->cfg.out};
        snprintf(nm, sizeof nm, "%s.out", p->name[0] ? p->name : p->ops->kind);
        if ((c->chain_out[s] = dm_arena_add(acts, nm, 2, shape, err)) < 0) return -1;
        /* The last step's gradient is the loss gradient, given from outside. */
        c->chain_dout[s] = -1;
        if (s + 1 < c->nchain) {
            snprintf(nm, sizeof nm, "%s.d_out", p->name[0] ? p->name : p->ops->kind);
            if ((c->chain_dout[s] = dm_arena_add(acts, nm, 2, shape, err)) < 0) return -1;
        }
    }
    /* The write projections run outside the chain, into their own outputs. */
    const int wr[2] = {c->write_q, c->write_v};
    for (int k = 0; k < 2; k++) {
        char nm[DM_ARENA_NAME_MAX];
        int64_t shape[2] = {n, D};
        snprintf(nm, sizeof nm, "%s.out", c->parts[wr[k]].name);
        if (dm_arena_add(acts, nm, 2, shape, err) < 0) return -1;
    }
    int64_t bd[2] = {nb, D}, nv[2] = {n, V};
    if ((c->act_qt = dm_arena_add(acts, "write.query_mean", 2, bd, err)) < 0 ||
        (c->act_vt = dm_arena_add(acts, "write.value_mean", 2, bd, err)) < 0)
        return -1;
    /* The loss gradient: over the output layer's pre-activations when it
     * has the GELU, else a buffer of its own (the logits stay for the
     * memory write). */
    c->act_dlogits = -1;
    if (c->parts[c->chain[c->nchain - 1]].cfg.act != DM_PART_ACT_GELU &&
        (c->act_dlogits = dm_arena_add(acts, "loss.d_logits", 2, nv, err)) < 0)
        return -1;
    return 0;
}

static void setup_dims(dm_controller *c, const dm_controller_config *cfg)
{
    c->cfg = *cfg;
    c->V = (size_t)cfg->vocab_size;
    c->E = (size_t)cfg->embedding_dim;
    c->D = (size_t)cfg->memory_embedding_dim;
    c->M = (size_t)cfg->memory_size;
    c->H = (size_t)cfg->hidden_size;
    c->L = (size_t)cfg->num_layers;
}

static void free_parts(dm_controller *c)
{
    for (int i = 0; i < c->nparts; i++) dm_part_free(&c->parts[i]);
    c->nparts = c->nchain = 0;
}

int dm_controller_sizes(const dm_controller_config *cfg_in, size_t B, size_t T, dm_arena *params,
                        dm_arena *acts, dm_error *err)
{
    dm_controller_config cfg = *cfg_in;
    if (dm_controller_config_check(&cfg, err) != 0) return -1;
    if (B == 0 || T == 0 || T > (size_t)INT32_MAX / B)
        return dm_fail(err, "Controller.sizes: batch %zu x %zu must be non-empty and fit int32", B, T);
    dm_controller *c = calloc(1, sizeof *c);
    if (!c) return dm_fail(err, "Controller.sizes: out of memory");
    setup_dims(c, &cfg);
    int rc = compose(c, err);
    if (rc == 0 && params) rc = layout_params(c, params, err);
    if (rc == 0 && acts) rc = layout_acts(c, B, T, acts, err);
    free_parts(c);
    free(c);
    return rc;
}

int dm_controller_create(dm_controller *c, const dm_controller_config *cfg_in, dm_rng *rng,
                         dm_error *err)
{
    memset(c, 0, sizeof *c);
    dm_controller_config cfg = *cfg_in;
    if (dm_controller_config_check(&cfg, err) != 0) return -1;
    setup_dims(c, &cfg);
    c->training = 1;
    c->rng = &dm_rng_global;
    dm_arena_init(&c->params);
    dm_arena_init(&c->grads);
    dm_arena_init(&c->acts);
    if (compose(c, err) != 0 || layout_params(c, &c->params, err) != 0 ||
        dm_arena_alloc(&c->params, err) != 0 ||
        dm_arena_init_like(&c->grads, &c->params, err) != 0)
        goto fail;
    dm_rng *r = rng ? rng : &dm_rng_global;
    for (int i = 0; i < c->nparts; i++)
        if (c->parts[i].ops->init) c->parts[i].ops->init(&c->parts[i], &c->params, r);
    return 0;
fail:
    dm_controller_free(c);
    return -1;
}

static void free_acts(dm_controller *c)
{
    if (c->acts_pinned && c->acts.data) {
        float **r = realloc(c->retired, (size_t)(c->nretired + 1) * sizeof *r);
        if (r) {
            /* Keep the block for the views that may still point into it. */
            c->retired = r;
            c->retired[c->nretired++] = c->acts.data;
            c->acts.data = NULL;
        }
    }
    dm_arena_free(&c->acts);
}

void dm_controller_free(dm_controller *c)
{
    free_parts(c);
    dm_arena_free(&c->params);
    dm_arena_free(&c->grads);
    c->acts_pinned = 0;
    dm_arena_free(&c->acts);
    for (int i = 0; i < c->nretired; i++) dm_free(c->retired[i]);
    free(c->retired);
    c->retired = NULL;
    c->nretired = 0;
    dm_free(c->pending_mask);
    c->pending_mask = NULL;
    dm_free(c->state_h);
    dm_free(c->state_c);
    c->state_h = c->state_c = NULL;
    c->state_B = 0;
    dm_free(c->fwd_h);
    dm_free(c->fwd_c);
    c->fwd_h = c->fwd_c = NULL;
    c->fwd_cap = 0;
    c->fwd_state = 0;
    c->cap_B = c->cap_T = 0;
    c->has_forward = c->has_loss = 0;
}

void dm_controller_pin_acts(dm_controller *c) { c->acts_pinned = 1; }

void dm_controller_set_rng(dm_controller *c, dm_rng *rng) { c->rng = rng ? rng : &dm_rng_global; }
void dm_controller_train(dm_controller *c) { c->training = 1; }
void dm_controller_eval(dm_controller *c) { c->training = 0; }
int dm_controller_is_training(const dm_controller *c) { return c->training; }

dm_model_dims dm_controller_dims(const dm_controller *c)
{
    dm_model_dims d = {c->V, c->E, c->D, c->M, c->H, c->L};
    return d;
}

const dm_controller_config *dm_controller_get_config(const dm_controller *c) { return &c->cfg; }

/* Makes the activation arena big enough for (B,T); keeps it when it is. */
static int ensure_acts(dm_controller *c, size_t B, size_t T, dm_error *err)
{
    if (c->acts.data && B <= c->cap_B && T <= c->cap_T) return 0;
    size_t nB = B > c->cap_B ? B : c->cap_B, nT = T > c->cap_T ? T : c->cap_T;
    free_acts(c);
    c->cap_B = c->cap_T = 0;
    c->has_forward = c->has_loss = 0;
    /* Rows reach BLAS as int. */
    if (nB > (size_t)INT32_MAX / nT)
        return dm_fail(err, "Controller.forward: batch %zu x %zu is too large", B, T);
    if (layout_acts(c, nB, nT, &c->acts, err) != 0 || dm_arena_alloc(&c->acts, err) != 0) {
        dm_arena_free(&c->acts);
        return -1;
    }
    c->cap_B = nB;
    c->cap_T = nT;
    return 0;
}

static dm_part_run make_run(dm_controller *c, size_t B, size_t T)
{
    dm_part_run r = {&c->params, &c->grads, &c->acts, B, T, c->training, c->rng,
                     (const int32_t *)A(c, c->act_tokens), NULL, NULL, NULL};
    /* Only the cell reads h0 and c0: the last forward's state. */
    /* Backward, the write and the policy see the mode the forward ran in
     * (whether it drew dropout masks), whatever was switched since. */
    if (c->has_forward) r.training = c->fwd_training;
    if (c->fwd_state) {
        r.h0 = c->fwd_h;
        r.c0 = dm_controller_has_cell_state(c) ? c->fwd_c : NULL;
    }
    return r;
}

int dm_controller_forward(dm_controller *c, const int32_t *tokens, size_t B, size_t T,
                          dm_error *err)
{
    c->has_forward = c->has_loss = 0;
    if (B == 0 || T == 0)
        return dm_fail(err, "Controller.forward: tokens must be a non-empty (B,T) batch, got %zux%zu",
                       B, T);
    if (T > SIZE_MAX / B) return dm_fail(err, "Controller.forward: batch %zu x %zu is too large", B, T);
    const size_t N = B * T, V = c->V;
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
    if (c->state_B && c->state_B != B)
        return dm_fail(err,
                       "Controller.forward: the initial state set is for a batch of %zu, the "
                       "tokens are %zux%zu (set the state again, or clear it)",
                       c->state_B, B, T);
    if (ensure_acts(c, B, T, err) != 0) return -1;
    c->fwd_state = 0;
    if (c->state_B) {
        const size_t n = c->L * B * c->H;
        if (c->fwd_cap < n) {
            dm_free(c->fwd_h);
            dm_free(c->fwd_c);
            c->fwd_h = dm_alloc(n * sizeof(float));
            c->fwd_c = dm_alloc(n * sizeof(float));
            c->fwd_cap = c->fwd_h && c->fwd_c ? n : 0;
            if (!c->fwd_cap) return dm_fail(err, "Controller.forward: out of memory (%zu floats)", n);
        }
        memcpy(c->fwd_h, c->state_h, n * sizeof(float));
        if (c->state_c) memcpy(c->fwd_c, c->state_c, n * sizeof(float));
        c->fwd_state = 1;
    }
    memcpy(A(c, c->act_tokens), tokens, N * sizeof(int32_t));
    dm_part_run r = make_run(c, B, T);
    const float *in = NULL;
    for (int s = 0; s < c->nchain; s++) {
        dm_part *p = &c->parts[c->chain[s]];
        float *out = A(c, c->chain_out[s]);
        /* an injected mask is the dropout after fc1's, the one PyTorch's replay has */
        r.dropout_keep = use_pending && c->chain[s] == c->dropout ? c->pending_mask : NULL;
        if (p->ops->forward(p, &r, in, out, err) != 0) return -1;
        in = out;
    }
    if (use_pending) {
        dm_free(c->pending_mask);
        c->pending_mask = NULL;
    }
    c->last_B = B;
    c->last_T = T;
    c->fwd_training = c->training;
    c->has_forward = 1;
    c->pre_spent = 0;
    return 0;
}

const float *dm_controller_logits(const dm_controller *c)
{
    return c->has_forward ? A(c, c->chain_out[c->nchain - 1]) : NULL;
}
const float *dm_controller_query(const dm_controller *c)
{
    return c->has_forward ? A(c, c->chain_out[c->query_step]) : NULL;
}
/* The memory part's activations 0 and 1 are its weights and argmax (layers.c). */
const float *dm_controller_attention(const dm_controller *c)
{
    return c->has_forward ? dm_part_act(&c->parts[c->memory], &c->acts, 0) : NULL;
}
const int32_t *dm_controller_argmax(const dm_controller *c)
{
    return c->has_forward ? (const int32_t *)dm_part_act(&c->parts[c->memory], &c->acts, 1) : NULL;
}

/* The output layer's pre-activations (GELU on the logits), or NULL. */
static float *output_pre(const dm_controller *c)
{
    return dm_linear_part_pre(&c->parts[c->chain[c->nchain - 1]], &c->acts);
}

/* The chain backward from dout: the logits' gradient, or with from_pre the
 * gradient of the output layer's pre-activations (the fused loss's). */
static int backward_chain(dm_controller *c, const float *dout, int from_pre, dm_error *err)
{
    dm_part_run r = make_run(c, c->last_B, c->last_T);
    const size_t N = c->last_B * c->last_T;
    for (int s = c->nchain - 1; s >= 0; s--) {
        dm_part *p = &c->parts[c->chain[s]];
        float *din = NULL;
        const float *in = NULL;
        if (s > 0) {
            din = A(c, c->chain_dout[s - 1]);
            in = A(c, c->chain_out[s - 1]);
            memset(din, 0, N * c->parts[c->chain[s - 1]].cfg.out * sizeof(float));
        }
        if (from_pre && s == c->nchain - 1)
            dm_linear_part_backward_pre(p, &r, dout, din, in);
        else if (p->ops->backward(p, &r, dout, din, in, A(c, c->chain_out[s]), err) != 0)
            return -1;
        dout = din;
    }
    return 0;
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
    if (c->pre_spent)
        return dm_fail(err, "Controller.backward: net:loss's gradient has replaced this forward's "
                            "output pre-activations; run net:forward again to backpropagate given "
                            "dlogits (or call net:backward() for the loss's gradient)");
    return backward_chain(c, dlogits, 0, err);
}

void dm_controller_zero_grad(dm_controller *c) { dm_arena_zero(&c->grads); }

int dm_controller_last_batch(const dm_controller *c, size_t *B, size_t *T)
{
    if (!c->has_forward) return -1;
    *B = c->last_B;
    *T = c->last_T;
    return 0;
}

void dm_controller_forget_forward(dm_controller *c) { c->has_forward = c->has_loss = 0; }

int dm_controller_loss(dm_controller *c, const int32_t *targets, int32_t ignore_index, float scale,
                       int want_grad, double *loss, size_t *count, dm_error *err)
{
    if (!c->has_forward)
        return dm_fail(err, "Controller.loss: no forward (the loss is of the last forward's logits)");
    const size_t N = c->last_B * c->last_T, V = c->V;
    float l = 0.0f;
    c->has_loss = 0;
    if (!want_grad) {
        if (dm_cross_entropy(&l, count, NULL, dm_controller_logits(c), targets, N, V, ignore_index,
                             scale, err) != 0)
            return -1;
        *loss = l;
        return 0;
    }
    if (c->pre_spent)
        return dm_fail(err, "Controller.loss: a loss gradient of this forward is taken already (it "
                            "replaced the output pre-activations); run net:forward again, or pass "
                            "{grad = false} for the loss alone");
    float *pre = output_pre(c);
    /* With the GELU, the gradient goes over pre; without, into its buffer. */
    if (dm_cross_entropy_pre(&l, count, pre ? pre : A(c, c->act_dlogits), dm_controller_logits(c),
                             pre, targets, N, V, ignore_index, scale, err) != 0)
        return -1;
    *loss = l;
    c->has_loss = 1;
    c->pre_spent = pre != NULL;
    return 0;
}

int dm_controller_backward_loss(dm_controller *c, dm_error *err)
{
    if (!c->has_forward || !c->has_loss)
        return dm_fail(err, "Controller.backward: no loss since the last forward (call "
                            "net:loss(targets) first, or pass dlogits)");
    float *pre = output_pre(c);
    return backward_chain(c, pre ? pre : A(c, c->act_dlogits), 1, err);
}

/* ---- the write policy ------------------------------------------------------------ */

/* The reinforce policy's state, or NULL for another policy. */
static dm_writepolicy *policy_state(const dm_controller *c)
{
    return c->parts[c->policy].ops == &dm_reinforce_part ? c->parts[c->policy].state : NULL;
}

int dm_controller_has_policy(const dm_controller *c) { return c->parts[c->policy].ops->update != NULL; }

int dm_controller_reinforce(dm_controller *c, const int32_t *targets, int32_t ignore_index,
                            dm_reinforce_stats *stats, dm_error *err)
{
    return dm_controller_reinforce_at(c, targets, NULL, ignore_index, stats, err);
}

int dm_controller_reinforce_at(dm_controller *c, const int32_t *targets,
                               const int32_t *reward_targets, int32_t ignore_index,
                               dm_reinforce_stats *stats, dm_error *err)
{
    if (!dm_controller_has_policy(c))
        return dm_fail(err, "Controller.reinforce: write_policy is %s (set write_policy = "
                            "reinforce for the episodic memory and its policy)", c->cfg.write_policy);
    if (!c->has_forward)
        return dm_fail(err, "Controller.reinforce: no forward (the rewards come from the last "
                            "forward's logits)");
    dm_part *p = &c->parts[c->policy];
    dm_part_run r = make_run(c, c->last_B, c->last_T);
    dm_writepolicy *w = policy_state(c);
    if (w) w->reward_targets = reward_targets;
    int rc = p->ops->update(p, &r, A(c, c->chain_out[c->policy_step - 1]), dm_controller_logits(c),
                            c->V, targets, ignore_index, stats, err);
    if (w) w->reward_targets = NULL;
    return rc;
}

int dm_controller_reinforce_empty(dm_controller *c, dm_reinforce_stats *stats, dm_error *err)
{
    dm_writepolicy *w = policy_state(c);
    if (!w)
        return dm_fail(err, "Controller.reinforce: write_policy is %s (set write_policy = "
                            "reinforce for the episodic memory and its policy)", c->cfg.write_policy);
    if (!c->reduce.fn)
        return dm_fail(err, "Controller.reinforce: an empty shard needs a reduce across processes "
                            "(dm_controller_set_reduce)");
    return dm_writepolicy_reinforce_empty(w, stats, err);
}

int dm_controller_set_write_options(dm_controller *c, int soft, double eta, int sample_eval,
                                    dm_error *err)
{
    dm_writepolicy *w = policy_state(c);
    if (!w) return dm_fail(err, "Controller.set_write_options: write_policy is blend");
    if (!(eta >= 0.0 && isfinite(eta)))
        return dm_fail(err, "Controller.set_write_options: eta must be >= 0 and finite, got %g", eta);
    w->mode = soft ? DM_WRITE_SOFT : DM_WRITE_HARD;
    w->rl.eta = (float)eta;
    w->sample_eval = sample_eval != 0;
    return 0;
}

int dm_controller_write_options(const dm_controller *c, int *soft, double *eta, int *sample_eval,
                                dm_error *err)
{
    const dm_writepolicy *w = policy_state(c);
    if (!w) return dm_fail(err, "Controller.write_options: write_policy is blend");
    *soft = w->mode == DM_WRITE_SOFT;
    *eta = w->rl.eta;
    *sample_eval = w->sample_eval;
    return 0;
}

int dm_controller_write_stats(const dm_controller *c, double *slot_usage, double *write_rate)
{
    const dm_writepolicy *w = policy_state(c);
    if (!w || !w->has_forward) return -1;
    *slot_usage = w->slot_usage;
    *write_rate = w->write_rate_all;
    return 0;
}

int dm_controller_write_trace(const dm_controller *c, size_t b, dm_write_trace *tr, dm_error *err)
{
    const dm_writepolicy *w = policy_state(c);
    if (!w)
        return dm_fail(err, "Controller.write_trace: write_policy is %s; the trace is of the "
                            "episodic memory (write_policy = reinforce)", c->cfg.write_policy);
    if (!c->has_forward || !w->has_forward)
        return dm_fail(err, "Controller.write_trace: no forward yet (the trace is of the last "
                            "forward: run net:forward(tokens) first)");
    if (b >= w->B)
        return dm_fail(err, "Controller.write_trace: sequence %zu out of range: the last forward "
                            "had %zu", b + 1, w->B);
    /* The same dims the policy's forward laid its cache out with. */
    dm_episodic_dims d = {w->B, w->T, w->H, w->Dk, w->K, w->cosine, w->key_prev,
                          w->address_token, w->V};
    const size_t T = w->T, K = w->K;
    tr->T = T;
    tr->K = K;
    tr->training = w->training_forward;
    tr->tokens = (const int32_t *)A(c, c->act_tokens) + b * T;
    tr->p_write = w->p + b * T;
    tr->write = w->wr + b * T;
    tr->slot = dm_episodic_written_slots(w->cache, &d) + b * T;
    tr->attention = dm_episodic_attention(w->cache, &d) + b * T * K;
    return 0;
}

int dm_controller_write_state(const dm_controller *c, double *second_moment, int64_t *updates,
                              dm_error *err)
{
    const dm_writepolicy *w = policy_state(c);
    if (!w) return dm_fail(err, "Controller.write_state: write_policy is blend");
    *second_moment = w->rs.second_moment;
    *updates = w->rs.updates;
    return 0;
}

int dm_controller_set_write_state(dm_controller *c, double second_moment, int64_t updates,
                                  dm_error *err)
{
    dm_writepolicy *w = policy_state(c);
    if (!w) return dm_fail(err, "Controller.set_write_state: write_policy is blend");
    if (!(second_moment >= 0.0) || !isfinite(second_moment) || updates < 0)
        return dm_fail(err, "Controller.set_write_state: expected {second_moment = a finite number "
                            ">= 0, updates = an integer >= 0}");
    w->rs.second_moment = second_moment;
    w->rs.updates = updates;
    return 0;
}

/* ---- the upstream post-step write ------------------------------------------------- */

static int content_reduce_refusal(const dm_controller *c, dm_error *err)
{
    return dm_fail(err, "Controller.write_memory: write_policy %s writes where each token read and "
                        "cannot be summed over processes; train it in one process",
                   c->cfg.write_policy);
}

/* The blend write of a batch split over processes: this process's sums
 * of the R normalised rows qt, vt (none for an empty shard) and R go
 * through the reduce, in double (exact for one process), and the blend
 * uses the global means. Frozen memory is handled by the caller. */
static int reduced_write(dm_controller *c, const float *qt /* (R,D) */, const float *vt /* (R,D) */,
                         size_t R, float s, dm_error *err)
{
    const dm_part *mem = &c->parts[c->memory];
    const size_t D = c->D, n = 2 * D + 1;
    float *sums = dm_alloc(2 * D * sizeof(float)); /* (2,D) keys' sums, values' sums */
    double *v = dm_alloc(n * sizeof(double));      /* (2D+1) the sums and R */
    int rc = -1;
    if (!sums || !v) {
        dm_fail(err, "Controller.write_memory: out of memory (%zu floats)", 2 * D);
        goto out;
    }
    if (R > 0 && dm_memory_write_sums(sums, qt, vt, R, D, err) != 0) goto out;
    for (size_t j = 0; j < 2 * D; j++) v[j] = sums[j];
    v[2 * D] = (double)R;
    if (c->reduce.fn(v, n, c->reduce.ctx, err) != 0) goto out;
    for (size_t j = 0; j < 2 * D; j++) sums[j] = (float)v[j];
    rc = v[2 * D] < 1.0 ? 0 /* no process had a row */
                        : dm_memory_write_apply(dm_part_param(mem, &c->params, 0),
                                                dm_part_param(mem, &c->params, 1), sums, v[2 * D],
                                                c->M, D, s, err);
out:
    dm_free(sums);
    dm_free(v);
    return rc;
}

int dm_controller_write_memory(dm_controller *c, float s, dm_error *err)
{
    if (!c->has_forward)
        return dm_fail(err, "Controller.write_memory: no forward yet (the write uses the last "
                            "forward's query and logits)");
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "Controller.write_memory: strength must be in [0, 1], got %g", (double)s);
    dm_part *mem = &c->parts[c->memory];
    const size_t B = c->last_B, T = c->last_T, D = c->D;
    dm_part_run r = make_run(c, B, T);
    dm_part *pq = &c->parts[c->write_q], *pv = &c->parts[c->write_v];
    /* Their outputs follow the chain's in the arena (layout_acts). */
    float *qm = A(c, c->act_qt - 2), *vm = A(c, c->act_qt - 1);
    float *qt = A(c, c->act_qt), *vt = A(c, c->act_vt);
    if (pq->ops->forward(pq, &r, dm_controller_query(c), qm, err) != 0 ||
        pv->ops->forward(pv, &r, dm_controller_logits(c), vm, err) != 0)
        return -1;
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
    const dm_part *wp = &c->parts[c->policy];
    if (wp->ops->memory_write) {
        /* The policy's own write of the per-token rows, where they were read
         * (the memory part's parameters 0 and 1 are its keys and values). */
        if (mem->cfg.frozen) return 0;
        if (c->reduce.fn) return content_reduce_refusal(c, err);
        return wp->ops->memory_write(wp, dm_part_param(mem, &c->params, 0),
                                     dm_part_param(mem, &c->params, 1), c->M, D, qm, vm,
                                     dm_controller_attention(c), B * T, s, err);
    }
    if (c->reduce.fn) return mem->cfg.frozen ? 0 : reduced_write(c, qt, vt, B, s, err);
    return dm_memory_part_write(mem, &c->params, qt, vt, B, s, err);
}

void dm_controller_set_reduce(dm_controller *c, dm_reduce_fn fn, void *ctx)
{
    c->reduce.fn = fn;
    c->reduce.ctx = fn ? ctx : NULL;
    dm_writepolicy *w = policy_state(c);
    if (w) w->reduce = c->reduce;
}

int dm_controller_write_memory_empty(dm_controller *c, float s, dm_error *err)
{
    if (!c->reduce.fn)
        return dm_fail(err, "Controller.write_memory: an empty shard needs a reduce across "
                            "processes (dm_controller_set_reduce)");
    if (!(s >= 0.0f && s <= 1.0f))
        return dm_fail(err, "Controller.write_memory: strength must be in [0, 1], got %g", (double)s);
    const dm_part *wp = &c->parts[c->policy];
    if (c->parts[c->memory].cfg.frozen) return 0;
    if (wp->ops->memory_write) return content_reduce_refusal(c, err);
    return reduced_write(c, NULL, NULL, 0, s, err);
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

int dm_controller_has_cell_state(const dm_controller *c)
{
    return c->parts[c->cell].ops == &dm_lstm_part;
}

int dm_controller_set_state(dm_controller *c, const float *h, const float *cs, size_t B,
                            dm_error *err)
{
    dm_free(c->state_h);
    dm_free(c->state_c);
    c->state_h = c->state_c = NULL;
    c->state_B = 0;
    if (!h) return 0;
    if (B == 0 || B > (size_t)INT32_MAX / (c->L * c->H))
        return dm_fail(err, "Controller.set_state: bad batch size %zu", B);
    const size_t n = c->L * B * c->H;
    c->state_h = dm_alloc(n * sizeof(float));
    c->state_c = dm_controller_has_cell_state(c) ? dm_alloc(n * sizeof(float)) : NULL;
    if (!c->state_h || (dm_controller_has_cell_state(c) && !c->state_c)) {
        dm_free(c->state_h);
        dm_free(c->state_c);
        c->state_h = c->state_c = NULL;
        return dm_fail(err, "Controller.set_state: out of memory (%zu floats)", n);
    }
    memcpy(c->state_h, h, n * sizeof(float));
    if (c->state_c) {
        if (cs)
            memcpy(c->state_c, cs, n * sizeof(float));
        else
            memset(c->state_c, 0, n * sizeof(float));
    }
    c->state_B = B;
    return 0;
}

size_t dm_controller_state_batch(const dm_controller *c) { return c->state_B; }

int dm_controller_final_state(const dm_controller *c, float *h_n, float *c_n, dm_error *err)
{
    if (!c->has_forward)
        return dm_fail(err, "Controller.final_state: no forward yet (the state is the last "
                            "forward's)");
    const dm_part *cell = &c->parts[c->cell];
    dm_part_run r = make_run((dm_controller *)c, c->last_B, c->last_T);
    cell->ops->final_state(cell, &r, h_n, c_n);
    return 0;
}

int dm_controller_num_entries(const dm_controller *c) { return c->params.n; }
const dm_arena_entry *dm_controller_entry_info(const dm_controller *c, int i)
{
    return &c->params.entries[i];
}
float *dm_controller_entry_value(const dm_controller *c, int i) { return dm_arena_ptr(&c->params, i); }
int dm_controller_entry_is_buffer(const dm_controller *c, int i)
{
    return (c->params.entries[i].flags & DM_ENTRY_BUFFER) != 0;
}
int dm_controller_entry_trained(const dm_controller *c, int i)
{
    return (c->params.entries[i].flags & (DM_ENTRY_BUFFER | DM_ENTRY_FROZEN)) == 0;
}
float *dm_controller_entry_grad(const dm_controller *c, int i)
{
    return dm_controller_entry_trained(c, i) ? dm_arena_ptr(&c->grads, i) : NULL;
}
int dm_controller_entry_own_clip(const dm_controller *c, int i)
{
    return (c->params.entries[i].flags & DM_ENTRY_OWN_CLIP) != 0;
}
int dm_controller_entry_find(const dm_controller *c, const char *name)
{
    return dm_arena_find(&c->params, name);
}
float *dm_controller_usage(const dm_controller *c)
{
    return dm_part_param(&c->parts[c->memory], &c->params, 2);
}

size_t dm_controller_num_params(const dm_controller *c)
{
    size_t n = 0;
    for (int i = 0; i < c->params.n; i++) n += !dm_controller_entry_is_buffer(c, i);
    return n;
}

void dm_controller_param_refs(const dm_controller *c, dm_param_ref *refs)
{
    size_t k = 0;
    for (int i = 0; i < c->params.n; i++) {
        if (dm_controller_entry_is_buffer(c, i)) continue;
        refs[k].name = c->params.entries[i].name;
        refs[k].param = dm_arena_ptr(&c->params, i);
        refs[k].grad = dm_controller_entry_grad(c, i);
        refs[k].numel = c->params.entries[i].numel;
        k++;
    }
}

size_t dm_controller_param_count(const dm_controller *c)
{
    size_t n = 0;
    for (int i = 0; i < c->params.n; i++)
        if (!dm_controller_entry_is_buffer(c, i)) n += c->params.entries[i].numel;
    return n;
}
