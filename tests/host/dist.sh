#!/usr/bin/env bash
# dm.dist under mpirun: two ranks on this machine agree on rank and size,
# allreduce (sum, mean, max, min; tensors, lists through buckets smaller
# than the data, strided views, int32, numbers, weighted by scale) and
# broadcast (tensors, strings, numbers) give the same, exactly known
# results on both ranks, barrier waits for the slower rank, a mismatched
# call fails on both ranks with a message and leaves the group usable,
# finalize ends it; the data-parallel helpers make 2 ranks x batch 4
# train like 1 process x batch 8 (3 steps, accumulation 1 and 2), the
# training loop too, memory written from the global batch's means, also
# with write_policy reinforce (soft through the loop, sampled with the
# draws lined up); both ranks
# derive the same vocabulary, splits and batch orders from file and seed;
# scripts/train.lua under mpirun writes from rank 0 only and resumes bit
# for bit, and refuses a resume with another number of ranks; each rank
# draws its own dropout stream, fixed by seed and rank; SIGTERM to one
# rank stops all at the same step with one checkpoint and one message, and
# SIGKILL of one ends the job; the scaling benchmark's step reports its
# bytes; stock lua5.4 loading drlmem.so works under mpirun too.
# A rank that exits (status 3) before a collective ends the job with that
# status instead of hanging, and a rank that is alive but never joins makes
# the other fail with a timeout message. One process without mpirun is a
# world of one (tests/c/test_dist.c checks that it calls no MPI).
# Every mpirun is bounded by `timeout` and kept on loopback and shared
# memory: no test may let MPI pick another network interface. Prints TAP.
. "$(dirname "$0")/tap.inc"

if ! command -v mpirun >/dev/null; then
  echo "not ok 1 - mpirun not found (openmpi-bin, installed by .ci/install-deps)"; exit 1
fi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader
        --mca oob_tcp_if_include lo --mca btl_tcp_if_include lo)
# mpi PROGRAM ARGS...: two ranks of PROGRAM, at most 30 s; $rc, $tmp/out, $secs.
mpi() {
  local t0=$SECONDS
  timeout 30 "${MPIRUN[@]}" "$@" >"$tmp/out" 2>&1
  rc=$?; secs=$((SECONDS - t0))
}
# both NAME: each of the two ranks printed "NAME ok".
both() {
  [ "$(grep -c "^$1 ok\$" "$tmp/out")" -eq 2 ] && return 0
  grep "^$1 " "$tmp/out" | sed 's/^/#   /'; return 1
}

cat >"$tmp/checks.lua" <<'LUA'
-- Prints "NAME ok" or "NAME FAIL detail" for each check, on every rank.
local dist = dm.dist
local function check(name, f)
  local ok, err = pcall(f)
  print(ok and (name .. " ok") or (name .. " FAIL " .. tostring(err)))
