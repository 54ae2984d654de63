#!/usr/bin/env bash
# scripts/explore_memory.lua --trace N: the write trace of one sample of an
# episodic checkpoint (write_policy reinforce, uniform writes every 2nd
# step, so the writes are known: steps 3, 5, 7, 9 of a 10-step sample),
# printed as a table and drawn as a well-formed SVG with one mark per write
# and the sample's tokens on the time axis; on recall, the count of answer
# reads that land on the queried value's slot; and its one-line refusals: a
# checkpoint without the episodic memory, a sample number past the data.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
echo "1..7"
train() {
  local d=$1; shift
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/recall.txt" \
    --set "save_path=$d/models" --set "log_file=$d/logs/training.log" --set task=recall \
    --set max_seq_length=10 --set epochs=1 --set threads=1 --progress none "$@" >"$tmp/out" 2>&1
  rc=$?
}
"$E" scripts/make_task.lua --task recall --n 3 --samples 120 --seed 3 --out "$tmp/recall.txt" >"$tmp/out" 2>&1
train "$tmp/ep" --set write_policy=reinforce --set episodic_slots=4 --set write_actions=uniform --set write_every=2
t "trains a tiny episodic checkpoint" '[ $rc -eq 0 ] && [ -f "$tmp/ep/models/memory_model.safetensors" ]'

"$E" scripts/explore_memory.lua --checkpoint "$tmp/ep/models/memory_model.safetensors" --data "$tmp/recall.txt" \
  --trace 2 --svg "$tmp/trace.svg" >"$tmp/out" 2>&1; rc=$?
# step:slot of the table's rows that wrote
written=$(awk '$1 ~ /^[0-9]+$/ && $2 != "writes" && $5 != "-" { printf "%s:%s ", $1, $5 }' "$tmp/out")
t "--trace prints the steps, with writes at steps 3, 5, 7, 9 into slots 1-4" \
  '[ $rc -eq 0 ] && clean && grep -q "4 writes in 10 steps" "$tmp/out" && [ "$written" = "3:1 5:2 7:3 9:4 " ]'
# Every value of a 3-pair sample sits at an odd step (3, 5, 7): all written.
t "on recall it counts the answer reads that land on the queried value's slot" \
  'grep -q "^recall, 120 samples of .*: the queried value was written in 120; the answer step.s read put most weight on its slot in [0-9]* (" "$tmp/out"'

# The sample's tokens, as the time axis must show them (line 2, after <sos>).
want_tokens=$(sed -n 2p "$tmp/recall.txt")
cat >"$tmp/check.lua" <<'LUA'
local f = assert(io.open(arg[1]))
local text = f:read("a")
f:close()
local bad = {}
if not text:match("^<%?xml[^\n]*\n<svg ") then bad[#bad + 1] = "does not start with <svg" end
local ok, counts = dm.plot.check_svg(text)
if not ok then bad[#bad + 1] = "not well-formed: " .. tostring(counts) end
local marks = select(2, text:gsub('class="write"', ""))
if marks ~= 4 then bad[#bad + 1] = marks .. " write marks, want 4" end
if not text:find('<g id="attention">', 1, true) then bad[#bad + 1] = "no attention panel" end
for tok in arg[2]:gmatch("%S+") do
  if not text:find(">" .. dm.plot.escape(tok) .. "</text>", 1, true) then bad[#bad + 1] = "no token " .. tok end
end
if not text:find("&lt;sos&gt;</text>", 1, true) then bad[#bad + 1] = "no <sos> on the time axis" end
print(table.concat(bad, "; "))
os.exit(#bad == 0 and 0 or 1)
LUA
"$E" "$tmp/check.lua" "$tmp/trace.svg" "$want_tokens" >"$tmp/out" 2>&1; rc=$?
t "the SVG is well-formed, starts with <svg, marks the 4 writes and labels the time axis with the tokens" '[ $rc -eq 0 ]'

"$E" scripts/explore_memory.lua --checkpoint "$tmp/ep/models/memory_model.safetensors" --data "$tmp/recall.txt" \
  --trace 121 --svg - >"$tmp/out" 2>&1; rc=$?
t "--trace past the data is refused in one line" \
  '[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && grep -q "trace 121: .* has 120 samples" "$tmp/out"'

train "$tmp/bl"
t "trains a tiny checkpoint without the episodic memory" '[ $rc -eq 0 ]'
"$E" scripts/explore_memory.lua --checkpoint "$tmp/bl/models/memory_model.safetensors" --data "$tmp/recall.txt" \
  --trace 1 --svg - >"$tmp/out" 2>&1; rc=$?
t "--trace on it is refused in one line naming write_policy" \
  '[ $rc -ne 0 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && grep -q "no episodic memory (write_policy is blend" "$tmp/out" && ! grep -q traceback "$tmp/out"'
