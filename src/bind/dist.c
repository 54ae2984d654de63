/* dist.c (bind): dm.dist, the Lua face of the MPI collectives
 * (core/dist.h). Ranks count from 0, as in MPI.
 *
 *   dm.dist.available()        true when an MPI launcher (mpirun) started
 *                              this process, so init joins a world of
 *                              several ranks; false: a world of one
 *   dm.dist.init([{timeout = s}]) -> rank, size   joins the world (no MPI
 *                              at all outside mpirun); idempotent. timeout:
 *                              seconds a collective may wait (0: forever;
 *                              default DRLMEM_DIST_TIMEOUT or 600)
 *   dm.dist.initialized(), dm.dist.rank(), dm.dist.size()
 *   dm.dist.allreduce(x [, op [, {bucket_bytes =, scale =}]]) -> x
 *       x: a Tensor or a list of Tensors (float32/int32), reduced in place
 *       through buckets of bucket_bytes (default 4 MiB); or a number, or a
 *       list of numbers, whose reduction is returned (a new list). op:
 *       "sum" (default), "mean", "max", "min". scale multiplies this rank's
 *       float32 values first (its weight in a weighted mean).
 *   dm.dist.broadcast(x [, root [, {bucket_bytes =}]]) -> x
 *       x: a Tensor or a list of Tensors, overwritten with root's (root
 *       defaults to 0); or a number, string, boolean or nil, of which every
 *       rank gets root's value back (the others may pass nil)
 *   dm.dist.barrier(), dm.dist.finalize()
 *
 * Every function but available() joins the world first when init has not
 * run, so rank() under mpirun is never a silent 0. Keys not found here
 * (average_gradients, broadcast_parameters) come from the Lua module
 * drlmem.dist (lua/drlmem/dist.lua), loaded on first use. */
#include "bind/bind.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"

static void ensure_init(lua_State *L)
{
    dm_error err;
    if (!dm_dist_initialized() && dm_dist_init(-1, &err) != 0) dm_bind_error(L, &err);
}

static int d_available(lua_State *L)
{
    lua_pushboolean(L, dm_dist_launched());
    return 1;
}

static int d_init(lua_State *L)
{
    double timeout = -1;
    if (!lua_isnoneornil(L, 1)) {
        if (!lua_istable(L, 1))
            return dm_bind_errorf(L, "dist.init: expected an options table {timeout = seconds}, "
                                     "got %s", dm_bind_typename(L, 1));
        lua_pushnil(L);
        while (lua_next(L, 1)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (!k || strcmp(k, "timeout") != 0)
                return dm_bind_errorf(L, "dist.init: unknown option '%s' (known: timeout)",
                                      k ? k : luaL_typename(L, -2));
            if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
                return dm_bind_errorf(L, "dist.init: option timeout: expected seconds >= 0 "
                                         "(0: no limit), got %s", luaL_tolstring(L, -1, NULL));
            timeout = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    }
    dm_error err;
    if (dm_dist_init(timeout, &err) != 0) return dm_bind_error(L, &err);
    lua_pushinteger(L, dm_dist_rank());
    lua_pushinteger(L, dm_dist_size());
    return 2;
}

static int d_initialized(lua_State *L)
{
    lua_pushboolean(L, dm_dist_initialized());
    return 1;
}

static int d_rank(lua_State *L)
{
    ensure_init(L);
    lua_pushinteger(L, dm_dist_rank());
    return 1;
}

static int d_size(lua_State *L)
{
    ensure_init(L);
    lua_pushinteger(L, dm_dist_size());
    return 1;
}

/* The options table at idx (or none): bucket_bytes and, when allowed,
 * scale. Unknown keys are errors. */
static void read_opts(lua_State *L, int idx, const char *fn, int allow_scale, size_t *bucket,
                      double *scale)
{
    *bucket = 0;
    *scale = 1.0;
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx))
        dm_bind_errorf(L, "%s: argument 3: expected an options table, got %s", fn,
                       dm_bind_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "bucket_bytes") == 0) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1)
                dm_bind_errorf(L, "%s: option bucket_bytes: expected a positive integer, got %s",
                               fn, luaL_tolstring(L, -1, NULL));
            *bucket = (size_t)lua_tointeger(L, -1);
        } else if (allow_scale && strcmp(k, "scale") == 0) {
            if (!lua_isnumber(L, -1) || !isfinite(lua_tonumber(L, -1)))
                dm_bind_errorf(L, "%s: option scale: expected a finite number, got %s", fn,
                               luaL_tolstring(L, -1, NULL));
            *scale = lua_tonumber(L, -1);
        } else {
            dm_bind_errorf(L, "%s: unknown option '%s' (known: bucket_bytes%s)", fn, k,
                           allow_scale ? ", scale" : "");
        }
        lua_pop(L, 1);
    }
}