end
local function same(t, want)
  local got = t:totable()
  local function flat(x, out) for _, v in ipairs(x) do if type(v) == "table" then flat(v, out) else out[#out + 1] = v end end return out end
  got, want = flat(got, {}), flat(want, {})
  assert(#got == #want, ("%d values, want %d"):format(#got, #want))
  for i = 1, #want do assert(got[i] == want[i], ("value %d is %s, want %s"):format(i, got[i], want[i])) end
end
local function err_of(f) local ok, e = pcall(f); assert(not ok, "expected an error"); return tostring(e) end

local r, n = dist.init()
check("rank_size", function()
  assert(dist.available() and dist.initialized())
  assert(n == 2 and dist.size() == 2 and dist.rank() == r, ("init gave %s %s"):format(r, n))
  assert(dist.allreduce(r, "sum") == 1 and dist.allreduce(r, "max") == 1, "ranks are not 0 and 1")
end)
check("allreduce_sum_tensor", function()
  local t = dm.tensor{1, 2, 3} * (r + 1)
  assert(dist.allreduce(t) == t, "returns its argument")
  same(t, {3, 6, 9})
end)
check("allreduce_mean_list_bucketed", function()
  -- 5 + 1 + 6 + 6 float32 elements through 8-byte buckets (2 elements): a
  -- tensor spans buckets; the transposed view is strided.
  local a, b = dm.arange(1, 6) + 10 * r, dm.tensor{r}
  local m = dm.tensor{{1, 2, 3}, {4, 5, 6}} * (2 * r + 1)
  local tv = (dm.tensor{{1, 2}, {3, 4}, {5, 6}} * (r + 1)):t()
  dist.allreduce({a, b, m, tv}, "mean", {bucket_bytes = 8})
  same(a, {6, 7, 8, 9, 10}); same(b, {0.5}); same(m, {{2, 4, 6}, {8, 10, 12}})
  same(tv, {{1.5, 4.5, 7.5}, {3, 6, 9}})
end)
check("allreduce_int32_mixed_list", function()
  local f, i = dm.tensor{0.5}, dm.tensor({r + 1, 10 * (r + 1), -r}, "int32")
  dist.allreduce({f, i}, "sum", {bucket_bytes = 4})
  same(i, {3, 30, -1}); same(f, {1})
  assert(i:dtype() == "int32")
end)
check("allreduce_max_min", function()
  local x, y = dm.tensor{r, -r, 5}, dm.tensor{r, -r, 5}
  dist.allreduce(x, "max"); dist.allreduce(y, "min")
  same(x, {1, 0, 5}); same(y, {0, -1, 5})
end)
check("allreduce_numbers", function()
  assert(dist.allreduce(r + 0.5, "mean") == 1)
  local l = dist.allreduce({r, 1, 2.5}, "sum")
  assert(l[1] == 1 and l[2] == 2 and l[3] == 5, table.concat(l, ","))
end)
check("allreduce_weighted_scale", function()
  -- rank 0 holds 2 with weight 1/4, rank 1 holds 6 with weight 3/4
  local t = dm.tensor{r == 0 and 2 or 6}
  dist.allreduce(t, "sum", {scale = r == 0 and 0.25 or 0.75})
  same(t, {5})
end)
check("broadcast_tensors", function()
  local a, b = dm.full({2, 3}, r), dm.tensor({r, r}, "int32")
  dist.broadcast({a, b}, 1, {bucket_bytes = 4})
  same(a, {{1, 1, 1}, {1, 1, 1}}); same(b, {1, 1})
end)
check("broadcast_values", function()
  assert(dist.broadcast(r == 0 and "vocab\0bytes" or nil) == "vocab\0bytes")
  assert(dist.broadcast(r == 1 and ("x"):rep(100000) or "other", 1) == ("x"):rep(100000))
  assert(dist.broadcast(r == 0 and 42 or nil) == 42 and math.type(dist.broadcast(42)) == "integer")
  assert(dist.broadcast(r == 0 and 0.25 or 7) == 0.25)
  assert(dist.broadcast(r == 0) == true and dist.broadcast(nil) == nil)
end)
check("barrier_waits", function()
  local t0 = dm.clock()
  if r == 1 then while dm.clock() < t0 + 0.4 do end end
  dist.barrier()
  assert(r == 1 or dm.clock() - t0 > 0.3, "rank 0 left the barrier before rank 1 came")
end)
check("mismatch_fails_on_both", function()
  local e = err_of(function() dist.allreduce(dm.zeros(3 + r)) end)
  assert(e:find("dist.allreduce: the ranks passed different tensors (their number, dtypes or shapes differ) or a different op; rank " .. r .. " of 2 passed 1 tensor(s)", 1, true), e)
  e = err_of(function() dist.allreduce(dm.zeros(2 + r, 3 - r)) end)
  assert(e:find("passed different tensors", 1, true), e)
  e = err_of(function() dist.allreduce(dm.zeros(2), r == 0 and "sum" or "max") end)
  assert(e:find("passed different tensors", 1, true), e)
  e = err_of(function() dist.broadcast(r == 0 and "text" or dm.zeros(2)) end)
  assert(e:find("tensors on some ranks and a value on others", 1, true), e)
  e = err_of(function() dist.broadcast(dm.zeros(2), r) end)
  assert(e:find("different", 1, true), e)
  same(dist.allreduce(dm.ones(2)), {2, 2}) -- still usable
end)
check("bad_input", function()
  local e = err_of(function() dist.allreduce(dm.ones(2), "avg") end)
  assert(e:find('op must be "sum", "mean", "max" or "min", got avg', 1, true), e)
  e = err_of(function() dist.broadcast(dm.ones(2), 2) end)
  assert(e:find("root 2 is not a rank (0..1)", 1, true), e)
  e = err_of(function() dist.allreduce({dm.ones(2), "x"}) end)
  assert(e:find("element 2 of the list: expected Tensor, got string", 1, true), e)
  e = err_of(function() dist.allreduce(dm.ones({2}, "int32"), "mean") end)
  assert(e:find("op mean of int32", 1, true), e)
end)
check("finalize", function()
  dist.finalize(); dist.finalize()
  local e = err_of(function() dist.allreduce(dm.ones(2)) end)
  assert(e:find("finalized", 1, true), e)
end)
LUA
mpi "$E" "$tmp/checks.lua"
t "mpirun -np 2 drlmem: the job ends with status 0 within 30 s" '[ $rc -eq 0 ] && clean'
for c in rank_size allreduce_sum_tensor allreduce_mean_list_bucketed allreduce_int32_mixed_list \
         allreduce_max_min allreduce_numbers allreduce_weighted_scale broadcast_tensors \
         broadcast_values barrier_waits mismatch_fails_on_both bad_input finalize; do
  t "both ranks: $c" "both $c"
done

cat >"$tmp/grads.lua" <<'LUA'
-- Data parallel = one process on the whole batch. Each rank starts from
-- its own weights; broadcast_parameters gives both rank 0's, which equal a
-- reference net (same seed) that every rank also trains alone, as one
-- process with batch 8. The ranks take their dist.shard (4 rows each) of
-- every global batch of 8, whose pads make their target counts differ,
-- weight their loss gradient by dist.target_weight, average through
-- 256-byte buckets, then clip and step AdamW, for 3 steps; with
-- accumulation 2, two global batches make each step. Dropout 0; the memory
-- write is left out (each rank's write would use its own shard's means).
-- Tolerances, for float32 sums taken in another order: the first step's
-- gradients within 1e-5 of each tensor's max |value|; the weights after 3
-- steps within 1e-3 of the farthest 3 AdamW steps can move one (3 x lr),
-- since AdamW divides each gradient element by its own magnitude and so
-- turns a rounding difference of a tiny element into a visible one.
local dist = dm.dist
local r = dist.init()
local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
             num_layers = 2, dropout = 0}
local LR, STEPS = 0.01, 3
-- 16 sequences of length 6, each with 1 to 6 tokens and pads after them
local X, gen = {}, dm.Generator(5)
for i = 1, 16 do
  local row, len = {}, gen:random(6)
  for k = 1, 6 do row[k] = k <= len and gen:random(4, 19) or 0 end
  X[i] = row
end
local function rows(a, b) local t = {} for k = a, b do t[#t + 1] = X[k] end return dm.tensor(t, "int32") end
local function targets(a, b)
  local n = 0
  for k = a, b do for _, v in ipairs(X[k]) do if v ~= 0 then n = n + 1 end end end
  return n
end
-- worst max|a - b| over the tensors `key` of two parameter lists, relative
-- to each tensor's max |b| (rel) or absolute
local function worst(pa, pb, key, absolute)
  local w, name = 0, "-"
  for i = 1, #pb do
    local a, b = pa[i][key], pb[i][key]
    if b then
      local d = (a - b):abs():max()
      local s = b:abs():max()
      local e = absolute and d or d / (s > 0 and s or 1)
      if e > w then w, name = e, pb[i].name end
    end
  end
  return w, name
end
local function check(name, ok, detail) print(name .. (ok and " ok" or (" FAIL " .. detail))) end
local function nets()
  dm.manual_seed(7)
  local ref = dm.Controller(CFG)
  dm.manual_seed(r == 0 and 7 or 99)
  return ref, dm.Controller(CFG)
end
-- one micro-batch: the reference on all of x, the rank on its shard
local function micro(ref, net, x, acc, weighted)
  local _, dl = dm.nn.cross_entropy(ref:forward(x), x, {ignore_index = 0, scale = 1 / acc})
  ref:backward(dl)
  local xs = dist.shard(x)
  local _, dls, count = dm.nn.cross_entropy(net:forward(xs), xs, {ignore_index = 0, scale = 1 / acc})
  local w, total = dist.target_weight(count)
  if weighted then dls:mul_(w) end
  net:backward(dls)
  return total
end
local function train(acc)
  local ref, net = nets()
  local rp, np = ref:parameters(), net:parameters()
  local res = {before = worst(np, rp, "value")}
  dist.broadcast_parameters(net)
  res.after = worst(np, rp, "value")
  local opts = {lr = LR, weight_decay = 1e-4}
  local ropt, opt = dm.optim.AdamW(ref:parameters(), opts), dm.optim.AdamW(net:parameters(), opts)
  local totals, want = {}, {}
  for step = 1, STEPS do
    ref:zero_grad(); net:zero_grad()
    for k = 1, acc do
      local first = ((step - 1) * acc + k - 1) % 2 * 8 + 1
      totals[#totals + 1] = math.tointeger(micro(ref, net, rows(first, first + 7), acc, true))
      want[#want + 1] = targets(first, first + 7)
    end
    dist.average_gradients(net, {bucket_bytes = 256})
    if step == 1 then res.gw, res.gname = worst(np, rp, "grad") end
    dm.clip_grad_norm(ref, 1.0); dm.clip_grad_norm(net, 1.0)
    ropt:step(); opt:step()
  end
  res.pw, res.pname = worst(np, rp, "value", true)
  res.totals, res.want = table.concat(totals, " "), table.concat(want, " ")
  -- the ranks hold bit-identical weights (same averaged gradient, same step)
  local copy = {}
  for i, p in ipairs(np) do copy[i] = p.value:clone() end
  dist.broadcast(copy, 1)
  res.same = true
  for i, p in ipairs(np) do res.same = res.same and (copy[i] - p.value):abs():max() == 0 end
  return res
end
local WTOL = 1e-3 * STEPS * LR
for _, acc in ipairs{1, 2} do
  local a = train(acc)
  print(("# accumulation %d: first gradients within %.2g of scale (%s), weights after %d steps within %.2g (%s)")
        :format(acc, a.gw, a.gname, STEPS, a.pw, a.pname))
  local sfx = acc == 1 and "" or "_accumulation_2"
  if acc == 1 then
    check("broadcast_parameters", (r == 0 or a.before > 0.1) and a.after == 0,
          ("before %g after %g"):format(a.before, a.after))
  end
  check("target_counts" .. sfx, a.totals == a.want, a.totals .. " != " .. a.want)
  check("weighted_gradients" .. sfx, a.gw <= 1e-5, ("%g in %s"):format(a.gw, a.gname))
  check("three_steps_weights" .. sfx, a.pw <= WTOL, ("%g > %g in %s"):format(a.pw, WTOL, a.pname))
  check("ranks_identical" .. sfx, a.same, "weights differ between ranks")
end
-- an unweighted mean is not the whole batch's gradient when counts differ
local ref, net = nets()
dist.broadcast_parameters(net)
micro(ref, net, rows(1, 8), 1, false)
dist.average_gradients(net)
local e = worst(net:parameters(), ref:parameters(), "grad")
check("unweighted_mean_differs", e > 1e-3, ("only %g off"):format(e))
-- stop flags, agreement checks, shards of a batch smaller than the ranks
check("any", dist.any(r == 1) and not dist.any(false), "wrong")
dist.assert_same("the vocabulary", "a b c")
local ok, msg = pcall(dist.assert_same, "the vocabulary", r == 0 and "a b c" or "a b d")
check("assert_same", not ok and tostring(msg):find("the ranks disagree on the vocabulary (rank 1's differs from rank 0's)", 1, true),
      tostring(msg))
local xs, ys = dist.shard(rows(1, 1), rows(2, 2))
check("shard_small_batch", (r == 0 and xs:size(1) == 1 and xs:get(1, 1) == X[1][1] and ys:get(1, 1) == X[2][1])
      or (r == 1 and xs == nil and ys == nil), tostring(xs))
local w, total, mean = dist.target_weight(r == 0 and 3 or 0, r == 0 and 2.5 or 0 / 0)
check("target_weight_empty_shard", total == 3 and mean == 2.5 and w == (r == 0 and 2 or 0),
      ("%s %s %s"):format(w, total, mean))
LUA
mpi "$E" "$tmp/grads.lua"
t "mpirun -np 2: 2 ranks x batch 4 train like 1 process x batch 8 (exit 0)" '[ $rc -eq 0 ] && clean'
grep '^# accumulation' "$tmp/out" | sort -u
for c in broadcast_parameters target_counts weighted_gradients three_steps_weights ranks_identical \
         target_counts_accumulation_2 weighted_gradients_accumulation_2 three_steps_weights_accumulation_2 \
         ranks_identical_accumulation_2 unweighted_mean_differs any assert_same shard_small_batch \
         target_weight_empty_shard; do
  t "both ranks: $c" "both $c"
done

# Every rank derives the vocabulary and the splits itself, from the file and
# the seed: they must agree, or the shards of a global batch would not be
# the rows one process would take.
"$E" scripts/make_data.lua --tiny --out "$tmp/tiny.txt" >"$tmp/out" 2>&1
cat >"$tmp/data.lua" <<'LUA'
local cfg = dm.config.load(arg[1] .. "/configs/tiny.yaml", {data_path = arg[2]})
local d = dm.data.load(cfg)
local function ids(t) local s = {} for i, v in ipairs(t) do s[i] = tostring(v) end return table.concat(s, ",") end
dm.dist.assert_same("the vocabulary", table.concat(d.vocab:list(), "\n"))
for _, name in ipairs{"train", "val", "test"} do
  dm.dist.assert_same("the " .. name .. " split", ids(d[name].index))
end
dm.dist.assert_same("epoch 3's training order", ids(d.train:order(3)))
local x = d.train:batches(cfg.batch_size, 2)()
dm.dist.assert_same("epoch 2's first batch", ids(x:view(-1):totable()))
print(("data ok %d tokens, %d training samples"):format(d.vocab.size, d.train:size()))
LUA
mpi "$E" "$tmp/data.lua" "$root" "$tmp/tiny.txt"
t "both ranks derive the same vocabulary, splits, epoch orders and batches from file and seed" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^data ok" "$tmp/out")" -eq 2 ]'

# The training loop itself (drlmem.loop.train_epoch): 2 ranks x batch 4
# against 1 process x batch 8, 3 optimizer steps on configs/tiny.yaml's
# data, with accumulation 1 and 2, dropout 0 and the default write_strength
# (0.1): the memory write blends the global batch's means, summed over the
# ranks, so the memory too is one process's. Same bound as above for the
# weights (1e-3 of how far 3 AdamW steps can move one); the memory rows are
# unit vectors rebuilt by every write, within 1e-5 (float32 sums in another
# order, 3 writes and 3 AdamW steps deep). A variant with write_strength 0
# keeps the memory's start: it shows the write did act.
cat >"$tmp/loopeq.lua" <<'LUA'
local root, data, out, B, acc, extra = arg[1], arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), arg[6]
local loop = require "drlmem.loop"
local over = {data_path = data, batch_size = B, dropout = 0, accumulation_steps = acc}
local samples = 24 * acc -- 3 steps of global batches of 8
for kv in (extra or ""):gmatch("[^,]+") do
  local k, v = kv:match("^([%w_]+)=(.*)$")
  if k == "samples" then samples = tonumber(v) else over[k] = tonumber(v) or v end
end
local cfg = dm.config.load(root .. "/configs/tiny.yaml", over)
local d = dm.data.load(cfg)
local st = loop.setup(cfg, d)
local sub = {}
for k, v in pairs(d.train) do sub[k] = v end
sub.index = table.move(d.train.index, 1, samples, 1, {})
setmetatable(sub, getmetatable(d.train))
local r = loop.train_epoch({net = st.net, opt = st.opt, cfg = cfg, split = sub}, 1)
if dm.dist.rank() == 0 then
  local t = {}
  for _, p in ipairs(st.net:parameters()) do t[p.name] = p.value end
  local meta = {loss = ("%.9g"):format(r.loss), tokens = tostring(r.tokens), steps = tostring(r.steps)}
  if r.write then
    for k, v in pairs(r.write) do meta["write." .. k] = ("%.9g"):format(v) end
    local ws = st.net:write_state()
    meta.second_moment, meta.updates = ("%.9g"):format(ws.second_moment), tostring(ws.updates)
  end
  dm.save_safetensors(out, t, meta)
end
LUA
cat >"$tmp/loopcmp.lua" <<'LUA'
-- loopcmp.lua A B [STATS [STEPS]]: weights (memory apart) and memory of A
-- against B; STATS: comma-separated metadata keys that must agree within
-- 1e-5; STEPS: the optimizer steps both took (3).
local a, ma = dm.load_safetensors(arg[1])
local b, mb = dm.load_safetensors(arg[2])
local worst, name, mem = 0, "-", 0
for k, t in pairs(a) do
  local e = (t - b[k]):abs():max()
  if k == "memory.keys" or k == "memory.values" then mem = math.max(mem, e)
  elseif e > worst then worst, name = e, k end
end
local lrel = math.abs(tonumber(ma.loss) - tonumber(mb.loss)) / tonumber(mb.loss)
local stats, sworst, sname = arg[3], 0, "-"
for k in (stats or ""):gmatch("[^,]+") do
  local x, y = tonumber(ma[k]), tonumber(mb[k])
  local e = (x and y) and math.abs(x - y) / math.max(math.abs(y), 1e-3) or math.huge
  if e > sworst then sworst, sname = e, k end
end
print(("weights within %.2g (%s), memory within %.2g, loss within %.2g, tokens %s/%s, steps %s/%s, stats within %.2g (%s)")
  :format(worst, name, mem, lrel, ma.tokens, mb.tokens, ma.steps, mb.steps, sworst, sname))
local nsteps = arg[4] or "3"
local ok = worst <= 1e-3 * tonumber(nsteps) * 0.01 and lrel <= 1e-5 and ma.tokens == mb.tokens and ma.steps == nsteps
  and mb.steps == nsteps and sworst <= 1e-5
print(ok and "loop_equivalent ok" or "loop_equivalent FAIL")
print(mem <= 1e-5 and "memory_equivalent ok" or "memory_equivalent FAIL")
print(mem > 1e-3 and "memory_differs ok" or "memory_differs FAIL")
LUA
# loopeq NAME ACC EXTRA [STATS [STEPS]]: one process x 8 and 2 ranks x 4
# through the loop; $mrc and $tmp/out hold the run and the comparison.
loopeq() {
  env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$E" "$tmp/loopeq.lua" "$root" "$tmp/tiny.txt" "$tmp/one.st" 8 "$2" "$3" >"$tmp/out" 2>&1
  rm -f "$tmp/two.st"; mpi "$E" "$tmp/loopeq.lua" "$root" "$tmp/tiny.txt" "$tmp/two.st" 4 "$2" "$3"; mrc=$rc
  "$E" "$tmp/loopcmp.lua" "$tmp/two.st" "$tmp/one.st" "${4:-}" "${5:-3}" >>"$tmp/out" 2>&1
  echo "# $1: $(grep "^weights within" "$tmp/out")"
}
for acc in 1 2; do
  loopeq "accumulation $acc through the loop" $acc ""
  t "the training loop: 2 ranks x batch 4 = 1 process x batch 8 after 3 steps (accumulation $acc)" \
    '[ $mrc -eq 0 ] && grep -q "^loop_equivalent ok" "$tmp/out"'
  t "the training loop: the memory after 3 writes of the global batch's means is one process's (accumulation $acc)" \
    '[ $mrc -eq 0 ] && grep -q "^memory_equivalent ok" "$tmp/out"'
done
# the same with write_strength 0 against the default's one process: the
# memory then differs, so the check above saw the write
cp "$tmp/one.st" "$tmp/one_w.st"
rm -f "$tmp/two.st"; mpi "$E" "$tmp/loopeq.lua" "$root" "$tmp/tiny.txt" "$tmp/two.st" 4 2 "write_strength=0"; mrc=$rc
"$E" "$tmp/loopcmp.lua" "$tmp/two.st" "$tmp/one_w.st" >"$tmp/out" 2>&1
t "write_strength 0 leaves another memory than the default's writes (the comparison sees the write)" \
  '[ $mrc -eq 0 ] && grep -q "^memory_differs ok" "$tmp/out"'

# write_policy reinforce through the loop: the policy's statistics (valid
# count, advantage moments, the logged means) are summed over the ranks and
# its gradient averaged with the others. The actions are drawn from each
# rank's own stream, so here the curriculum's soft writes (the policy
# learns through its write weights p, which need no draw) and write_cost 0
# (the returns then do not depend on the draws) make one process's run the
# reference; the hard, sampled policy gradient is checked below with the
# draws lined up. The means compared: entropy, reward, advantage, baseline
# loss and the running advantage scale's second moment, within 1e-5.
loopeq "reinforce (soft, accumulation 2) through the loop" 2 "write_policy=reinforce,curriculum_epochs=1,write_cost=0"\
  "write.entropy,write.mean_reward,write.mean_advantage,write.baseline_loss,second_moment,updates"
t "write_policy reinforce: 2 ranks x batch 4 = 1 process x batch 8 through the loop (weights, memory, policy statistics)" \
  '[ $mrc -eq 0 ] && grep -q "^loop_equivalent ok" "$tmp/out" && grep -q "^memory_equivalent ok" "$tmp/out"'

# 25 samples: the last global batch has 1 row, so rank 1's shard is empty
# at the 4th step; it still takes part in the loss, the policy's sums and
# the write's (adding nothing), and the result is one process's.
loopeq "reinforce, a last batch of 1 row (rank 1's shard empty)" 1 "write_policy=reinforce,curriculum_epochs=1,write_cost=0,samples=25"\
  "write.entropy,write.mean_reward,write.baseline_loss,second_moment,updates" 4
t "a last global batch of 1 row: rank 1's empty shard joins the step; weights, memory and statistics are one process's" \
  '[ $mrc -eq 0 ] && grep -q "^loop_equivalent ok" "$tmp/out" && grep -q "^memory_equivalent ok" "$tmp/out"'

# write_policy content has no sums to add (it writes where each token
# read): across processes rank 0 writes from its shard and broadcasts the
# memory, so the ranks hold the same memory after every step.
cat >"$tmp/content.lua" <<'LUA'
local root, data = arg[1], arg[2]
local loop = require "drlmem.loop"
local cfg = dm.config.load(root .. "/configs/tiny.yaml", {data_path = data, write_policy = "content", dropout = 0,
  max_samples = 64})
local d = dm.data.load(cfg)
local st = loop.setup(cfg, d)
local r = loop.train_epoch({net = st.net, opt = st.opt, cfg = cfg, split = d.train}, 1)
dm.dist.assert_same("the memory", table.concat(st.net:param("memory.keys"):view(-1):totable(), ",")
  .. table.concat(st.net:param("memory.values"):view(-1):totable(), ","))
print("content ok " .. r.steps)
LUA
mpi "$E" "$tmp/content.lua" "$root" "$tmp/tiny.txt"
t "write_policy content across processes: rank 0's write, broadcast; both ranks hold the same memory" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^content ok [1-9]" "$tmp/out")" -eq 2 ]'

cat >"$tmp/rl.lua" <<'LUA'
-- The sampled (hard) reinforce step across ranks against one process on
-- the whole batch. The reference draws its 8 x T actions from a generator;
-- before each step rank r takes the reference's state and skips the draws
-- of the rows before its shard (one draw per position, row-major), so
-- both make the same decisions. 3 steps of AdamW with the policy's and
-- baseline's gradient, the memory written from the global means; the
-- policy statistics, the running scale and every weight are compared (the
-- weights within the bound of grads.lua, 1e-3 x 3 AdamW steps of lr).
local dist = dm.dist
local r = dist.init()
local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12, num_layers = 2,
             dropout = 0, write_policy = "reinforce", policy_bias_init = 0}
