/* sys.c: the few facts about the process that Lua's standard library lacks
 * and the scripts need: a monotonic wall clock with sub-microsecond steps
 * (os.clock is CPU time, which OpenBLAS threads inflate; os.time has
 * one-second steps), whether a stream is a terminal (progress bar or plain
 * lines) and how wide it is (the bar fits one line), OpenBLAS's thread
 * count (the one thread pool of drlmem) and which of its kernels it chose
 * (benchmarks record it: the same build runs at half speed or double on
 * another core type), and the crash-safe whole-file write of core/fileio.c for the text files the
 * scripts write (io.open + write + rename would report a full disk only at
 * a close nobody checks, and leave a torn file under the final name), and
 * what a training run needs to own its output folder: an flock with the
 * holder's pid, and whether a pid is alive. */
#include "bind/bind.h"

#include "core/fileio.h"
#include "core/gemm.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
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

/* A file descriptor argument: a number, or "stdin"|"stdout"|"stderr";
 * stdout when absent. */
static int check_fd(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        static const char *const names[] = {"stdin", "stdout", "stderr", NULL};
        return luaL_checkoption(L, idx, NULL, names);
    }
    return lua_isnoneornil(L, idx) ? 1 : (int)luaL_checkinteger(L, idx);
}

/* dm.isatty([fd | "stdin"|"stdout"|"stderr"]) -> boolean; default stdout. */
static int sys_isatty(lua_State *L)
{
    int fd = check_fd(L, 1);
    lua_pushboolean(L, isatty(fd));
    return 1;
}

/* dm.term_width([fd | "stdin"|"stdout"|"stderr"]) -> columns or nil; default
 * stdout. The terminal's width from TIOCGWINSZ, so a progress bar can fit
 * one line (a wrapped bar leaves a trail of lines on every redraw); when fd
 * is no terminal, $COLUMNS if it is a positive number (what a shell
 * exports to its children), else nil. */
static int sys_term_width(lua_State *L)
{
    int fd = check_fd(L, 1);
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        lua_pushinteger(L, ws.ws_col);
        return 1;
    }
    const char *env = getenv("COLUMNS");
    char *end = NULL;
    long cols = env ? strtol(env, &end, 10) : 0;
    if (env && end != env && *end == '\0' && cols > 0 && cols < 100000) {
        lua_pushinteger(L, cols);
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* dm.set_num_threads(n): threads for every matrix product (OpenBLAS's pool
 * and oneDNN's OpenMP pool alike). */
static int sys_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 1024) return dm_bind_errorf(L, "set_num_threads: expected 1..1024 threads, got %lld", (long long)n);
    dm_gemm_set_threads((int)n);
    return 0;
}

/* dm.get_num_threads() -> the thread count of the library doing the products. */
static int sys_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, dm_gemm_get_threads());
    return 1;
}

/* dm.blas_info() -> {gemm = "oneDNN" | "OpenBLAS", kernel = "avx512_core",
 * corename = "Haswell", config = "OpenBLAS 0.3.21 ...", num_threads = n}:
 * the library the matrix products run on and the kernels it chose, and the
 * kernel set and build line of the OpenBLAS the core links (from the CPU or
 * OPENBLAS_CORETYPE at load time). */
static int sys_blas_info(lua_State *L)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, dm_gemm_name());
    lua_setfield(L, -2, "gemm");
    lua_pushstring(L, dm_gemm_kernel());
    lua_setfield(L, -2, "kernel");
    lua_pushstring(L, openblas_get_corename());
    lua_setfield(L, -2, "corename");
    lua_pushstring(L, openblas_get_config());
    lua_setfield(L, -2, "config");
    lua_pushinteger(L, dm_gemm_get_threads());
    lua_setfield(L, -2, "num_threads");
    return 1;
}

/* dm.set_gemm("openblas" | "dnnl" | "auto"): the library of the matrix
 * products from now on (the default is DRLMEM_GEMM, else auto: oneDNN where
 * it loads). */
static int sys_set_gemm(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    dm_error err;
    if (dm_gemm_use(name, &err) != 0) return dm_bind_errorf(L, "set_gemm: %s", err.msg);
    return 0;
}

/* dm.write_file(path, text): text replaces path atomically (temporary,
 * fsync, rename), or a Lua error "write PATH: REASON" (without the Lua line:
 * the path is what matters) and path as it was. The folder must exist. */
static int sys_write_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    dm_error err;
    if (dm_file_write_atomic(path, text, n, &err) != 0) return dm_bind_fileerrorf(L, "%s", err.msg);
    return 0;
}

/* A held lock: the descriptor of dm_file_lock, -1 once released. */
typedef struct {
    int fd;
} sys_lock;

#define SYS_LOCK_MT "drlmem.FileLock"

/* dm.lock_file(path) -> FileLock, or nil, holder_pid when another process
 * holds it; an error "lock PATH: REASON" when the file cannot be opened. */
static int sys_lock_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    /* The userdata exists before the descriptor, so no error path leaks it. */
    sys_lock *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->fd = -1;
    luaL_setmetatable(L, SYS_LOCK_MT);
    long holder = 0;
    dm_error err;
    int rc = dm_file_lock(path, &u->fd, &holder, &err);
    if (rc < 0) return dm_bind_fileerrorf(L, "%s", err.msg);
    if (rc == 1) {
        lua_pushnil(L);
        lua_pushinteger(L, holder);
        return 2;
    }
    return 1;
}

/* lock:release(): drops the lock (also done by __gc and __close). */
static int sys_lock_release(lua_State *L)
{
    sys_lock *u = luaL_checkudata(L, 1, SYS_LOCK_MT);
    dm_file_unlock(u->fd);
    u->fd = -1;
    return 0;
}

static int sys_lock_tostring(lua_State *L)
{
    sys_lock *u = luaL_checkudata(L, 1, SYS_LOCK_MT);
    lua_pushstring(L, u->fd >= 0 ? "FileLock(held)" : "FileLock(released)");
    return 1;
}

/* dm.pid_alive(pid) -> whether a process with this pid exists. */
static int sys_pid_alive(lua_State *L)
{
    lua_pushboolean(L, dm_pid_alive((long)luaL_checkinteger(L, 1)));
    return 1;
}

/* dm.getpid() -> the pid of this process. */
static int sys_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

void dm_open_sys(lua_State *L)
{
    static const luaL_Reg lock_methods[] = {
        {"release", sys_lock_release},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, SYS_LOCK_MT)) {
        luaL_newlib(L, lock_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, sys_lock_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, sys_lock_release);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, sys_lock_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"clock", sys_clock},
        {"isatty", sys_isatty},
        {"term_width", sys_term_width},
        {"set_num_threads", sys_set_num_threads},
        {"get_num_threads", sys_get_num_threads},
        {"write_file", sys_write_file},
        {"lock_file", sys_lock_file},
        {"pid_alive", sys_pid_alive},
        {"getpid", sys_getpid},
        {"blas_info", sys_blas_info},
        {"set_gemm", sys_set_gemm},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}
