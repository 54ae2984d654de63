#!/usr/bin/env bash
# End to end for the RL write policy: scripts/train.lua with
# write_policy=reinforce on a recall task logs the six policy statistics
# and the answer accuracy in the log and metrics.jsonl, and 2 epochs equal
# 1 epoch + --resume (identical weights, advantage scale included);
# use_memory=false trains; scripts/ablation.lua --quick runs all five arms
# and prints the table, the random arm using the RL arm's write rate, and
# only its seed arm keeps the seed memory; ablation.lua --capacity --quick
# runs the five capacity arms with K = n slots (2n + 3 for the full arm)
# and uniform writes at every k-th step.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
echo "1..17"
train() {
  local d=$1; shift
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/recall.txt" \
    --set "save_path=$d/models" --set "log_file=$d/logs/training.log" --set task=recall \
    --set max_seq_length=16 --set write_policy=reinforce --set policy_bias_init=0 --progress none "$@" \
    >"$tmp/out" 2>&1
  rc=$?
}

"$E" scripts/make_task.lua --task recall --n 4 --samples 120 --seed 3 --out "$tmp/recall.txt" >"$tmp/out" 2>&1; rc=$?
t "make_task writes a recall task" '[ $rc -eq 0 ] && [ -s "$tmp/recall.txt" ]'

train "$tmp/a" --set epochs=2 --set curriculum_epochs=1
t "train.lua trains write_policy=reinforce with a curriculum epoch" '[ $rc -eq 0 ] && clean'
t "the log has the write statistics and the answer accuracy" \
  'grep -q "answer acc .*writes: rate .* entropy .* reward .* advantage .* baseline .* slots " "$tmp/a/logs/training.log"'

cat >"$tmp/check.lua" <<'LUA'
local recs = assert(dm.log.read_metrics(arg[1] .. "/logs/metrics.jsonl"))
local bad = 0
for i, r in ipairs(recs) do
  for _, k in ipairs { "write_rate", "policy_entropy", "mean_reward", "mean_advantage", "baseline_loss",
                       "slot_usage", "test_write_rate", "test_answer_acc", "test_answers" } do
    if type(r[k]) ~= "number" then print("line " .. i .. ": " .. k .. " is " .. tostring(r[k])); bad = bad + 1 end
  end
end
if #recs ~= 2 then print(#recs .. " records"); bad = bad + 1 end
local last = dm.checkpoint.load(arg[1] .. "/models/last.safetensors")
local ws = last.state.write_state
if type(ws) ~= "table" or type(ws.updates) ~= "number" or ws.updates < 1 then
  print("last.safetensors has no advantage scale"); bad = bad + 1
end
os.exit(bad == 0 and 0 or 1)
LUA
"$E" "$tmp/check.lua" "$tmp/a" >"$tmp/out" 2>&1; rc=$?
t "metrics.jsonl has the six statistics, eval write rate and answer accuracy; last.safetensors the advantage scale" \
  '[ $rc -eq 0 ]'

"$E" scripts/evaluate.lua --checkpoint "$tmp/a/models/memory_model.safetensors" >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua reports answer accuracy and the thresholded write rate" \
  '[ $rc -eq 0 ] && grep -q "answer accuracy [01]\.[0-9]* over [0-9]* answers (recall)" "$tmp/out" && grep -q "(thresholded actions)" "$tmp/out"'
"$E" scripts/evaluate.lua --checkpoint "$tmp/a/models/memory_model.safetensors" --sample-writes --json >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua --sample-writes samples the write actions" '[ $rc -eq 0 ] && grep -q "\"sampled_writes\":true" "$tmp/out"'

train "$tmp/b" --set epochs=1 --set curriculum_epochs=1
train "$tmp/b" --set epochs=2 --set curriculum_epochs=1 --resume "$tmp/b/models/last.safetensors"
t "--resume continues a reinforce run" '[ $rc -eq 0 ] && grep -q "resuming from" "$tmp/out"'
cat >"$tmp/same.lua" <<'LUA'
local a, b = dm.checkpoint.load(arg[1]), dm.checkpoint.load(arg[2])
local sa, names = a.net:state_dict()
local sb = b.net:state_dict()
for _, k in ipairs(names) do
  if (sa[k] - sb[k]):abs():max() ~= 0 then print("differs: " .. k); os.exit(1) end
