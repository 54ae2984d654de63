/* datautil.c: dm.datautil, the few hot loops of lua/drlmem/data.lua and
 * metrics.lua that would be slow as Lua code over large corpora.
 *
 * data.lua tokenises, builds the vocabulary and splits in Lua; these helpers
 * only move integers: packing encoded samples into (N,T) int32 tensors,
 * gathering a batch of rows from them, and counting per-label confusion
 * numbers for the metrics. Lua tables of token ids come in, int32 tensors go
 * out, so a batch never round-trips through a Lua table of B*T numbers. */
#include "bind/bind.h"

#include <string.h>

enum { PAD = 0, UNK = 1, SOS = 2, EOS = 3 };

static int32_t check_id(lua_State *L, int tbl, lua_Integer j, const char *fn, lua_Integer row)
{
    lua_rawgeti(L, tbl, j);
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);
    if (!isnum || v < 0 || v > INT32_MAX)
        luaL_error(L, "%s: sample %I, position %I: expected a token id (integer >= 0), got %s",
                   fn, row, j, isnum ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_pop(L, 1);
    return (int32_t)v;
}

static int64_t check_T(lua_State *L, int idx, const char *fn)
{
    lua_Integer T = luaL_checkinteger(L, idx);
    if (T < 1) luaL_error(L, "%s: max_seq_length must be >= 1, got %I", fn, T);
    return (int64_t)T;
}

/* encode_lines(samples, T) -> X, Y: samples[i] is the array of ids t1..tn of
 * sample i; row i of X is [<sos>, t1..tn][:T] and of Y [t1..tn, <eos>][:T],
 * both right-padded with <pad> (the upstream "Sample"). */
static int l_encode_lines(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t T = check_T(L, 2, "encode_lines");
    int64_t N = (int64_t)lua_rawlen(L, 1);
    int64_t shape[2] = {N, T};
    dm_tensor *X = dm_bind_newtensor(L, DM_I32, 2, shape);
    dm_tensor *Y = dm_bind_newtensor(L, DM_I32, 2, shape);
    int32_t *x = dm_tensor_i32(X); /* (N,T) */
    int32_t *y = dm_tensor_i32(Y); /* (N,T) */
    for (int64_t i = 0; i < N; i++) {
        if (lua_rawgeti(L, 1, (lua_Integer)(i + 1)) != LUA_TTABLE)
            return luaL_error(L, "encode_lines: sample %I is a %s, expected a table of ids",
                              (lua_Integer)(i + 1), luaL_typename(L, -1));
        int tbl = lua_gettop(L);
        int64_t n = (int64_t)lua_rawlen(L, tbl);
        int32_t *xr = x + i * T, *yr = y + i * T;
        xr[0] = SOS;
        for (int64_t j = 0; j < n && j < T; j++) {
            int32_t id = check_id(L, tbl, (lua_Integer)(j + 1), "encode_lines", (lua_Integer)(i + 1));
            if (j + 1 < T) xr[j + 1] = id;
            yr[j] = id;
        }
        if (n < T) yr[n] = EOS;
        lua_pop(L, 1);
    }
    return 2;
}

/* encode_windows(ids, T) -> X, Y: the stream ids cut into floor(n/(T+1))
 * windows w of T+1 ids; X row = w[1..T], Y row = w[2..T+1]. */
static int l_encode_windows(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t T = check_T(L, 2, "encode_windows");
    int64_t n = (int64_t)lua_rawlen(L, 1);
    int64_t N = n / (T + 1);
    int64_t shape[2] = {N, T};
    dm_tensor *X = dm_bind_newtensor(L, DM_I32, 2, shape);
    dm_tensor *Y = dm_bind_newtensor(L, DM_I32, 2, shape);
    int32_t *x = dm_tensor_i32(X); /* (N,T) */
    int32_t *y = dm_tensor_i32(Y); /* (N,T) */
    for (int64_t i = 0; i < N; i++) {
        int64_t base = i * (T + 1);
        int32_t prev = check_id(L, 1, (lua_Integer)(base + 1), "encode_windows", (lua_Integer)(i + 1));
        for (int64_t j = 0; j < T; j++) {
            int32_t id = check_id(L, 1, (lua_Integer)(base + j + 2), "encode_windows",
                                  (lua_Integer)(i + 1));
            x[i * T + j] = prev;
            y[i * T + j] = id;
            prev = id;
        }
    }
    return 2;
}

