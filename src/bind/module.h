/* module.h: the entry point of the drlmem Lua module, for hosts that link
 * the bindings in (src/host/main.c preloads it) rather than loading
 * drlmem.so through require, which finds the symbol by name. */
#ifndef DM_MODULE_H
#define DM_MODULE_H

#include <lua.h>

/* Builds the module table (every dm_open_* part) and leaves it on the stack. */
int luaopen_drlmem(lua_State *L);

#endif
