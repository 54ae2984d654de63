/* memory.c (bind): dm.Memory, the Lua face of the standalone differentiable
 * memory (core/memory.h).
 *
 * A query may be one row (D), a matrix (N,D) or a batch (B,T,D); the output
 * has the query's shape and the attention weights its shape with the last
 * dimension replaced by M. m.keys and m.values are views into the memory's
 * parameter arena (they keep the memory alive); assigning `m.keys = t`
 * copies t in after a shape check. The memory has __gc but deliberately no
 * __close: a to-be-closed memory would free the arena under views that
 * still point into it, so its lifetime is left to the collector. */
#include "bind/bind.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/memory.h"

#define DM_MEMORY_MT "drlmem.Memory"

typedef struct lmemory {
    dm_memory m;
    int alive;
    int last_ndim;                 /* query shape of the last read */
    int64_t last_shape[DM_MAX_DIMS];
} lmemory;

static lmemory *check_mem(lua_State *L, int idx, const char *fn)
{
    lmemory *u = (lmemory *)luaL_testudata(L, idx, DM_MEMORY_MT);
    if (!u) {
        const char *dot = strchr(fn, '.');
        dm_bind_errorf(L, "%s: expected a Memory as self (call it as m:%s(...))", fn, dot ? dot + 1 : fn);
    }
    if (!u->alive) dm_bind_errorf(L, "%s: the memory has been freed", fn);
    return u;
}


/* A float32 tensor argument whose last dimension is D, as rows: pushes a
 * contiguous version of it on the stack (the tensor itself when already
 * contiguous) and returns its data; *rows = numel / D. */
static const float *check_rows(lua_State *L, int idx, size_t D, int max_ndim, const char *fn,
                               const char *arg, size_t *rows, dm_tensor **tout)
{
    dm_tensor *t = dm_bind_checkf32(L, idx, fn, arg);
    char sb[96];
    if (t->ndim < 1 || t->ndim > max_ndim || t->shape[t->ndim - 1] != (int64_t)D)
        dm_bind_errorf(L, "%s: %s must have shape (%zu), (N,%zu) or (B,T,%zu), got %s", fn, arg,
                       D, D, D, dm_tensor_shape_str(t, sb, sizeof sb));
    *rows = dm_tensor_numel(t) / D;
    if (tout) *tout = t;
    if (dm_tensor_is_contiguous(t)) {
        lua_pushvalue(L, idx);
        return dm_tensor_f32(t);
    }
    dm_error err;
    dm_tensor *c = dm_bind_newempty(L);
    if (dm_tensor_contiguous(c, t, &err) != 0) dm_bind_error(L, &err);
    return dm_tensor_f32(c);
}

/* dm.Memory(slots, width) */
static int l_memory_new(lua_State *L)
{
    int64_t M = dm_bind_check_int(L, 1, "Memory", "1 (slots)");
    int64_t D = dm_bind_check_int(L, 2, "Memory", "2 (width)");
    if (M < 1) dm_bind_errorf(L, "Memory: slots must be >= 1, got %" PRId64, M);
    if (D < 1) dm_bind_errorf(L, "Memory: width must be >= 1, got %" PRId64, D);
    lmemory *u = (lmemory *)lua_newuserdatauv(L, sizeof(lmemory), 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, DM_MEMORY_MT);
    dm_error err;
    if (dm_memory_create(&u->m, (size_t)M, (size_t)D, &dm_rng_global, &err) != 0)
        dm_bind_error(L, &err);
    u->alive = 1;
    return 1;
}

static int m_gc(lua_State *L)
{
    lmemory *u = (lmemory *)luaL_checkudata(L, 1, DM_MEMORY_MT);
    if (u->alive) dm_memory_free(&u->m);
    u->alive = 0;
    return 0;
}

static int m_tostring(lua_State *L)
{
    lmemory *u = (lmemory *)luaL_checkudata(L, 1, DM_MEMORY_MT);
    if (!u->alive) {
        lua_pushliteral(L, "Memory(freed)");
        return 1;
    }
    const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
    lua_pushfstring(L, "Memory(slots=%I, width=%I)", (lua_Integer)M, (lua_Integer)D);
    return 1;
}

/* Pushes a new float tensor with `shape` minus its last dim plus `last`. */
static dm_tensor *push_like(lua_State *L, int ndim, const int64_t *shape, int64_t last,
                            const char *who)
{
    int64_t s[DM_MAX_DIMS];
    for (int i = 0; i < ndim; i++) s[i] = shape[i];
    s[ndim - 1] = last;
    return dm_bind_newtensor_named(L, DM_F32, ndim, s, who);
}

