/* bind.c: the helpers every binding file uses to pass tensors between Lua
 * and the core (see bind.h).
 *
 * A dm.Tensor userdata holds a dm_tensor by value and one user value: the
 * Lua object whose memory a borrowed view points into (a layer, the
 * memory), so that object outlives every view of it. A userdata is always
 * created empty (storage NULL) with its metatable set before any storage is
 * acquired, so an error at any point leaves only a harmless empty userdata
 * for the collector. */
#include "bind/bind.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int dm_bind_error(lua_State *L, const dm_error *err)
{
    return luaL_error(L, "%s", err->msg);
}

int dm_bind_errorf(lua_State *L, const char *fmt, ...)
{
    char msg[DM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return luaL_error(L, "%s", msg);
}

/* The message already starts with the file's own name and line, which is
 * where the user must look; the Lua line that asked for the file would
 * only push that out of sight (config.lua:356: app.yaml:3: ...). */
int dm_bind_fileerrorf(lua_State *L, const char *fmt, ...)
{
    char msg[DM_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lua_pushstring(L, msg);
    return lua_error(L);
}

const char *dm_bind_typename(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (idx > lua_gettop(L)) return "no value";
    int t = luaL_getmetafield(L, idx, "__name");
    if (t == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        lua_pop(L, 1); /* the metatable (and so the string) stays referenced */
        return s;
    }
    if (t != LUA_TNIL) lua_pop(L, 1);
    return luaL_typename(L, idx);
}

dm_tensor *dm_bind_testtensor(lua_State *L, int idx)
{
    return (dm_tensor *)luaL_testudata(L, idx, DM_TENSOR_MT);
}

dm_tensor *dm_bind_checktensor(lua_State *L, int idx, const char *fn, const char *arg)
{
    idx = lua_absindex(L, idx);
    dm_tensor *t = dm_bind_testtensor(L, idx);
    if (!t) {
        /* t.sum() instead of t:sum() leaves self missing or shifted to a
         * plain argument; another object passed as self is a different slip. */
        if (strcmp(arg, "self") == 0 && !lua_isuserdata(L, idx))
            dm_bind_errorf(L, "%s: argument self: expected Tensor, got %s (call it as t:%s(...), not t.%s(...))",
                           fn, dm_bind_typename(L, idx), fn, fn);
        dm_bind_errorf(L, "%s: argument %s: expected Tensor, got %s", fn, arg, dm_bind_typename(L, idx));
        return NULL;
    }
    if (!t->storage) dm_bind_errorf(L, "%s: argument %s: tensor has been freed (closed)", fn, arg);
    return t;
}

dm_tensor *dm_bind_checkf32(lua_State *L, int idx, const char *fn, const char *arg)
{
    dm_tensor *t = dm_bind_checktensor(L, idx, fn, arg);
    if (t->dtype != DM_F32)
        dm_bind_errorf(L, "%s: argument %s: expected a float32 tensor, got %s", fn, arg,
                   dm_dtype_name(t->dtype));
    return t;
}

dm_tensor *dm_bind_checki32(lua_State *L, int idx, const char *fn, const char *arg)
{
    dm_tensor *t = dm_bind_checktensor(L, idx, fn, arg);
    if (t->dtype != DM_I32)
        dm_bind_errorf(L, "%s: argument %s: expected an int32 tensor, got %s", fn, arg,
                   dm_dtype_name(t->dtype));
    return t;
}

dm_tensor *dm_bind_newempty(lua_State *L)
{
    dm_tensor *t = (dm_tensor *)lua_newuserdatauv(L, sizeof(dm_tensor), 1);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, DM_TENSOR_MT);
    return t;
}

dm_tensor *dm_bind_newtensor_named(lua_State *L, dm_dtype dtype, int ndim, const int64_t *shape,
                                   const char *who)
{
    dm_error err;
    dm_tensor *t = dm_bind_newempty(L);
    if (dm_tensor_init(t, dtype, ndim, shape, who, &err) != 0) dm_bind_error(L, &err);
    return t;
}

dm_tensor *dm_bind_newtensor(lua_State *L, dm_dtype dtype, int ndim, const int64_t *shape)
{
    return dm_bind_newtensor_named(L, dtype, ndim, shape, "Tensor");
}

dm_tensor *dm_bind_pushtensor(lua_State *L, dm_tensor *t)
{
    dm_tensor *u = dm_bind_newempty(L);
    *u = *t;
    t->storage = NULL;
    return u;
}

dm_tensor *dm_bind_pushview(lua_State *L, float *data, int ndim, const int64_t *shape, int owner_idx)
{
    dm_error err;
    owner_idx = lua_absindex(L, owner_idx);
    dm_tensor *t = dm_bind_newempty(L);
    if (dm_tensor_init_borrowed(t, data, DM_F32, ndim, shape, &err) != 0) dm_bind_error(L, &err);
    lua_pushvalue(L, owner_idx);
    lua_setiuservalue(L, -2, 1);
    return t;
}

void dm_bind_shareowner(lua_State *L, int src_idx, int dst_idx)
{
    src_idx = lua_absindex(L, src_idx);
    dst_idx = lua_absindex(L, dst_idx);
    lua_getiuservalue(L, src_idx, 1);
    lua_setiuservalue(L, dst_idx, 1);
}

/* ---- option readers (bind.h) ---------------------------------------------- */

static int has_opts(lua_State *L, int opts) { return !lua_isnoneornil(L, opts); }

void dm_bind_check_options(lua_State *L, int opts, const char *fn, const char *const *known)
{
    if (!has_opts(L, opts)) return;
    if (!lua_istable(L, opts))
        dm_bind_errorf(L, "%s: options must be a table, got %s", fn, luaL_typename(L, opts));
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = 0;
        for (int i = 0; k && known[i]; i++) ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            char list[512] = "";
            for (int i = 0; known[i]; i++) {
                strncat(list, known[i], sizeof list - strlen(list) - 1);
                if (known[i + 1]) strncat(list, ", ", sizeof list - strlen(list) - 1);
            }
            dm_bind_errorf(L, "%s: unknown option '%s' (known: %s)", fn,
                           k ? k : luaL_typename(L, -1), list);
        }
    }
}

