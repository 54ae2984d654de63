#!/usr/bin/env bash
# Command-line behaviour of the drlmem executable, modelled on lua(1):
# scripts and the `arg` table, -e/-v/-h/-E/--/-, stdin chunks, error exits
# with a traceback, the preloaded module and the lua/ search path.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
set -u
cd "$(dirname "$0")/../.."
E=${DRLMEM_EXE:-./build/drlmem}
E=$(realpath "$E")
# The exe carries its own sanitizer runtime; helpers (cc, cp) must not get it.
unset LD_PRELOAD
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
echo "1..32"
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
# run ARGS...: fills $out, $err, $rc (stdin from the caller).
run() { "$E" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err"); }
clean() { ! grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer' "$tmp/err"; }
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
t() { if eval "$2"; then ok 0 "$1"; else ok 1 "$1"; echo "#   rc=$rc stdout: ${out:0:400}"; echo "#   stderr: ${err:0:600}"; fi; }

cat >"$tmp/args.lua" <<'LUA'
print(#arg, arg[0], arg[1], arg[2], arg[3])
print(arg[-1] ~= nil, arg[-2] == nil)
print("varargs", select("#", ...), ...)
LUA
run "$tmp/args.lua" one "two words" 3 </dev/null
t "script gets arg[0..n] and the same values as ..." \
  '[ $rc -eq 0 ] && clean && [ "$out" = "$(printf "3\t%s\tone\ttwo words\t3\ntrue\ttrue\nvarargs\t3\tone\ttwo words\t3" "$tmp/args.lua")" ]'

printf 'print(arg[-4], arg[-3], arg[-2], arg[-1], arg[0], arg[1], arg[-5])\n' >"$tmp/neg.lua"
run -W -e "" "$tmp/neg.lua" x </dev/null
t "the interpreter and options take negative indices" \
  '[ $rc -eq 0 ] && [ "$out" = "$(printf "%s\t-W\t-e\t\t%s\tx\tnil" "$E" "$tmp/neg.lua")" ]'

run -e 'print(type(dm), require("drlmem") == dm, package.loaded.drlmem == dm, type(package.preload.drlmem))' </dev/null
t "dm is the preloaded drlmem module" '[ $rc -eq 0 ] && [ "$out" = "$(printf "table\ttrue\ttrue\tfunction")" ]'

run -e 'x = 1' -e 'x = x * 10' -e 'print(x + 2)' </dev/null
t "-e chunks run in order" '[ $rc -eq 0 ] && [ "$out" = 12 ]'

run -e'print("attached")' </dev/null
t "-e with the chunk attached" '[ $rc -eq 0 ] && [ "$out" = attached ]'

run -e 'error("bad -e")' -e 'print("not reached")' </dev/null
t "a failing -e stops with status 1" '[ $rc -eq 1 ] && [ -z "$out" ] && has "$err" "drlmem: (command line):1: bad -e"'

run -v </dev/null
t "-v prints the drlmem and Lua versions" \
  '[ $rc -eq 0 ] && [[ "$out" =~ ^drlmem\ [0-9]+\.[0-9]+.*Lua\ 5\.4 ]] && [ -z "$err" ]'

run --version </dev/null
t "--version prints the versions like -v" \
  '[ $rc -eq 0 ] && [[ "$out" =~ ^drlmem\ [0-9]+\.[0-9]+.*Lua\ 5\.4 ]] && [ -z "$err" ]'

# A script named without a slash is found among the scripts of the tree
# (or of the install, tests/host/install.sh), from any folder; a file of
# that name in the current folder comes first, as lua(1) would run it.
(cd "$tmp" && "$E" make_task --help) >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "drlmem NAME runs scripts/NAME.lua from another folder" '[ $rc -eq 0 ] && has "$out" "Usage: make_task.lua"'
printf 'print("local file wins", arg[0])\n' >"$tmp/make_task"
(cd "$tmp" && "$E" make_task) >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "a file of that name in the current folder runs instead" '[ $rc -eq 0 ] && [ "$out" = "$(printf "local file wins\tmake_task")" ]'
rm -f "$tmp/make_task"
(cd "$tmp" && "$E" make_task.lua --help) >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "drlmem NAME.lua too" '[ $rc -eq 0 ] && has "$out" "Usage: make_task.lua"'

# A negative option value reaches the script's own check and its message.
(cd "$tmp" && "$E" generate --checkpoint none.safetensors --temperature -1) >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "generate --temperature -1 gets the script's message, not 'unknown option'" \
  '[ $rc -eq 1 ] && has "$err" "--temperature must be >= 0" && ! has "$err" "unknown option" && ! has "$err" "traceback"'

run -h </dev/null
t "-h prints usage on stdout and exits 0" '[ $rc -eq 0 ] && has "$out" "usage: drlmem" && has "$out" "-e chunk"'
run --help </dev/null
t "--help too" '[ $rc -eq 0 ] && has "$out" "usage: drlmem"'

run -q </dev/null
t "an unknown option fails with usage on stderr" '[ $rc -ne 0 ] && has "$err" "unrecognized option '"'"'-q'"'"'" && has "$err" "usage:"'
run -e </dev/null
t "-e without a chunk fails" '[ $rc -ne 0 ] && has "$err" "needs argument"'

run - a b <<<'print(arg[0], arg[1], ..., dm ~= nil)'
t "'drlmem -' runs stdin with arguments" '[ $rc -eq 0 ] && [ "$out" = "$(printf -- "-\ta\ta\ttrue")" ]'

run <<<'print(6 * 7)'
t "drlmem with a piped stdin runs it as a chunk" '[ $rc -eq 0 ] && [ "$out" = 42 ]'

run <<<'error("piped")'
t "an error in a piped chunk fails" '[ $rc -eq 1 ] && has "$err" "drlmem: stdin:1: piped"'

printf 'print(arg[1], arg[2])\n' >"$tmp/-v"
(cd "$tmp" && "$E" -- -v -e) >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "-- ends the options" '[ $rc -eq 0 ] && [ "$out" = "$(printf -- "-e\tnil")" ]'

cat >"$tmp/err.lua" <<'LUA'
local function inner() error("boom at depth") end
local function outer() inner() end
print("before")
outer()
print("after")
LUA
run "$tmp/err.lua" </dev/null
t "an uncaught error exits 1 with a traceback on stderr" \
  '[ $rc -eq 1 ] && [ "$out" = before ] && clean &&
   [[ "$err" == "drlmem: $tmp/err.lua:1: boom at depth"* ]] && has "$err" "stack traceback:" &&
   has "$err" "'"'"'inner'"'"'" && has "$err" "in local '"'"'outer'"'"'" && has "$err" "err.lua:4: in main chunk"'

printf 'error(setmetatable({}, {__tostring = function() return "custom object" end}))\n' >"$tmp/obj.lua"
run "$tmp/obj.lua" </dev/null
t "an error object with __tostring is shown through it" '[ $rc -eq 1 ] && has "$err" "drlmem: custom object"'
printf 'error({code = 1})\n' >"$tmp/tbl.lua"
run "$tmp/tbl.lua" </dev/null
t "a table error object is named" '[ $rc -eq 1 ] && has "$err" "(error object is a table value)"'

printf 'print("never")\nlocal x = = 2\n' >"$tmp/syntax.lua"
run "$tmp/syntax.lua" </dev/null
t "a syntax error exits 1 before running anything" \
  '[ $rc -eq 1 ] && [ -z "$out" ] && [[ "$err" == "drlmem: $tmp/syntax.lua:2: "* ]] && has "$err" "near '"'"'='"'"'"'

run "$tmp/does-not-exist.lua" </dev/null
t "a missing script is a clear error" \
  '[ $rc -ne 0 ] && [ -z "$out" ] && has "$err" "cannot open $tmp/does-not-exist.lua" && has "$err" "No such file"'

run -e 'io.stdout:write("x") os.exit(7)' </dev/null
t "os.exit sets the status" '[ $rc -eq 7 ] && [ "$out" = x ]'
run -e 'os.exit(false)' </dev/null
t "os.exit(false) exits 1" '[ $rc -eq 1 ]'

LUA_INIT='init_seen = type(dm)' "$E" -e 'print(init_seen)' </dev/null >"$tmp/out" 2>&1; rc=$?; out=$(cat "$tmp/out")
t "LUA_INIT runs before the chunks, with dm set" '[ $rc -eq 0 ] && [ "$out" = table ]'
LUA_INIT='init_seen = 1' "$E" -E -e 'print(init_seen)' </dev/null >"$tmp/out" 2>&1; rc=$?; out=$(cat "$tmp/out")
t "-E ignores LUA_INIT" '[ $rc -eq 0 ] && [ "$out" = nil ]'

# lua/ next to the executable is found without LUA_PATH: in the source tree
# (exe in a build folder) and in the install layout bin/ + share/lua/5.4.
root=$(realpath "$(dirname "$E")/..")
run -E -e 'print((package.path:gsub(";.*", "")))' </dev/null
t "package.path starts with <exedir>/../lua in the source tree" \
  '[ $rc -eq 0 ] && { [ ! -d "$root/lua" ] || [ "$out" = "$root/lua/?.lua" ]; }'
mkdir -p "$tmp/pfx/bin" "$tmp/pfx/share/lua/5.4/drlmem"
cp "$E" "$tmp/pfx/bin/drlmem"
printf 'return {answer = 41 + 1}\n' >"$tmp/pfx/share/lua/5.4/drlmem/h2probe.lua"
"$tmp/pfx/bin/drlmem" -E -e 'print(require("drlmem.h2probe").answer, package.searchpath("drlmem.h2probe", package.path))' \
  </dev/null >"$tmp/out" 2>"$tmp/err"; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "an installed drlmem finds share/lua/5.4" \
  '[ $rc -eq 0 ] && [ "$out" = "$(printf "42\t%s" "$(realpath "$tmp/pfx")/share/lua/5.4/drlmem/h2probe.lua")" ]'

# Ctrl-C in a running script raises "interrupted!" through the hook instead
# of killing the process. The script signals readiness through a file, so
# the signal arrives while the chunk (and its handler) is running.
"$E" -e "io.open('$tmp/ready', 'w'):close() while true do end" </dev/null >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 200); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
sleep 0.1
kill -INT "$pid" 2>/dev/null
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -KILL "$pid" 2>/dev/null
wait "$pid"; rc=$?; err=$(cat "$tmp/err"); out=""
t "SIGINT in a running script gives 'interrupted!' and status 1" \
  '[ $rc -eq 1 ] && has "$err" "interrupted!" && has "$err" "stack traceback:"'
