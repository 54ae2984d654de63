/* main.c: the drlmem executable, a Lua 5.4 host with the drlmem module built in.
 *
 * It behaves like Lua's own lua.c, so that anyone who knows `lua` knows it:
 * `drlmem script.lua args...` runs a script with the global `arg` table,
 * -e/-l/-i/-v/-E/-W/-h take the same meaning, `-` reads the chunk from
 * standard input, and `drlmem` alone opens a REPL on a terminal (or runs
 * stdin as one chunk when it is not a terminal). Every chunk runs under
 * lua_pcall with a handler that appends a traceback, so a script error ends
 * with exit status 1 and a REPL error leaves the REPL running. Ctrl-C during
 * a chunk sets a debug hook that raises "interrupted!" at the next Lua step
 * instead of killing the process; at the prompt it only clears the line. The
 * drlmem module is preloaded (package.preload.drlmem) and bound to the global
 * `dm` before any user code runs, and package.path is extended with the lua/
 * folders found next to the executable, so the Lua half of drlmem is found
 * both in the source tree and in an installed prefix (share/lua/5.4). A
 * script named without a slash that is not a file here is looked up among
 * drlmem's own scripts, so `drlmem train` works from any folder. */
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define DM_HOST_NAME "drlmem"

#include "bind/module.h"

/* Prefix of error messages; NULL inside the REPL, where bare messages read
 * better next to the prompt. */
static const char *progname = DM_HOST_NAME;

/* The state the SIGINT handler hooks. lua_sethook is documented as safe to
 * call from a signal handler, which is the whole trick of lua.c. */
static lua_State *volatile g_L = NULL;

/* Set by the prompt's SIGINT handler; read by the line readers. */
static volatile sig_atomic_t g_prompt_sigint = 0;
/* Set on SIGWINCH so libedit learns the new width before the next key. */
static volatile sig_atomic_t g_winch = 0;

/* --- messages -------------------------------------------------------------- */

static void l_message(const char *pname, const char *msg)
{
    /* What the chunk printed before it failed comes first, also when stdout
     * is a pipe (block-buffered) and stderr goes to the same place. */
    fflush(stdout);
    if (pname) fprintf(stderr, "%s: ", pname);
    fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
}

/* Prints the error on top of the stack (if status is an error) and pops it. */
static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        l_message(progname, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return status;
}

/* Message handler of every pcall: turns the error object into a string and
 * appends a traceback, so the user sees where the error came from. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1; /* the object describes itself; keep it as is */
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* --- interruption ------------------------------------------------------- */

/* Ctrl-C (SIGINT), SIGTERM and SIGHUP while a chunk runs all ask Lua to stop
 * at its next step: the first one sets a hook that raises "interrupted!"
 * ("interrupted! (SIGTERM)" / "(SIGHUP)" for the others, so a script can
 * tell them apart and exit 143 / 129). A script that saves its state on
 * that error (scripts/train.lua) must not lose the save to a second signal,
 * and GNU timeout -s INT sends SIGINT twice (to the child, then to its
 * process group): so further signals are ignored, with a message, and only
 * a third Ctrl-C stops the process at once (as does SIGKILL). A chunk that
 * fails after SIGTERM or SIGHUP ends the process with status 128 + signal,
 * also in the REPL. */
static volatile sig_atomic_t g_stop_signal = 0; /* the first stop signal of this chunk */
/* The thread that runs Lua. A process-directed signal may land on any
 * thread that does not block it: the BLAS and OpenMP pools' workers too.
 * lua_sethook is safe only from a handler that interrupted the Lua thread
 * itself (it marks the thread's call frames, which the Lua thread frees and
 * allocates as it runs), so a stop signal caught elsewhere is passed on to
 * the Lua thread, which then handles it as if it had been its own. */
static pthread_t g_lua_thread;
static volatile sig_atomic_t g_stop_count = 0;  /* stop signals during this chunk */

static void hook_stop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    if (g_stop_signal == SIGTERM) luaL_error(L, "interrupted! (SIGTERM)");
    if (g_stop_signal == SIGHUP) luaL_error(L, "interrupted! (SIGHUP)");
    luaL_error(L, "interrupted!");
}