local LR, STEPS, T = 0.01, 3, 6
local X, gen = {}, dm.Generator(5)
for i = 1, 8 * STEPS do
  local row, len = {}, gen:random(T)
  for k = 1, T do row[k] = k <= len and gen:random(4, 19) or 0 end
  X[i] = row
end
local function rows(a, b) local t = {} for k = a, b do t[#t + 1] = X[k] end return dm.tensor(t, "int32") end
dm.manual_seed(7); local ref = dm.Controller(CFG)
dm.manual_seed(7); local net = dm.Controller(CFG)
net:set_reduce(true)
local gref, grank = dm.Generator(11), dm.Generator(0)
ref:set_generator(gref); net:set_generator(grank)
local opts = {lr = LR, weight_decay = 1e-4}
local ropt, opt = dm.optim.AdamW(ref:parameters(), opts), dm.optim.AdamW(net:parameters(), opts)
local worst_stat, sname = 0, "-"
local writes, usage_differs = 0, false
for step = 1, STEPS do
  local x = rows(8 * step - 7, 8 * step)
  grank:set_state(gref:state())
  for _ = 1, r * 4 * T do grank:random() end
  ref:zero_grad(); net:zero_grad()
  local _, dl = dm.nn.cross_entropy(ref:forward(x), x, {ignore_index = 0})
  local wa = ref:reinforce(x, 0)
  ref:backward(dl)
  local xs = dist.shard(x)
  local _, dls, count = dm.nn.cross_entropy(net:forward(xs), xs, {ignore_index = 0})
  local w = dist.target_weight(count)
  local wb = net:reinforce(xs, 0)
  dls:mul_(w); net:backward(dls)
  dist.average_gradients(net)
  -- the slot usage is a mean over each rank's own sequences (as the loop
  -- reports it: dist.row_mean)
  local own = wb.slot_usage
  wb.slot_usage = dist.row_mean(wb.slot_usage, xs:size(1))
  if math.abs(dist.allreduce(own, "max") - dist.allreduce(own, "min")) > 1e-9 then usage_differs = true end
  for _, k in ipairs{"count", "write_rate", "entropy", "mean_reward", "mean_advantage", "adv_scale",
                     "policy_loss", "baseline_loss", "slot_usage"} do
    local e = math.abs(wa[k] - wb[k]) / math.max(math.abs(wa[k]), 1e-3)
    if e > worst_stat then worst_stat, sname = e, k end
  end
  writes = writes + wa.write_rate
  for _, g in ipairs(dm.train.clip_groups(ref, {})) do dm.clip_grad_norm(g, 1.0) end
  for _, g in ipairs(dm.train.clip_groups(net, {})) do dm.clip_grad_norm(g, 1.0) end
  ropt:step(); opt:step()
  ref:write_memory(0.1); net:write_memory(0.1)
