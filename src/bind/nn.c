/* nn.c (bind): dm.nn, the layers of core/nn.h and core/gru.h as Lua
 * modules in torch7's manner: m:forward(x) keeps what its backward needs,
 * m:backward(dy) returns dx and ADDS the parameter gradients, one
 * m:zero_grad() clears them.
 *
 *   dm.nn.Linear(in, out [, {bias = true, init = "default" | "kaiming"}])
 *   dm.nn.Embedding(V, E)          forward(ids) with 0-based ids; backward -> nil
 *   dm.nn.GELU()   dm.nn.Dropout(p)   dm.nn.GRU(input, hidden [, layers])
 *   dm.nn.LSTM(input, hidden [, layers])   (the controller's cell parts)
 *   dm.nn.cross_entropy(logits, targets [, {ignore_index =, scale =, out =, grad =}])
 *       -> loss (number), dlogits (tensor; `out` when given; nil with
 *          grad = false), count
 *
 * Each module owns a parameter arena and a gradient arena of the same
 * layout, named as PyTorch's state_dict (weight, bias, weight_ih_l0, ...);
 * m:parameters() hands out tensor views into them that keep the module
 * alive, so writing into a view changes the module. The forward copies its
 * input (and token ids, dropout mask, GRU cache) into buffers the module
 * owns, so changing the input tensor afterwards cannot corrupt a backward.
 * Linear, GELU and Dropout take any leading dims ((N,I) or (B,T,I)); the
 * GRU takes (B,T,I) batch-first, or (T,I) as one sequence. Initialisers
 * draw from the global generator (dm.manual_seed): Linear "default" is
 * PyTorch's U(+-1/sqrt(in)) for weight and bias, "kaiming" the seed model's
 * U(+-sqrt(6/in)) weight with a zero bias; Embedding N(0, 0.1^2) as the
 * seed model; GRU U(+-1/sqrt(hidden)) for everything, as PyTorch.
 * Modules have __gc but no __close, as dm.Memory and dm.Controller: closing
 * one would free the arenas under the views m:parameters() handed out, and
 * every later use of the module or a view would read freed memory. */
#include "bind/bind.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/gru.h"
#include "core/lstm.h"
#include "core/nn.h"
#include "core/part.h"
#include "core/rng.h"

enum { NN_LINEAR, NN_EMBEDDING, NN_GELU, NN_DROPOUT, NN_GRU, NN_LSTM, NN_KINDS };

static const char *const kind_mt[NN_KINDS] = {"drlmem.nn.Linear", "drlmem.nn.Embedding",
                                              "drlmem.nn.GELU", "drlmem.nn.Dropout",
                                              "drlmem.nn.GRU", "drlmem.nn.LSTM"};
static const char *const kind_name[NN_KINDS] = {"Linear", "Embedding", "GELU", "Dropout", "GRU",
                                                "LSTM"};

typedef struct nn_mod {
    int kind;
    int training;
    dm_arena params, grads;
    size_t in, out;   /* Linear in/out; Embedding V/E; GRU input/hidden */
    size_t layers;    /* GRU, LSTM */
    /* The last forward, for backward. */
    int ready;
    int in_ndim, out_ndim;
    int64_t in_shape[DM_MAX_DIMS], out_shape[DM_MAX_DIMS];
    /* Every module is one of the controller's parts (core/part.h) run over
     * the module's arenas: acts holds the input copy (token ids as int32
     * for the embedding) and the part's own activations, laid out for the
     * last forward's (B,T); elementwise and linear modules run N rows as
     * (B,T) = (N,1). */
    dm_part part;
    dm_arena acts;
    size_t B, T;
} nn_mod;

/* ---- helpers ------------------------------------------------------------ */

static nn_mod *test_mod(lua_State *L, int idx)
{
    for (int k = 0; k < NN_KINDS; k++) {
        nn_mod *m = luaL_testudata(L, idx, kind_mt[k]);
        if (m) return m;
    }
    return NULL;
}

static nn_mod *check_mod(lua_State *L, int idx, const char *method)
{
    nn_mod *m = test_mod(L, idx);
    if (!m)
        dm_bind_errorf(L, "nn:%s: expected an nn module as self (use m:%s(...), not m.%s(...))",
                   method, method, method);
    return m;
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    if (ndim == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? "x%lld" : "%lld", (long long)shape[i]);
    return buf;
}

