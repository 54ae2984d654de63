#!/usr/bin/env bash
# `make install PREFIX=...` gives a working drlmem outside the source tree,
# laid out like a Lua tool: the executable finds its Lua library under
# PREFIX/share/lua/5.4 and the scripts and configs under PREFIX/share/drlmem
# (`drlmem train` finds the script by name), and stock lua5.4 loads
# PREFIX/lib/lua/5.4/drlmem.so with every Lua submodule, through
# LUA_PATH/LUA_CPATH for a temporary prefix and with no variable at all for
# PREFIX=/usr/local (installed under DESTDIR, checked against stock Lua's
# own search path). Everything runs from folders outside the tree. Prints TAP.
. "$(dirname "$0")/tap.inc"
build=$(realpath "${DRLMEM_BUILD:-build}")
san=""; [ "${SAN:-}" = "1" ] && san="SAN=1"
P=$tmp/prefix
make -s install BUILD="$build" $san PREFIX="$P" >"$tmp/out" 2>&1; rc=$?
t "make install PREFIX=... succeeds" '[ $rc -eq 0 ]'
I=$P/bin/drlmem
mkdir -p "$tmp/work"
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
run() { (cd "$tmp/work" && "$@") >"$tmp/out" 2>&1; rc=$?; out=$(cat "$tmp/out"); }

run "$I" -e 'print(dm.config.defaults().batch_size, type(dm.checkgrad), dm.data ~= nil)'
t "the installed drlmem finds its Lua library from any folder" \
  '[ $rc -eq 0 ] && [ "$out" = "$(printf "16\tfunction\ttrue")" ]'
t "the scripts and configs are installed" \
  '[ -f "$P/share/drlmem/scripts/train.lua" ] && [ -f "$P/share/drlmem/configs/tiny.yaml" ] &&
   [ -f "$P/share/drlmem/configs/default.yaml" ]'

# The main job from an empty folder: the data is made there, the model lands
# there. tiny.yaml keeps it to a few seconds.
run "$I" train --config "$P/share/drlmem/configs/tiny.yaml" --set epochs=1
t "drlmem train (found by name) runs the main job in any folder" \
  '[ $rc -eq 0 ] && clean && [ -s "$tmp/work/models/tiny/memory_model.safetensors" ] && [ -s "$tmp/work/data/tiny.txt" ]'
ck=$tmp/work/models/tiny/memory_model.safetensors
run "$I" evaluate.lua --checkpoint "$ck"
t "drlmem evaluate.lua (name with .lua) evaluates the model" '[ $rc -eq 0 ] && clean && grep -q "perplexity\|ppl" "$tmp/out"'
run "$I" "$P/share/drlmem/scripts/generate.lua" --checkpoint "$ck" --prime "mary" --length 3
t "the installed generate.lua runs by its full path" '[ $rc -eq 0 ] && clean && [ -n "$out" ]'
run "$I" explore_memory --checkpoint "$ck"
t "drlmem explore_memory runs on the model" '[ $rc -eq 0 ] && clean'
bad=""
for s in "$P"/share/drlmem/scripts/*.lua; do
  name=$(basename "$s" .lua)
  (cd "$tmp/work" && "$I" "$name" --help) >"$tmp/out" 2>&1 || bad="$bad $name"
done
t "every installed script answers --help by name" '[ -z "$bad" ] || { echo "# failed:$bad"; false; }'
run "$I" no_such_script
t "an unknown script name is a clear error" '[ $rc -eq 1 ] && has "$out" "cannot open no_such_script"'

# Stock lua5.4 through LUA_PATH/LUA_CPATH: require "drlmem" brings the C
# module and every Lua submodule, each from the prefix.
subs=$(cd lua/drlmem && ls *.lua | sed 's/\.lua$//' | tr '\n' ' ')
cat >"$tmp/probe.lua" <<'LUA'
local P, subs = ...
local dm = require "drlmem"
local bad = {}
for name in subs:gmatch("%S+") do
  local file = package.searchpath("drlmem." .. name, package.path) or "nowhere"
  if dm[name] == nil or file:sub(1, #P) ~= P then bad[#bad + 1] = name .. " (" .. file .. ")" end
end
print(dm.zeros(2):numel(), #bad == 0 and "all" or table.concat(bad, " "))
LUA
if [ "${SAN:-}" = "1" ]; then
  # The sanitizer build's module needs the ASan runtime preloaded, which the
  # Makefile does for busted; the plain build checks stock lua5.4.
  ok 0 "stock lua5.4 requires the installed drlmem with every submodule (skipped: SAN=1)"
  ok 0 "PREFIX=/usr/local lands on stock lua5.4's own search path (skipped: SAN=1)"
else
  run env LUA_CPATH="$P/lib/lua/5.4/?.so;;" LUA_PATH="$P/share/lua/5.4/?.lua;;" \
    lua5.4 "$tmp/probe.lua" "$P" "$subs"
  t "stock lua5.4 requires the installed drlmem with every submodule ($subs)" \
    '[ "$out" = "$(printf "2\tall")" ]'
  # PREFIX=/usr/local, staged under DESTDIR: stock Lua's default path (with
  # the DESTDIR in front of /usr/local) finds everything, no variable needed.
  D=$tmp/dest
  make -s install BUILD="$build" PREFIX=/usr/local DESTDIR="$D" >"$tmp/out" 2>&1; rc=$?
  lpath=$(lua5.4 -E -e 'io.write(package.path)' | sed "s#/usr/local/#$D/usr/local/#g")
  cpath=$(lua5.4 -E -e 'io.write(package.cpath)' | sed "s#/usr/local/#$D/usr/local/#g")
  [ $rc -eq 0 ] && run env LUA_PATH="$lpath" LUA_CPATH="$cpath" lua5.4 "$tmp/probe.lua" "$D/usr/local" "$subs"
  t "PREFIX=/usr/local lands on stock lua5.4's own search path" '[ $rc -eq 0 ] && [ "$out" = "$(printf "2\tall")" ]'
fi
