/* json.c: dm.json, the one JSON codec of drlmem (jansson underneath), used
 * for metrics.jsonl lines and for the config and vocabulary strings a
 * checkpoint keeps in its metadata.
 *
 *   dm.json.encode(value [, {indent = n, sort_keys = bool}]) -> string
 *   dm.json.decode(text [, name]) -> value
 *   dm.json.null                -- the JSON null (a Lua nil cannot sit in a table)
 *   dm.json.array([t]) -> t     -- marks t as a JSON array (so {} encodes as [])
 *
 * Mapping. A table whose keys are exactly 1..n (n >= 1) is an array; a table
 * with string keys is an object; an empty table is {} unless marked with
 * dm.json.array; anything else (mixed or sparse keys) is an error naming the
 * key path. Lua integers stay JSON integers and floats stay reals (1.0 is
 * written "1.0"). jansson prints every real of one call with the same
 * number of significant digits, so encode picks the fewest (up to 17) that
 * read back to every float of the value exactly: a metrics line of float32
 * losses needs at most 9, {0.1, 0.3} prints as [0.1,0.3], while one float
 * needing 17 digits makes its neighbours print with 17 too (still exact).
 * NaN and infinities are errors naming the key path
 * ("json.encode: metrics[2].loss: NaN ..."). Objects are
 * written with sorted keys unless sort_keys = false, so output is
 * deterministic; without indent the text is compact, on one line. Decoding
 * gives integers for JSON integers, floats for reals, dm.json.null for null,
 * and arrays come back marked with dm.json.array so they re-encode as
 * arrays even when empty. Decode errors carry jansson's line and column.
 *
 * Memory: json_t trees are built without raising Lua errors (a failure
 * returns NULL and a message), and decoded trees sit in a userdata box whose
 * __gc frees them, so no error path leaks. */
#include "bind/bind.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_MT "drlmem.json.array"
#define NULL_KEY "drlmem.json.null"
#define BOX_MT "drlmem.json.box"
#define MAX_DEPTH 1000

/* --- encode ---------------------------------------------------------------- */

typedef struct enc {
    lua_State *L;
    int visiting;      /* stack index of a table: tables on the current path */
    int null_idx;      /* stack index of dm.json.null */
    char path[256];
    size_t plen;
    int prec;          /* digits every real needs so far */
    char msg[384];
} enc;

/* Appends a path segment; a path too long to show ends in "...". */
static void path_push_key(enc *e, const char *k, size_t len)
{
    int ident = len > 0 && len < 64 && !(k[0] >= '0' && k[0] <= '9');
    for (size_t i = 0; ident && i < len; i++)
        ident = (k[i] == '_' || (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
                 (k[i] >= '0' && k[i] <= '9'));
    size_t room = sizeof e->path - e->plen;
    int n;
    if (ident) n = snprintf(e->path + e->plen, room, "%s%.*s", e->plen ? "." : "", (int)len, k);
    else n = snprintf(e->path + e->plen, room, "[\"%.*s\"]", (int)(len < 40 ? len : 40), k);
    e->plen = (n < 0 || (size_t)n >= room) ? sizeof e->path - 1 : e->plen + (size_t)n;
}

static void path_push_index(enc *e, lua_Integer i)
{
    size_t room = sizeof e->path - e->plen;
    int n = snprintf(e->path + e->plen, room, "[%lld]", (long long)i);
    e->plen = (n < 0 || (size_t)n >= room) ? sizeof e->path - 1 : e->plen + (size_t)n;
}

static json_t *enc_fail(enc *e, const char *what)
{
    snprintf(e->msg, sizeof e->msg, "json.encode: %s: %s", e->plen ? e->path : "(top level)",
             what);
    return NULL;
}

/* Fewest significant digits (1..17) whose %g text reads back as d. */
static int digits_needed(double d)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d) return p;
    }
    return 17;
}

static json_t *to_json(enc *e, int idx, int depth);