static void set_signal(int sig, void (*handler)(int), int flags, struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    /* The stop signals never interrupt one another's handler (the count). */
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        sigaddset(&sa.sa_mask, SIGINT);
        sigaddset(&sa.sa_mask, SIGTERM);
        sigaddset(&sa.sa_mask, SIGHUP);
    }
    sigaction(sig, &sa, old);
}

/* write(2) of a constant message: the only output a handler may do. Each
 * message starts with a newline so it never lands after a half-drawn
 * progress bar or the terminal's "^C". */
static void signal_message(const char *msg)
{
    ssize_t r = write(STDERR_FILENO, msg, strlen(msg));
    (void)r;
}

/* A stop signal while a chunk runs (see above). */
static void on_stop_chunk(int sig)
{
    if (!pthread_equal(pthread_self(), g_lua_thread)) {
        pthread_kill(g_lua_thread, sig); /* async-signal-safe, as is pthread_self */
        return;
    }
    int n = (int)g_stop_count + 1;
    g_stop_count = n;
    if (n == 1) {
        int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
        g_stop_signal = sig;
        lua_sethook(g_L, hook_stop, mask, 1);
        return;
    }
    if (sig == SIGINT && n >= 3) {
        signal_message("\n" DM_HOST_NAME ": Ctrl-C a third time: stopping at once, without saving\n");
        signal(SIGINT, SIG_DFL);
        raise(SIGINT); /* blocked in this handler: delivered, and fatal, on return */
        return;
    }
    if (sig == SIGINT)
        signal_message("\n" DM_HOST_NAME ": already stopping at a safe point (what is being saved is kept); "
                       "Ctrl-C again to stop at once, without saving\n");
    else
        signal_message("\n" DM_HOST_NAME ": already stopping at a safe point (what is being saved is kept); "
                       "signal ignored\n");
}

/* SIGINT at the prompt: no SA_RESTART, so the blocked read returns EINTR and
 * the reader sees this flag. */
static void on_sigint_prompt(int sig)
{
    /* the Lua thread's read must return EINTR */
    if (!pthread_equal(pthread_self(), g_lua_thread)) {
        pthread_kill(g_lua_thread, sig);
        return;
    }
    g_prompt_sigint = 1;
}

static void on_sigwinch(int sig)
{
    (void)sig;
    g_winch = 1;
}

/* Calls the function below its narg arguments under the message handler and
 * the chunk's stop-signal handlers; the previous actions (default for
 * scripts, the prompt handler for SIGINT in the REPL) are restored
 * afterwards. */
static int docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    struct sigaction oldint, oldterm, oldhup;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    g_stop_signal = 0;
    g_stop_count = 0;
    set_signal(SIGINT, on_stop_chunk, 0, &oldint);
    set_signal(SIGTERM, on_stop_chunk, 0, &oldterm);
    set_signal(SIGHUP, on_stop_chunk, 0, &oldhup);
    int status = lua_pcall(L, narg, nres, base);
    sigaction(SIGINT, &oldint, NULL);
    sigaction(SIGTERM, &oldterm, NULL);
    sigaction(SIGHUP, &oldhup, NULL);
    /* A signal that came after the last Lua step must not hit the next chunk. */
    if (lua_gethook(L) == hook_stop) lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    int sig = (int)g_stop_signal;
    g_stop_signal = 0;
    g_stop_count = 0;
    if (status != LUA_OK && (sig == SIGTERM || sig == SIGHUP)) {
        /* asked to end: the chunk did not handle it, so the process ends */
        report(L, status);
        fflush(stdout);
        exit(128 + sig);
    }
    return status;
}

/* --- command line -------------------------------------------------------- */

static void print_version(lua_State *L)
{
    int top = lua_gettop(L);
    const char *v = "?";
    if (lua_getglobal(L, "dm") == LUA_TTABLE && lua_getfield(L, -1, "version") == LUA_TSTRING)
        v = lua_tostring(L, -1);
    printf("%s %s, %s\n", DM_HOST_NAME, v, LUA_COPYRIGHT);
    fflush(stdout);
    lua_settop(L, top);
}

