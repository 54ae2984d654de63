/* yaml.c: dm.yaml, the YAML reader behind configuration files.
 *
 * libyaml's event parser turns a file (or a string) into plain Lua values:
 * mappings become tables keyed by the key's text, sequences 1-based arrays,
 * and scalars are resolved as in YAML 1.2's core schema (plain scalars only:
 * integers, floats including 1e-4 and .inf, true/false, null; a quoted or
 * !!str scalar stays a string). Beside the value it returns a table mapping
 * each mapping key's dotted path ("a", "a.b", "list.2.name") to its 1-based
 * line, so that the Lua validator can point at the line of a bad key.
 * Anything a config does not need and that would make positions ambiguous
 * (anchors, aliases, complex keys, several documents, duplicate keys) is an
 * error naming the file and line. The parser lives in a userdata with a
 * finaliser, so a Lua error raised in the middle of a parse leaks nothing. */
#include "bind/bind.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_LOADER_MT "drlmem.YamlLoader"
#define YAML_NULL_KEY "drlmem.yaml.null"
#define YAML_MAX_DEPTH 64

typedef struct yaml_loader {
    yaml_parser_t parser;
    yaml_event_t event;
    int parser_ok; /* parser initialised: must be deleted */
    int has_event; /* event holds allocations: must be deleted */
    const char *name;  /* file name for messages (kept alive on the stack) */
    const char *input; /* the whole text, for line numbers of reader errors */
    size_t input_len;
} yaml_loader;

static int loader_gc(lua_State *L)
{
    yaml_loader *y = luaL_checkudata(L, 1, YAML_LOADER_MT);
    if (y->has_event) yaml_event_delete(&y->event);
    if (y->parser_ok) yaml_parser_delete(&y->parser);
    y->has_event = y->parser_ok = 0;
    return 0;
}

/* 1-based line of a byte offset (reader errors carry only an offset). */
static size_t line_of_offset(const yaml_loader *y, size_t off)
{
    size_t line = 1;
    if (off > y->input_len) off = y->input_len;
    for (size_t i = 0; i < off; i++)
        if (y->input[i] == '\n') line++;
    return line;
}