/* The tensors of x (a Tensor or a non-empty list of Tensors) into a
 * userdata array pushed on the stack (collected with it); *n their count.
 * The list stays on the stack below, so the tensors stay alive. */
static dm_tensor **collect_tensors(lua_State *L, int idx, const char *fn, size_t *n)
{
    dm_tensor *t = dm_bind_testtensor(L, idx);
    if (t) {
        dm_tensor **a = lua_newuserdatauv(L, sizeof *a, 0);
        a[0] = t;
        *n = 1;
        return a;
    }
    size_t len = lua_rawlen(L, idx);
    lua_pushnil(L);
    if (len == 0 && lua_next(L, idx)) /* a table with keys but no list part */
        dm_bind_errorf(L, "%s: argument 1: expected a list of Tensors {t1, t2, ...}, got a "
                          "table with key %s", fn, luaL_tolstring(L, -2, NULL));
    dm_tensor **a = lua_newuserdatauv(L, (len ? len : 1) * sizeof *a, 0);
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        a[i] = dm_bind_testtensor(L, -1);
        if (!a[i])
            dm_bind_errorf(L, "%s: element %zu of the list: expected Tensor, got %s", fn, i + 1,
                           dm_bind_typename(L, -1));
        lua_pop(L, 1);
    }
    *n = len;
    return a;
}

static dm_dist_op check_op(lua_State *L, int idx, const char *fn)
{
    static const char *const names[] = {"sum", "mean", "max", "min", NULL};
    if (lua_isnoneornil(L, idx)) return DM_DIST_SUM;
    const char *s = lua_tostring(L, idx);
    for (int i = 0; s && names[i]; i++)
        if (strcmp(s, names[i]) == 0) return (dm_dist_op)i;
    dm_bind_errorf(L, "%s: argument 2: op must be \"sum\", \"mean\", \"max\" or \"min\", got %s",
                   fn, s ? s : dm_bind_typename(L, idx));
    return DM_DIST_SUM;
}

static int d_allreduce(lua_State *L)
{
    const char *fn = "dist.allreduce";
    dm_dist_op op = check_op(L, 2, fn);
    size_t bucket;
    double scale;
    read_opts(L, 3, fn, 1, &bucket, &scale);
    dm_error err;
    if (lua_type(L, 1) == LUA_TNUMBER) {
        double v = lua_tonumber(L, 1) * scale;
        if (dm_dist_allreduce_f64(&v, 1, op, &err) != 0) return dm_bind_error(L, &err);
        lua_pushnumber(L, v);
        return 1;
    }
    if (lua_istable(L, 1) && lua_rawgeti(L, 1, 1) == LUA_TNUMBER) {
        lua_pop(L, 1);
        size_t n = lua_rawlen(L, 1);
        double *v = lua_newuserdatauv(L, n * sizeof *v, 0); /* (n) */
        for (size_t i = 0; i < n; i++) {
            if (lua_rawgeti(L, 1, (lua_Integer)i + 1) != LUA_TNUMBER)
                return dm_bind_errorf(L, "%s: element %zu of the list: expected number, got %s",
                                      fn, i + 1, luaL_typename(L, -1));
            v[i] = lua_tonumber(L, -1) * scale;
            lua_pop(L, 1);
        }
        if (dm_dist_allreduce_f64(v, n, op, &err) != 0) return dm_bind_error(L, &err);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return 1;
    }
    if (lua_istable(L, 1)) lua_pop(L, 1);
    if (!dm_bind_testtensor(L, 1) && !lua_istable(L, 1))
        return dm_bind_errorf(L, "%s: argument 1: expected a Tensor, a list of Tensors, a number "
                                 "or a list of numbers, got %s", fn, dm_bind_typename(L, 1));
    size_t n;
    dm_tensor **ts = collect_tensors(L, 1, fn, &n);
    if (dm_dist_allreduce_tensors(ts, n, op, scale, bucket, &err) != 0) return dm_bind_error(L, &err);
    lua_settop(L, 1);
    return 1;
}