end
local pw, pname = 0, "-"
local rp = ref:parameters()
for i, p in ipairs(net:parameters()) do
  local e = (p.value - rp[i].value):abs():max()
  if e > pw then pw, pname = e, p.name end
end
local sa, sb = ref:write_state(), net:write_state()
local se = math.abs(sa.second_moment - sb.second_moment) / sa.second_moment
print(("# reinforce (hard): weights within %.2g (%s), statistics within %.2g (%s), second moment within %.2g, mean write rate %.2f")
  :format(pw, pname, worst_stat, sname, se, writes / STEPS))
local function check(name, ok, detail) print(name .. (ok and " ok" or (" FAIL " .. detail))) end
check("rl_weights", pw <= 1e-3 * STEPS * LR, ("%g in %s"):format(pw, pname))
check("rl_statistics", worst_stat <= 1e-5 and se <= 1e-5 and sa.updates == sb.updates,
      ("%g in %s, second moment %g"):format(worst_stat, sname, se))
check("rl_writes_sampled", writes / STEPS > 0.05 and writes / STEPS < 0.95, tostring(writes / STEPS))
check("rl_slot_usage_per_rank_differs", usage_differs, "the ranks' own slot usages agree: the check above is moot")
LUA
mpi "$E" "$tmp/rl.lua"
grep '^# reinforce' "$tmp/out" | sort -u
t "write_policy reinforce, sampled: 2 ranks x batch 4 = 1 process x batch 8 (exit 0)" '[ $rc -eq 0 ] && clean'
for c in rl_weights rl_statistics rl_writes_sampled rl_slot_usage_per_rank_differs; do t "both ranks: $c" "both $c"; done