/* Table at idx -> array or object. */
static json_t *table_to_json(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth > MAX_DEPTH) return enc_fail(e, "nested too deeply");
    if (!lua_checkstack(L, 6)) return enc_fail(e, "out of Lua stack");
    const void *self = lua_topointer(L, idx);
    if (lua_rawgetp(L, e->visiting, self) != LUA_TNIL) {
        lua_pop(L, 1);
        return enc_fail(e, "table contains itself (a cycle)");
    }
    lua_pop(L, 1);

    int marked = 0;
    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, ARRAY_MT);
        marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    /* Classify the keys: all positive integers, all strings, or neither. */
    size_t count = 0, nstr = 0;
    lua_Integer maxk = 0;
    const char *bad = NULL;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) nstr++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            if (lua_tointeger(L, -1) > maxk) maxk = lua_tointeger(L, -1);
        } else if (!bad) bad = luaL_typename(L, -1);
    }
    if (bad) {
        char w[96];
        snprintf(w, sizeof w, "table has a %s key (keys must be strings or 1..n)", bad);
        return enc_fail(e, w);
    }
    int is_array = marked || (count > 0 && nstr == 0);
    if (is_array && (nstr > 0 || (lua_Integer)count != maxk))
        return enc_fail(e, nstr > 0 ? "table mixes array items and string keys"
                                    : "array has holes (keys must be exactly 1..n)");
    if (!is_array && nstr != count) return enc_fail(e, "table mixes array items and string keys");

    lua_pushboolean(L, 1);
    lua_rawsetp(L, e->visiting, self);
    json_t *out = is_array ? json_array() : json_object();
    if (!out) return enc_fail(e, "out of memory");
    size_t saved = e->plen;
    if (is_array) {
        for (lua_Integer i = 1; i <= maxk; i++) {
            lua_rawgeti(L, idx, i);
            path_push_index(e, i);
            json_t *v = to_json(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (!v || json_array_append_new(out, v) != 0) {
                if (v) enc_fail(e, "out of memory");
                json_decref(out);
                return NULL;
            }
            e->plen = saved;
            e->path[saved] = '\0';
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen); /* a string: no conversion */
            path_push_key(e, k, klen);
            json_t *v = to_json(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
            if (!v) {
                lua_pop(L, 1);
                json_decref(out);
                return NULL;
            }
            if (json_object_setn_new(out, k, klen, v) != 0) {
                lua_pop(L, 1);
                json_decref(out);
                return enc_fail(e, "key is not valid UTF-8");
            }
            e->plen = saved;
            e->path[saved] = '\0';
        }
    }
    lua_pushnil(L);
    lua_rawsetp(L, e->visiting, self);
    return out;
}

static json_t *to_json(enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        if (lua_isinteger(L, idx)) return json_integer((json_int_t)lua_tointeger(L, idx));
        double d = lua_tonumber(L, idx);
        if (isnan(d)) return enc_fail(e, "NaN cannot be written as JSON");
        if (isinf(d)) return enc_fail(e, d > 0 ? "inf cannot be written as JSON"
                                               : "-inf cannot be written as JSON");
        int p = digits_needed(d);
        if (p > e->prec) e->prec = p;
        json_t *r = json_real(d);
        return r ? r : enc_fail(e, "out of memory");
    }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn(s, len);
        return j ? j : enc_fail(e, "string is not valid UTF-8");
    }
    case LUA_TTABLE: return table_to_json(e, idx, depth);
    default:
        if (lua_rawequal(L, idx, e->null_idx)) return json_null();
        {
            char w[96];
            snprintf(w, sizeof w, "cannot encode a %s", luaL_typename(L, idx));
            return enc_fail(e, w);
        }
    }
}

