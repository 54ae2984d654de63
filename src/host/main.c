/* main.c: placeholder until the host lands. */
#include <lauxlib.h>
#include <stdio.h>
#include <lualib.h>
int luaopen_drlmem(lua_State *L);
int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "drlmem", luaopen_drlmem, 1);
    int rc = argc > 1 ? luaL_dofile(L, argv[1]) : 0;
    if (rc) fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return rc ? 1 : 0;
}