static const char *tshape(const dm_tensor *t, char *buf, size_t n)
{
    return shape_str(t->ndim, t->shape, buf, n);
}

/* Copies t's elements in row-major order into dst as float32. */
static void gather_f32(const dm_tensor *t, float *dst)
{
    size_t n = dm_tensor_numel(t);
    if (t->dtype == DM_F32 && dm_tensor_is_contiguous(t)) {
        memcpy(dst, dm_tensor_f32(t), n * sizeof *dst);
        return;
    }
    dm_iter it;
    size_t i = 0;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it))
        dst[i++] = (float)dm_tensor_get_at(t, it.off);
}

static dm_tensor *push_result(lua_State *L, int ndim, const int64_t *shape, const char *who)
{
    return dm_bind_newtensor_named(L, DM_F32, ndim, shape, who);
}

/* Lays out the activation arena for a (B,T) run: entry 0 the input copy
 * (in_numel cells), then the part's own; kept when the shape is the last
 * one's. */
static void mod_acts(lua_State *L, nn_mod *m, size_t B, size_t T, size_t in_numel)
{
    if (m->acts.data && m->B == B && m->T == T) return;
    dm_arena_free(&m->acts);
    m->B = m->T = 0;
    dm_error err;
    int64_t n[1] = {(int64_t)in_numel};
    if (dm_arena_add(&m->acts, "input", 1, n, &err) < 0 ||
        m->part.ops->sizes(&m->part, B, T, NULL, &m->acts, &err) != 0 ||
        dm_arena_alloc(&m->acts, &err) != 0) {
        dm_arena_free(&m->acts);
        dm_bind_error(L, &err);
    }
    m->B = B, m->T = T;
}

static float *mod_input(nn_mod *m) { return dm_arena_ptr(&m->acts, 0); }

static dm_part_run mod_run(nn_mod *m)
{
    dm_part_run r = {&m->params, &m->grads, &m->acts, m->B, m->T, m->training, &dm_rng_global,
                     (const int32_t *)mod_input(m), NULL, NULL, NULL};
    return r;
}

/* Common front of a forward on features: x must be float32 with at least
 * one dim whose last is `feat` (0: any, then each element is a row). Lays
 * out the arena for its rows, copies x in and records shapes; returns the
 * rows N. */
static size_t take_input(lua_State *L, nn_mod *m, const dm_tensor *x, size_t feat,
                         const char *who, const char *want)
{
    char a[96];
    if (x->ndim < 1)
        dm_bind_errorf(L, "%s: expected an input with at least one dimension (%s), got a scalar",
                       who, want);
    if (feat && (size_t)x->shape[x->ndim - 1] != feat)
        dm_bind_errorf(L, "%s: input of shape %s does not match %s (last dim %lld != %zu)", who,
                   tshape(x, a, sizeof a), want, (long long)x->shape[x->ndim - 1], feat);
    size_t numel = dm_tensor_numel(x);
    m->ready = 0;
    size_t N = feat ? numel / feat : numel;
    mod_acts(L, m, N, 1, numel);
    gather_f32(x, mod_input(m));
    m->in_ndim = x->ndim;
    memcpy(m->in_shape, x->shape, sizeof m->in_shape);
    return N;
}

/* Checks dy (argument idx) against the last forward's output shape and
 * returns its data contiguous: the tensor's own, or a copy in a Lua-owned
 * userdata pushed on the stack (so an error later cannot leak it). */
static const float *take_grad(lua_State *L, nn_mod *m, int idx, const char *who)
{
    if (!m->ready)
        dm_bind_errorf(L, "%s:backward: no forward to go back through (call forward first)", who);
    dm_tensor *dy = dm_bind_checkf32(L, idx, who, "dy");
    int same = dy->ndim == m->out_ndim;
    for (int i = 0; same && i < dy->ndim; i++) same = dy->shape[i] == m->out_shape[i];
    if (!same) {
        char a[96], b[96];
        dm_bind_errorf(L, "%s:backward: gradient of shape %s does not match the forward's output %s",
                   who, tshape(dy, a, sizeof a), shape_str(m->out_ndim, m->out_shape, b, sizeof b));
    }
    if (dm_tensor_is_contiguous(dy)) return dm_tensor_f32(dy);
    float *buf = lua_newuserdatauv(L, dm_tensor_numel(dy) * sizeof(float) + 1, 0);
    gather_f32(dy, buf);
    return buf;
}