/* stride_windows(ids, first, last, B, T) -> X, Y, nb: the ids first..last
 * (1-based, inclusive) as B parallel streams, truncated BPTT's layout
 * (Zaremba et al.'s reader, char-rnn): stream b is the b-th of B equal
 * consecutive pieces of len = n // B ids, and batch k (0-based) holds, in
 * rows k*B .. k*B+B-1, window k of every stream: X row b = piece b's ids
 * k*T+1 .. k*T+T, Y row b the ids one further. So row b of batch k+1
 * continues row b of batch k exactly. nb = (len - 1) // T batches (0 when
 * the range is too short); the ids past the last whole window are left out. */
static int l_stride_windows(lua_State *L)
{
    const char *fn = "stride_windows";
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer first = luaL_checkinteger(L, 2), last = luaL_checkinteger(L, 3);
    lua_Integer B = luaL_checkinteger(L, 4);
    int64_t T = check_T(L, 5, fn);
    if (first < 1 || last < first - 1 || last > (lua_Integer)lua_rawlen(L, 1) || B < 1)
        return luaL_error(L, "%s: bad range %I..%I of %I ids, or batch size %I", fn, first, last,
                          (lua_Integer)lua_rawlen(L, 1), B);
    const int64_t len = (int64_t)(last - first + 1) / B, nb = len > 0 ? (len - 1) / T : 0;
    int64_t shape[2] = {nb * B, T};
    dm_tensor *X = dm_bind_newtensor(L, DM_I32, 2, shape);
    dm_tensor *Y = dm_bind_newtensor(L, DM_I32, 2, shape);
    int32_t *x = dm_tensor_i32(X); /* (nb*B,T) */
    int32_t *y = dm_tensor_i32(Y); /* (nb*B,T) */
    for (int64_t b = 0; b < B; b++) {
        const lua_Integer base = first + b * len; /* piece b's first id */
        for (int64_t k = 0; k < nb; k++) {
            int32_t *xr = x + (k * B + b) * T, *yr = y + (k * B + b) * T;
            int32_t prev = check_id(L, 1, base + k * T, fn, (lua_Integer)(k * B + b + 1));
            for (int64_t j = 0; j < T; j++) {
                int32_t id = check_id(L, 1, base + k * T + j + 1, fn, (lua_Integer)(k * B + b + 1));
                xr[j] = prev;
                yr[j] = id;
                prev = id;
            }
        }
    }
    lua_pushinteger(L, (lua_Integer)nb);
    return 3;
}

static dm_tensor *check_rows(lua_State *L, int idx, const char *fn, const char *arg)
{
    dm_tensor *t = dm_bind_checki32(L, idx, fn, arg);
    if (t->ndim != 2 || !dm_tensor_is_contiguous(t))
        luaL_error(L, "%s: %s must be a contiguous 2-d int32 tensor", fn, arg);
    return t;
}

/* gather(X, Y, index, first, count) -> x, y: rows index[first .. first+count-1]
 * (1-based sample numbers) of X and Y as fresh (count,T) tensors. */
