/* random.c (bind): seeding, saving and restoring the random generator, and
 * dm.Generator, the private generators of the data pipeline.
 *
 * Reproducibility is a requirement: a seed fixes every draw, and a state
 * saved with get_rng_state / Generator:state() and restored later continues
 * the sequence exactly. States travel as a string of 64 hex digits (the four
 * 64-bit words s[0]..s[3] of xoshiro256**, each as 16 lower-case hex digits,
 * most significant first), which survives JSON and safetensors metadata
 * unchanged; a table of four Lua integers (the words as two's-complement
 * int64) is accepted too. The derived draws are those of core/rng.h:
 *   Generator:random()      dm_rng_uniform_double: (next() >> 11) * 2^-53
 *   Generator:random(n)     1 + dm_rng_below(n)  (Lemire, unbiased)
 *   Generator:random(m, n)  m + dm_rng_below(n - m + 1)
 *   randperm(n)             Fisher-Yates: p = {1..n}; for i = n down to 2:
 *                           j = 1 + dm_rng_below(i); swap p[i], p[j]
 *                           (n - 1 draws; randperm(0) and (1) draw nothing) */
#include "bind/bind.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DM_GENERATOR_MT "drlmem.Generator"

dm_rng *dm_bind_testgenerator(lua_State *L, int idx)
{
    return (dm_rng *)luaL_testudata(L, idx, DM_GENERATOR_MT);
}

static lua_Integer check_integer(lua_State *L, int idx, const char *fn, const char *arg)
{
    int ok = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) v = lua_tointegerx(L, idx, &ok);
    if (!ok)
        dm_bind_errorf(L, "%s: argument %s: expected an integer, got %s", fn, arg,
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : dm_bind_typename(L, idx));
    return v;
}

static dm_rng *check_generator(lua_State *L, int idx, const char *fn)
{
    dm_rng *r = dm_bind_testgenerator(L, idx);
    if (!r && !lua_isuserdata(L, idx)) /* g.random() for g:random() */
        dm_bind_errorf(L, "%s: argument self: expected Generator, got %s (call it as g:%s(...), not g.%s(...))",
                       fn, dm_bind_typename(L, idx), fn, fn);
    if (!r) dm_bind_errorf(L, "%s: argument self: expected Generator, got %s", fn, dm_bind_typename(L, idx));
    return r;
}

static void push_state(lua_State *L, const dm_rng *r)
{
    char buf[4 * 16 + 1];
    for (int i = 0; i < 4; i++) snprintf(buf + 16 * i, 17, "%016" PRIx64, r->s[i]);
    lua_pushlstring(L, buf, 64);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads a state (string or table, see the file comment) at idx into r. */
static void read_state(lua_State *L, int idx, dm_rng *r, const char *fn)
{
    dm_rng s;
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        if (n != 64) dm_bind_errorf(L, "%s: state string has %d characters, expected 64 hex digits", fn, (int)n);
        for (int i = 0; i < 4; i++) {
            uint64_t w = 0;
            for (int k = 0; k < 16; k++) {
                int h = hexval(str[16 * i + k]);
                if (h < 0) dm_bind_errorf(L, "%s: state string: character %d is not a hex digit", fn, 16 * i + k + 1);
                w = (w << 4) | (uint64_t)h;
            }
            s.s[i] = w;
        }
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        if (lua_rawlen(L, idx) != 4)
            dm_bind_errorf(L, "%s: state table has %d entries, expected 4 integers", fn, (int)lua_rawlen(L, idx));
        for (int i = 0; i < 4; i++) {
            lua_rawgeti(L, idx, i + 1);
            char arg[16];
            snprintf(arg, sizeof arg, "state[%d]", i + 1);
            s.s[i] = (uint64_t)check_integer(L, -1, fn, arg);
            lua_pop(L, 1);
        }
    } else {
        dm_bind_errorf(L, "%s: argument state: expected a string or a table of 4 integers, got %s", fn,
                   dm_bind_typename(L, idx));
        return;
    }
    /* The all-zero state is a fixed point of xoshiro: every draw would be 0. */
    if ((s.s[0] | s.s[1] | s.s[2] | s.s[3]) == 0)
        dm_bind_errorf(L, "%s: the all-zero state is invalid for xoshiro256**", fn);
    *r = s;
}