static void alloc_params(lua_State *L, nn_mod *m)
{
    dm_error err;
    if (m->params.n == 0) return;
    if (dm_arena_alloc(&m->params, &err) != 0) dm_bind_error(L, &err);
    if (dm_arena_init_like(&m->grads, &m->params, &err) != 0) dm_bind_error(L, &err);
}

static float *param(nn_mod *m, int i) { return dm_arena_ptr(&m->params, i); }
static float *grad(nn_mod *m, int i) { return dm_arena_ptr(&m->grads, i); }

/* The module userdata, zeroed, with its metatable, before anything that can
 * fail is acquired, so __gc can always clean up. */
static nn_mod *new_mod(lua_State *L, int kind)
{
    nn_mod *m = lua_newuserdatauv(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    dm_arena_init(&m->params);
    dm_arena_init(&m->grads);
    m->kind = kind;
    m->training = 1;
    luaL_setmetatable(L, kind_mt[kind]);
    return m;
}

static size_t check_size(lua_State *L, int idx, const char *who, const char *arg)
{
    if (!lua_isinteger(L, idx))
        dm_bind_errorf(L, "%s: argument %s: expected a positive integer, got %s", who, arg,
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
    lua_Integer v = lua_tointeger(L, idx);
    if (v < 1 || v > ((lua_Integer)1 << 31))
        dm_bind_errorf(L, "%s: argument %s: expected a positive integer, got %lld", who, arg,
                   (long long)v);
    return (size_t)v;
}

/* ---- constructors --------------------------------------------------------- */

/* Sets up m's part and its parameters, drawn from the global generator. */
static void mod_part(lua_State *L, nn_mod *m, const dm_part_ops *ops, const dm_part_cfg *cfg)
{
    dm_error err;
    dm_arena_init(&m->acts);
    if (dm_part_init(&m->part, ops, "", cfg, &err) != 0 ||
        ops->sizes(&m->part, 1, 1, &m->params, NULL, &err) != 0)
        dm_bind_error(L, &err);
    alloc_params(L, m);
    if (ops->init) ops->init(&m->part, &m->params, &dm_rng_global);
}

static int l_linear(lua_State *L)
{
    size_t in = check_size(L, 1, "Linear", "in_features");
    size_t out = check_size(L, 2, "Linear", "out_features");
    int bias = 1;
    const char *init = "default";
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "bias") != LUA_TNIL) bias = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "init") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TSTRING)
                dm_bind_errorf(L, "Linear: option init: expected \"default\" or \"kaiming\", got %s",
                           luaL_typename(L, -1));
            init = lua_tostring(L, -1);
        }
        if (strcmp(init, "default") != 0 && strcmp(init, "kaiming") != 0)
            dm_bind_errorf(L, "Linear: option init: expected \"default\" or \"kaiming\", got \"%s\"",
                       init);
        /* init stays valid: the options table holds the string. */
        lua_pop(L, 1);
    }
    nn_mod *m = new_mod(L, NN_LINEAR);
    m->in = in, m->out = out;
    dm_part_cfg cfg = {.in = in, .out = out, .no_bias = !bias,
                       .init = strcmp(init, "kaiming") == 0 ? DM_PART_INIT_KAIMING
                                                            : DM_PART_INIT_DEFAULT};
    mod_part(L, m, &dm_linear_part, &cfg);
    return 1;
}

static int l_embedding(lua_State *L)
{
    size_t V = check_size(L, 1, "Embedding", "num_embeddings");
    size_t E = check_size(L, 2, "Embedding", "embedding_dim");
    nn_mod *m = new_mod(L, NN_EMBEDDING);
    m->in = V, m->out = E;
    dm_part_cfg cfg = {.in = V, .out = E};
    mod_part(L, m, &dm_embedding_part, &cfg);
    return 1;
}

static int l_gelu(lua_State *L)
{
    nn_mod *m = new_mod(L, NN_GELU);
    dm_part_cfg cfg = {.in = 1, .out = 1};
    mod_part(L, m, &dm_gelu_part, &cfg);
    return 1;
}