/* True when every real in v reads back from %.{prec}g text. */
static int reals_round_trip(const json_t *v, int prec)
{
    char buf[40];
    switch (json_typeof(v)) {
    case JSON_REAL:
        snprintf(buf, sizeof buf, "%.*g", prec, json_real_value(v));
        return strtod(buf, NULL) == json_real_value(v);
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!reals_round_trip(json_array_get(v, i), prec)) return 0;
        return 1;
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!reals_round_trip(x, prec)) return 0;
        return 1;
    }
    default: return 1;
    }
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    size_t flags = JSON_ENCODE_ANY | JSON_SORT_KEYS;
    int indent = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "indent") != LUA_TNIL) {
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 31)
                return luaL_error(L, "json.encode: option indent must be an integer 0..31");
            indent = (int)lua_tointeger(L, -1);
        }
        if (lua_getfield(L, 2, "sort_keys") != LUA_TNIL && !lua_toboolean(L, -1))
            flags &= ~(size_t)JSON_SORT_KEYS;
        lua_pop(L, 2);
    }
    flags |= indent > 0 ? JSON_INDENT(indent) : JSON_COMPACT;
    lua_settop(L, 1);
    lua_newtable(L); /* 2: tables on the current path */
    lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY); /* 3 */
    enc e = {.L = L, .visiting = 2, .null_idx = 3, .prec = 1};
    e.path[0] = '\0';
    json_t *root = to_json(&e, 1, 0);
    if (!root) return luaL_error(L, "%s", e.msg);
    /* The largest digit count any value needs usually serves all; the rare
     * value it does not (near a power of two) pushes it up, 17 always works. */
    while (e.prec < 17 && !reals_round_trip(root, e.prec)) e.prec++;
    char *text = json_dumps(root, flags | JSON_REAL_PRECISION(e.prec));
    json_decref(root);
    if (!text) return luaL_error(L, "json.encode: out of memory");
    lua_pushstring(L, text);
    free(text);
    return 1;
}

/* --- decode ---------------------------------------------------------------- */

typedef struct box {
    json_t *root;
} box;

static int box_gc(lua_State *L)
{
    box *b = luaL_checkudata(L, 1, BOX_MT);
    json_decref(b->root);
    b->root = NULL;
    return 0;
}

static void push_json(lua_State *L, const json_t *v)
{
    luaL_checkstack(L, 4, "json.decode: nested too deeply");
    switch (json_typeof(v)) {
    case JSON_NULL: lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, n > 1000000 ? 1000000 : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        luaL_setmetatable(L, ARRAY_MT);
        break;
    }
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)(json_object_size(v) > 1000000 ? 1000000 : json_object_size(v)));
        const char *k;
        size_t klen;
        json_t *x;
        json_object_keylen_foreach((json_t *)v, k, klen, x) {
            lua_pushlstring(L, k, klen);
            push_json(L, x);
            lua_rawset(L, -3);
        }
        break;
    }
    }
}

static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, NULL);
    box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->root = NULL;
    luaL_setmetatable(L, BOX_MT);
    json_error_t jerr;
    b->root = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!b->root) {
        /* jansson quotes the text near the error, raw: control bytes there
         * (a newline inside a bad string) would split the message. */
        char text[4 * JSON_ERROR_TEXT_LENGTH];
        size_t k = 0;
        for (const unsigned char *c = (const unsigned char *)jerr.text; *c && k + 5 < sizeof text; c++) {
            if (*c < 0x20 || *c == 0x7f) k += (size_t)snprintf(text + k, sizeof text - k, "\\x%02x", *c);
            else text[k++] = (char)*c;
        }
        text[k] = '\0';
        return luaL_error(L, "json.decode: %s%sline %d, column %d: %s", name ? name : "",
                          name ? ": " : "", jerr.line, jerr.column, text);
    }
    push_json(L, b->root);
    json_decref(b->root);
    b->root = NULL;
    return 1;
}

/* --- helpers --------------------------------------------------------------- */

static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, ARRAY_MT);
        if (!lua_rawequal(L, -1, -2))
            return luaL_error(L, "json.array: the table already has a metatable");
        lua_pop(L, 2);
        return 1;
    }
    luaL_setmetatable(L, ARRAY_MT);
    return 1;
}

static int null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

void dm_open_json(lua_State *L)
{
    luaL_newmetatable(L, ARRAY_MT);
    lua_pop(L, 1);
    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L); /* dm.json */
    static const luaL_Reg fns[] = {
        {"encode", l_encode}, {"decode", l_decode}, {"array", l_array}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, NULL_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newuserdatauv(L, 0, 0);
        lua_newtable(L);
        lua_pushcfunction(L, null_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "drlmem.json.null");
        lua_setfield(L, -2, "__name");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, NULL_KEY);
    }
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
}