static int l_gather(lua_State *L)
{
    dm_tensor *X = check_rows(L, 1, "gather", "X");
    dm_tensor *Y = check_rows(L, 2, "gather", "Y");
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer first = luaL_checkinteger(L, 4);
    lua_Integer count = luaL_checkinteger(L, 5);
    int64_t N = X->shape[0], T = X->shape[1];
    if (Y->shape[0] != N || Y->shape[1] != T)
        return luaL_error(L, "gather: X and Y shapes differ");
    if (count < 0 || first < 1 || (lua_Integer)lua_rawlen(L, 3) < first + count - 1)
        return luaL_error(L, "gather: rows %I..%I outside the index of %I entries", first,
                          first + count - 1, (lua_Integer)lua_rawlen(L, 3));
    int64_t shape[2] = {(int64_t)count, T};
    dm_tensor *bx = dm_bind_newtensor(L, DM_I32, 2, shape);
    dm_tensor *by = dm_bind_newtensor(L, DM_I32, 2, shape);
    const int32_t *xs = dm_tensor_i32(X), *ys = dm_tensor_i32(Y); /* (N,T) */
    int32_t *xd = dm_tensor_i32(bx), *yd = dm_tensor_i32(by);    /* (count,T) */
    for (lua_Integer r = 0; r < count; r++) {
        lua_rawgeti(L, 3, first + r);
        int isnum;
        lua_Integer s = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (!isnum || s < 1 || s > N)
            return luaL_error(L, "gather: index[%I] is not a sample number in 1..%I", first + r,
                              (lua_Integer)N);
        memcpy(xd + r * T, xs + (s - 1) * T, (size_t)T * sizeof(int32_t));
        memcpy(yd + r * T, ys + (s - 1) * T, (size_t)T * sizeof(int32_t));
    }
    return 2;
}

static void bump(lua_State *L, int tbl, lua_Integer label)
{
    lua_rawgeti(L, tbl, label);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushinteger(L, v + 1);
    lua_rawseti(L, tbl, label);
}

/* count(tp, fp, fn, pred, target, pad) -> correct, total, rows: over the
 * positions whose target is not pad, adds 1 to tp[l] for each hit, fp[pred]
 * and fn[target] for each miss. target is an int32 tensor; pred is an int32
 * tensor of token ids with as many elements, or float32 logits (..., V) with
 * V times as many, whose argmax (first index on ties, as torch) is taken
 * here. rows is target's first dimension (sequences, for per-batch weights). */
static int l_count(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    dm_tensor *P = dm_bind_checktensor(L, 4, "metrics", "predictions");
    dm_tensor *G = dm_bind_checki32(L, 5, "metrics", "targets");
    lua_Integer pad = luaL_optinteger(L, 6, PAD);
    if (!dm_tensor_is_contiguous(P) || !dm_tensor_is_contiguous(G))
        return luaL_error(L, "metrics: predictions and targets must be contiguous tensors");
    size_t n = dm_tensor_numel(G);
    size_t V = 1;
    if (P->dtype == DM_F32) V = P->ndim > 0 ? (size_t)P->shape[P->ndim - 1] : 1;
    if (V == 0 || dm_tensor_numel(P) != n * V) {
        char a[64], b[64];
        return luaL_error(L, "metrics: %s (%s) and targets (%s) do not match",
                          P->dtype == DM_F32 ? "logits" : "predictions",
                          dm_tensor_shape_str(P, a, sizeof a), dm_tensor_shape_str(G, b, sizeof b));
    }
    const int32_t *g = dm_tensor_i32(G); /* (n) */
    lua_Integer correct = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i] == pad) continue;
        int32_t p;
        if (P->dtype == DM_F32) {
            const float *row = dm_tensor_f32(P) + i * V; /* (V) */
            size_t best = 0;
            for (size_t v = 1; v < V; v++)
                if (row[v] > row[best] || (row[v] != row[v] && row[best] == row[best])) best = v;
            p = (int32_t)best;
        } else {
            p = dm_tensor_i32(P)[i];
        }
        total++;
        if (p == g[i]) {
            correct++;
            bump(L, 1, g[i]);
        } else {
            bump(L, 2, p);
            bump(L, 3, g[i]);
        }
    }
    lua_pushinteger(L, correct);
    lua_pushinteger(L, total);
    lua_pushinteger(L, G->ndim > 0 ? (lua_Integer)G->shape[0] : 1);
    return 3;
}

void dm_open_datautil(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"encode_lines", l_encode_lines},
        {"encode_windows", l_encode_windows},
        {"stride_windows", l_stride_windows},
        {"gather", l_gather},
        {"count", l_count},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "datautil");
}
