/* safetensors.c (bind): dm.save_safetensors and dm.load_safetensors, the
 * Lua face of core/safetensors (format, validation and atomic write are
 * documented there).
 *
 *   dm.save_safetensors(path, tensors [, metadata])
 *     tensors: a map {name = Tensor, ...}, written in sorted name order so a
 *              save is deterministic, or an ordered list
 *              {{name, Tensor}, ...}, written in the order given.
 *     metadata: a table of string keys and string values (written sorted by
 *              key); encode anything else with dm.json.encode or tostring.
 *     Non-contiguous tensors are copied to contiguous first.
 *   local tensors, metadata, names = dm.load_safetensors(path)
 *     tensors: name -> fresh contiguous Tensor (float32 or int32);
 *     metadata: key -> string (an empty table when the file has none);
 *     names: the tensor names in file order (save them back in this order
 *            through the list form to reproduce the file byte for byte).
 *
 * Everything allocated during a call is anchored on the Lua stack (userdata
 * and tables), so a Lua error at any point leaks nothing. */
#include "bind/bind.h"

#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"

#define FILE_MT "drlmem.safetensors.file"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A string without embedded NUL bytes (C sees only up to the first). */
static const char *plain_string(lua_State *L, int idx, const char *what, const char *name)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len)
        luaL_error(L, "save_safetensors: %s '%s' contains a NUL byte", what, name ? name : s);
    return s;
}

/* The tensor at idx, made contiguous: a non-contiguous one is copied into a
 * new tensor appended to the anchor table at `anchors`. */
static const dm_tensor *contiguous_at(lua_State *L, int idx, int anchors, const char *name)
{
    dm_tensor *t = dm_bind_testtensor(L, idx);
    if (!t)
        luaL_error(L, "save_safetensors: tensor '%s': expected Tensor, got %s", name,
                   luaL_typename(L, idx));
    if (!t->storage) luaL_error(L, "save_safetensors: tensor '%s' has been freed (closed)", name);
    if (dm_tensor_is_contiguous(t)) return t;
    dm_error err;
    dm_tensor *c = dm_bind_newempty(L);
    if (dm_tensor_contiguous(c, t, &err) != 0) dm_bind_error(L, &err);
    lua_rawseti(L, anchors, (lua_Integer)lua_rawlen(L, anchors) + 1);
    return c;
}

