#!/usr/bin/env bash
# The drlmem REPL: through a pipe (forced with -i, lines read with plain
# stdio) and through a pseudo-terminal (libedit, prompts, Ctrl-C, Ctrl-D,
# history). The pty side uses tests/host/pty.c, compiled into
# $DRLMEM_BUILD; every run is bounded by `timeout`, so a broken REPL fails
# instead of hanging. Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
set -u
cd "$(dirname "$0")/../.."
E=${DRLMEM_EXE:-./build/drlmem}
E=$(realpath "$E")
B=${DRLMEM_BUILD:-./build}
# The exe carries its own sanitizer runtime; helpers (cc) must not get it.
unset LD_PRELOAD
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export HOME=$tmp/home  # keep the user's ~/.drlmem_history out of it
mkdir -p "$HOME"
n=0
echo "1..36"
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
clean() { ! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$tmp/err"; }
t() { if eval "$2"; then ok 0 "$1"; else ok 1 "$1"; echo "#   rc=$rc stdout: ${out:0:600}" | sed '2,$s/^/#   /'; echo "#   stderr: ${err:0:600}" | sed '2,$s/^/#   /'; fi; }
# pipe ARGS... <<< lines: the REPL fed through a pipe.
pipe() { timeout 20 "$E" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err"); }

# --- through a pipe --------------------------------------------------------
pipe -i <<'IN'
1+1
IN
t "a bare expression prints its value" '[ $rc -eq 0 ] && clean && has "$out" "> 2"'
t "the banner names drlmem" '[[ "$out" == "drlmem "* ]]'

pipe -i <<'IN'
function triple(x)
  return x * 3
end
triple(14)
IN
t "a function spread over 3 lines, then called" \
  '[ $rc -eq 0 ] && has "$out" ">> >> " && has "$out" "> 42"'

pipe -i <<'IN'
1, "two", nil, {} ~= nil
IN
t "all returned values print, tab-separated" '[ $rc -eq 0 ] && has "$out" "$(printf "1\ttwo\tnil\ttrue")"'

pipe -i <<'IN'
error("first fails")
nosuch.field = 1
print("still" .. " alive")
IN
t "errors print with a traceback and the REPL goes on" \
  '[ $rc -eq 0 ] && clean && has "$err" "stdin:1: first fails" && has "$err" "stack traceback:" &&
   has "$err" "attempt to index a nil value (global '"'"'nosuch'"'"')" && has "$out" "still alive"'

pipe -i <<'IN'
x = = 1
print("after syntax error")
IN
t "a syntax error is reported and the REPL goes on" \
  '[ $rc -eq 0 ] && has "$err" "unexpected symbol" && has "$out" "after syntax error"'

pipe -i </dev/null
t "end of input exits 0" '[ $rc -eq 0 ] && has "$out" "> "'

pipe -i <<'IN'
local t = {
IN
t "end of input inside a chunk reports it and exits 0" '[ $rc -eq 0 ] && has "$err" "<eof>"'

pipe -i <<'IN'
print(type(dm), require("drlmem") == dm)
=3*3
IN
t "dm is there; '=expr' prints like lua 5.1" '[ $rc -eq 0 ] && has "$out" "$(printf "table\ttrue")" && has "$out" "> 9"'

pipe -i <<'IN'
print("before exit")
os.exit(5)
print("not reached")
IN
t "os.exit works in the REPL" '[ $rc -eq 5 ] && has "$out" "before exit" && ! has "$out" "not reached"'

printf 'shared = 40\n' >"$tmp/pre.lua"
pipe -i "$tmp/pre.lua" <<'IN'
shared + 2
IN
t "-i enters the REPL after the script, keeping its globals" '[ $rc -eq 0 ] && has "$out" "> 42"'

pipe -i <<'IN'
_PROMPT = "dm> "
1
IN
t "_PROMPT changes the prompt" '[ $rc -eq 0 ] && has "$out" "dm> "'

# Results print readably: tables as Lua literals (lua-inspect), cut when
# large; a config as its key = value lines; dm as what it offers.
pipe -i <<'IN'
{1, {a = 2, b = {"x"}}, name = "s"}
big = {} for i = 1, 100 do big[i] = i * i end
big
{text = string.rep("ab", 400)}
dm.config.defaults()
dm
dm.zeros
IN
t "a nested table prints as a Lua literal, not an address" \
  '[ $rc -eq 0 ] && clean && has "$out" "a = 2," && has "$out" "b = { \"x\" }" && has "$out" "name = \"s\"" && ! has "$out" "table: 0x"'
t "a large table is cut after its first entries" \
  '[ $rc -eq 0 ] && has "$out" "{ 1, 4, 9, 16," && has "$out" "[\"...\"] = \"80 more\"" && ! has "$out" "441" &&
   has "$out" "text = \"$(printf "ab%.0s" $(seq 50))... (800 bytes)\""'
t "a config prints its key = value lines" \
  '[ $rc -eq 0 ] && grep -qE "^batch_size +=  ?16 +\(default\)" <<<"${out//> /}" && ! has "$out" "drlmem.Config: 0x"'
t "dm prints a summary of its names; a function its signature" \
  '[ $rc -eq 0 ] && has "$out" "classes:   Controller Generator Memory Tensor" && has "$out" "modules:" &&
   has "$out" "function: dm.zeros(d1, ..., [dtype]) -> Tensor"'

# help() from the one table of docs (lua/drlmem/help.lua).
pipe -i <<'IN'
help()
help(dm.Memory)
m = dm.Memory(4, 2)
help(m.read)
help(dm.nn.Linear)
help(nosuch)
IN
t "help() lists what dm offers" \
  '[ $rc -eq 0 ] && clean && has "$out" "help(x) explains x" && grep -qE "^  dm.Controller +The whole DRLMemNet model" <<<"$out" &&
   grep -qE "^  dm.zeros +A tensor of zeros" <<<"$out"'
t "help(dm.Memory) gives the signature, a sentence and the methods" \
  '[ $rc -eq 0 ] && has "$out" "dm.Memory(slots, width) -> Memory
  The differentiable key-value memory" && has "$out" "methods:" && has "$out" "reset_usage"'
t "help(m.read) and help(dm.nn.Linear) explain one function each" \
  '[ $rc -eq 0 ] && has "$out" "m:read(query) -> out, weights" && has "$out" "dm.nn.Linear(in, out, [{bias = true, init = ...}]) -> module"'
t "help of an unknown value says so and the REPL goes on" '[ $rc -eq 0 ] && has "$out" "no help for nil; help() lists"'

# SIGINT while the REPL waits for a line only clears it. A fifo holds the
# REPL at its prompt; the banner in the output shows it got that far.
mkfifo "$tmp/fifo"
timeout 20 "$E" -i <"$tmp/fifo" >"$tmp/out" 2>"$tmp/err" &
pid=$!
exec 3>"$tmp/fifo"
for _ in $(seq 200); do grep -q "> " "$tmp/out" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
sleep 0.2
echo 'print("sur" .. "vived")' >&3
exec 3>&-
wait "$pid"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "SIGINT at the prompt does not end the REPL" '[ $rc -eq 0 ] && has "$out" "survived"'

# A process-directed signal may land on any thread that does not block it,
# a BLAS worker too; the REPL must react as if it had landed on its own
# thread: here its read at the prompt returns and the prompt is drawn again.
# tgkill sends SIGINT to one worker thread (OpenBLAS starts one at load with
# 2 threads).
TGKILL=$B/tests/host-tgkill
if [ ! -x "$TGKILL" ] || [ "$0" -nt "$TGKILL" ]; then
  mkdir -p "$B/tests"
  printf '%s\n' '#define _GNU_SOURCE' '#include <stdlib.h>' '#include <sys/syscall.h>' '#include <unistd.h>' \
    'int main(int c, char **v) { (void)c; return syscall(SYS_tgkill, atoi(v[1]), atoi(v[2]), atoi(v[3])) ? 1 : 0; }' \
    >"$tmp/tgkill.c"
  cc -std=c11 -o "$TGKILL.tmp$$" "$tmp/tgkill.c" && mv "$TGKILL.tmp$$" "$TGKILL"
fi
rm -f "$tmp/fifo2"; mkfifo "$tmp/fifo2"
OPENBLAS_NUM_THREADS=2 "$E" -i <"$tmp/fifo2" >"$tmp/out" 2>"$tmp/err" &
pid=$!
( sleep 20; kill -9 "$pid" 2>/dev/null ) & watchdog=$!
exec 3>"$tmp/fifo2"
for _ in $(seq 200); do grep -q "> " "$tmp/out" 2>/dev/null && break; sleep 0.05; done
worker=$(ls "/proc/$pid/task" 2>/dev/null | grep -vx "$pid" | head -1)
if [ -n "$worker" ]; then
  "$TGKILL" "$pid" "$worker" 2
  for _ in $(seq 40); do [ "$(grep -o "> " "$tmp/out" | wc -l)" -ge 2 ] && break; sleep 0.05; done
  prompts=$(grep -o "> " "$tmp/out" | wc -l)
fi
echo 'print("sur" .. "vived")' >&3
exec 3>&-
wait "$pid"; rc=$?; kill "$watchdog" 2>/dev/null; out=$(cat "$tmp/out")
if [ -n "$worker" ]; then
  t "SIGINT caught by a worker thread at the prompt: the prompt is drawn again, the REPL goes on" \
    '[ $rc -eq 0 ] && [ "$prompts" -ge 2 ] && has "$out" "survived"'
else
  skip "SIGINT caught by a worker thread at the prompt" "the REPL has no second thread here"
fi

# --- through a pseudo-terminal ---------------------------------------------
PTY=$B/tests/host-pty
if [ ! -x "$PTY" ] || [ tests/host/pty.c -nt "$PTY" ]; then
  mkdir -p "$B/tests"
  cc -std=c11 -O1 -o "$PTY.tmp$$" tests/host/pty.c -lutil && mv "$PTY.tmp$$" "$PTY"
fi
# tty SECONDS: runs the REPL on a pty, directives from stdin (see pty.c).
tty() { TERM=${TERM:-xterm} timeout 25 "$PTY" "$1" "$E" >"$tmp/out" 2>&1; rc=$?; out=$(tr -d '\r\a' <"$tmp/out" | sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g'); err=""; }

tty 10 <<'IN'
expect drlmem
expect > 
send 1+1\n
expect 2
expect > 
send function sq(x)\n
expect >> 
send   return x * x end\n
expect > 
send print(sq(12))\n
expect 144
expect > 
send abc
sleep 150
send \x03
expect > 
send 1+2\n
expect 3
expect > 
send print("st".."art") while true do end\n
expect start
sleep 200
send \x03
expect interrupted!
expect > 
send print("al".."ive")\n
expect alive
expect > 
send \x04
wait
IN
t "pty: the prompt appears and an expression prints" '[ $rc -eq 0 ] && has "$out" "> 1+1
2
> "'
t "pty: a continuation prompt for an unfinished function" '[ $rc -eq 0 ] && has "$out" "144"'
t "pty: Ctrl-C at the prompt clears the line" '[ $rc -eq 0 ] && has "$out" "> 1+2
3" && ! has "$out" "abc1+2"'
t "pty: Ctrl-C during a loop prints 'interrupted!' and the REPL goes on" \
  '[ $rc -eq 0 ] && has "$out" "interrupted!" && has "$out" "alive"'
t "pty: Ctrl-D exits with status 0, no sanitizer report" \
  '[ $rc -eq 0 ] && has "$out" "pty: exit 0" && ! has "$out" "Sanitizer" && ! has "$out" "runtime error:"'
t "pty: lines go to ~/.drlmem_history" \
  '[ -f "$HOME/.drlmem_history" ] && grep -q "^1+1$" "$HOME/.drlmem_history" && ! grep -q abc "$HOME/.drlmem_history"'

tty 10 <<'IN'
expect > 
send for i = 1, 3 do\n
expect >> 
send \x03
expect > 
send print("fr".."esh")\n
expect fresh
expect > 
send os.exit(3)\n
wait
IN
t "pty: Ctrl-C at a continuation prompt drops the chunk" '[ $rc -eq 0 ] && has "$out" "fresh" && ! has "$out" "<eof>"'
t "pty: os.exit sets the status" '[ $rc -eq 0 ] && has "$out" "pty: exit 3"'

tty 10 <<'IN'
expect > 
send x = 20\nx + 1\nx * 2\n
expect 40
expect > 
send \x04
wait
IN
t "pty: lines typed ahead in one burst are each read once" \
  '[ $rc -eq 0 ] && has "$out" "21" && has "$out" "40" && [ "$(grep -c "x + 1" <<<"$out")" -eq 1 ]'

HOME=/nonexistent/dir tty 10 <<'IN'
expect > 
send 6*7\n
expect 42
expect > 
send \x04
wait
IN
t "pty: an unwritable HOME does not break the REPL" '[ $rc -eq 0 ] && has "$out" "pty: exit 0"'

# Tab completes Lua names: a field of dm, a method of a userdata (through
# its metatable), a field of a table, a global; several candidates are
# listed. (The bound is generous: five 150 ms pauses and a sanitizer build
# on a shared machine came close to 10 s.)
tty 30 <<'IN'
expect > 
send dm.ten\t
sleep 150
send {1, 2}:numel()\n
expect 2
expect > 
send m = dm.Memory(4, 2)\n
expect > 
send m:us\t
sleep 150
send ()\n
expect [Tensor float32 4]
expect > 
send tbl = {alpha = 40}\n
expect > 
send tbl.al\t
sleep 150
send  + 2\n
expect 42
expect > 
send pri\t
sleep 150
send ("glo".."bal")\n
expect global
expect > 
send dm.nn.\t
sleep 150
send \t
expect dm.nn.cross_entropy
sleep 150
send Linear\n
expect > 
send \x04
wait
IN
t "pty: Tab completes dm.ten to dm.tensor" '[ $rc -eq 0 ] && has "$out" "dm.tensor{1, 2}:numel()"'
t "pty: Tab completes a method of a userdata (m:us -> m:usage)" '[ $rc -eq 0 ] && has "$out" "m:usage()" && has "$out" "[Tensor float32 4]"'
t "pty: Tab completes a table field and a global" \
  '[ $rc -eq 0 ] && has "$out" "tbl.alpha + 2" && has "$out" "print(\"glo\"..\"bal\")"'
t "pty: a second Tab lists the candidates" '[ $rc -eq 0 ] && has "$out" "dm.nn.Embedding" && has "$out" "dm.nn.GRU"'
