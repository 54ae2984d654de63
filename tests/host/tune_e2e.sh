#!/usr/bin/env bash
# End to end: scripts/tune.lua searches configs/tune-example.yaml over
# configs/tiny.yaml (100 samples, 4 trials, rungs of 1 and 2 epochs, eta 2)
# in seconds and leaves results.jsonl, table.md, best.yaml, tune.svg; the
# same seed gives the same results.jsonl (times aside); running the command
# again continues (nothing to redo), a changed search in the same folder is
# refused; Ctrl-C on a terminal, or a SIGINT while a trial trains, stops it
# with status 130 and the command that continues, which then ends with the
# results of the uninterrupted search; best.yaml trains with train.lua; a
# failing trial is recorded, not fatal; a bad space file is one line.
# (The samplers' seeds and spread are in tests/lua/tune_spec.lua.)
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"

"$E" scripts/make_data.lua --tiny --out "$tmp/tiny.txt" >"$tmp/out" 2>&1; rc=$?
t "make_data writes the tiny corpus" '[ $rc -eq 0 ] && [ -s "$tmp/tiny.txt" ]'

# search DIR ARGS...: the small search into DIR; fills $rc, output in $tmp/out.
SEARCH=("$root/scripts/tune.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt"
  --set max_samples=100 --space "$root/configs/tune-example.yaml" --trials 4 --eta 2 --max-epochs 2)
search() {
  local d=$1; shift
  "$E" "${SEARCH[@]}" --out "$d" "$@" >"$tmp/out" 2>&1
  rc=$?
}
# results.jsonl without the times
untimed() { sed -E 's/"seconds":[^,]*,//' "$1/results.jsonl"; }

start=$(date +%s)
search "$tmp/a" --seed 3
took=$(( $(date +%s) - start ))
t "a search of 4 trials over configs/tiny.yaml finishes (in ${took}s)" '[ $rc -eq 0 ] && clean && [ $took -lt 60 ]'
for f in results.jsonl table.md best.yaml tune.svg state.json search.json trial-1/metrics.jsonl \
         trial-1/last.safetensors trial-1/stdout.txt; do
  [ -s "$tmp/a/$f" ]; ok $? "artifact $f exists"
done
t "results.jsonl: 4 trials at 1 epoch, the best 2 continued to 2 epochs" \
  '[ $(grep -c "\"budget\":1," "$tmp/a/results.jsonl") -eq 4 ] && [ $(grep -c "\"budget\":2," "$tmp/a/results.jsonl") -eq 2 ] && [ $(grep -c "\"status\":\"ok\"" "$tmp/a/results.jsonl") -eq 6 ]'
t "the table is printed and written, with a column per key of the space" \
  'grep -q "| trial | epochs | val loss | time (s) | status | learning_rate | hidden_size | dropout |" "$tmp/out" && grep -q "| learning_rate |" "$tmp/a/table.md" && [ $(grep -c "| ok |" "$tmp/a/table.md") -eq 4 ]'
t "the state says the search is done" 'grep -q "\"status\":\"done\"" "$tmp/a/state.json"'

