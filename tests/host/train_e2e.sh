#!/usr/bin/env bash
# End to end: scripts/train.lua trains configs/tiny.yaml in a temporary
# folder and leaves every artifact (checkpoints that load, a log,
# metrics.jsonl that parses with dm.json, a valid two-panel SVG); the loss
# falls; 2 epochs equal 1 epoch + --resume for 1 more (identical weights);
# a SIGINT mid-training leaves a resumable checkpoint, prints how to resume
# and exits 130, and the printed command resumes. Prints TAP.
# Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
echo "1..28"
# train DIR ARGS...: a tiny run writing into DIR; fills $rc, output in $tmp/out.
train() {
  local d=$1; shift
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt" \
    --set "save_path=$d/models" --set "log_file=$d/logs/training.log" "$@" >"$tmp/out" 2>&1
  rc=$?
}

"$E" scripts/make_data.lua --tiny --out "$tmp/tiny.txt" >"$tmp/out" 2>&1; rc=$?
t "make_data writes the tiny corpus" '[ $rc -eq 0 ] && [ -s "$tmp/tiny.txt" ]'

# --- a full run -----------------------------------------------------------------
train "$tmp/a" --set epochs=3
t "train.lua trains configs/tiny.yaml for 3 epochs" '[ $rc -eq 0 ] && clean'
t "stdout is not a terminal: plain progress lines, no \\r" \
  'grep -q "epoch 1/3 batch 40/40 loss" "$tmp/out" && ! grep -q $'"'"'\r'"'"' "$tmp/out"'
for f in models/memory_model.safetensors models/memory_model_epoch_1.safetensors models/last.safetensors \
         logs/training.log logs/metrics.jsonl logs/training.svg; do
  [ -s "$tmp/a/$f" ]; ok $? "artifact $f exists"
done

