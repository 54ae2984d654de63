/* fuzz_lua.c: the libFuzzer harness for the parts of drlmem that are
 * reached through Lua (the YAML loader and config validation, the JSON
 * codec, the data reader, the checkpoint loader). One lua_State is made at
 * start-up with the standard libraries and the drlmem module (the same
 * bindings as drlmem.so, built with the fuzzer's instrumentation), with
 * package.path pointing at lua/ of the current folder (run it from the
 * repository root, as `make fuzz` does) or at $DRLMEM_LUA_DIR. It runs the
 * Lua target named at compile time (FUZZ_TARGET, a file in tests/fuzz/),
 * which returns a function of one string; each input is passed to it under
 * lua_pcall. The target refuses bad input through the API it exercises and
 * checks that every refusal is a clean one-line message; it raises only
 * when drlmem misbehaves, and this harness then prints the error with its
 * traceback and aborts, so libFuzzer records the input as a crash. Memory
 * and undefined behaviour are watched by ASan and UBSan as usual. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the Lua target file (tests/fuzz/<name>.lua)"
#endif

int luaopen_drlmem(lua_State *L);

static lua_State *L;
static int target_ref = LUA_NOREF;

static int traceback(lua_State *L_)
{
    const char *msg = lua_tostring(L_, 1);
    luaL_traceback(L_, L_, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_lua (%s): %s: %s\n", FUZZ_TARGET, what, lua_tostring(L, -1));
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    luaL_requiref(L, "drlmem", luaopen_drlmem, 0);
    lua_setglobal(L, "dm");
    const char *dir = getenv("DRLMEM_LUA_DIR");
    if (!dir) dir = "lua";
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushcfunction(L, traceback);
    if (luaL_loadfile(L, FUZZ_TARGET) != LUA_OK) die("load");
    if (lua_pcall(L, 0, 1, -2) != LUA_OK) die("start");
    if (!lua_isfunction(L, -1)) {
        lua_pushstring(L, "the target must return a function of one string");
        die("start");
    }
    target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, target_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, -3) != LUA_OK) die("input");
    lua_pop(L, 1);
    return 0;
}