static int randperm(lua_State *L, dm_rng *r, int idx, const char *fn)
{
    lua_Integer n = check_integer(L, idx, fn, "n");
    if (n < 0 || n > ((lua_Integer)1 << 31))
        dm_bind_errorf(L, "%s: argument n: expected 0 to 2^31, got %" PRId64, fn, (int64_t)n);
    /* The permutation is built in a userdata, so an error raised while the
     * table is made (out of memory) leaves nothing to free by hand. */
    int64_t *p = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(n ? n : 1), 0);
    for (lua_Integer i = 0; i < n; i++) p[i] = i + 1;
    for (lua_Integer i = n - 1; i >= 1; i--) {
        lua_Integer j = (lua_Integer)dm_rng_below(r, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    lua_createtable(L, (int)(n < (1 << 24) ? n : 0), 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)p[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int random_value(lua_State *L, dm_rng *r, int first, const char *fn)
{
    int nargs = lua_gettop(L) - first + 1;
    if (nargs <= 0) {
        lua_pushnumber(L, dm_rng_uniform_double(r));
        return 1;
    }
    lua_Integer lo = 1, hi;
    if (nargs == 1) {
        hi = check_integer(L, first, fn, "n");
    } else {
        lo = check_integer(L, first, fn, "m");
        hi = check_integer(L, first + 1, fn, "n");
    }
    if (hi < lo)
        dm_bind_errorf(L, "%s: interval is empty (%" PRId64 " > %" PRId64 ")", fn, (int64_t)lo, (int64_t)hi);
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1; /* 0: the full 64-bit range */
    uint64_t d = span ? dm_rng_below(r, span) : dm_rng_next(r);
    lua_pushinteger(L, (lua_Integer)((uint64_t)lo + d));
    return 1;
}

/* ---- module functions on the global generator ---- */

static int l_manual_seed(lua_State *L)
{
    dm_rng_seed(&dm_rng_global, (uint64_t)check_integer(L, 1, "manual_seed", "seed"));
    return 0;
}

static int l_get_rng_state(lua_State *L)
{
    push_state(L, &dm_rng_global);
    return 1;
}

static int l_set_rng_state(lua_State *L)
{
    read_state(L, 1, &dm_rng_global, "set_rng_state");
    return 0;
}

static int l_randperm(lua_State *L) { return randperm(L, &dm_rng_global, 1, "randperm"); }

/* ---- dm.Generator ---- */

static int l_Generator(lua_State *L)
{
    lua_Integer seed = lua_isnoneornil(L, 1) ? 0 : check_integer(L, 1, "Generator", "seed");
    dm_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
    dm_rng_seed(r, (uint64_t)seed);
    luaL_setmetatable(L, DM_GENERATOR_MT);
    return 1;
}

static int g_randperm(lua_State *L) { return randperm(L, check_generator(L, 1, "randperm"), 2, "randperm"); }
static int g_random(lua_State *L) { return random_value(L, check_generator(L, 1, "random"), 2, "random"); }

static int g_state(lua_State *L)
{
    push_state(L, check_generator(L, 1, "state"));
    return 1;
}

static int g_set_state(lua_State *L)
{
    read_state(L, 2, check_generator(L, 1, "set_state"), "set_state");
    lua_settop(L, 1);
    return 1;
}

static int g_seed(lua_State *L)
{
    dm_rng *r = check_generator(L, 1, "seed");
    dm_rng_seed(r, (uint64_t)check_integer(L, 2, "seed", "seed"));
    lua_settop(L, 1);
    return 1;
}

static int g_tostring(lua_State *L)
{
    check_generator(L, 1, "tostring");
    lua_pushliteral(L, "Generator(xoshiro256**)");
    return 1;
}

static const luaL_Reg gen_methods[] = {
    {"randperm", g_randperm}, {"random", g_random}, {"state", g_state},
    {"set_state", g_set_state}, {"seed", g_seed}, {NULL, NULL}};

static const luaL_Reg module_funcs[] = {
    {"manual_seed", l_manual_seed}, {"get_rng_state", l_get_rng_state},
    {"set_rng_state", l_set_rng_state}, {"randperm", l_randperm},
    {"Generator", l_Generator}, {NULL, NULL}};

void dm_open_random(lua_State *L)
{
    luaL_newmetatable(L, DM_GENERATOR_MT);
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, gen_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, module_funcs, 0);
}