static int parse_error(lua_State *L, yaml_loader *y)
{
    const yaml_parser_t *p = &y->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        if (p->problem_value != -1) {
            /* lua_pushfstring knows no %x: format the byte here */
            char byte[8];
            snprintf(byte, sizeof byte, "0x%02x", (unsigned)p->problem_value & 0xffu);
            return dm_bind_fileerrorf(L, "%s:%d: YAML error: %s (byte %s at offset %d)", y->name,
                              (int)line_of_offset(y, p->problem_offset), problem, byte,
                              (int)p->problem_offset);
        }
        return dm_bind_fileerrorf(L, "%s:%d: YAML error: %s", y->name,
                          (int)line_of_offset(y, p->problem_offset), problem);
    }
    /* libyaml's words for a tab ("found character that cannot start any
     * token") do not say what to change. */
    size_t at = p->problem_mark.index;
    const char *hint = at < y->input_len && y->input[at] == '\t'
                           ? " (a tab: YAML indents with spaces only)" : "";
    if (p->context)
        return dm_bind_fileerrorf(L, "%s:%d:%d: YAML syntax error: %s %s (line %d)%s", y->name,
                          (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                          problem, p->context, (int)p->context_mark.line + 1, hint);
    return dm_bind_fileerrorf(L, "%s:%d:%d: YAML syntax error: %s%s", y->name,
                      (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, problem, hint);
}

/* Replaces the current event with the next one. */
static void next_event(lua_State *L, yaml_loader *y)
{
    if (y->has_event) {
        yaml_event_delete(&y->event);
        y->has_event = 0;
    }
    if (!yaml_parser_parse(&y->parser, &y->event)) parse_error(L, y);
    y->has_event = 1;
}

static int event_line(const yaml_loader *y) { return (int)y->event.start_mark.line + 1; }

static int is_digits(const char *s, size_t n, size_t *i, int (*ok)(int))
{
    size_t start = *i;
    while (*i < n && ok((unsigned char)s[*i])) (*i)++;
    return *i > start;
}
static int dec_digit(int c) { return c >= '0' && c <= '9'; }
static int oct_digit(int c) { return c >= '0' && c <= '7'; }
static int hex_digit(int c)
{
    return dec_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int eq_any(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0) return 1;
    return 0;
}

/* Pushes a plain scalar resolved by the YAML 1.2 core schema. */
static void push_plain(lua_State *L, const char *s, size_t n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
    if (eq_any(s, n, nulls)) {
        lua_getfield(L, LUA_REGISTRYINDEX, YAML_NULL_KEY);
        return;
    }
    if (eq_any(s, n, trues) || eq_any(s, n, falses)) {
        lua_pushboolean(L, s[0] == 't' || s[0] == 'T');
        return;
    }
    if (eq_any(s, n, nans)) {
        lua_pushnumber(L, (lua_Number)NAN);
        return;
    }
    size_t sign = (n > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (eq_any(s + sign, n - sign, infs)) {
        lua_pushnumber(L, s[0] == '-' ? -(lua_Number)HUGE_VAL : (lua_Number)HUGE_VAL);
        return;
    }
    /* The text is copied so strtoll/strtod see a terminated string. */
    char buf[128];
    if (n >= sizeof buf) {
        lua_pushlstring(L, s, n);
        return;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
        i = 2;
        int hex = s[1] == 'x';
        if (is_digits(s, n, &i, hex ? hex_digit : oct_digit) && i == n) {
            errno = 0;
            unsigned long long v = strtoull(buf + 2, NULL, hex ? 16 : 8);
            if (errno == 0 && v <= (unsigned long long)LUA_MAXINTEGER)
                lua_pushinteger(L, (lua_Integer)v);
            else
                lua_pushnumber(L, (lua_Number)v);
            return;
        }
        lua_pushlstring(L, s, n);
        return;
    }
    i = sign;
    if (is_digits(s, n, &i, dec_digit) && i == n) {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0)
            lua_pushinteger(L, (lua_Integer)v);
        else
            lua_pushnumber(L, (lua_Number)strtod(buf, NULL));
        return;
    }
    /* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
    i = sign;
    int int_part = is_digits(s, n, &i, dec_digit);
    int frac_part = 0;
    if (i < n && s[i] == '.') {
        i++;
        frac_part = is_digits(s, n, &i, dec_digit);
    }
    int ok = int_part || frac_part;
    if (ok && i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        ok = is_digits(s, n, &i, dec_digit);
    }
    if (ok && i == n) {
        lua_pushnumber(L, (lua_Number)strtod(buf, NULL));
        return;
    }
    lua_pushlstring(L, s, n);
}

static void push_scalar(lua_State *L, yaml_loader *y)
{
    const yaml_event_t *e = &y->event;
    const char *s = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    const char *tag = (const char *)e->data.scalar.tag;
    if (tag && strcmp(tag, YAML_STR_TAG) != 0 && strcmp(tag, "!") != 0)
        dm_bind_fileerrorf(L, "%s:%d: unsupported YAML tag '%s' (only !!str is understood)", y->name,
                   event_line(y), tag);
    if (e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag)
        push_plain(L, s, n);
    else
        lua_pushlstring(L, s, n);
}

static void reject_anchor(lua_State *L, yaml_loader *y, const yaml_char_t *anchor)
{
    if (anchor)
        dm_bind_fileerrorf(L, "%s:%d: YAML anchors (&%s) are not supported", y->name, event_line(y),
                   (const char *)anchor);
}

/* Builds the node whose first event is current and pushes its value. The
 * lines table is at lines_idx; path is the node's dotted path (NULL at the
 * top). On return the current event is the node's last one. */
static void build_node(lua_State *L, yaml_loader *y, int lines_idx, const char *path, int depth)
{
    if (depth > YAML_MAX_DEPTH)
        dm_bind_fileerrorf(L, "%s:%d: YAML nesting deeper than %d levels", y->name, event_line(y),
                   YAML_MAX_DEPTH);
    luaL_checkstack(L, 8, "YAML nesting");
    switch (y->event.type) {
    case YAML_ALIAS_EVENT:
        dm_bind_fileerrorf(L, "%s:%d: YAML aliases (*%s) are not supported", y->name, event_line(y),
                   (const char *)y->event.data.alias.anchor);
        return;
    case YAML_SCALAR_EVENT:
        reject_anchor(L, y, y->event.data.scalar.anchor);
        push_scalar(L, y);
        return;
    case YAML_SEQUENCE_START_EVENT: {
        reject_anchor(L, y, y->event.data.sequence_start.anchor);
        lua_newtable(L);
        lua_Integer i = 0;
        for (;;) {
            next_event(L, y);
            if (y->event.type == YAML_SEQUENCE_END_EVENT) break;
            i++;
            const char *child = path ? lua_pushfstring(L, "%s.%I", path, i)
                                     : lua_pushfstring(L, "%I", i);
            build_node(L, y, lines_idx, child, depth + 1);
            lua_rawseti(L, -3, i);
            lua_pop(L, 1); /* child path */
        }
        return;
    }
    case YAML_MAPPING_START_EVENT: {
        reject_anchor(L, y, y->event.data.mapping_start.anchor);
        lua_newtable(L);
        for (;;) {
            next_event(L, y);
            if (y->event.type == YAML_MAPPING_END_EVENT) break;
            if (y->event.type != YAML_SCALAR_EVENT)
                dm_bind_fileerrorf(L, "%s:%d: only plain text keys are supported in a mapping", y->name,
                           event_line(y));
            reject_anchor(L, y, y->event.data.scalar.anchor);
            int line = event_line(y);
            lua_pushlstring(L, (const char *)y->event.data.scalar.value,
                            y->event.data.scalar.length); /* key */
            const char *child;
            if (path) {
                child = lua_pushfstring(L, "%s.%s", path, lua_tostring(L, -1));
            } else {
                lua_pushvalue(L, -1);
                child = lua_tostring(L, -1);
            }
            lua_pushvalue(L, -2);
            if (lua_rawget(L, -4) != LUA_TNIL) {
                lua_getfield(L, lines_idx, child);
                dm_bind_fileerrorf(L, "%s:%d: duplicate key '%s' (first at line %d)", y->name, line,
                           child, (int)lua_tointeger(L, -1));
            }
            lua_pop(L, 1);
            lua_pushinteger(L, line);
            lua_setfield(L, lines_idx, child);
            next_event(L, y);
            build_node(L, y, lines_idx, child, depth + 1); /* table key path value */
            lua_remove(L, -2);                            /* table key value */
            lua_rawset(L, -3);
        }
        return;
    }
    default:
        dm_bind_fileerrorf(L, "%s:%d: unexpected YAML event %d", y->name, event_line(y),
                   (int)y->event.type);
    }
}

/* Parses text (length n) named name; pushes value (nil for an empty stream)
 * and the lines table. */
static int load_text(lua_State *L, const char *text, size_t n, const char *name)
{
    yaml_loader *y = lua_newuserdatauv(L, sizeof *y, 0);
    memset(y, 0, sizeof *y);
    luaL_setmetatable(L, YAML_LOADER_MT);
    int ud = lua_gettop(L);
    if (!yaml_parser_initialize(&y->parser)) return dm_bind_fileerrorf(L, "%s: out of memory", name);
    y->parser_ok = 1;
    y->name = name;
    y->input = text;
    y->input_len = n;
    yaml_parser_set_input_string(&y->parser, (const unsigned char *)text, n);

    lua_newtable(L); /* lines */
    int lines_idx = lua_gettop(L);
    lua_pushnil(L); /* value */
    int docs = 0;
    next_event(L, y);
    if (y->event.type != YAML_STREAM_START_EVENT) return parse_error(L, y);
    for (;;) {
        next_event(L, y);
        if (y->event.type == YAML_STREAM_END_EVENT) break;
        if (y->event.type != YAML_DOCUMENT_START_EVENT)
            return dm_bind_fileerrorf(L, "%s:%d: unexpected YAML event", name, event_line(y));
        if (++docs > 1)
            return dm_bind_fileerrorf(L, "%s:%d: a second YAML document (only one is read)", name,
                              event_line(y));
        next_event(L, y);
        lua_pop(L, 1);
        build_node(L, y, lines_idx, NULL, 0);
        /* A document that is just `null` reads as no value at all. */
        lua_getfield(L, LUA_REGISTRYINDEX, YAML_NULL_KEY);
        if (lua_rawequal(L, -1, -2)) {
            lua_pop(L, 2);
            lua_pushnil(L);
        } else {
            lua_pop(L, 1);
        }
        next_event(L, y);
        if (y->event.type != YAML_DOCUMENT_END_EVENT)
            return dm_bind_fileerrorf(L, "%s:%d: unexpected YAML event", name, event_line(y));
    }
    lua_pushvalue(L, lines_idx);
    /* Release the parser now rather than at the next collection. */
    lua_pushcfunction(L, loader_gc);
    lua_pushvalue(L, ud);
    lua_call(L, 1, 0);
    return 2;
}

/* dm.yaml.load(path) -> value, lines */
static int l_yaml_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    FILE *f = fopen(path, "rb");
    if (!f) return dm_bind_fileerrorf(L, "%s: cannot open: %s", path, strerror(errno));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t got;
    do {
        char *p = luaL_prepbuffer(&b);
        got = fread(p, 1, LUAL_BUFFERSIZE, f);
        luaL_addsize(&b, got);
    } while (got == LUAL_BUFFERSIZE);
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) return dm_bind_fileerrorf(L, "%s: cannot read: %s", path, strerror(saved));
    luaL_pushresult(&b);
    size_t n;
    const char *text = lua_tolstring(L, 2, &n);
    return load_text(L, text, n, path);
}

/* dm.yaml.load_string(text [, name]) -> value, lines */
static int l_yaml_load_string(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    const char *name = luaL_optstring(L, 2, "<string>");
    lua_settop(L, 2);
    return load_text(L, text, n, name);
}

static int null_tostring(lua_State *L)
{
    lua_pushliteral(L, "null");
    return 1;
}

void dm_open_yaml(lua_State *L)
{
    if (luaL_newmetatable(L, YAML_LOADER_MT)) {
        lua_pushcfunction(L, loader_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, loader_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);

    lua_newtable(L); /* dm.yaml */
    static const luaL_Reg fns[] = {
        {"load", l_yaml_load},
        {"load_string", l_yaml_load_string},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
    /* The null sentinel keeps `key: null` and `[1, null]` visible in Lua. */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushcfunction(L, null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "yaml.null");
    lua_setfield(L, -2, "__name");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, YAML_NULL_KEY);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "yaml");
}
