-- ablation.lua: the write-policy ablation (README, "RL write policy:
-- ablation"), in one command:
--
--   drlmem scripts/ablation.lua [--out DIR] [--seeds N] [--only recall|default]
--                               [--n N] [--recall-samples N] [--recall-epochs N]
--                               [--quick] [--set key=value ...]
--
-- Six arms, each trained with scripts/train.lua in a child process, one
-- at a time (sequentially, so wall times compare), over seeds 1..N:
--   nomem    GRU without memory (use_memory=false: the GRU reads the query)
--   seed     the seed's learned memory and its post-step write
--   content  the learned memory with the content write (write_policy=content)
--   always   nomem + episodic memory written at every step (write_actions=always)
--   random   nomem + episodic memory written at random, Bernoulli(r) with r =
--            the training write rate the RL arm of the same seed ended with
--   rl       nomem + episodic memory written by the REINFORCE policy
-- (the rl arm runs before random, which needs its rate). The episodic arms
-- drop the seed's memory (use_memory=false): in the seed's architecture the
-- GRU's only input is that memory's read, and its post-step write blends
-- the batch mean into every slot (write_strength 0.1 per step), so within
-- an epoch all M slots hold the same row, the read no longer depends on the
-- token, and the GRU (and the episodic memory after it, which stores GRU
-- states) sees nothing of the input: every arm that keeps it stays at
-- chance on recall. So the episodic arms compare against nomem. Two data sets:
--   recall   associative recall, n pairs (--n, default 8; scripts/make_task.lua),
--            answer accuracy at the answer token (task=recall);
--            max_seq_length = 2n + 4, exactly a whole sample (<sos> and the
--            2n + 3 tokens), so no step is spent on padding. Measured
--            (H = 64, always-write arm): n = 4 with 16000 samples x 8
--            epochs learns (answer accuracy 0.42 to 1.0 by seed, GRU
--            without memory about 0.2); n = 8 stays at chance even with
--            40000 samples x 5 epochs, with H = 128, or lr 0.003-0.03
--            (the long plateau of learning to match key and query; the
--            read options of configs/recall-8.yaml end it, see --capacity)
--   default  the default stories (scripts/make_data.lua), max_samples of
--            them; "answer" accuracy is the all-token test accuracy
-- Every number is the LAST epoch's test metric (no best-epoch picking):
-- answer accuracy, perplexity, the write rate of evaluation (thresholded
-- actions; 1 for always, r for random) and of training (sampled), and the
-- run's wall time. Cells are mean ± sd (sample sd) over the seeds.
-- Written under --out: the data, each run's folder (log, metrics.jsonl,
-- checkpoints, stdout), results.json and table.md; the table is printed.
-- --set items are passed to every run after the ablation's own settings
-- (e.g. --set threads=1). --quick is a seconds-long smoke run for tests.
--
-- --capacity: the capacity-bound benchmark instead, on recall only: K = n
-- episodic slots for the 2n + 3 tokens of a sample, so writing at every
-- step evicts pairs (least recently used first) before the question, with
-- the read that solves recall when slots are enough (CAPACITY_READ below,
-- as configs/recall-8.yaml). Arms, each on the GRU without the learned
-- memory:
--   full     write at every step with K = 2n + 3 (slots to spare: the
--            reference the scarce-slot arms aim at)
--   always   write at every step, K = n (LRU eviction)
--   uniform  write at steps k, 2k, ... with k = floor((2n + 4) / n), K = n
--            (Le et al. 2019's uniform writing; 2 for n = 8: every value token)
--   rl       the REINFORCE policy, K = n, rewarded at the answers only
--            (reward_positions answers: the reads its writes serve)
--   random   Bernoulli at the rl arm's training write rate, K = n
--   gumbel   the straight-through Gumbel-sigmoid gate on the policy's
--            logits (write_actions gumbel, gumbel_tau 1), K = n: the
--            differentiable control, trained by the loss through the
--            memory instead of by REINFORCE
-- --arms a,b,... runs only those arms (random needs rl beside it).
local dm = require "drlmem"
local log, now = dm.log, dm.progress.now

local args = dm.cli.parse {
  name = "ablation.lua",
  description = "Runs the write-policy ablation (5 arms x seeds on recall and the default data) and prints "
    .. "the table.",
  options = function(p)
    p:option("--out", "Output folder (default runs/ablation)."):default("runs/ablation")
    p:option("--seeds", "Number of seeds (default 3)."):convert(math.tointeger):default("3")
    p:option("--only", "Run one data set only."):choices { "recall", "default" }
    p:option("--n", "Recall: key-value pairs per sample (default 8)."):convert(math.tointeger):default("8")
    p:option("--recall-samples", "Recall: samples in the data file (default 16000)."):convert(math.tointeger)
      :default("16000")
    p:option("--recall-epochs", "Recall: epochs (default 8)."):convert(math.tointeger):default("8")
    p:flag("--quick", "A tiny smoke run (1 epoch, few samples) for tests.")
    p:flag("--memory-arms", "Only the learned-memory arms: nomem, seed and content.")
    p:flag("--capacity", "The capacity-bound benchmark (recall, K = n slots): full, always, uniform, rl, random, "
      .. "gumbel.")
    p:option("--arms", "Run only these arms (comma-separated names, e.g. gumbel).")
  end,
}

local out = args.out
local nseeds = args.seeds
if not nseeds or nseeds < 1 then dm.cli.die("--seeds must be a positive integer") end
local quick = args.quick
local npairs, rsamples, repochs = args.n, args.recall_samples, args.recall_epochs
for _, o in ipairs { { "--n", npairs }, { "--recall-samples", rsamples }, { "--recall-epochs", repochs } } do
  if not o[2] or o[2] < 1 then dm.cli.die(o[1] .. " must be a positive integer") end
end

-- The interpreter (lowest arg index) and the scripts beside this one.
local exe_i = -1
while arg[exe_i - 1] ~= nil do exe_i = exe_i - 1 end
local EXE = arg[exe_i] or "drlmem"
local SCRIPTS = (arg[0] or ""):match("^(.*)/[^/]*$") or "scripts"

local function shq(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function run(argv, stdout_path)
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = shq(a) end
  local cmd = table.concat(parts, " ") .. " >" .. shq(stdout_path) .. " 2>&1"
  local ok, how, code = os.execute(cmd)
  return ok == true, code, cmd
end

log.mkdir_p(out)

-- Settings shared by every run: a small model that fits the CPU budget.
local COMMON = {
  "embedding_dim=32", "memory_size=64", "hidden_size=64", "num_layers=1", "dropout=0",
  "batch_size=32", "learning_rate=0.01", "patience=1000", "threads=1",
}

-- Data sets: data file, extra settings, task.
local DATASETS = {
  { name = "recall", task = "recall", epochs = quick and 1 or repochs, samples = quick and 64 or rsamples,
    sets = { "max_seq_length=" .. (2 * npairs + 4), "task=recall" } },
  { name = "default", task = nil, epochs = quick and 1 or 10, samples = quick and 32 or 600,
    sets = { "max_seq_length=100" } },
}

local ARMS = {
  { name = "nomem", label = "GRU without memory", sets = { "use_memory=false" } },
  { name = "seed", label = "seed memory", sets = {} },
  { name = "always", label = "episodic, write every step",
    sets = { "use_memory=false", "write_policy=reinforce", "write_actions=always" } },
  { name = "rl", label = "episodic, RL policy", sets = { "use_memory=false", "write_policy=reinforce" } },
  { name = "random", label = "episodic, random at RL's rate",
    sets = { "use_memory=false", "write_policy=reinforce", "write_actions=random" } },
}

-- ---- the learned memory with the content write --------------------------
-- content: the seed's learned memory, its post-step write sent to the slots
-- each token read (write_policy=content; README "The model from parts"),
-- against which the GRU alone (nomem) and the collapsing blend (seed) are
-- the references. --memory-arms runs these three only.
table.insert(ARMS, 3, { name = "content", label = "learned memory, content write",
  sets = { "write_policy=content" } })
if args.memory_arms then
  local keep = { nomem = true, seed = true, content = true }
  for i = #ARMS, 1, -1 do
    if not keep[ARMS[i].name] then table.remove(ARMS, i) end
  end
end
-- ---------------------------------------------------------------------------

-- ---- the capacity-bound benchmark (--capacity) -----------------------------
-- The episodic read that solves recall given slots (configs/recall-8.yaml).
local CAPACITY_READ = { "use_memory=false", "write_policy=reinforce", "episodic_similarity=cosine",
  "episodic_key=previous", "episodic_address=token", "loss_positions=answers" }
if args.capacity then
  if args.memory_arms then dm.cli.die("--capacity and --memory-arms are two different ablations: give one") end
  if args.only == "default" then dm.cli.die("--capacity runs on recall only") end
  local K, full = npairs, 2 * npairs + 3
  local every = math.max(1, (2 * npairs + 4) // npairs)
  local function arm(name, label, sets)
    local all = {}
    for _, kv in ipairs(CAPACITY_READ) do all[#all + 1] = kv end
    for _, kv in ipairs(sets) do all[#all + 1] = kv end
    return { name = name, label = label, sets = all }
  end
  ARMS = {
    arm("full", string.format("write every step, K = %d (slots to spare)", full),
      { "write_actions=always", "episodic_slots=" .. full }),
    arm("always", string.format("write every step, K = %d (LRU)", K), { "write_actions=always", "episodic_slots=" .. K }),
    arm("uniform", string.format("uniform, every k-th step (k = %d), K = %d", every, K),
      { "write_actions=uniform", "write_every=" .. every, "episodic_slots=" .. K }),
    arm("rl", string.format("REINFORCE policy, K = %d", K), { "episodic_slots=" .. K, "reward_positions=answers" }),
    arm("random", string.format("random at RL's rate, K = %d", K), { "write_actions=random", "episodic_slots=" .. K }),
    arm("gumbel", string.format("straight-through Gumbel-sigmoid gate, K = %d", K),
      { "write_actions=gumbel", "episodic_slots=" .. K }),
  }
  for i = #DATASETS, 1, -1 do
    if DATASETS[i].name ~= "recall" then table.remove(DATASETS, i) end
  end
end
-- ---------------------------------------------------------------------------

if args.arms then
  local want, known = {}, {}
  for name in args.arms:gmatch("[^,%s]+") do want[name] = true end
  for _, a in ipairs(ARMS) do known[a.name] = true end
  local names = {}
  for _, a in ipairs(ARMS) do names[#names + 1] = a.name end
  for name in pairs(want) do
    if not known[name] then
      dm.cli.die(string.format("--arms: no arm %s here (arms: %s)", name, table.concat(names, ", ")))
    end
  end
  if want.random and not want.rl then dm.cli.die("--arms: random writes at the rl arm's rate: give rl too") end
  for i = #ARMS, 1, -1 do
    if not want[ARMS[i].name] then table.remove(ARMS, i) end
  end
  if #ARMS == 0 then dm.cli.die("--arms: no arm given") end
end

local function make_data(ds)
  local path = log.join(out, ds.name .. ".txt")
  local argv
  if ds.name == "recall" then
    argv = { EXE, SCRIPTS .. "/make_task.lua", "--task", "recall", "--n", tostring(npairs), "--samples", tostring(ds.samples),
      "--seed", "1", "--out", path }
  else
    argv = { EXE, SCRIPTS .. "/make_data.lua", "--out", path, "--seed", "1", "--force",
      "--stories", tostring(quick and 40 or 4000) }
  end
  local ok, code, cmd = run(argv, path .. ".out")
  if not ok then dm.cli.die(string.format("making %s failed (status %s): %s", path, tostring(code), cmd)) end
  return path
end

local results = {} -- results[ds][arm] = list of per-seed records

local function one(ds, data_path, arm, seed, extra)
  local dir = log.join(out, string.format("%s/%s/seed%d", ds.name, arm.name, seed))
  log.mkdir_p(dir)
  local argv = { EXE, SCRIPTS .. "/train.lua", "--progress", "none", "--overwrite" }
  local function set(kv) argv[#argv + 1] = "--set"; argv[#argv + 1] = kv end
  set("data_path=" .. data_path)
  set("save_path=" .. log.join(dir, "models"))
  set("log_file=" .. log.join(dir, "logs/training.log"))
  set("seed=" .. seed)
  set("epochs=" .. ds.epochs)
  set("t_max=" .. ds.epochs)
  if ds.name == "default" then set("max_samples=" .. ds.samples) end
  for _, kv in ipairs(COMMON) do set(kv) end
  for _, kv in ipairs(ds.sets) do set(kv) end
  for _, kv in ipairs(arm.sets) do set(kv) end
  for _, kv in ipairs(extra or {}) do set(kv) end
  for _, kv in ipairs(args.set or {}) do set(kv) end
  local t0 = now()
  local ok, code, cmd = run(argv, log.join(dir, "stdout.txt"))
  local wall = now() - t0
  if not ok then
    dm.cli.die(string.format("%s/%s seed %d failed (status %s); see %s\n%s", ds.name, arm.name, seed,
      tostring(code), log.join(dir, "stdout.txt"), cmd))
  end
  local recs, err = log.read_metrics(log.join(dir, "logs/metrics.jsonl"))
  if not recs or #recs == 0 then dm.cli.die("no metrics for " .. dir .. ": " .. tostring(err)) end
  local r = recs[#recs]
  local function num(v) return type(v) == "number" and v or 0 / 0 end
  local rec = {
    seed = seed, wall = wall, epochs = #recs,
    answer_acc = ds.task and num(r.test_answer_acc) or num(r.test_acc),
    token_acc = num(r.test_acc), ppl = num(r.test_ppl),
    eval_write_rate = arm.name == "nomem" and 0 / 0 or (r.test_write_rate ~= nil and num(r.test_write_rate) or 0 / 0),
    train_write_rate = r.write_rate ~= nil and num(r.write_rate) or 0 / 0,
  }
  io.stdout:write(string.format("  %-7s %-7s seed %d: answer acc %.4f  ppl %.3f  writes eval %s train %s  %.1fs\n",
    ds.name, arm.name, seed, rec.answer_acc, rec.ppl,
    rec.eval_write_rate == rec.eval_write_rate and string.format("%.3f", rec.eval_write_rate) or "-",
    rec.train_write_rate == rec.train_write_rate and string.format("%.3f", rec.train_write_rate) or "-", wall))
  io.stdout:flush()
  return rec
end

local function mean_sd(xs)
  local n, s = 0, 0.0
  for _, x in ipairs(xs) do
    if x == x then n, s = n + 1, s + x end
  end
  if n == 0 then return nil end
  local m = s / n
  if n == 1 then return m, 0 / 0 end
  local v = 0.0
  for _, x in ipairs(xs) do
    if x == x then v = v + (x - m) ^ 2 end
  end
  return m, math.sqrt(v / (n - 1))
end

local function cell(xs, fmt)
  local m, sd = mean_sd(xs)
  if not m then return "–" end
  if sd ~= sd then return string.format(fmt, m) end
  return string.format(fmt .. " ± " .. fmt, m, sd)
end

local t_all = now()
for _, ds in ipairs(DATASETS) do
  if not args.only or args.only == ds.name then
    local path = make_data(ds)
    io.stdout:write(string.format("%s: %s, %d epochs\n", ds.name, path, ds.epochs))
    results[ds.name] = {}
    for _, arm in ipairs(ARMS) do results[ds.name][arm.name] = {} end
    for seed = 1, nseeds do
      local rl_rate
      for _, arm in ipairs(ARMS) do
        local extra
        if arm.name == "random" then
          -- the RL arm's last training write rate; NaN (no valid batch) falls back to 0
          extra = { "random_write_rate=" .. string.format("%.6f", rl_rate == rl_rate and rl_rate or 0) }
        end
        local rec = one(ds, path, arm, seed, extra)
        if arm.name == "rl" then rl_rate = rec.train_write_rate end
        table.insert(results[ds.name][arm.name], rec)
      end
    end
  end
end

-- The table (markdown), one block per data set.
local lines = {}
local function L(s) lines[#lines + 1] = s end
for _, ds in ipairs(DATASETS) do
  local R = results[ds.name]
  if R then
    L(string.format("%s (%d seeds, %d epochs; last-epoch test metrics)", ds.name == "recall"
      and string.format("Associative recall, n = %d, %d samples", npairs, ds.samples) or string.format("Default data, %d samples", ds.samples), nseeds, ds.epochs))
    L("")
    L(string.format("| arm | %s | perplexity | write rate (eval) | write rate (train) | wall time (s) |",
      ds.task and "answer accuracy" or "token accuracy"))
    L("|---|---|---|---|---|---|")
    for _, arm in ipairs(ARMS) do
      local rs = R[arm.name]
      local function col(k)
        local xs = {}
        for i, r in ipairs(rs) do xs[i] = r[k] end
        return xs
      end
      L(string.format("| %s | %s | %s | %s | %s | %s |", arm.label, cell(col("answer_acc"), "%.3f"),
        cell(col("ppl"), "%.2f"), cell(col("eval_write_rate"), "%.3f"), cell(col("train_write_rate"), "%.3f"),
        cell(col("wall"), "%.1f")))
    end
    L("")
  end
end
L(string.format("total wall time %.1f s", now() - t_all))
local text = table.concat(lines, "\n") .. "\n"
io.stdout:write("\n", text)

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
write_file(log.join(out, "table.md"), text)
-- results.json: every per-seed record (NaN as null)
local js = {}
for ds, arms in pairs(results) do
  js[ds] = {}
  for arm, rs in pairs(arms) do
    local list = {}
    for i, r in ipairs(rs) do list[i] = log.record(r) end
    js[ds][arm] = dm.json.array(list)
  end
end
write_file(log.join(out, "results.json"), dm.json.encode(js) .. "\n")