static void print_help(FILE *f)
{
    fprintf(f,
            "usage: %s [options] [script [args]]\n"
            "Available options are:\n"
            "  -e chunk  execute string 'chunk'\n"
            "  -i        enter interactive mode after executing 'script'\n"
            "  -l mod    require library 'mod' into global 'mod'\n"
            "  -v, --version  show version information\n"
            "  -E        ignore environment variables (LUA_PATH, LUA_INIT, ...)\n"
            "  -W        turn warnings on\n"
            "  -h, --help  show this help\n"
            "  --        stop handling options\n"
            "  -         stop handling options and execute stdin\n"
            "The global 'dm' holds require \"drlmem\". Without a script or -e, %s\n"
            "starts a REPL when stdin is a terminal and runs stdin otherwise.\n"
            "A script name without a slash that is not a file here is looked up\n"
            "among drlmem's scripts: '%s train --help'. See %s(1).\n",
            DM_HOST_NAME, DM_HOST_NAME, DM_HOST_NAME, DM_HOST_NAME);
    fflush(f);
}

static void print_usage(const char *badoption)
{
    if (badoption[1] == 'e' || badoption[1] == 'l')
        fprintf(stderr, "%s: '%s' needs argument\n", DM_HOST_NAME, badoption);
    else
        fprintf(stderr, "%s: unrecognized option '%s'\n", DM_HOST_NAME, badoption);
    print_help(stderr);
}

enum { HAS_ERROR = 1, HAS_I = 2, HAS_V = 4, HAS_E = 8, HAS_NOENV = 16, HAS_HELP = 32 };

/* Scans the options. *first gets the index of the script (argc when there is
 * none) or, on HAS_ERROR, of the bad option. */
static int collectargs(char **argv, int *first)
{
    int args = 0;
    int i;
    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-') return args; /* the script */
        switch (argv[i][1]) {
        case '-':
            if (strcmp(argv[i], "--help") == 0) { args |= HAS_HELP; break; }
            if (strcmp(argv[i], "--version") == 0) { args |= HAS_V; break; }
            if (argv[i][2] != '\0') return HAS_ERROR;
            *first = i + 1;
            return args;
        case '\0': return args; /* "-": the script is stdin */
        case 'E':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_NOENV;
            break;
        case 'W':
            if (argv[i][2] != '\0') return HAS_ERROR;
            break;
        case 'h':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_HELP;
            break;
        case 'i':
            args |= HAS_I; /* -i shows the version too */
            /* fallthrough */
        case 'v':
            if (argv[i][2] != '\0') return HAS_ERROR;
            args |= HAS_V;
            break;
        case 'e':
            args |= HAS_E;
            /* fallthrough */
        case 'l':
            if (argv[i][2] == '\0') { /* value in the next argument */
                i++;
                if (argv[i] == NULL) return HAS_ERROR;
            }
            break;
        default: return HAS_ERROR;
        }
    }
    *first = i;
    return args;
}

/* arg[0] is the script, arg[1..] its arguments, negative indices the
 * interpreter and options; without a script everything is positive. */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
    if (script == argc) script = 0;
    int narg = argc - (script + 1);
    lua_createtable(L, narg > 0 ? narg : 0, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = docall(L, 0, 0);
    return report(L, status);
}

static int dofile(lua_State *L, const char *name)
{
    return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name)
{
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod: global mod = require "mod". */
static int dolibrary(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    int status = docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, name);
    return report(L, status);
}

/* Runs -e, -l and -W in command-line order; 0 when one of them failed. */
static int runargs(lua_State *L, char **argv, int n)
{
    for (int i = 1; i < n; i++) {
        int option = argv[i][1];
        switch (option) {
        case 'e':
        case 'l': {
            const char *extra = argv[i] + 2;
            if (*extra == '\0') extra = argv[++i];
            int status = option == 'e' ? dostring(L, extra, "=(command line)")
                                       : dolibrary(L, extra);
            if (status != LUA_OK) return 0;
            break;
        }
        case 'W': lua_warning(L, "@on", 0); break;
        default: break;
        }
    }
    return 1;
}

/* The script gets its arguments both in `arg` and as `...`. */
static int handle_script(lua_State *L, char **argv)
{
    const char *fname = argv[0];
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
        fname = NULL; /* stdin */
    int status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        if (lua_getglobal(L, "arg") != LUA_TTABLE) {
            lua_pop(L, 2);
            lua_pushliteral(L, "'arg' is not a table");
            return report(L, LUA_ERRRUN);
        }
        int n = (int)luaL_len(L, -1);
        luaL_checkstack(L, n + 3, "too many arguments to script");
        for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
        lua_remove(L, -n - 1); /* the arg table */
        status = docall(L, n, LUA_MULTRET);
    }
    return report(L, status);
}