end
if a.state.write_state.second_moment ~= b.state.write_state.second_moment then print("advantage scale differs"); os.exit(1) end
print(#names .. " tensors identical")
LUA
"$E" "$tmp/same.lua" "$tmp/a/models/last.safetensors" "$tmp/b/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "reinforce: 2 epochs == 1 epoch + resume 1 (identical weights and advantage scale)" '[ $rc -eq 0 ]'

train "$tmp/c" --set epochs=1 --set write_policy=seed --set use_memory=false
t "use_memory=false trains" '[ $rc -eq 0 ] && clean'
"$E" scripts/evaluate.lua --checkpoint "$tmp/c/models/memory_model.safetensors" --sample-writes >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua --sample-writes refuses a seed checkpoint" '[ $rc -ne 0 ] && grep -q "needs a write_policy reinforce checkpoint" "$tmp/out"'

"$E" scripts/ablation.lua --quick --seeds 2 --out "$tmp/abl" --set threads=1 >"$tmp/out" 2>&1; rc=$?
t "ablation.lua --quick runs every arm and prints the table" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^| GRU without memory \|^| seed memory \|^| episodic, write every step \|^| episodic, RL policy \|^| episodic, random at RL" "$tmp/out")" -eq 10 ] && [ -s "$tmp/abl/table.md" ] && [ -s "$tmp/abl/results.json" ]'
cat >"$tmp/rate.lua" <<'LUA'
local f = assert(io.open(arg[1] .. "/results.json")):read("a")
local r = dm.json.decode(f)
for _, ds in ipairs { "recall", "default" } do
  for s = 1, 2 do
    local log = assert(io.open(string.format("%s/%s/random/seed%d/logs/training.log", arg[1], ds, s))):read("a")
    local rate = tonumber(log:match("random_write_rate%s*=%s*([%d%.e%-]+)"))
    local want = r[ds].rl[s].train_write_rate
    if not rate or math.abs(rate - want) > 1e-6 then
      print(string.format("%s seed %d: random arm rate %s, RL arm rate %s", ds, s, tostring(rate), tostring(want)))
      os.exit(1)
    end
  end
end
LUA
"$E" "$tmp/rate.lua" "$tmp/abl" >"$tmp/out" 2>&1; rc=$?
t "the random arm writes at the rate the RL arm of the same seed ended with" '[ $rc -eq 0 ]'
# The seed's memory collapses (its post-step write makes all slots one row),
# so the GRU behind it sees no token: the episodic arms must not keep it.
cat >"$tmp/arms.lua" <<'LUA'
local want = { nomem = false, seed = true, always = false, rl = false, random = false }
for _, ds in ipairs { "recall", "default" } do
  for arm, mem in pairs(want) do
    local ck = dm.checkpoint.load(string.format("%s/%s/%s/seed1/models/memory_model.safetensors", arg[1], ds, arm))
    local use = ck.net:config().use_memory ~= false -- the config leaves out the default true
    if use ~= mem then
      print(string.format("%s/%s: use_memory %s, want %s", ds, arm, tostring(use), tostring(mem)))
      os.exit(1)
    end
  end
end
LUA
"$E" "$tmp/arms.lua" "$tmp/abl" >"$tmp/out" 2>&1; rc=$?
t "ablation: only the seed arm keeps the seed memory (the episodic arms run with use_memory=false)" '[ $rc -eq 0 ]'

"$E" scripts/ablation.lua --quick --capacity --n 3 --seeds 1 --out "$tmp/cap" --set threads=1 >"$tmp/out" 2>&1; rc=$?
t "ablation.lua --capacity --quick runs the six capacity arms on recall only" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^| write every step, K = 9 \|^| write every step, K = 3 (LRU) \|^| uniform, every k-th step (k = 3), K = 3 \|^| REINFORCE policy, K = 3 \|^| random at RL\|^| straight-through Gumbel-sigmoid gate, K = 3 " "$tmp/out")" -eq 6 ] && ! grep -q "^Default data" "$tmp/out"'
cat >"$tmp/cap.lua" <<'LUA'
local want = { full = { 9, "always" }, always = { 3, "always" }, uniform = { 3, "uniform" }, rl = { 3, "policy" },
  random = { 3, "random" }, gumbel = { 3, "gumbel" } }
for arm, w in pairs(want) do
  local c = dm.checkpoint.load(string.format("%s/recall/%s/seed1/models/memory_model.safetensors", arg[1], arm)).net:config()
  if c.episodic_slots ~= w[1] or c.write_actions ~= w[2] or c.episodic_similarity ~= "cosine" or c.episodic_address ~= "token" or (arm == "uniform" and c.write_every ~= 3) then
    print(string.format("%s: slots %s, actions %s, similarity %s", arm, tostring(c.episodic_slots),
      tostring(c.write_actions), tostring(c.episodic_similarity)))
    os.exit(1)
  end
end
LUA
"$E" "$tmp/cap.lua" "$tmp/cap" >"$tmp/out" 2>&1; rc=$?
t "ablation --capacity: each arm's model has its slots, write actions and the cosine read" '[ $rc -eq 0 ]'
"$E" scripts/ablation.lua --quick --capacity --n 3 --seeds 1 --arms gumbel --out "$tmp/capg" --set threads=1 >"$tmp/out" 2>&1; rc=$?
t "ablation --capacity --arms gumbel runs that arm alone" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^| " "$tmp/out")" -eq 2 ] && grep -q "^| straight-through Gumbel-sigmoid gate, K = 3 " "$tmp/out" && [ ! -d "$tmp/capg/recall/rl" ]'
"$E" scripts/ablation.lua --quick --capacity --n 3 --seeds 1 --arms random --out "$tmp/capr" >"$tmp/out" 2>&1; rc=$?
t "ablation --arms: random without rl is refused in one line" \
  '[ $rc -ne 0 ] && grep -q "give rl too" "$tmp/out" && ! grep -q traceback "$tmp/out"'
