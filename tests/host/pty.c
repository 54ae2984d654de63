/* pty.c: a tiny "expect" for the host tests. It runs a command on a new
 * pseudo-terminal and follows a script read from stdin, one directive a line:
 *   expect TEXT   wait until the output (after the previous match) holds TEXT
 *   send TEXT     type TEXT; \n \r \t \\ and \xHH are decoded
 *   sleep MS      pause
 *   wait          wait for the command to end
 * Everything the command printed goes to stdout, then "pty: exit N" (or
 * "pty: signal N"). Each wait is bounded by the timeout in seconds given as
 * first argument; on a timeout the command is killed, "pty: timeout ..." is
 * printed and the exit status is 2, so a broken REPL never hangs a test.
 * The terminal is 80 columns wide, or $PTY_COLS.
 * Usage: pty SECONDS COMMAND [ARGS...] < directives */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char out[1 << 20]; /* the whole transcript */
static size_t nout = 0, mark = 0;
static int master = -1;
static pid_t child = -1;
static int child_done = 0, child_status = 0;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads what is available within ms milliseconds: 1 when something came,
 * 2 when nothing did, 0 at end of output. */
static int pump(int ms)
{
    struct pollfd p = {.fd = master, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r <= 0) return 2;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) return 0; /* EIO once the child side is closed */
    if (nout + (size_t)n > sizeof out - 1) n = (ssize_t)(sizeof out - 1 - nout);
    memcpy(out + nout, buf, (size_t)n);
    nout += (size_t)n;
    out[nout] = '\0';
    return 1;
}

static void finish(int code, const char *why)
{
    if (!child_done && child > 0) {
        kill(child, SIGKILL);
        waitpid(child, &child_status, 0);
    }
    fwrite(out, 1, nout, stdout);
    if (why) printf("\npty: timeout %s\n", why);
    else if (WIFEXITED(child_status)) printf("\npty: exit %d\n", WEXITSTATUS(child_status));
    else printf("\npty: signal %d\n", WTERMSIG(child_status));
    exit(code);
}

static size_t decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\' || r[1] == '\0') { *w++ = *r; continue; }
        r++;
        switch (*r) {
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'x': {
            char hex[3] = {r[1], r[1] ? r[2] : 0, 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
            break;
        }
        default: *w++ = *r; break;
        }
    }
    return (size_t)(w - s);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pty SECONDS COMMAND [ARGS...] < directives\n");
        return 2;
    }
    double limit = atof(argv[1]);
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    const char *cols = getenv("PTY_COLS");
    if (cols && atoi(cols) > 0) ws.ws_col = (unsigned short)atoi(cols);
    child = forkpty(&master, NULL, NULL, &ws);
    if (child < 0) { perror("forkpty"); return 2; }
    if (child == 0) {
        execvp(argv[2], argv + 2);
        perror("exec");
        _exit(127);
    }
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "expect ", 7) == 0) {
            const char *want = line + 7;
            double t0 = now();
            char *hit;
            while ((hit = strstr(out + mark, want)) == NULL) {
                if (now() - t0 > limit || !pump(50)) {
                    if (strstr(out + mark, want)) break;
                    char why[4200];
                    snprintf(why, sizeof why, "waiting for '%s'", want);
                    finish(2, why);
                }
            }
            hit = strstr(out + mark, want);
            mark = (size_t)(hit - out) + strlen(want);
        } else if (strncmp(line, "send ", 5) == 0) {
            size_t n = decode(line + 5);
            if (write(master, line + 5, n) != (ssize_t)n) finish(2, "writing to the terminal");
        } else if (strncmp(line, "sleep ", 6) == 0) {
            double t0 = now(), ms = atof(line + 6);
            while ((now() - t0) * 1000 < ms && pump(10)) {}
        } else if (strcmp(line, "wait") == 0) {
            double t0 = now();
            while (!child_done) {
                pump(50);
                pid_t r = waitpid(child, &child_status, WNOHANG);
                if (r == child) child_done = 1;
                else if (now() - t0 > limit) finish(2, "waiting for the command to end");
            }
            while (pump(50) == 1) {} /* what it printed last */
        }
    }
    if (!child_done) finish(2, "the script ended before the command did (missing 'wait')");
    finish(0, NULL);
    return 0;
}