# scripts/train.lua under mpirun: rank 0 alone claims the folders and
# writes the log, metrics, figure and checkpoints; one epoch line, not two.
mpi "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt" \
  --set "save_path=$tmp/mp/models" --set "log_file=$tmp/mp/logs/training.log" --set epochs=1 --progress plain
t "mpirun -np 2 scripts/train.lua trains one epoch and exits 0" '[ $rc -eq 0 ] && clean'
t "rank 0 alone logs and prints: one epoch line of 20 global batches of 16" \
  '[ "$(grep -c "epoch 1/1: train" "$tmp/mp/logs/training.log")" -eq 1 ] && [ "$(grep -c "epoch 1/1: train" "$tmp/out")" -eq 1 ] && grep -q "batch 20/20" "$tmp/out"'
t "rank 0 writes the model, last checkpoint, metrics and figure" \
  '[ -s "$tmp/mp/models/memory_model.safetensors" ] && [ -s "$tmp/mp/models/last.safetensors" ] && [ -s "$tmp/mp/logs/metrics.jsonl" ] && [ -s "$tmp/mp/logs/training.svg" ]'

# --resume with the same N: 1 epoch + 1 resumed = 2 epochs in one go, bit for bit.
mtrain() { mpi "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt" \
  --set "save_path=$1/models" --set "log_file=$1/logs/training.log" --progress none "${@:2}"; }