static int handle_luainit(lua_State *L)
{
    const char *name = "=LUA_INIT_5_4";
    const char *init = getenv(name + 1);
    if (init == NULL) {
        name = "=LUA_INIT";
        init = getenv(name + 1);
    }
    if (init == NULL) return LUA_OK;
    if (init[0] == '@') return dofile(L, init + 1);
    return dostring(L, init, name);
}

/* --- package.path and the module ----------------------------------------- */

/* The folder of the running executable (symlinks resolved) into out; 0 when
 * /proc/self/exe cannot be read. */
static int exe_dir(char out[PATH_MAX])
{
    if (realpath("/proc/self/exe", out) == NULL) return 0;
    char *slash = strrchr(out, '/');
    if (slash == NULL) return 0;
    *slash = '\0';
    return 1;
}

/* The Lua half of drlmem relative to the executable: <exedir>/lua and
 * <exedir>/../lua in the source tree (exe in build/), <exedir>/../share/lua/5.4
 * in an installed prefix (where `make install` and luarocks put it). */
static const char *const lua_dirs[] = {"/lua", "/../lua", "/../share/lua/5.4"};
/* Where `drlmem NAME` looks for a script NAME or NAME.lua: the source tree,
 * `make install`'s share/drlmem, and a luarocks tree, which deploys the
 * executable to bin/ but keeps the scripts in the rock's own folder. */
static const char *const script_dirs[] = {"/../scripts", "/../share/drlmem/scripts",
                                          "/../lib/luarocks/rocks-5.4/drlmem/*/share/drlmem/scripts"};

/* Prepends <dir>/?.lua;<dir>/?/init.lua for each of lua_dirs that holds a
 * drlmem folder, so the executable needs no LUA_PATH anywhere. */
static void add_lua_paths(lua_State *L)
{
    char exe[PATH_MAX], cand[PATH_MAX + 32], seen[sizeof lua_dirs / sizeof lua_dirs[0]][PATH_MAX];
    int nseen = 0;
    if (!exe_dir(exe)) return;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < sizeof lua_dirs / sizeof lua_dirs[0]; k++) {
        char dir[PATH_MAX];
        struct stat st;
        snprintf(cand, sizeof cand, "%s%s", exe, lua_dirs[k]);
        if (realpath(cand, dir) == NULL) continue;
        int dup = 0;
        for (int j = 0; j < nseen; j++) dup |= strcmp(seen[j], dir) == 0;
        if (dup) continue;
        snprintf(cand, sizeof cand, "%s/drlmem", dir);
        if (stat(cand, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        memcpy(seen[nseen++], dir, sizeof dir);
        luaL_addstring(&b, dir);
        luaL_addstring(&b, "/?.lua;");
        luaL_addstring(&b, dir);
        luaL_addstring(&b, "/?/init.lua;");
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    const char *old = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_insert(L, -2); /* package below the buffer */
    luaL_addstring(&b, old ? old : "");
    luaL_pushresult(&b);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

/* `drlmem train` or `drlmem train.lua` from any folder: a script argument
 * without a slash that is not a file here is looked up as NAME, then
 * NAME.lua, in script_dirs. Returns the path found (static storage) or NULL
 * to leave the argument as it is (Lua then reports the missing file). */
static const char *find_script(const char *name)
{
    static char found[PATH_MAX + 64];
    char exe[PATH_MAX];
    struct stat st;
    if (strpbrk(name, "/*?[\\") != NULL || strcmp(name, "-") == 0 || stat(name, &st) == 0) return NULL;
    if (!exe_dir(exe)) return NULL;
    for (size_t k = 0; k < sizeof script_dirs / sizeof script_dirs[0]; k++) {
        static const char *const ext[] = {"", ".lua"};
        for (int e = 0; e < 2; e++) {
            char pattern[PATH_MAX * 2];
            glob_t g;
            int hit = 0;
            snprintf(pattern, sizeof pattern, "%s%s/%s%s", exe, script_dirs[k], name, ext[e]);
            if (glob(pattern, 0, NULL, &g) == 0) {
                for (size_t j = 0; j < g.gl_pathc && !hit; j++)
                    hit = stat(g.gl_pathv[j], &st) == 0 && S_ISREG(st.st_mode) &&
                          realpath(g.gl_pathv[j], found) != NULL;
                globfree(&g);
            }
            if (hit) return found;
        }
    }
    return NULL;
}

/* package.preload.drlmem = luaopen_drlmem; dm = require "drlmem". */
static int load_module(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_drlmem);
    lua_setfield(L, -2, "drlmem");
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "drlmem");
    int status = docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, "dm");
    return report(L, status);
}