static int l_dropout(lua_State *L)
{
    double p = luaL_optnumber(L, 1, 0.5);
    if (!(p >= 0.0 && p <= 1.0))
        dm_bind_errorf(L, "Dropout: p must be in [0, 1], got %s", lua_tostring(L, 1));
    nn_mod *m = new_mod(L, NN_DROPOUT);
    dm_part_cfg cfg = {.in = 1, .out = 1, .p = (float)p};
    mod_part(L, m, &dm_dropout_part, &cfg);
    return 1;
}

/* GRU(input, hidden [, layers]) and LSTM(...): the cell part of that
 * kind, with its parameters named and drawn as PyTorch's (every tensor
 * U(+-1/sqrt(hidden)) in registration order, from the global generator). */
static int new_cell(lua_State *L, int kind, const dm_part_ops *ops)
{
    const char *who = kind_name[kind];
    size_t in = check_size(L, 1, who, "input_size");
    size_t H = check_size(L, 2, who, "hidden_size");
    size_t layers = lua_isnoneornil(L, 3) ? 1 : check_size(L, 3, who, "num_layers");
    if (layers > DM_GRU_MAX_LAYERS)
        dm_bind_errorf(L, "%s: num_layers must be in 1..%d, got %zu", who, DM_GRU_MAX_LAYERS, layers);
    nn_mod *m = new_mod(L, kind);
    m->in = in, m->out = H, m->layers = layers;
    dm_part_cfg cfg = {.in = in, .out = H, .layers = layers};
    mod_part(L, m, ops, &cfg);
    return 1;
}

static int l_gru(lua_State *L) { return new_cell(L, NN_GRU, &dm_gru_part); }
static int l_lstm(lua_State *L) { return new_cell(L, NN_LSTM, &dm_lstm_part); }

/* ---- forward ------------------------------------------------------------- */

static void set_out_shape(nn_mod *m, int ndim, const int64_t *shape)
{
    m->out_ndim = ndim;
    memcpy(m->out_shape, shape, (size_t)ndim * sizeof *shape);
}

/* Runs m's part forward from its input copy into y. */
static void run_forward(lua_State *L, nn_mod *m, dm_tensor *y)
{
    dm_part_run r = mod_run(m);
    dm_error err;
    if (m->part.ops->forward(&m->part, &r, mod_input(m), dm_tensor_f32(y), &err) != 0)
        dm_bind_error(L, &err);
}

static int fwd_linear(lua_State *L, nn_mod *m)
{
    char want[64];
    snprintf(want, sizeof want, "weight %zux%zu", m->out, m->in);
    dm_tensor *x = dm_bind_checkf32(L, 2, "Linear", "x");
    take_input(L, m, x, m->in, "Linear", want);
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = (int64_t)m->out;
    dm_tensor *y = push_result(L, x->ndim, shape, "Linear");
    run_forward(L, m, y);
    set_out_shape(m, x->ndim, shape);
    return 1;
}

/* Token ids: an int32 tensor, or a float32 one holding whole numbers. */
static int fwd_embedding(lua_State *L, nn_mod *m)
{
    dm_tensor *t = dm_bind_checktensor(L, 2, "Embedding", "ids");
    char a[96];
    if (t->ndim < 1 || t->ndim >= DM_MAX_DIMS)
        dm_bind_errorf(L, "Embedding: expected token ids of shape (N) or (B,T), got %s",
                   tshape(t, a, sizeof a));
    size_t N = dm_tensor_numel(t);
    m->ready = 0;
    mod_acts(L, m, N, 1, N);
    int32_t *ids = (int32_t *)mod_input(m);
    dm_iter it;
    size_t i = 0;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it), i++) {
        double v = dm_tensor_get_at(t, it.off);
        if (v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
            dm_bind_errorf(L, "Embedding: token id %g at position %zu is not an integer", v, i);
        ids[i] = (int32_t)v;
    }
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[t->ndim] = (int64_t)m->out;
    dm_tensor *y = push_result(L, t->ndim + 1, shape, "Embedding");
    run_forward(L, m, y);
    set_out_shape(m, t->ndim + 1, shape);
    return 1;
}

static int fwd_elementwise(lua_State *L, nn_mod *m)
{
    const char *who = kind_name[m->kind];
    dm_tensor *x = dm_bind_checkf32(L, 2, who, "x");
    take_input(L, m, x, 0, who, "any shape");
    dm_tensor *y = push_result(L, x->ndim, x->shape, who);
    run_forward(L, m, y);
    set_out_shape(m, x->ndim, x->shape);
    return 1;
}