mtrain "$tmp/r2" --set epochs=2; r2=$rc
mtrain "$tmp/r1" --set epochs=1; r1=$rc
mtrain "$tmp/r1" --set epochs=2 --resume "$tmp/r1/models/last.safetensors"; r1b=$rc
cat >"$tmp/same.lua" <<'LUA'
local a, b, n = dm.load_safetensors(arg[1]), dm.load_safetensors(arg[2]), 0
for k, t in pairs(a) do
  if t:dtype() == "float32" then n = n + 1; assert((t - b[k]):abs():max() == 0, k .. " differs") end
end
print("identical " .. n)
LUA
"$E" "$tmp/same.lua" "$tmp/r1/models/last.safetensors" "$tmp/r2/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "mpirun -np 2: 1 epoch + --resume for 1 more = 2 epochs, bit for bit" \
  '[ $r2 -eq 0 ] && [ $r1 -eq 0 ] && [ $r1b -eq 0 ] && [ $rc -eq 0 ] && grep -q "^identical [1-9]" "$tmp/out"'

# ... with another number of processes: one line naming the file and both
# numbers, no traceback (one process on the 2-rank checkpoint, and 2 ranks
# on a one-process checkpoint)
env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" \
  --set "data_path=$tmp/tiny.txt" --set "save_path=$tmp/r1/models" --set "log_file=$tmp/r1/logs/training.log" \
  --progress none --set epochs=3 --resume "$tmp/r1/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "--resume of a 2-rank checkpoint by one process: a one-line error naming both numbers" \
  '[ $rc -eq 1 ] && grep -q "last.safetensors: saved by a run of 2 processes, this run has 1: resume with the same number (mpirun -np 2)" "$tmp/out" && ! grep -q traceback "$tmp/out"'
env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" \
  --set "data_path=$tmp/tiny.txt" --set "save_path=$tmp/s1/models" --set "log_file=$tmp/s1/logs/training.log" \
  --progress none --set epochs=1 --set max_samples=40 >"$tmp/out" 2>&1
mtrain "$tmp/s1" --set epochs=2 --set max_samples=40 --resume "$tmp/s1/models/last.safetensors"
t "--resume of a one-process checkpoint by 2 ranks: a one-line error, the job ends" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c "saved by a run of 1 process, this run has 2: resume with the same number (without mpirun)" "$tmp/out")" -ge 1 ] && ! grep -q traceback "$tmp/out"'