cat >"$tmp/check.lua" <<'LUA'
-- Checks a finished search in folder arg[1]; prints one line per problem.
local dir = arg[1]
local bad = 0
local function check(cond, msg) if not cond then print("problem: " .. msg); bad = bad + 1 end end
local space = dm.tune.load_space(arg[2])
local recs = dm.tune.read_records(dir .. "/results.jsonl", space)
-- a promoted trial went on from its checkpoint: its metrics hold epochs 1 and 2 once each,
-- and the rung-2 loss is the best of them
for _, r in ipairs(recs) do
  if r.rung == 2 then
    local m = assert(dm.log.read_metrics(dir .. "/trial-" .. r.trial .. "/metrics.jsonl"))
    check(#m == 2 and m[1].epoch == 1 and m[2].epoch == 2, "trial " .. r.trial .. ": metrics.jsonl has " .. #m .. " epochs")
    check(r.val_loss == math.min(m[1].val_loss, m[2].val_loss), "trial " .. r.trial .. ": val loss is not the best epoch's")
    local out = assert(io.open(dir .. "/trial-" .. r.trial .. "/stdout.txt")):read("a")
    check(out:find("resuming from " .. dir .. "/trial%-" .. r.trial .. "/last.safetensors at epoch 2, batch 0"),
      "trial " .. r.trial .. " was not resumed from its checkpoint")
  end
end
-- best.yaml: the base config with the best trial's values
local best = dm.tune.best(recs)
local cfg = dm.config.load(dir .. "/best.yaml")
local base = dm.config.load(arg[3])
for _, d in ipairs(space) do check(cfg[d.key] == best.values[d.key], "best.yaml: " .. d.key) end
check(cfg.embedding_dim == base.embedding_dim and cfg.batch_size == base.batch_size and cfg.max_samples == 100,
  "best.yaml lost the base config's values")
-- the figure: valid SVG, a line per trial
local ok, counts = dm.plot.check_svg(assert(io.open(dir .. "/tune.svg")):read("a"))
check(ok and counts.polyline == 4, "tune.svg: " .. tostring(ok and counts.polyline or counts))
os.exit(bad == 0 and 0 or 1)
LUA
"$E" "$tmp/check.lua" "$tmp/a" "$root/configs/tune-example.yaml" "$root/configs/tiny.yaml" >"$tmp/out" 2>&1; rc=$?
t "promoted trials resumed from their checkpoints; best.yaml = base + best values; the figure" '[ $rc -eq 0 ]'
if command -v xmllint >/dev/null 2>&1; then
  xmllint --noout "$tmp/a/tune.svg" >"$tmp/out" 2>&1; rc=$?
  t "xmllint accepts tune.svg" '[ $rc -eq 0 ]'
fi

"$E" scripts/train.lua --config "$tmp/a/best.yaml" --set epochs=1 --set "save_path=$tmp/best/" \
  --set "log_file=$tmp/best/training.log" --progress none >"$tmp/out" 2>&1; rc=$?
t "train.lua accepts best.yaml" '[ $rc -eq 0 ] && [ -s "$tmp/best/memory_model.safetensors" ]'

mkdir -p "$tmp/w"
(cd "$tmp/w" && "$E" "${SEARCH[@]}" --trials 1 --max-epochs 1) >"$tmp/out" 2>&1; rc=$?
t "without --out, configs/tune-example.yaml searches into runs/tune-example" \
  '[ $rc -eq 0 ] && [ -s "$tmp/w/runs/tune-example/best.yaml" ]'

# --- reproducible from its seed ---------------------------------------------------------
search "$tmp/b" --seed 3
t "the same seed gives the same results.jsonl (times aside)" \
  '[ $rc -eq 0 ] && cmp -s <(untimed "$tmp/a") <(untimed "$tmp/b")'

# --- the same command again, or another search in the same folder -------------------------
cp "$tmp/a/results.jsonl" "$tmp/a.before"
search "$tmp/a" --seed 3
t "the same command again continues the search: nothing left to run, the same results" \
  '[ $rc -eq 0 ] && grep -q "continuing the search in $tmp/a: 6 jobs done" "$tmp/out" && cmp -s "$tmp/a.before" "$tmp/a/results.jsonl" && ! grep -q "rung 1/2 (1 epoch) \.\.\." "$tmp/out"'
search "$tmp/a" --seed 5
t "another search in the same folder is refused, saying what differs" \
  '[ $rc -eq 1 ] && grep -q "holds another search (it differs in: seed); give another --out" "$tmp/out" && [ $(wc -l <"$tmp/out") -eq 1 ]'

mkdir -p "$tmp/o" && echo '{"trial":1}' >"$tmp/o/results.jsonl"
search "$tmp/o" --seed 3
t "results of an unknown search are not appended to" \
  '[ $rc -eq 1 ] && grep -q "holds results.jsonl but no search.json" "$tmp/out" && [ $(wc -l <"$tmp/o/results.jsonl") -eq 1 ]'

# --- Ctrl-C, then the same command continues ---------------------------------------------
B=${DRLMEM_BUILD:-$(dirname "$E")}
PTY=$B/tests/host-pty
if [ ! -x "$PTY" ] || [ tests/host/pty.c -nt "$PTY" ]; then
  mkdir -p "$B/tests"
  cc -std=c11 -O1 -o "$PTY.tmp$$" tests/host/pty.c -lutil && mv "$PTY.tmp$$" "$PTY"
fi
# Each trial's checkpoint writes pause 0.4 s (the test hook), so the Ctrl-C
# lands while the search still runs however fast the machine is.
TERM=xterm DRLMEM_TEST_WRITE_DELAY_MS=400 timeout 90 "$PTY" 60 "$E" "${SEARCH[@]}" --seed 3 --out "$tmp/i" >"$tmp/out" 2>&1 <<'IN'
expect trial 3 rung 1/2 (1 epoch) ...
sleep 150
send \x03
wait
IN
rc=$?
t "Ctrl-C typed on the terminal stops the search: exit 130 and the command that continues" \
  'grep -aq "pty: exit 130" "$tmp/out" && grep -aq "continue with: .*scripts/tune.lua .*--out $tmp/i" "$tmp/out"'
t "... after part of the search, with the reports of what finished" \
  '[ $(wc -l <"$tmp/i/results.jsonl") -lt 6 ] && [ -s "$tmp/i/table.md" ] && grep -q "\"status\":\"interrupted\"" "$tmp/i/state.json"'
search "$tmp/i" --seed 3
t "the same command continues it to the results of the uninterrupted search" \
  '[ $rc -eq 0 ] && grep -q "continuing the search in $tmp/i" "$tmp/out" && cmp -s <(untimed "$tmp/a") <(untimed "$tmp/i")'

# A SIGINT to the search's process group (what Ctrl-C sends) while a child
# trains: the child saves its checkpoint mid-rung, and the continued search
# resumes it from there, ending as the same search run without a stop.
search "$tmp/k" --seed 3 --min-epochs 4 --max-epochs 8
t "the uninterrupted reference search of 4-epoch rungs" '[ $rc -eq 0 ]'
# Checkpoint writes pause 0.4 s (the test hook), so trial 2 is still
# training when the SIGINT comes, however fast the machine is.
DRLMEM_TEST_WRITE_DELAY_MS=400 setsid "$E" "${SEARCH[@]}" --seed 3 --min-epochs 4 --max-epochs 8 --out "$tmp/j" >"$tmp/out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do   # until trial 2 has trained an epoch (30 s at most)
  [ -s "$tmp/j/trial-2/metrics.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill -INT -- -$pid 2>/dev/null
wait $pid; rc=$?
t "SIGINT while a trial trains: exit 130, the trial keeps its checkpoint" \
  '[ $rc -eq 130 ] && grep -q "interrupted during trial 2 (rung 1), which keeps its checkpoint" "$tmp/out" && [ -s "$tmp/j/trial-2/last.safetensors" ]'
search "$tmp/j" --seed 3 --min-epochs 4 --max-epochs 8
t "... and the continued search resumes that trial from it, ending with the reference's results" \
  '[ $rc -eq 0 ] && grep -q "resuming from $tmp/j/trial-2/last.safetensors at epoch" "$tmp/j/trial-2/stdout.txt" && cmp -s <(untimed "$tmp/k") <(untimed "$tmp/j")'

# --- the time budget -------------------------------------------------------------------------
# Every checkpoint write of the trials pauses 0.4 s, so a job outlasts the
# budget however fast the machine is: the search must stop launching.
DRLMEM_TEST_WRITE_DELAY_MS=400 search "$tmp/t" --seed 3 --time-budget 0.01m
jobs=$(wc -l <"$tmp/t/results.jsonl")
t "--time-budget 0.01m (0.6 s): no job starts after it; the reports hold what finished ($jobs jobs)" \
  '[ $rc -eq 0 ] && grep -q "the time budget (1 s) is spent after" "$tmp/out" && [ "$jobs" -ge 1 ] && [ "$jobs" -lt 6 ] && grep -q "\"status\":\"time budget\"" "$tmp/t/state.json" && [ -s "$tmp/t/best.yaml" ]'
search "$tmp/t2" --time-budget soon
t "a bad --time-budget is one line" \
  '[ $rc -eq 1 ] && [ $(wc -l <"$tmp/out") -eq 1 ] && grep -q "time-budget: expected a positive time such as 300, 90s, 20m or 2h, got .soon." "$tmp/out"'

# --- failures ------------------------------------------------------------------------------
printf 'learning_rate: [1.0e+30]\n' >"$tmp/nan.yaml"
"$E" scripts/tune.lua --config configs/tiny.yaml --set "data_path=$tmp/tiny.txt" --set max_samples=100 \
  --space "$tmp/nan.yaml" --trials 2 --eta 2 --max-epochs 1 --out "$tmp/n" >"$tmp/out" 2>&1; rc=$?
t "a failing trial (a NaN loss) is recorded with its one-line error, and the search goes on (status 1: none succeeded)" \
  '[ $rc -eq 1 ] && grep -q "no trial succeeded (2 jobs failed); the table says why" "$tmp/out" && [ $(grep -c "\"status\":\"failed\"" "$tmp/n/results.jsonl") -eq 2 ] && grep -q "\"error\":\"train.lua exit status 1: stopped: the training loss is" "$tmp/n/results.jsonl" && [ ! -e "$tmp/n/best.yaml" ]'
printf 'val_size_ratio: [0.5]\n' >"$tmp/ratio.yaml"
"$E" scripts/tune.lua --config configs/tiny.yaml --set "data_path=$tmp/tiny.txt" --space "$tmp/ratio.yaml" \
  --trials 1 --eta 2 --max-epochs 1 --out "$tmp/r" >"$tmp/out" 2>&1; rc=$?
t "a combination the schema refuses fails its trial without a child" \
  '[ $rc -eq 1 ] && grep -q "key .val_size_ratio.: train_size_ratio + val_size_ratio" "$tmp/r/results.jsonl" && [ ! -e "$tmp/r/trial-1/stdout.txt" ]'
printf 'dropout: [0.1]\nhidden_size: [16, big]\n' >"$tmp/bad.yaml"
"$E" scripts/tune.lua --space "$tmp/bad.yaml" --out "$tmp/x" >"$tmp/out" 2>&1; rc=$?
t "a bad space file: one line naming file, line and key, no traceback" \
  '[ $rc -eq 1 ] && [ $(wc -l <"$tmp/out") -eq 1 ] && grep -q "$tmp/bad.yaml:2: key .hidden_size.: expected a positive integer, got .big." "$tmp/out"'
"$E" scripts/tune.lua --config configs/tiny.yaml >"$tmp/out" 2>&1; rc=$?
t "--space is required (usage, status 2)" '[ $rc -eq 2 ] && grep -q "Usage: tune.lua" "$tmp/out" && grep -q -- "--space" "$tmp/out"'

echo "1..$n"
