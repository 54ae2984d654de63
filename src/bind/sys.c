/* sys.c: the few facts about the process that Lua's standard library lacks
 * and the scripts need: a monotonic wall clock with sub-microsecond steps
 * (os.clock is CPU time, which OpenBLAS threads inflate; os.time has
 * one-second steps), whether a stream is a terminal (progress bar or plain
 * lines), and OpenBLAS's thread count (the one thread pool of drlmem). */
#include "bind/bind.h"

#include <cblas.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* dm.clock() -> seconds from an arbitrary origin, monotonic. */
static int sys_clock(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* dm.isatty([fd | "stdin"|"stdout"|"stderr"]) -> boolean; default stdout. */
static int sys_isatty(lua_State *L)
{
    int fd = 1;
    if (lua_type(L, 1) == LUA_TSTRING) {
        static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
        fd = luaL_checkoption(L, 1, NULL, names);
    } else if (!lua_isnoneornil(L, 1)) {
        fd = (int)luaL_checkinteger(L, 1);
    }
    lua_pushboolean(L, isatty(fd));
    return 1;
}

/* dm.set_num_threads(n): OpenBLAS threads for every matrix product. */
static int sys_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 1024) return dm_bind_errorf(L, "set_num_threads: expected 1..1024 threads, got %lld", (long long)n);
    openblas_set_num_threads((int)n);
    return 0;
}

/* dm.get_num_threads() -> OpenBLAS's current thread count. */
static int sys_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, openblas_get_num_threads());
    return 1;
}

void dm_open_sys(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"clock", sys_clock},
        {"isatty", sys_isatty},
        {"set_num_threads", sys_set_num_threads},
        {"get_num_threads", sys_get_num_threads},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}