# Dropout and sampling streams: the ranks draw the same weights, then each
# reseeds from the seed and its rank, so their dropout masks differ (the
# same rows through a training forward give other logits), and a rank's
# stream is the same in every run.
cat >"$tmp/streams.lua" <<'LUA'
local root, data = arg[1], arg[2]
local loop = require "drlmem.loop"
local cfg = dm.config.load(root .. "/configs/tiny.yaml", {data_path = data, dropout = 0.5})
local d = dm.data.load(cfg)
local st = loop.setup(cfg, d)
local w = {}
for _, p in ipairs(st.net:parameters()) do w[#w + 1] = table.concat(p.value:view(-1):totable(), ",") end
dm.dist.assert_same("the initial weights", table.concat(w, ";"))
local x = d.train:batches(cfg.batch_size, 1)()
local logits = st.net:forward(x)
local all = dm.dist.allgather(table.concat(logits:view(-1):totable(), ","))
local states = dm.dist.allgather(dm.get_rng_state())
print(("streams %d %s %s"):format(dm.dist.rank(), all[1] ~= all[2] and "differ" or "same", states[dm.dist.rank() + 1]))
LUA
mpi "$E" "$tmp/streams.lua" "$root" "$tmp/tiny.txt"; cp "$tmp/out" "$tmp/streams1"
mpi "$E" "$tmp/streams.lua" "$root" "$tmp/tiny.txt"
t "2 ranks start from the same weights and then draw other dropout masks" \
  '[ $rc -eq 0 ] && [ "$(grep -c "^streams [01] differ" "$tmp/out")" -eq 2 ]'
t "each rank's stream is fixed by the seed and its rank (two runs agree)" \
  '[ "$(grep "^streams" "$tmp/out" | sort)" = "$(grep "^streams" "$tmp/streams1" | sort)" ] && [ "$(grep "^streams" "$tmp/out" | cut -d" " -f4 | sort -u | wc -l)" -eq 2 ]'

# Signals. SIGTERM to rank 1 alone (rank 0 writes): at the next safe point
# every rank agrees to stop, rank 0 saves one resumable checkpoint (with
# both ranks' generators) and logs one message, and the job ends with 143;
# the resumed run then ends bit for bit where an uninterrupted one does, so
# both ranks stopped after the same step. A rank killed with SIGKILL: the
# job ends (no hang) with mpirun's message naming the rank and the signal,
# and the last checkpoint still resumes.
sigrun() { # sigrun DIR SIGNAL ARGS...: train under mpirun, send SIGNAL to rank $SIGRANK (1) after epoch 1
  local dir=$1 sig=$2 to=${SIGRANK:-1}; shift 2
  local t0=$SECONDS
  # checkpoint writes pause 0.4 s (the test hook), so the run is still
  # training when the signal comes however fast the machine is
  DRLMEM_TEST_WRITE_DELAY_MS=400 timeout 120 "${MPIRUN[@]}" "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" \
    --set "data_path=$tmp/tiny.txt" --set "save_path=$dir/models" --set "log_file=$dir/logs/training.log" \
    --set hidden_size=96 --progress none "$@" >"$tmp/out" 2>&1 &
  local bg=$! mp="" k p r
  for k in $(seq 600); do grep -q "epoch 1/" "$dir/logs/training.log" 2>/dev/null && break; sleep 0.05; done
  mp=$(ps -o pid= --ppid $bg | tr -d ' ')
  for p in $(ps -o pid= --ppid "$mp"); do
    r=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [ "$r" = "$to" ] && kill "-$sig" "$p"
  done
  wait $bg; rc=$?; secs=$((SECONDS - t0))
}
mtrain "$tmp/sref" --set hidden_size=96 --set epochs=4; sref=$rc
sigrun "$tmp/sig" TERM --set epochs=4
cp "$tmp/out" "$tmp/sigout"
grep -o "stopped by SIGTERM at epoch .* batches" "$tmp/sigout" | sed 's/^/# /'
t "SIGTERM to rank 1 alone: the job ends with 143 within the timeout" '[ $rc -eq 143 ]'
t "one message, from rank 0, in the output and in the log, and one resume command with mpirun -np 2" \
  '[ "$(grep -c "stopped by SIGTERM at epoch" "$tmp/sigout")" -eq 1 ] && [ "$(grep -c "stopped by SIGTERM at epoch" "$tmp/sig/logs/training.log")" -eq 1 ] && [ "$(grep -c "resume with: mpirun -np 2 " "$tmp/sigout")" -eq 1 ]'
mtrain "$tmp/sig" --set hidden_size=96 --set epochs=4 --resume "$tmp/sig/models/last.safetensors"; sres=$rc
"$E" "$tmp/same.lua" "$tmp/sig/models/last.safetensors" "$tmp/sref/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "the checkpoint resumes and ends bit for bit as the uninterrupted run (every rank stopped at the same step)" \
  '[ $sref -eq 0 ] && [ $sres -eq 0 ] && [ $rc -eq 0 ] && grep -q "^identical [1-9]" "$tmp/out"'
SIGRANK=0 sigrun "$tmp/int" INT --set epochs=50
t "Ctrl-C (SIGINT) to rank 0 alone: exit 130, one message and a resumable checkpoint" \
  '[ $rc -eq 130 ] && [ "$(grep -c "interrupted at epoch" "$tmp/out")" -eq 1 ] && [ -s "$tmp/int/models/last.safetensors" ]'
sigrun "$tmp/k9" KILL --set epochs=50
cp "$tmp/out" "$tmp/k9out"
t "SIGKILL of rank 1: the job ends, not a hang (non-zero, before the 120 s timeout)" '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $secs -lt 60 ]'
t "SIGKILL of rank 1: mpirun names the rank and the signal" 'grep -q "process rank 1 .*exited on signal 9" "$tmp/k9out"'
mtrain "$tmp/k9" --set hidden_size=96 --set epochs=3 --resume "$tmp/k9/models/last.safetensors"
t "after SIGKILL the last checkpoint resumes" '[ $rc -eq 0 ] && grep -q "epoch 3/3" "$tmp/k9/logs/training.log"'

# A rank that is alive but stuck (SIGSTOP to rank 1 after epoch 1) while
# rank 0's collectives have a 2 s deadline: rank 0 stops with one line
# naming the collective, the deadline and the last good checkpoint, no
# traceback, and the job ends. And at the start (every file rank 0 writes
# pauses 2 s, the test hook, and rank 1's deadline is 1 s): rank 1's first
# barrier fails, in one line as well.
DRLMEM_DIST_TIMEOUT=2 sigrun "$tmp/stop" STOP --set epochs=50
grep "stopped: dist" "$tmp/out" | sed 's/^/# /'
t "a stuck rank during training: the other stops after its deadline with one line and the last checkpoint, no traceback" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $secs -lt 60 ] && grep -q "^train.lua: rank 0 of 2 stopped: dist: .* did not complete within 2 s on rank 0 of 2" "$tmp/out" && grep -q "^train.lua: the last good checkpoint is .*last.safetensors" "$tmp/out" && ! grep -q traceback "$tmp/out"'
DRLMEM_TEST_WRITE_DELAY_MS=2000 DRLMEM_DIST_TIMEOUT=1 mtrain "$tmp/stall1" --set epochs=3
t "a stalled rank at the start: one line naming the barrier and the deadline, no traceback" \
  '[ $rc -eq 1 ] && grep -q "error: dist: barrier did not complete within 1 s on rank 1 of 2" "$tmp/out" && ! grep -q traceback "$tmp/out"'

# The periodic checkpoint (checkpoint_minutes) under mpirun: the ranks'
# clocks differ (here rank 1's runs 10 minutes ahead at every read), but
# the save is collective, so rank 0's clock decides for all: both ranks
# checkpoint at the same steps (rank 0's: none) and the run ends.
cat >"$tmp/ckclock.lua" <<'LUA'
local root, data = arg[1], arg[2]
local loop = require "drlmem.loop"
dm.dist.init{timeout = 20}
local cfg = dm.config.load(root .. "/configs/tiny.yaml", {data_path = data, epochs = 1, max_samples = 80,
  checkpoint_minutes = 5})