cat >"$tmp/check.lua" <<'LUA'
-- Checks the artifacts of a run in folder arg[1]; prints one line per problem.
local dir, want_epochs = arg[1], tonumber(arg[2])
local bad = 0
local function check(cond, msg) if not cond then print("problem: " .. msg); bad = bad + 1 end end
-- metrics.jsonl: one object per epoch with every key, parsed by dm.json
local recs, err = dm.log.read_metrics(dir .. "/logs/metrics.jsonl")
check(recs, tostring(err))
recs = recs or {}
check(#recs == want_epochs, "metrics.jsonl has " .. #recs .. " lines")
local keys = { "epoch", "train_loss", "val_loss", "test_loss", "test_ppl", "test_acc", "test_f1_weighted",
  "test_f1_macro", "lr", "seconds", "train_seconds", "tokens_per_s", "early_stop" }
for i, r in ipairs(recs) do
  check(r.epoch == i, "epoch " .. tostring(r.epoch) .. " on line " .. i)
  for _, k in ipairs(keys) do check(r[k] ~= nil, "line " .. i .. " lacks " .. k) end
  check(r.test_acc >= 0 and r.test_acc <= 1 and r.test_f1_macro <= 1, "line " .. i .. ": scores out of range")
  check(math.abs(r.test_ppl - math.exp(r.test_loss)) < 1e-3 * r.test_ppl, "ppl is not exp(test loss)")
end
if #recs >= 2 then
  check(recs[#recs].train_loss < recs[1].train_loss - 0.2, "the training loss did not fall")
  check(recs[#recs].val_loss < recs[1].val_loss, "the validation loss did not fall")
end
-- checkpoints load; the final model is the best epoch's with vocabulary and config
local best, best_epoch = math.huge, 0
for _, r in ipairs(recs) do if r.val_loss < best then best, best_epoch = r.val_loss, r.epoch end end
local m = dm.checkpoint.load(dir .. "/models/memory_model.safetensors")
check(#m.vocab > 4 and m.vocab[1] == "<pad>", "memory_model.safetensors has no vocabulary")
check(m.train_config and m.train_config.embedding_dim == 16, "memory_model.safetensors has no training config")
local e = dm.checkpoint.load(string.format("%s/models/memory_model_epoch_%d.safetensors", dir, best_epoch))
local sa, names = m.net:state_dict()
local sb = e.net:state_dict()
for _, k in ipairs(names) do check((sa[k] - sb[k]):abs():max() == 0, "memory_model differs from the best epoch in " .. k) end
local last = dm.checkpoint.load(dir .. "/models/last.safetensors")
check(last.state and last.state.epoch == want_epochs + 1 and last.optimizer, "last.safetensors is not resumable")
-- the figure: valid XML, two panels, five curves
local f = assert(io.open(dir .. "/logs/training.svg"))
local ok, counts = dm.plot.check_svg(f:read("a"))
f:close()
check(ok, "training.svg: " .. tostring(counts))
check(ok and counts.polyline == 5 and counts.g == 2, "training.svg does not have two panels of curves")
-- the log
local log = assert(io.open(dir .. "/logs/training.log")):read("a")
for _, s in ipairs { "learning_rate", "split train/val/test", "vocab", "epoch " .. want_epochs .. "/", "training took" } do
  check(log:find(s, 1, true), "the log lacks '" .. s .. "'")
end
os.exit(bad == 0 and 0 or 1)
LUA
"$E" "$tmp/check.lua" "$tmp/a" 3 >"$tmp/out" 2>&1; rc=$?
t "artifacts parse: metrics.jsonl, checkpoints (best model = best epoch), SVG, log; the loss falls" '[ $rc -eq 0 ]'
# xmllint comes with libxml2-utils (.ci/install-deps); without it the check
# is reported as skipped, which tests/run counts and CI refuses.
if command -v xmllint >/dev/null 2>&1; then
  xmllint --noout "$tmp/a/logs/training.svg" >"$tmp/out" 2>&1; rc=$?
  t "xmllint accepts training.svg" '[ $rc -eq 0 ]'
else
  skip "xmllint accepts training.svg" "xmllint is not installed (Debian package libxml2-utils)"
fi

# --- the other scripts on the trained model ----------------------------------------
ck="$tmp/a/models/memory_model.safetensors"
"$E" scripts/evaluate.lua --checkpoint "$ck" --json >"$tmp/eval.json" 2>"$tmp/out"; rc=$?
cat >"$tmp/eval.lua" <<'LUA'
-- evaluate.lua on the saved split gives the test metrics of the best epoch
local r = dm.json.decode(assert(io.open(arg[1])):read("a"))
local best
for _, m in ipairs(assert(dm.log.read_metrics(arg[2]))) do
  if not best or m.val_loss < best.val_loss then best = m end
end
local ok = math.abs(r.accuracy - best.test_acc) < 1e-9 and math.abs(r.f1_weighted - best.test_f1_weighted) < 1e-9
  and math.abs(r.f1_macro - best.test_f1_macro) < 1e-9 and math.abs(r.loss - best.test_loss) < 1e-5
  and math.abs(r.perplexity - best.test_ppl) < 1e-4 and r.samples == 40
if not ok then print(dm.json.encode(r)); print(dm.json.encode(best)) end
os.exit(ok and 0 or 1)
LUA
[ $rc -eq 0 ] && { "$E" "$tmp/eval.lua" "$tmp/eval.json" "$tmp/a/logs/metrics.jsonl" >"$tmp/out" 2>&1; rc=$?; }
t "evaluate.lua reproduces the best epoch's test metrics from the saved split" '[ $rc -eq 0 ]'
"$E" scripts/evaluate.lua --checkpoint "$ck" --data "$tmp/tiny.txt" >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua --data evaluates a whole file" '[ $rc -eq 0 ] && grep -q "400 samples" "$tmp/out" && grep -q "f1_macro" "$tmp/out"'
g() { "$E" scripts/generate.lua --checkpoint "$ck" --prime "Mary went to the kitchen." "$@" 2>&1; }
g1=$(g --temperature 0.8 --top-k 5 --seed 4); rc=$?; g2=$(g --temperature 0.8 --top-k 5 --seed 4)
echo "$g1" >"$tmp/out"
t "generate.lua continues the prime, the same way for the same seed"   '[ $rc -eq 0 ] && [ "$g1" = "$g2" ] && case "$g1" in "mary went to the kitchen. "?*) true ;; *) false ;; esac'
"$E" scripts/explore_memory.lua --checkpoint "$ck" --svg "$tmp/memory.svg" >"$tmp/out" 2>&1; rc=$?
t "explore_memory.lua prints usage, slot tokens and a sentence's attention"   '[ $rc -eq 0 ] && grep -q "usage counts sum" "$tmp/out" && grep -q "hits" "$tmp/out" && grep -q "attention of" "$tmp/out"'
"$E" -e "local ok, c = dm.plot.check_svg(assert(io.open('$tmp/memory.svg')):read('a')); os.exit(ok and c.g == 3 and 0 or 1)" >"$tmp/out" 2>&1; rc=$?
t "... and draws it as a valid SVG with three panels" '[ $rc -eq 0 ]'

# --- resume equivalence ------------------------------------------------------------
train "$tmp/b" --set epochs=2
train "$tmp/c" --set epochs=1
train "$tmp/c" --set epochs=2 --resume "$tmp/c/models/last.safetensors"
t "--resume continues a run" '[ $rc -eq 0 ] && grep -q "resuming from .* at epoch 2, batch 0" "$tmp/out"'
"$E" "$root/tests/host/same_tensors.lua" "$tmp/b/models/last.safetensors" "$tmp/c/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "2 epochs == 1 epoch + resume 1: identical weights and optimizer moments" '[ $rc -eq 0 ]'
cmp -s <(sed -E 's/"(seconds|train_seconds|tokens_per_s|padded_tokens_per_s)":[^,]*,//g' "$tmp/b/logs/metrics.jsonl") \
       <(sed -E 's/"(seconds|train_seconds|tokens_per_s|padded_tokens_per_s)":[^,]*,//g' "$tmp/c/logs/metrics.jsonl"); rc=$?
t "... and identical metrics.jsonl (timings aside)" '[ $rc -eq 0 ]'

# --- Ctrl-C -------------------------------------------------------------------------
d="$tmp/i"
"$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt" \
  --set "save_path=$d/models" --set "log_file=$d/logs/training.log" --set epochs=2000 --set patience=5000 \
  >"$tmp/out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do   # until the first epoch is done (60 s at most)
  [ -s "$d/logs/metrics.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
t "SIGINT mid-training exits with status 130" '[ $rc -eq 130 ] && clean'
t "... saying where it stopped and how to resume" \
  'grep -q "interrupted at epoch" "$tmp/out" && grep -q -- "resume with: .*scripts/train.lua .*--resume $d/models/last.safetensors" "$tmp/out"'
cmd=$(sed -n 's/^resume with: //p' "$tmp/out")
stopped=$("$E" -e "print(dm.checkpoint.load('$d/models/last.safetensors').state.epoch)" 2>/dev/null)
t "... leaving a resumable last.safetensors" '[ -n "$stopped" ] && [ "$stopped" -ge 2 ]'
eval "$cmd --set epochs=$stopped" >"$tmp/out" 2>&1; rc=$?
t "the printed command resumes and finishes the run" \
  '[ $rc -eq 0 ] && grep -q "resuming from" "$tmp/out" && [ -s "$d/models/memory_model.safetensors" ] && [ -s "$d/logs/training.svg" ]'

# --- on a terminal: a progress bar, and Ctrl-C typed at the keyboard -------------------
B=${DRLMEM_BUILD:-$(dirname "$E")}
PTY=$B/tests/host-pty
if [ ! -x "$PTY" ] || [ tests/host/pty.c -nt "$PTY" ]; then
  mkdir -p "$B/tests"
  cc -std=c11 -O1 -o "$PTY.tmp$$" tests/host/pty.c -lutil && mv "$PTY.tmp$$" "$PTY"
fi
d="$tmp/p"
TERM=xterm timeout 60 "$PTY" 50 "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" \
  --set "data_path=$tmp/tiny.txt" --set "save_path=$d/models" --set "log_file=$d/logs/training.log" \
  --set epochs=2000 --set patience=5000 >"$tmp/out" 2>&1 <<'IN'
expect epoch 2/2000 [
send \x03
wait
IN
rc=$?
bars=$(tr -d '\n' <"$tmp/out" | grep -ao $'\r''epoch 1/2000 \[[#.]*\] [0-9]*/40 loss [0-9.]* [0-9.k]* tok/s [0-9:]*<[0-9:]*' | wc -l)
t "on a terminal: a bar redrawn with \\r (batch i/n, loss, tok/s, elapsed<eta)" '[ "$bars" -ge 2 ]'
t "Ctrl-C typed on the terminal: saved, resume command, exit 130" \
  'grep -aq "pty: exit 130" "$tmp/out" && grep -aq "resume with: .*--resume $d/models/last.safetensors" "$tmp/out"'
t "... its message starts on its own line (not after the half-drawn bar or the echoed ^C)" \
  'tr "\r" "\n" <"$tmp/out" | grep -aq "^interrupted at epoch" && ! tr "\r" "\n" <"$tmp/out" | grep -aq ".interrupted"'

# --- the default data is made on first use ----------------------------------------------
mkdir -p "$tmp/w"
(cd "$tmp/w" && "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set epochs=1 --progress none) \
  >"$tmp/out" 2>&1; rc=$?
t "a missing data/tiny.txt is generated by make_data.lua, then trained on" \
  '[ $rc -eq 0 ] && [ -s "$tmp/w/data/tiny.txt" ] && [ -s "$tmp/w/models/tiny/memory_model.safetensors" ]'

# --- a NaN loss stops the run --------------------------------------------------------------
train "$tmp/n" --set learning_rate=1e30 --progress none
t "a NaN loss stops with a message naming the epoch and batch, status 1" \
  '[ $rc -eq 1 ] && grep -q "stopped: the training loss is .* at epoch 1, batch [0-9]* of 40" "$tmp/out"'