/* --- REPL ---------------------------------------------------------------- */

static int g_editline = 0;        /* reading lines through libedit */
static char g_histfile[PATH_MAX]; /* "" when HOME is unknown */
static int g_hist_dirty = 0;

/* libedit's reader, replaced so that Ctrl-C at the prompt ends readline()
 * at once (libedit itself retries an interrupted read). Bytes are decoded
 * here because libedit takes one wide character per call. */
static int repl_getc(FILE *in)
{
    char mb[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        unsigned char c;
        if (g_prompt_sigint) return EOF;
        if (g_winch) {
            g_winch = 0;
            rl_resize_terminal();
        }
        ssize_t r = read(fileno(in), &c, 1);
        if (r == 0) return EOF;
        if (r < 0) {
            if (errno == EINTR) continue;
            return EOF;
        }
        if (n == 0 && c < 0x80) return c;
        mb[n++] = (char)c;
        wchar_t wc;
        mbstate_t st;
        memset(&st, 0, sizeof st);
        size_t k = mbrtowc(&wc, mb, n, &st);
        if (k == (size_t)-2 && n < sizeof mb) continue; /* sequence goes on */
        if (k == (size_t)-1 || k == (size_t)-2) { n = 0; continue; } /* invalid: drop */
        return (int)wc;
    }
}

static void history_save(void)
{
    if (g_hist_dirty && g_histfile[0]) write_history(g_histfile); /* failure is fine */
    g_hist_dirty = 0;
}

static char **complete_word(const char *text, int start, int end);

static void editline_open(void)
{
    static int opened = 0;
    if (opened) return;
    opened = 1;
    setlocale(LC_CTYPE, ""); /* so typed UTF-8 survives the wide-char round trip */
    rl_catch_signals = 0;    /* our handlers, not libedit's re-raising ones */
    rl_getc_function = repl_getc;
    rl_readline_name = DM_HOST_NAME;
    /* "dm.ten" and "net:for" are one word to complete: no break at . and : */
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
    rl_completer_word_break_characters = (char *)rl_basic_word_break_characters;
    rl_completion_append_character = '\0';
    rl_attempted_completion_function = complete_word;
    rl_initialize(); /* now, while the terminal is still in its cooked mode */
    using_history();
    stifle_history(1000);
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(g_histfile, sizeof g_histfile, "%s/.%s_history", home, DM_HOST_NAME);
        read_history(g_histfile);
    }
    atexit(history_save); /* os.exit() in the REPL still keeps the history */
}

/* libedit draws the prompt first and switches the terminal to raw mode only
 * at its first read; keys typed or pasted in between would be echoed twice
 * and pass through canonical processing (Ctrl-D turns into NUL). Going
 * non-canonical and silent before the prompt closes that gap; libedit keeps
 * its own copy of the cooked mode and restores that after the line. */
static void tty_before_prompt(void)
{
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &t) != 0 || !(t.c_lflag & ICANON)) return;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

static void saveline(const char *line)
{
    if (g_editline && line[0] != '\0') {
        add_history(line);
        g_hist_dirty = 1;
    }
}

/* Reads one line and pushes it. Returns 1 with the line pushed, 0 at end
 * of input, -1 when Ctrl-C cleared the line (nothing pushed). */