static int l_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    lua_newtable(L); /* 4: anchors for contiguous copies */
    const int anchors = 4;

    /* Count the entries and decide between the list and the map form. */
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        lua_pop(L, 1);
        count++;
    }
    size_t listn = (size_t)lua_rawlen(L, 2);
    int list_form = listn > 0;
    if (list_form && listn != count)
        return luaL_error(L, "save_safetensors: tensors: mixes list entries {name, tensor} "
                          "and name = tensor fields");

    dm_st_entry *ents = lua_newuserdatauv(L, (count ? count : 1) * sizeof *ents, 0); /* 5 */
    if (list_form) {
        for (size_t i = 0; i < count; i++) {
            if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
                return luaL_error(L, "save_safetensors: tensors[%d] is a %s, expected "
                                  "{name, tensor}", (int)i + 1, luaL_typename(L, -1));
            int item = lua_gettop(L);
            if (lua_rawgeti(L, item, 1) != LUA_TSTRING)
                return luaL_error(L, "save_safetensors: tensors[%d][1] (the name) is a %s, "
                                  "expected a string", (int)i + 1, luaL_typename(L, -1));
            /* The name string stays alive: the list's item table holds it. */
            const char *name = plain_string(L, -1, "tensor name", NULL);
            lua_pop(L, 1);
            lua_rawgeti(L, item, 2);
            const dm_tensor *t = contiguous_at(L, lua_gettop(L), anchors, name);
            ents[i] = (dm_st_entry){name, t->dtype, t->ndim, t->shape, dm_tensor_data(t)};
            lua_settop(L, 5);
        }
    } else {
        size_t k = 0;
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "save_safetensors: tensors: key of type %s, expected a "
                                  "name string", luaL_typename(L, -2));
            ents[k++].name = plain_string(L, -2, "tensor name", NULL);
            lua_pop(L, 1);
        }
        qsort(ents, count, sizeof *ents, cmp_str); /* name is the first field */
        for (size_t i = 0; i < count; i++) {
            const char *name = ents[i].name;
            lua_pushstring(L, name);
            lua_rawget(L, 2);
            const dm_tensor *t = contiguous_at(L, lua_gettop(L), anchors, name);
            ents[i] = (dm_st_entry){name, t->dtype, t->ndim, t->shape, dm_tensor_data(t)};
            lua_settop(L, 5);
        }
    }

    /* Metadata: string -> string, sorted by key. */
    size_t nmeta = 0;
    if (!lua_isnil(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            lua_pop(L, 1);
            nmeta++;
        }
    }
    const char **keys = lua_newuserdatauv(L, (nmeta ? nmeta : 1) * sizeof *keys, 0); /* 6 */
    const char **vals = lua_newuserdatauv(L, (nmeta ? nmeta : 1) * sizeof *vals, 0); /* 7 */
    if (nmeta) {
        size_t k = 0;
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "save_safetensors: metadata: key of type %s, expected a "
                                  "string", luaL_typename(L, -2));
            keys[k++] = plain_string(L, -2, "metadata key", NULL);
            lua_pop(L, 1);
        }
        qsort(keys, nmeta, sizeof *keys, cmp_str);
        for (size_t i = 0; i < nmeta; i++) {
            lua_pushstring(L, keys[i]);
            if (lua_rawget(L, 3) != LUA_TSTRING)
                return luaL_error(L, "save_safetensors: metadata '%s': value is a %s, expected a "
                                  "string (use tostring or dm.json.encode)", keys[i],
                                  luaL_typename(L, -1));
            vals[i] = plain_string(L, -1, "metadata value of", keys[i]);
            lua_pop(L, 1); /* the metadata table keeps the string alive */
        }
    }

    dm_error err;
    if (dm_safetensors_write(path, ents, count, keys, vals, nmeta, &err) != 0)
        return dm_bind_error(L, &err);
    return 0;
}

static int file_gc(lua_State *L)
{
    dm_st_file *f = luaL_checkudata(L, 1, FILE_MT);
    dm_safetensors_free(f);
    return 0;
}

static int l_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    dm_st_file *f = lua_newuserdatauv(L, sizeof *f, 0); /* 2: frees the file on any error */
    memset(f, 0, sizeof *f);
    luaL_setmetatable(L, FILE_MT);
    dm_error err;
    if (dm_safetensors_read(f, path, &err) != 0) return dm_bind_error(L, &err);

    lua_createtable(L, 0, (int)f->n); /* 3: tensors */
    lua_createtable(L, 0, (int)f->nmeta); /* 4: metadata */
    lua_createtable(L, (int)f->n, 0); /* 5: names */
    for (size_t i = 0; i < f->n; i++) {
        const dm_st_tensor *s = &f->tensors[i];
        dm_tensor *t = dm_bind_newtensor_named(L, s->dtype, s->ndim, s->shape, "load_safetensors");
        if (s->nbytes) memcpy(dm_tensor_data(t), s->data, s->nbytes);
        lua_setfield(L, 3, s->name);
        lua_pushstring(L, s->name);
        lua_rawseti(L, 5, (lua_Integer)i + 1);
    }
    for (size_t i = 0; i < f->nmeta; i++) {
        lua_pushstring(L, f->meta_values[i]);
        lua_setfield(L, 4, f->meta_keys[i]);
    }
    dm_safetensors_free(f); /* the copies are made; drop the file now */
    return 3;
}

void dm_open_safetensors(lua_State *L)
{
    luaL_newmetatable(L, FILE_MT);
    lua_pushcfunction(L, file_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, file_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_save);
    lua_setfield(L, -2, "save_safetensors");
    lua_pushcfunction(L, l_load);
    lua_setfield(L, -2, "load_safetensors");
}