static int fwd_cell(lua_State *L, nn_mod *m)
{
    const char *who = kind_name[m->kind];
    dm_tensor *x = dm_bind_checkf32(L, 2, who, "x");
    char a[96], want[96];
    snprintf(want, sizeof want, "(B,T,%zu) or (T,%zu)", m->in, m->in);
    if (x->ndim != 2 && x->ndim != 3)
        dm_bind_errorf(L, "%s: expected an input of shape %s, got %s", who, want, tshape(x, a, sizeof a));
    size_t B = x->ndim == 3 ? (size_t)x->shape[0] : 1, T = (size_t)x->shape[x->ndim - 2];
    if (B == 0 || T == 0)
        dm_bind_errorf(L, "%s: input of shape %s has no timesteps", who, tshape(x, a, sizeof a));
    if (x->shape[x->ndim - 1] != (int64_t)m->in)
        dm_bind_errorf(L, "%s: input of shape %s does not match %s (last dim %lld != %zu)", who,
                       tshape(x, a, sizeof a), want, (long long)x->shape[x->ndim - 1], m->in);
    m->ready = 0;
    mod_acts(L, m, B, T, B * T * m->in);
    float *xin = mod_input(m);
    gather_f32(x, xin);
    m->in_ndim = x->ndim;
    memcpy(m->in_shape, x->shape, sizeof m->in_shape);
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = (int64_t)m->out;
    dm_tensor *y = push_result(L, x->ndim, shape, who);
    run_forward(L, m, y);
    dm_part_run r = mod_run(m);
    /* h_n is (layers,B,H), or (layers,H) for one unbatched sequence. */
    int64_t hshape[3] = {(int64_t)m->layers, (int64_t)B, (int64_t)m->out};
    if (x->ndim == 2) hshape[1] = hshape[2];
    dm_tensor *hn = push_result(L, x->ndim, hshape, who);
    m->part.ops->final_state(&m->part, &r, dm_tensor_f32(hn), NULL);
    set_out_shape(m, x->ndim, shape);
    return 2;
}

/* m:forward(x) -> y (the GRU and LSTM also return h_n, (layers,B,H)). */
static int m_forward(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "forward");
    int nret;
    switch (m->kind) {
    case NN_LINEAR: nret = fwd_linear(L, m); break;
    case NN_EMBEDDING: nret = fwd_embedding(L, m); break;
    case NN_GRU:
    case NN_LSTM: nret = fwd_cell(L, m); break;
    default: nret = fwd_elementwise(L, m); break;
    }
    m->ready = 1;
    return nret;
}

/* ---- backward ------------------------------------------------------------ */

/* m:backward(dy) -> dx (nil for Embedding); adds parameter gradients. */
static int m_backward(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "backward");
    const char *who = kind_name[m->kind];
    const float *dy = take_grad(L, m, 2, who);
    /* A fresh (zeroed) dx: every part's backward adds into it. The
     * embedding has none. */
    float *dx = NULL;
    if (m->kind != NN_EMBEDDING) dx = dm_tensor_f32(push_result(L, m->in_ndim, m->in_shape, who));
    dm_part_run r = mod_run(m);
    dm_error err;
    if (m->part.ops->backward(&m->part, &r, dy, dx, mod_input(m), NULL, &err) != 0)
        dm_bind_error(L, &err);
    return dx ? 1 : 0;
}

/* ---- the rest of the methods ------------------------------------------------ */

/* m:parameters() -> { {name=, value=, grad=}, ... } in registration order. */
static int m_parameters(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "parameters");
    lua_createtable(L, m->params.n, 0);
    for (int i = 0; i < m->params.n; i++) {
        const dm_arena_entry *e = &m->params.entries[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, e->name);
        lua_setfield(L, -2, "name");
        dm_bind_pushview(L, param(m, i), e->ndim, e->shape, 1);
        lua_setfield(L, -2, "value");
        dm_bind_pushview(L, grad(m, i), e->ndim, e->shape, 1);
        lua_setfield(L, -2, "grad");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_zero_grad(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "zero_grad");
    dm_arena_zero(&m->grads);
    lua_settop(L, 1);
    return 1;
}