static int pushline(lua_State *L, int firstline)
{
    const char *pname = firstline ? "_PROMPT" : "_PROMPT2";
    const char *prompt;
    if (lua_getglobal(L, pname) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushstring(L, firstline ? "> " : ">> ");
    } else {
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
    }
    prompt = lua_tostring(L, -1);
    g_prompt_sigint = 0;

    char *line;
    size_t len;
    static char *buf = NULL;
    static size_t cap = 0;
    if (g_editline) {
        tty_before_prompt();
        line = readline(prompt);
        len = line ? strlen(line) : 0;
    } else {
        fputs(prompt, stdout);
        fflush(stdout);
        ssize_t r = getline(&buf, &cap, stdin);
        line = r < 0 ? NULL : buf;
        len = r < 0 ? 0 : (size_t)r;
        if (line == NULL) clearerr(stdin);
    }
    lua_pop(L, 1); /* prompt */
    if (line == NULL) {
        if (!g_prompt_sigint) return 0;
        fputs("\n", stdout);
        fflush(stdout);
        return -1;
    }
    if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
    if (firstline && line[0] == '=') /* "=expr" from Lua 5.1 days */
        lua_pushfstring(L, "return %s", line + 1);
    else
        lua_pushlstring(L, line, len);
    if (g_editline) free(line);
    return 1;
}

/* Tries "return <line>" so that an expression prints its value. */
static int addreturn(lua_State *L)
{
    const char *line = lua_tostring(L, -1);
    const char *retline = lua_pushfstring(L, "return %s;", line);
    int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
    if (status == LUA_OK) {
        lua_remove(L, -2); /* the "return" text */
        saveline(line);
    } else {
        lua_pop(L, 2); /* message and "return" text */
    }
    return status;
}

/* A syntax error at <eof> means the chunk is not finished yet. */
static int incomplete(lua_State *L, int status)
{
    static const char mark[] = "<eof>";
    size_t lmsg;
    if (status != LUA_ERRSYNTAX) return 0;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    return lmsg >= sizeof mark - 1 && strcmp(msg + lmsg - (sizeof mark - 1), mark) == 0;
}

#define REPL_CLEARED (-2) /* Ctrl-C dropped the chunk being typed */
#define REPL_EOF (-1)

/* Reads continuation lines until the chunk compiles or fails otherwise. The
 * chunk text is at index 1; on return the function or the error is on top. */
static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *chunk = lua_tolstring(L, 1, &len);
        int status = luaL_loadbuffer(L, chunk, len, "=stdin");
        if (!incomplete(L, status)) {
            saveline(chunk);
            return status;
        }
        int r = pushline(L, 0);
        if (r < 0) return REPL_CLEARED;
        if (r == 0) { /* end of input inside a chunk: report the <eof> error */
            saveline(chunk);
            return status;
        }
        lua_remove(L, -2); /* the <eof> message */
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Leaves a compiled chunk (LUA_OK) or an error message on the stack. */
static int loadline(lua_State *L)
{
    for (;;) {
        lua_settop(L, 0);
        int r = pushline(L, 1);
        if (r == 0) return REPL_EOF;
        if (r < 0) continue;
        int status = addreturn(L);
        if (status != LUA_OK) status = multiline(L);
        if (status == REPL_CLEARED) continue;
        lua_remove(L, 1); /* the line */
        return status;
    }
}

/* The REPL's Lua side (lua/drlmem/repl.lua: printing of results, Tab
 * completion, help), as a registry reference; LUA_NOREF when it did not
 * load (no Lua half found), and the REPL then prints with plain print and
 * completes nothing. */
static int g_repl_ref = LUA_NOREF;

static int repl_setup_chunk(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "drlmem.repl");
    lua_call(L, 1, 1);
    /* help() as a global, unless the user's code already has one */
    if (lua_getglobal(L, "help") == LUA_TNIL) {
        lua_getfield(L, -2, "help");
        lua_setglobal(L, "help");
    }
    lua_pop(L, 1);
    return 1;
}

static void repl_setup(lua_State *L)
{
    if (g_repl_ref != LUA_NOREF) return;
    lua_pushcfunction(L, repl_setup_chunk);
    if (lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        g_repl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1); /* the message: the REPL works on without it */
    }
}

/* Pushes the field name of the REPL's Lua side, or nil. */
static int repl_field(lua_State *L, const char *name)
{
    if (g_repl_ref == LUA_NOREF) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, g_repl_ref);
    int t = lua_getfield(L, -1, name);
    lua_remove(L, -2);
    return t;
}

/* --- Tab completion ---------------------------------------------------- */

/* The completions of the word being typed, from repl.complete(word), kept
 * between the calls libedit makes to the generator. */
static char **g_compl = NULL;
static size_t g_ncompl = 0, g_icompl = 0;