/* m:read(q) -> out, weights */
static int l_read(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.read");
    const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
    size_t N;
    dm_tensor *q;
    const float *qd = check_rows(L, 2, D, 3, "Memory.read", "query", &N, &q);
    int ndim = q->ndim;
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, q->shape, sizeof shape);
    dm_tensor *out = push_like(L, ndim, shape, (int64_t)D, "Memory.read");
    dm_tensor *w = push_like(L, ndim, shape, (int64_t)M, "Memory.read");
    dm_error err;
    if (dm_memory_read(&u->m, dm_tensor_f32(out), dm_tensor_f32(w), qd, N, &err) != 0)
        dm_bind_error(L, &err);
    u->last_ndim = ndim;
    memcpy(u->last_shape, shape, sizeof shape);
    return 2;
}

/* m:backward(dout) -> dquery (grads of keys/values accumulate in m) */
static int l_backward(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.backward");
    const size_t D = dm_memory_width(&u->m);
    if (!dm_memory_has_read(&u->m))
        dm_bind_errorf(L, "Memory.backward: no read to differentiate (call m:read first)");
    size_t N;
    dm_tensor *d;
    const float *dd = check_rows(L, 2, D, 3, "Memory.backward", "dout", &N, &d);
    int same = d->ndim == u->last_ndim;
    for (int i = 0; same && i < d->ndim; i++) same = d->shape[i] == u->last_shape[i];
    if (!same) {
        char a[96], b[96];
        dm_tensor tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.ndim = u->last_ndim;
        memcpy(tmp.shape, u->last_shape, sizeof tmp.shape);
        dm_bind_errorf(L, "Memory.backward: dout must have the last read's shape %s, got %s",
                       dm_tensor_shape_str(&tmp, a, sizeof a), dm_tensor_shape_str(d, b, sizeof b));
    }
    dm_tensor *dq = push_like(L, u->last_ndim, u->last_shape, (int64_t)D, "Memory.backward");
    dm_error err;
    if (dm_memory_backward(&u->m, dm_tensor_f32(dq), dd, N, &err) != 0) dm_bind_error(L, &err);
    return 1;
}

/* m:write(new_keys, new_values, strength) */
static int l_write(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.write");
    const size_t D = dm_memory_width(&u->m);
    size_t rk, rv;
    const float *kd = check_rows(L, 2, D, 3, "Memory.write", "keys", &rk, NULL);
    const float *vd = check_rows(L, 3, D, 3, "Memory.write", "values", &rv, NULL);
    if (rk != rv)
        dm_bind_errorf(L, "Memory.write: keys have %zu rows but values have %zu", rk, rv);
    if (lua_type(L, 4) != LUA_TNUMBER)
        dm_bind_errorf(L, "Memory.write: argument strength: expected a number, got %s",
                       luaL_typename(L, 4));
    dm_error err;
    if (dm_memory_update(&u->m, kd, vd, rk, (float)lua_tonumber(L, 4), &err) != 0)
        dm_bind_error(L, &err);
    return 0;
}

static int l_usage(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.usage");
    const size_t M = dm_memory_slots(&u->m);
    int64_t s[1] = {(int64_t)M};
    dm_tensor *t = dm_bind_newtensor_named(L, DM_F32, 1, s, "Memory.usage");
    memcpy(dm_tensor_f32(t), dm_memory_usage(&u->m), M * sizeof(float));
    return 1;
}

/* m:weights() -> the last read's attention (a copy), or nil before any read */
static int l_weights(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.weights");
    const size_t M = dm_memory_slots(&u->m);
    if (!dm_memory_has_read(&u->m)) {
        lua_pushnil(L);
        return 1;
    }
    dm_tensor *t = push_like(L, u->last_ndim, u->last_shape, (int64_t)M, "Memory.weights");
    size_t n;
    const float *w = dm_memory_last_weights(&u->m, &n);
    memcpy(dm_tensor_f32(t), w, n * M * sizeof(float));
    return 1;
}

/* m:topk(q, k) -> weights, slots (1-based int32), without touching usage */
static int l_topk(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.topk");
    const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
    size_t N;
    dm_tensor *q;
    const float *qd = check_rows(L, 2, D, 3, "Memory.topk", "query", &N, &q);
    int64_t k = dm_bind_check_int(L, 3, "Memory.topk", "k");
    if (k < 1 || (uint64_t)k > M)
        dm_bind_errorf(L, "Memory.topk: k must be in [1, %zu], got %" PRId64, M, k);
    int ndim = q->ndim;
    int64_t shape[DM_MAX_DIMS];
    memcpy(shape, q->shape, sizeof shape);
    dm_tensor *vals = push_like(L, ndim, shape, k, "Memory.topk");
    dm_tensor *idx = dm_bind_newempty(L);
    dm_error err;
    {
        int64_t s[DM_MAX_DIMS];
        memcpy(s, shape, sizeof s);
        s[ndim - 1] = k;
        if (dm_tensor_init(idx, DM_I32, ndim, s, "Memory.topk", &err) != 0) dm_bind_error(L, &err);
    }
    /* The 64-bit indices go through a scratch userdata so an error frees it. */
    int64_t *tmp = (int64_t *)lua_newuserdatauv(L, (N ? N : 1) * (size_t)k * sizeof(int64_t), 0);
    if (dm_memory_topk(&u->m, dm_tensor_f32(vals), tmp, qd, N, (size_t)k, &err) != 0)
        dm_bind_error(L, &err);
    int32_t *id = dm_tensor_i32(idx);
    for (size_t i = 0; i < N * (size_t)k; i++) id[i] = (int32_t)(tmp[i] + 1);
    lua_pop(L, 1);
    return 2;
}