/* Pushes opts[key] (nil when there is no table). */
static int get_opt(lua_State *L, int opts, const char *key)
{
    if (!has_opts(L, opts) || !lua_istable(L, opts)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, opts, key);
}

static const char *shown(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx);
}

double dm_bind_opt_number(lua_State *L, int opts, const char *fn, const char *key, double def)
{
    double v = def;
    if (get_opt(L, opts, key) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            dm_bind_errorf(L, "%s: option %s: expected a number, got %s", fn, key,
                           luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

int64_t dm_bind_opt_int(lua_State *L, int opts, const char *fn, const char *key, int64_t def,
                        int required)
{
    int64_t v = def;
    if (get_opt(L, opts, key) == LUA_TNIL) {
        if (required) dm_bind_errorf(L, "%s: option %s is required", fn, key);
    } else {
        int ok = 0;
        lua_Integer x = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
        if (!ok)
            dm_bind_errorf(L, "%s: option %s: expected an integer, got %s", fn, key, shown(L, -1));
        v = (int64_t)x;
    }
    lua_pop(L, 1);
    return v;
}

int dm_bind_opt_bool(lua_State *L, int opts, const char *fn, const char *key, int def)
{
    int v = def;
    if (get_opt(L, opts, key) != LUA_TNIL) {
        if (!lua_isboolean(L, -1))
            dm_bind_errorf(L, "%s: option %s: expected a boolean, got %s", fn, key, shown(L, -1));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

int dm_bind_opt_enum(lua_State *L, int opts, const char *fn, const char *key,
                     const char *const *choices, int def)
{
    int r = def;
    if (get_opt(L, opts, key) != LUA_TNIL) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        r = -1;
        for (int i = 0; v && choices[i]; i++)
            if (strcmp(v, choices[i]) == 0) r = i;
        if (r < 0) {
            /* "'a' or 'b'" for two choices, "one of 'a', 'b', 'c'" for more */
            char list[256] = "";
            int n = 0;
            while (choices[n]) n++;
            for (int i = 0; i < n; i++) {
                strncat(list, i == 0 ? "" : (n == 2 ? " or " : ", "), sizeof list - strlen(list) - 1);
                strncat(list, "'", sizeof list - strlen(list) - 1);
                strncat(list, choices[i], sizeof list - strlen(list) - 1);
                strncat(list, "'", sizeof list - strlen(list) - 1);
            }
            dm_bind_errorf(L, "%s: option %s: expected %s%s, got %s", fn, key, n == 2 ? "" : "one of ",
                           list, v ? v : shown(L, -1));
        }
    }
    lua_pop(L, 1);
    return r;
}

int64_t dm_bind_check_int(lua_State *L, int idx, const char *fn, const char *arg)
{
    int ok = 0;
    lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
    if (!ok)
        dm_bind_errorf(L, "%s: argument %s: expected an integer, got %s", fn, arg,
                       lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx)
                                                       : dm_bind_typename(L, idx));
    return (int64_t)v;
}