static int m_train(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "train");
    m->training = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    lua_settop(L, 1);
    return 1;
}

static int m_eval(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "eval");
    m->training = 0;
    lua_settop(L, 1);
    return 1;
}

static int m_is_training(lua_State *L)
{
    lua_pushboolean(L, check_mod(L, 1, "is_training")->training);
    return 1;
}

static int m_tostring(lua_State *L)
{
    nn_mod *m = check_mod(L, 1, "__tostring");
    switch (m->kind) {
    case NN_LINEAR:
        lua_pushfstring(L, "Linear(in=%I, out=%I%s)", (lua_Integer)m->in, (lua_Integer)m->out,
                        m->part.cfg.no_bias ? ", bias=false" : "");
        break;
    case NN_EMBEDDING:
        lua_pushfstring(L, "Embedding(vocab=%I, dim=%I)", (lua_Integer)m->in, (lua_Integer)m->out);
        break;
    case NN_GELU: lua_pushliteral(L, "GELU()"); break;
    case NN_DROPOUT: {
        char buf[64];
        snprintf(buf, sizeof buf, "Dropout(p=%g)", (double)(float)m->part.cfg.p);
        lua_pushstring(L, buf);
        break;
    }
    default:
        lua_pushfstring(L, "%s(input=%I, hidden=%I, layers=%I)", kind_name[m->kind],
                        (lua_Integer)m->in, (lua_Integer)m->out, (lua_Integer)m->layers);
    }
    return 1;
}

static int m_gc(lua_State *L)
{
    nn_mod *m = test_mod(L, 1);
    if (!m) return 0;
    dm_arena_free(&m->params);
    dm_arena_free(&m->grads);
    dm_arena_free(&m->acts);
    dm_part_free(&m->part);
    m->B = m->T = 0;
    m->ready = 0;
    return 0;
}

/* ---- dm.nn.cross_entropy ----------------------------------------------------- */

/* cross_entropy(logits (N,V) or (B,T,V), targets (N) or (B,T) [, {ignore_index
 * = i, scale = s, out = t, grad = b}]) -> loss, dlogits (shape of logits),
 * count. ignore_index absent or negative: nothing ignored. All targets
 * ignored: loss is NaN and dlogits zero. scale multiplies dlogits (e.g.
 * 1/accumulation_steps). out: a contiguous float32 tensor of the logits'
 * shape that receives dlogits (overwritten) and is returned, so a training
 * loop reuses one buffer instead of allocating logits-sized memory (64 MB
 * at V=10000) every step. grad = false: no dlogits at all (nil in its
 * place), for evaluation. */