local d = dm.data.load(cfg)
local st = loop.setup(cfg, d)
local now, saves = 0, {}
local status = loop.run(st, d, {
  clock = function() if dm.dist.rank() == 1 then now = now + 600 end return now end,
  on_checkpoint = function(pos) saves[#saves + 1] = dm.dist.allgather(tostring(pos.batch))[1] end,
})
print(("ckclock %d %s %d"):format(dm.dist.rank(), status, #saves))
LUA
mpi "$E" "$tmp/ckclock.lua" "$root" "$tmp/tiny.txt"
t "checkpoint_minutes under mpirun: rank 0's clock decides for both ranks (no mismatched collective)" \
  '[ $rc -eq 0 ] && grep -q "^ckclock 0 done 0$" "$tmp/out" && grep -q "^ckclock 1 done 0$" "$tmp/out"'

# The scaling benchmark's step (scripts/bench_mpi.lua, not timed here): 2
# ranks run it and rank 0 alone prints one JSON line with the bytes each
# rank allreduces per step (the float32 gradients and 261 numbers), and
# its table reads the lines back.
mpi "$E" "$root/scripts/bench_mpi.lua" --vocab 64 --batch 2 --seq 5 --steps 1 --warmup 0
cp "$tmp/out" "$tmp/bench.jsonl"
cat >"$tmp/benchcheck.lua" <<'LUA'
local lines = {}
for l in io.lines(arg[1]) do if l:sub(1, 1) == "{" then lines[#lines + 1] = dm.json.decode(l) end end
local r = lines[1]
dm.manual_seed(0)
local net = dm.Controller{vocab_size = 64, embedding_dim = 128, memory_size = 512, hidden_size = 256, num_layers = 2,
                          output_activation = "gelu"}
local n = 0
for _, p in ipairs(net:parameters()) do if p.grad then n = n + p.grad:numel() end end
print(#lines == 1 and r.ranks == 2 and r.tokens_per_s > 0 and r.allreduce_share > 0 and r.allreduce_share < 1
      and r.bytes_per_step == 4 * n + 8 * 261 and "bench ok" or ("bench FAIL " .. tostring(r and r.bytes_per_step)))
LUA
"$E" "$tmp/benchcheck.lua" "$tmp/bench.jsonl" >"$tmp/out" 2>&1
t "bench_mpi.lua under 2 ranks: one JSON line from rank 0, the gradients' bytes per step, an allreduce share in (0,1)" \
  'grep -q "^bench ok" "$tmp/out"'
"$E" "$root/scripts/bench_mpi.lua" --report "$tmp/bench.jsonl" >"$tmp/out" 2>&1
t "bench_mpi.lua --report: a table row for V=64, batch 2" 'grep -qE "^\| 64 \| 2 \| - \| - \| [0-9]+ \|" "$tmp/out"'

cat >"$tmp/stock.lua" <<'LUA'
local dm = require "drlmem"
local t = dm.tensor{1, 2} * (dm.dist.rank() + 1)
dm.dist.allreduce(t)
print(("stock %d/%d %g %g"):format(dm.dist.rank(), dm.dist.size(), t:get(1), t:get(2)))
LUA
if [ "${SAN:-}" = "1" ]; then
  # Stock lua5.4 needs the sanitizer runtime preloaded, which mpirun's
  # helper processes must not get: the plain build checks drlmem.so.
  ok 0 "stock lua5.4 with drlmem.so under mpirun (checked by the plain build)"
else
  mpi env LUA_CPATH="$(realpath "${DRLMEM_BUILD:-build}")/?.so;;" LUA_PATH="$root/lua/?.lua;;" lua5.4 "$tmp/stock.lua"
  t "stock lua5.4 requiring drlmem.so runs 2 ranks and allreduces" \
    '[ $rc -eq 0 ] && grep -q "^stock 0/2 3 6$" "$tmp/out" && grep -q "^stock 1/2 3 6$" "$tmp/out"'
fi

cat >"$tmp/dies.lua" <<'LUA'
dm.dist.init()
if dm.dist.rank() == 1 then os.exit(3) end
dm.dist.allreduce(dm.ones(4))
print("rank 0 passed the allreduce alone")
LUA
mpi "$E" "$tmp/dies.lua"
t "a rank that exits with 3 before a collective ends the job with status 3, not a hang" \
  '[ $rc -eq 3 ] && [ $secs -lt 20 ] && ! grep -q "passed the allreduce alone" "$tmp/out"'
t "mpirun names the rank that died and its exit code" \
  'grep -q "exited with non-zero status" "$tmp/out" && grep -qE "Exit code: +3" "$tmp/out"'

cat >"$tmp/stuck.lua" <<'LUA'
dm.dist.init{timeout = 1}
if dm.dist.rank() == 1 then local t0 = dm.clock(); while dm.clock() < t0 + 20 do end end
dm.dist.allreduce(dm.ones(4))
LUA
mpi "$E" "$tmp/stuck.lua"
t "a rank that never joins: the other fails after its 1 s timeout and the job ends" \
  '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $secs -lt 15 ]'
t "the timeout says which collective, how long, which rank and what to suspect" \
  'grep -q "dist: allreduce did not complete within 1 s on rank 0 of 2: another rank has stopped, died or is not calling the same collective" "$tmp/out"'

cat >"$tmp/single.lua" <<'LUA'
local r, n = dm.dist.init()
local t = dm.tensor{1, 2}
dm.dist.allreduce(t, "mean"); dm.dist.allreduce(t, "sum", {scale = 0.5}); dm.dist.barrier()
print(dm.dist.available(), r, n, dm.dist.rank(), dm.dist.size(), t:get(1), t:get(2),
      dm.dist.broadcast("s"), dm.dist.allreduce(3, "max"))
dm.dist.finalize()
LUA
env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$E" "$tmp/single.lua" >"$tmp/out" 2>&1; rc=$?
t "without mpirun: a world of one, rank 0 of 1, collectives return the data (scaled)" \
  '[ $rc -eq 0 ] && [ "$(cat "$tmp/out")" = "$(printf "false\t0\t1\t0\t1\t0.5\t1.0\ts\t3.0")" ]'
echo "1..$n"