static int l_reset_usage(lua_State *L)
{
    dm_memory_reset_usage(&check_mem(L, 1, "Memory.reset_usage")->m);
    return 0;
}

static int l_zero_grad(lua_State *L)
{
    dm_memory_zero_grad(&check_mem(L, 1, "Memory.zero_grad")->m);
    return 0;
}

static void push_param_view(lua_State *L, lmemory *u, float *data)
{
    const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
    int64_t s[2] = {(int64_t)M, (int64_t)D};
    dm_bind_pushview(L, data, 2, s, 1);
}

/* m:parameters() -> { {name="keys", value=, grad=}, {name="values", ...} } */
static int l_parameters(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory.parameters");
    lua_createtable(L, 2, 0);
    const char *names[2] = {"keys", "values"};
    float *vals[2] = {dm_memory_keys(&u->m), dm_memory_values(&u->m)};
    float *grads[2] = {dm_memory_key_grad(&u->m), dm_memory_value_grad(&u->m)};
    for (int i = 0; i < 2; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, names[i]);
        lua_setfield(L, -2, "name");
        push_param_view(L, u, vals[i]);
        lua_setfield(L, -2, "value");
        push_param_view(L, u, grads[i]);
        lua_setfield(L, -2, "grad");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* m.keys, m.values, m.slots, m.width, then the methods. */
static int m_index(lua_State *L)
{
    lmemory *u = (lmemory *)luaL_checkudata(L, 1, DM_MEMORY_MT);
    const char *k = lua_tostring(L, 2);
    if (k && u->alive) {
        const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
        if (strcmp(k, "keys") == 0 || strcmp(k, "values") == 0) {
            push_param_view(L, u, k[0] == 'k' ? dm_memory_keys(&u->m) : dm_memory_values(&u->m));
            return 1;
        }
        if (strcmp(k, "slots") == 0) {
            lua_pushinteger(L, (lua_Integer)M);
            return 1;
        }
        if (strcmp(k, "width") == 0) {
            lua_pushinteger(L, (lua_Integer)D);
            return 1;
        }
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* m.keys = t / m.values = t copy t in (shape (M,D) required). */
static int m_newindex(lua_State *L)
{
    lmemory *u = check_mem(L, 1, "Memory");
    const size_t M = dm_memory_slots(&u->m), D = dm_memory_width(&u->m);
    const char *k = lua_tostring(L, 2);
    if (!k || (strcmp(k, "keys") != 0 && strcmp(k, "values") != 0))
        dm_bind_errorf(L, "Memory: cannot set field '%s' (only keys and values can be assigned)",
                       k ? k : luaL_typename(L, 2));
    dm_tensor *t = dm_bind_checkf32(L, 3, "Memory", k);
    if (t->ndim != 2 || t->shape[0] != (int64_t)M || t->shape[1] != (int64_t)D) {
        char sb[96];
        dm_bind_errorf(L, "Memory: %s must be %zux%zu, got %s", k, M, D,
                       dm_tensor_shape_str(t, sb, sizeof sb));
    }
    dm_tensor dst;
    dm_error err;
    int64_t s[2] = {(int64_t)M, (int64_t)D};
    float *into = k[0] == 'k' ? dm_memory_keys(&u->m) : dm_memory_values(&u->m);
    if (dm_tensor_init_borrowed(&dst, into, DM_F32, 2, s, &err) != 0)
        dm_bind_error(L, &err);
    int rc = dm_tensor_copy(&dst, t, &err);
    dm_tensor_release(&dst);
    if (rc != 0) dm_bind_error(L, &err);
    return 0;
}

void dm_open_memory(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"read", l_read},           {"backward", l_backward},
        {"write", l_write},         {"usage", l_usage},
        {"weights", l_weights},     {"topk", l_topk},
        {"reset_usage", l_reset_usage}, {"zero_grad", l_zero_grad},
        {"parameters", l_parameters}, {NULL, NULL},
    };
    luaL_newmetatable(L, DM_MEMORY_MT);
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, m_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_newindex);
    lua_setfield(L, -2, "__newindex");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_memory_new);
    lua_setfield(L, -2, "Memory");
}