/* Tags of a broadcast Lua value (the header root sends first). */
enum { BV_NIL, BV_FALSE, BV_TRUE, BV_INTEGER, BV_FLOAT, BV_STRING };

static int d_broadcast(lua_State *L)
{
    const char *fn = "dist.broadcast";
    lua_Integer root = luaL_optinteger(L, 2, 0);
    size_t bucket;
    double unused;
    read_opts(L, 3, fn, 0, &bucket, &unused);
    ensure_init(L);
    if (root < 0 || root >= dm_dist_size())
        return dm_bind_errorf(L, "%s: root %lld is not a rank (0..%d)", fn, (long long)root,
                              dm_dist_size() - 1);
    dm_error err;
    if (dm_bind_testtensor(L, 1) || lua_istable(L, 1)) {
        size_t n;
        dm_tensor **ts = collect_tensors(L, 1, fn, &n);
        if (dm_dist_broadcast_tensors(ts, n, (int)root, bucket, &err) != 0)
            return dm_bind_error(L, &err);
        lua_settop(L, 1);
        return 1;
    }
    int t = lua_type(L, 1);
    if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
        return dm_bind_errorf(L, "%s: argument 1: expected a Tensor, a list of Tensors, a number, "
                                 "a string, a boolean or nil, got %s", fn, dm_bind_typename(L, 1));
    /* header: tag, then the integer, the float's bits or the string's length */
    int64_t hdr[2] = {BV_NIL, 0};
    size_t len = 0;
    const char *s = NULL;
    if (dm_dist_rank() == root) {
        if (t == LUA_TBOOLEAN) hdr[0] = lua_toboolean(L, 1) ? BV_TRUE : BV_FALSE;
        else if (t == LUA_TNUMBER && lua_isinteger(L, 1)) {
            hdr[0] = BV_INTEGER;
            hdr[1] = (int64_t)lua_tointeger(L, 1);
        } else if (t == LUA_TNUMBER) {
            double d = lua_tonumber(L, 1);
            hdr[0] = BV_FLOAT;
            memcpy(&hdr[1], &d, sizeof d);
        } else if (t == LUA_TSTRING) {
            s = lua_tolstring(L, 1, &len);
            hdr[0] = BV_STRING;
            hdr[1] = (int64_t)len;
        }
    }
    if (dm_dist_broadcast_bytes(hdr, sizeof hdr, (int)root, &err) != 0) return dm_bind_error(L, &err);
    switch (hdr[0]) {
    case BV_FALSE: case BV_TRUE: lua_pushboolean(L, hdr[0] == BV_TRUE); break;
    case BV_INTEGER: lua_pushinteger(L, (lua_Integer)hdr[1]); break;
    case BV_FLOAT: {
        double d;
        memcpy(&d, &hdr[1], sizeof d);
        lua_pushnumber(L, d);
        break;
    }
    case BV_STRING: {
        len = (size_t)hdr[1];
        luaL_Buffer b;
        char *p = luaL_buffinitsize(L, &b, len);
        if (s) memcpy(p, s, len);
        if (dm_dist_broadcast_bytes(p, len, (int)root, &err) != 0) return dm_bind_error(L, &err);
        luaL_pushresultsize(&b, len);
        break;
    }
    default: lua_pushnil(L);
    }
    return 1;
}

static int d_barrier(lua_State *L)
{
    dm_error err;
    if (dm_dist_barrier(&err) != 0) return dm_bind_error(L, &err);
    return 0;
}

static int d_finalize(lua_State *L)
{
    dm_error err;
    if (dm_dist_finalize(&err) != 0) return dm_bind_error(L, &err);
    return 0;
}

/* __index of dm.dist: the Lua helpers of drlmem.dist, loaded on first use. */
static int d_index(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushliteral(L, "drlmem.dist");
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) return 0; /* not on package.path: only the C part */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "drlmem.dist");
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) return 0;
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    return 1;
}

void dm_open_dist(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"available", d_available},   {"init", d_init},       {"initialized", d_initialized},
        {"rank", d_rank},             {"size", d_size},       {"allreduce", d_allreduce},
        {"broadcast", d_broadcast},   {"barrier", d_barrier}, {"finalize", d_finalize},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_newtable(L);
    lua_pushcfunction(L, d_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "dist");
}