static int l_cross_entropy(lua_State *L)
{
    dm_tensor *x = dm_bind_checkf32(L, 1, "cross_entropy", "logits");
    dm_tensor *t = dm_bind_checktensor(L, 2, "cross_entropy", "targets");
    int32_t ignore = -1;
    double scale = 1.0;
    int want_grad = 1, out_idx = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "ignore_index") != LUA_TNIL) {
            if (!lua_isinteger(L, -1))
                dm_bind_errorf(L, "cross_entropy: option ignore_index: expected an integer, got %s",
                           luaL_typename(L, -1));
            lua_Integer v = lua_tointeger(L, -1);
            ignore = v < 0 ? -1 : v > INT32_MAX ? INT32_MAX : (int32_t)v;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "scale") != LUA_TNIL) scale = luaL_checknumber(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "grad") != LUA_TNIL) {
            if (!lua_isboolean(L, -1))
                dm_bind_errorf(L, "cross_entropy: option grad: expected a boolean, got %s",
                               luaL_typename(L, -1));
            want_grad = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 3, "out") != LUA_TNIL) {
            dm_bind_checkf32(L, lua_gettop(L), "cross_entropy", "out");
            out_idx = lua_gettop(L); /* stays on the stack, below the results */
        } else {
            lua_pop(L, 1);
        }
    }
    char a[96], b[96], c[96];
    if (x->ndim < 2 || x->shape[x->ndim - 1] < 1)
        dm_bind_errorf(L, "cross_entropy: expected logits of shape (N,V) or (B,T,V), got %s",
                   tshape(x, a, sizeof a));
    size_t V = (size_t)x->shape[x->ndim - 1], N = dm_tensor_numel(x) / V;
    int same = t->ndim == x->ndim - 1;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == x->shape[i];
    if (!same && !(t->ndim == 1 && (size_t)t->shape[0] == N)) {
        char n[32] = "";
        if (x->ndim > 2) snprintf(n, sizeof n, " or %zu", N);
        dm_bind_errorf(L, "cross_entropy: targets of shape %s do not match logits %s (expected %s%s)",
                       tshape(t, a, sizeof a), tshape(x, b, sizeof b),
                       shape_str(x->ndim - 1, x->shape, c, sizeof c), n);
    }
    /* Lua-owned temporaries: an error below frees them with the stack. */
    int32_t *tg = lua_newuserdatauv(L, N * sizeof(int32_t) + 1, 0);
    dm_iter it;
    size_t i = 0;
    for (dm_iter_init(&it, t); it.pos < it.n; dm_iter_next(&it), i++) {
        double v = dm_tensor_get_at(t, it.off);
        if (v != floor(v) || v < -2147483648.0 || v > 2147483647.0)
            dm_bind_errorf(L, "cross_entropy: target %g at position %zu is not an integer", v, i);
        tg[i] = (int32_t)v;
    }
    const float *lx;
    if (dm_tensor_is_contiguous(x)) {
        lx = dm_tensor_f32(x);
    } else {
        float *buf = lua_newuserdatauv(L, N * V * sizeof(float) + 1, 0);
        gather_f32(x, buf);
        lx = buf;
    }
    float *dlp = NULL;
    int dl_idx = 0;
    if (want_grad && out_idx) {
        dm_tensor *o = dm_bind_checkf32(L, out_idx, "cross_entropy", "out");
        int same = o->ndim == x->ndim;
        for (int k = 0; same && k < x->ndim; k++) same = o->shape[k] == x->shape[k];
        if (!same)
            dm_bind_errorf(L, "cross_entropy: option out has shape %s, expected the logits' %s",
                           tshape(o, a, sizeof a), tshape(x, b, sizeof b));
        if (!dm_tensor_is_contiguous(o))
            dm_bind_errorf(L, "cross_entropy: option out must be contiguous");
        /* out is zeroed before the logits are read: it must not be them. */
        dlp = dm_tensor_f32(o);
        if (dlp < lx + N * V && lx < dlp + N * V)
            dm_bind_errorf(L, "cross_entropy: option out shares memory with the logits");
        memset(dlp, 0, N * V * sizeof(float));
        dl_idx = out_idx;
    } else if (want_grad) {
        dm_tensor *dl = push_result(L, x->ndim, x->shape, "cross_entropy");
        dlp = dm_tensor_f32(dl);
        dl_idx = lua_gettop(L);
    }
    float loss;
    size_t count;
    dm_error err;
    if (dm_cross_entropy(&loss, &count, dlp, lx, tg, N, V, ignore, (float)scale, &err) != 0)
        dm_bind_error(L, &err);
    lua_pushnumber(L, loss);
    if (dl_idx)
        lua_pushvalue(L, dl_idx);
    else
        lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)count);
    return 3;
}

/* ---- registration ----------------------------------------------------------- */

static const luaL_Reg mod_methods[] = {
    {"forward", m_forward},       {"backward", m_backward}, {"parameters", m_parameters},
    {"zero_grad", m_zero_grad},   {"train", m_train},       {"eval", m_eval},
    {"is_training", m_is_training}, {NULL, NULL},
};

static const luaL_Reg mod_meta[] = {
    {"__gc", m_gc}, {"__tostring", m_tostring}, {NULL, NULL},
};

static const luaL_Reg nn_funcs[] = {
    {"Linear", l_linear}, {"Embedding", l_embedding}, {"GELU", l_gelu},
    {"Dropout", l_dropout}, {"GRU", l_gru}, {"LSTM", l_lstm}, {"cross_entropy", l_cross_entropy},
    {NULL, NULL},
};

void dm_open_nn(lua_State *L)
{
    for (int k = 0; k < NN_KINDS; k++) {
        luaL_newmetatable(L, kind_mt[k]);
        luaL_setfuncs(L, mod_meta, 0);
        luaL_newlib(L, mod_methods);
        lua_setfield(L, -2, "__index");
        lua_pop(L, 1);
    }
    luaL_newlib(L, nn_funcs);
    lua_setfield(L, -2, "nn");
}