static void completions_free(void)
{
    for (size_t i = 0; i < g_ncompl; i++) free(g_compl[i]);
    free(g_compl);
    g_compl = NULL;
    g_ncompl = g_icompl = 0;
}

/* Runs repl.complete(text) and copies its strings; never raises. */
static int complete_lua(lua_State *L)
{
    const char *text = lua_tostring(L, 1);
    repl_field(L, "complete");
    lua_pushstring(L, text);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) return 0;
    lua_Integer n = luaL_len(L, -1);
    g_compl = calloc((size_t)(n > 0 ? n : 1), sizeof *g_compl);
    if (g_compl == NULL) return 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        if (s && (g_compl[g_ncompl] = strdup(s)) != NULL) g_ncompl++;
        lua_pop(L, 1);
    }
    return 0;
}

/* libedit's generator: state 0 starts a new word. */
static char *complete_next(const char *text, int state)
{
    lua_State *L = g_L;
    if (state == 0) {
        completions_free();
        if (L == NULL || g_repl_ref == LUA_NOREF) return NULL;
        int top = lua_gettop(L);
        lua_pushcfunction(L, complete_lua);
        lua_pushstring(L, text);
        (void)lua_pcall(L, 1, 0, 0); /* an error only means no completion */
        lua_settop(L, top);
    }
    return g_icompl < g_ncompl ? strdup(g_compl[g_icompl++]) : NULL;
}

static char **complete_word(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1; /* Lua names only, never file names */
    return rl_completion_matches(text, complete_next);
}

/* Prints every value on the stack with repl.print (tables as Lua literals,
 * a config as its lines), or the global print without the Lua side. */
static void l_print(lua_State *L)
{
    int n = lua_gettop(L);
    if (n == 0) return;
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    if (repl_field(L, "print") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        lua_getglobal(L, "print");
    }
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
        l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
}

static void doREPL(lua_State *L)
{
    const char *oldprog = progname;
    struct sigaction oldint, oldwinch;
    int status;
    progname = NULL;
    g_editline = isatty(STDIN_FILENO);
    repl_setup(L);
    if (g_editline) editline_open();
    set_signal(SIGINT, on_sigint_prompt, 0, &oldint);
    set_signal(SIGWINCH, on_sigwinch, SA_RESTART, &oldwinch);
    while ((status = loadline(L)) != REPL_EOF) {
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) l_print(L);
        else report(L, status);
        fflush(stdout);
    }
    lua_settop(L, 0);
    fputs("\n", stdout);
    fflush(stdout);
    if (g_editline) history_save();
    sigaction(SIGWINCH, &oldwinch, NULL);
    sigaction(SIGINT, &oldint, NULL);
    progname = oldprog;
}

/* --- main ---------------------------------------------------------------- */

/* Runs in protected mode so that even a memory error is reported. Pushes
 * true when everything went well. */
static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = 0;
    int args = collectargs(argv, &script);
    int optlim = script < argc ? script : argc;
    luaL_checkversion(L);
    if (args == HAS_ERROR) {
        print_usage(argv[script]);
        return 0;
    }
    if (args & HAS_HELP) {
        print_help(stdout);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & HAS_NOENV) { /* the package library reads this flag */
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
    }
    luaL_openlibs(L);
    add_lua_paths(L);
    if (script < argc) {
        const char *path = find_script(argv[script]);
        if (path) argv[script] = (char *)path; /* arg[0] is then the full path */
    }
    createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    if (load_module(L) != LUA_OK) return 0;
    if (args & HAS_V) print_version(L);
    if (!(args & HAS_NOENV) && handle_luainit(L) != LUA_OK) return 0;
    if (!runargs(L, argv, optlim)) return 0;
    if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
    if (args & HAS_I) {
        doREPL(L);
    } else if (script >= argc && !(args & (HAS_E | HAS_V))) {
        if (isatty(STDIN_FILENO)) {
            print_version(L);
            doREPL(L);
        } else if (dofile(L, NULL) != LUA_OK) {
            return 0; /* unlike lua, a failing stdin chunk fails the process */
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        l_message(DM_HOST_NAME, "cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    g_L = L;
    g_lua_thread = pthread_self();
    lua_gc(L, LUA_GCSTOP); /* no collections while the libraries open */
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 0);
    int ok = lua_toboolean(L, -1);
    report(L, status);
    fflush(stdout);
    lua_close(L);
    return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
