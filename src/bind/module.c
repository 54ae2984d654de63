/* module.c: luaopen_drlmem, the entry point of the drlmem Lua module.
 *
 * The same function serves the drlmem executable (which preloads it as
 * `require "drlmem"` and the global `dm`) and the C module drlmem.so for
 * stock lua5.4 and busted. It builds the module table from the C parts, then
 * gives it an __index that loads the Lua parts on first use: dm.config is
 * `require "drlmem.config"`, found on package.path under lua/drlmem/. */
#include "bind/bind.h"
#include "bind/module.h"

#include <lualib.h>

/* __index(module, key): require "drlmem.<key>" when such a file exists on
 * package.path; otherwise nil. Errors inside the file propagate. */
static int module_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *key = lua_tostring(L, 2);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushfstring(L, "drlmem.%s", key);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 1);
    if (lua_isnil(L, -1)) return 0;
    lua_getglobal(L, "require");
    lua_pushfstring(L, "drlmem.%s", key);
    lua_call(L, 1, 1);
    /* Cache it in the module table so the search runs once. */
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

int luaopen_drlmem(lua_State *L)
{
    lua_newtable(L);
    /* C parts: each opener adds its functions to the table on top. */
    dm_open_tensor(L);
    dm_open_yaml(L);
    dm_open_datautil(L);
    dm_open_nn(L);
    dm_open_memory(L);
    dm_open_optim(L);
    dm_open_safetensors(L);
    dm_open_json(L);
    dm_open_sys(L);
    dm_open_controller(L);
    dm_open_dist(L);

    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "version");
    lua_newtable(L);
    lua_pushcfunction(L, module_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}
