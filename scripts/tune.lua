-- tune.lua: hyperparameter search by successive halving over scripts/train.lua.
--
--   drlmem scripts/tune.lua --space SPACE.yaml [--config BASE.yaml] [--set key=value ...]
--                           [--out DIR] [--trials N] [--seed N] [--sampler random|halton]
--                           [--min-epochs R] [--eta ETA] [--max-epochs R_MAX] [--time-budget 20m]
--
-- Each trial is the base config (--config and --set, as for train.lua) with
-- values drawn from the space (see configs/tune-example.yaml); each job
-- trains it with scripts/train.lua in a child process, one at a time, for
-- the epochs of its rung (R, R*ETA, ... up to R_MAX). A trial promoted to
-- the next rung continues from its own last.safetensors (`--resume ...
-- --set epochs=NEXT`, which train.lua allows), so it is not trained again
-- from the start. The validation loss of a job is the best of its epochs
-- in the trial's metrics.jsonl. A job that fails (a bad combination, a NaN
-- loss, a crash) is a failed trial with its one-line error; the search goes
-- on (the exit status is 1 only when no trial succeeded). Written under
-- --out (default runs/tune-NAME for NAME.yaml or tune-NAME.yaml): results.jsonl (a line
-- per job), table.md (printed too), best.yaml (a full config for
-- train.lua), tune.svg, state.json, search.json (what makes the search the
-- same one) and trial-N/ (the trial's checkpoints, log, metrics, stdout).
-- Running the same command again continues the search in --out: finished
-- jobs are skipped, and an interrupted one resumes from its checkpoint.
-- Ctrl-C stops the running child (it saves its checkpoint), writes the
-- reports and prints the command that continues (exit status 130). The
-- time budget counts the whole search across runs; once spent, no new job
-- starts and the reports hold what finished. The logic is in
-- lua/drlmem/tune.lua.
local dm = require "drlmem"
local tune, log, loop, now = dm.tune, dm.log, dm.loop, dm.progress.now

local args, cfg = dm.cli.parse {
  name = "tune.lua",
  description = "Searches hyperparameters of train.lua by successive halving; writes results.jsonl, "
    .. "table.md, best.yaml and tune.svg under --out.",
  epilog = "The base config is --config with the --set items; the space file lists config keys, each a list "
    .. "of values or {range: [low, high], scale: linear|log}. Run the same command again to continue a "
    .. "stopped search.",
  options = function(p)
    p:option("--space", "Search space (YAML): config keys and their values or ranges."):argname("<path>")
      :count(1)
    p:option("--out", "Output folder (default runs/tune-<space name>)."):argname("<dir>")
    p:option("--trials", "Trials to start (default 20)."):convert(math.tointeger):default("20")
    p:option("--seed", "Seed of the sampler (default 1; train.lua's own seed is the config's)."):convert(math.tointeger)
      :default("1")
    p:option("--sampler", "random (default) or halton (scrambled, more even)."):choices { "random", "halton" }
      :default("random")
    p:option("--min-epochs", "Budget of the first rung in epochs (default 1)."):convert(math.tointeger):default("1")
    p:option("--eta", "Each rung keeps the best 1/eta; budgets grow by eta (default 3)."):convert(math.tointeger)
      :default("3")
    p:option("--max-epochs", "Largest budget (default 9)."):convert(math.tointeger):default("9")
    p:option("--time-budget", "Wall time of the whole search (e.g. 300, 90s, 20m, 2h); no job starts after it.")
      :argname("<time>")
  end,
}

for _, o in ipairs { { "--trials", args.trials, 1 }, { "--seed", args.seed, 0 } } do
  if not o[2] or o[2] < o[3] then dm.cli.die(string.format("%s: expected an integer >= %d", o[1], o[3])) end
end
local function try(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then dm.cli.die(r[2]) end
  return table.unpack(r, 2, r.n)
end
local rungs = try(tune.rungs, args.min_epochs, args.max_epochs, args.eta)
local space = try(tune.load_space, args.space)
local time_budget
if args.time_budget then
  local n, unit = args.time_budget:match("^%s*([%d%.]+)%s*([smh]?)%s*$")
  n = tonumber(n)
  if not n or n <= 0 then
    dm.cli.die("--time-budget: expected a positive time such as 300, 90s, 20m or 2h, got '" .. args.time_budget .. "'")
  end
  time_budget = n * ({ [""] = 1, s = 1, m = 60, h = 3600 })[unit]
end
-- (configs/tune-example.yaml: runs/tune-example)
local out = args.out or ("runs/tune-" .. (args.space:match("([^/]+)$"):gsub("%.ya?ml$", ""):gsub("^tune%-", "")))
try(log.mkdir_p, out)

-- The interpreter with its own options (-l MODULE) and the scripts beside this one.
local exe_i = -1
while arg[exe_i - 1] ~= nil do exe_i = exe_i - 1 end
local EXE = {}
for i = exe_i, -1 do EXE[#EXE + 1] = arg[i] end
if #EXE == 0 then EXE[1] = "drlmem" end
local SCRIPTS = (arg[0] or ""):match("^(.*)/[^/]*$") or "scripts"

local function exists(path) return require("lfs").attributes(path) ~= nil end

local function shq(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return log.shell_quote(s)
end

-- This run's command line, to print when it stops early.
local function this_command()
  local parts = {}
  for _, a in ipairs(EXE) do parts[#parts + 1] = shq(a) end
  parts[#parts + 1] = shq(arg[0] or "scripts/tune.lua")
  for i = 1, #arg do parts[#parts + 1] = shq(arg[i]) end
  return table.concat(parts, " ")
end

---------------------------------------------------------------------------
-- The same search, or another one?
---------------------------------------------------------------------------
local base = dm.config.totable(cfg)
for k in pairs(tune.RESERVED) do base[k] = nil end
local space_json = {}
for i, d in ipairs(space) do
  local values
  if d.values then
    values = {}
    for j, v in ipairs(d.values) do values[j] = v == dm.yaml.null and dm.json.null or v end
    values = dm.json.array(values)
  end
  space_json[i] = { key = d.key, values = values, low = d.low, high = d.high, scale = d.scale, int = d.int }
end
local identity = { space = dm.json.array(space_json), seed = args.seed, sampler = args.sampler, eta = args.eta,
  rungs = dm.json.array(rungs), base = base }
local identity_text = dm.json.encode(identity) .. "\n"
local search_path, results_path = log.join(out, "search.json"), log.join(out, "results.jsonl")
local state_path = log.join(out, "state.json")
local old = io.open(search_path, "r")
local records, elapsed = {}, 0
if old then
  local text = old:read("a")
  old:close()
  if text ~= identity_text then
    local ok, prev = pcall(dm.json.decode, text, search_path)
    local diff = {}
    for _, k in ipairs { "space", "seed", "sampler", "eta", "rungs", "base" } do
      if not ok or type(prev) ~= "table" or dm.json.encode(prev[k] == nil and dm.json.null or prev[k])
          ~= dm.json.encode(identity[k]) then
        diff[#diff + 1] = k == "base" and "base config" or k
      end
    end
    if #diff == 0 then diff[1] = "its settings" end
    dm.cli.die(string.format("%s holds another search (it differs in: %s); give another --out, or remove "
      .. "that folder to start afresh", out, table.concat(diff, ", ")))
  end
  records = try(tune.read_records, results_path, space)
  local sf = io.open(state_path, "r")
  if sf then
    local ok, st = pcall(dm.json.decode, sf:read("a"), state_path)
    sf:close()
    if ok and type(st) == "table" and type(st.elapsed) == "number" then elapsed = st.elapsed end
  end
  io.stdout:write(string.format("continuing the search in %s: %d jobs done, %.0f s spent\n", out, #records, elapsed))
else
  if exists(results_path) then
    dm.cli.die(string.format("%s holds results.jsonl but no search.json, so it cannot tell which search they "
      .. "belong to; give another --out, or remove that folder to start afresh", out))
  end
  try(log.write_file, search_path, identity_text)
end
local rung_text = {}
for i, b in ipairs(rungs) do rung_text[i] = tostring(b) end
io.stdout:write(string.format("search: %d trials over %s, rungs of %s epochs (eta %d), sampler %s, seed %d%s\n",
  args.trials, args.space, table.concat(rung_text, ", "), args.eta, args.sampler, args.seed,
  time_budget and string.format(", time budget %.0f s", time_budget) or ""))
io.stdout:flush()

---------------------------------------------------------------------------
-- One job: a child train.lua
---------------------------------------------------------------------------
-- The line of a child's output that says why it failed.
local function failure_line(text)
  local stopped = text:match("stopped: [^\n]*")
  if stopped then return stopped end
  local last_err, last
  for line in text:gmatch("[^\n]+") do
    last = line
    if line:find("[Ee]rror") then last_err = line end
  end
  return last_err or last or "no output"
end

local function run_job(job)
  local dir = log.join(out, "trial-" .. job.trial)
  log.mkdir_p(dir)
  local log_file, ckpt = log.join(dir, "training.log"), log.join(dir, "last.safetensors")
  local sets = {}
  for _, s in ipairs(args.set or {}) do sets[#sets + 1] = s end
  for _, s in ipairs(job.sets) do sets[#sets + 1] = s end
  sets[#sets + 1] = "epochs=" .. job.budget
  sets[#sets + 1] = "save_path=" .. dir .. "/"
  sets[#sets + 1] = "log_file=" .. log_file
  -- A combination the schema refuses (e.g. ratios) fails here, without a child.
  local valid, err = pcall(dm.config.load, args.config, sets)
  if not valid then return { status = "failed", error = tostring(err), seconds = 0 } end
  local argv = {}
  for _, a in ipairs(EXE) do argv[#argv + 1] = a end
  argv[#argv + 1] = SCRIPTS .. "/train.lua"
  argv[#argv + 1], argv[#argv + 2] = "--progress", "none"
  if args.config then argv[#argv + 1], argv[#argv + 2] = "--config", args.config end
  for _, s in ipairs(sets) do argv[#argv + 1], argv[#argv + 2] = "--set", s end
  -- a promoted trial, or one stopped by Ctrl-C, goes on from its checkpoint
  -- (else the trial starts over in its own folder: --overwrite)
  if exists(ckpt) then argv[#argv + 1], argv[#argv + 2] = "--resume", ckpt else argv[#argv + 1] = "--overwrite" end
  local stdout_path = log.join(dir, "stdout.txt")
  local before = 0
  local f = io.open(stdout_path, "r")
  if f then before = f:seek("end"); f:close() end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = shq(a) end
  local cmd = table.concat(parts, " ") .. " >>" .. shq(stdout_path) .. " 2>&1"
  local t0 = now()
  local _, how, code = os.execute(cmd)
  local seconds = now() - t0
  f = io.open(stdout_path, "r")
  local text = ""
  if f then f:seek("set", before); text = f:read("a") or ""; f:close() end
  if (how == "exit" and code == 130) or (how == "signal" and code == 2) or text:find("interrupted!", 1, true) then
    return { status = "interrupted", seconds = seconds }
  end
  if not (how == "exit" and code == 0) then
    return { status = "failed", seconds = seconds,
      error = string.format("train.lua %s %s: %s", how == "signal" and "killed by signal" or "exit status",
        tostring(code), failure_line(text)) }
  end
  local recs, rerr = log.read_metrics(log.metrics_path(log_file))
  if not recs or #recs == 0 then
    return { status = "failed", seconds = seconds, error = "no metrics: " .. tostring(rerr) }
  end
  local best
  for _, r in ipairs(recs) do
    local v = r.val_loss
    if type(v) == "number" and v == v and v < math.huge and (not best or v < best) then best = v end
  end
  if not best then return { status = "failed", seconds = seconds, error = "no finite validation loss" } end
  return { status = "ok", val_loss = best, seconds = seconds }
end

---------------------------------------------------------------------------
-- The search
---------------------------------------------------------------------------
local function describe_values(values)
  local parts = {}
  for _, d in ipairs(space) do parts[#parts + 1] = d.key .. "=" .. tune.value_text(values[d.key]) end
  return table.concat(parts, " ")
end

local function epochs_text(n) return n == 1 and "1 epoch" or (n .. " epochs") end

local function on_record(rec)
  local f = assert(io.open(results_path, "a"))
  f:write(tune.record_json(rec, space), "\n")
  f:close()
  io.stdout:write(string.format("trial %d rung %d/%d (%s): %s  %.1fs  %s\n", rec.trial, rec.rung, #rungs,
    epochs_text(rec.budget), rec.status == "ok" and string.format("val loss %.4f", rec.val_loss) or ("failed: " .. rec.error),
    rec.seconds, describe_values(rec.values)))
  io.stdout:flush()
end

local why, stopped_job, session_t0 = nil, nil, now()
local status = loop.guard(function()
  local _
  _, why, stopped_job = tune.search {
    space = space, seed = args.seed, sampler = args.sampler, trials = args.trials, rungs = rungs, eta = args.eta,
    time_budget = time_budget, elapsed = elapsed, records = records, now = now,
    run = function(job)
      io.stdout:write(string.format("trial %d rung %d/%d (%s) ...\n", job.trial, job.rung, #rungs,
        epochs_text(job.budget)))
      io.stdout:flush()
      return run_job(job)
    end,
    on_record = function(rec)
      on_record(rec)
      log.write_file(state_path, dm.json.encode { elapsed = elapsed + now() - session_t0, status = "running" } .. "\n")
    end,
  }
end)
if status == "interrupted" then why = "interrupted" end
elapsed = elapsed + now() - session_t0

-- The reports, whatever stopped the search.
local text = tune.table(records, space)
log.write_file(log.join(out, "table.md"), text)
local best = tune.best(records)
if best then
  local header = {
    string.format("best.yaml: the best trial of the search in %s (%s)", out, args.space),
    string.format("trial %d: validation loss %.6f after %s (rung %d of %d)", best.trial, best.val_loss,
      epochs_text(best.budget), best.rung, #rungs),
    "the base config (" .. (args.config or "the defaults") .. (#(args.set or {}) > 0 and (", --set " .. table.concat(args.set, " --set ")) or "")
      .. ") with the tuned keys marked; epochs, save_path and log_file are the base config's",
  }
  log.write_file(log.join(out, "best.yaml"), tune.config_yaml(cfg, best.values, header))
end
tune.figure(records, log.join(out, "tune.svg"), { title = "validation loss by budget: " .. args.space })
log.write_file(state_path, dm.json.encode { elapsed = elapsed, status = why } .. "\n")

io.stdout:write("\n", text)
if best then
  io.stdout:write(string.format("\nbest: trial %d, val loss %.4f after %s: %s\nwrote %s\n", best.trial,
    best.val_loss, epochs_text(best.budget), describe_values(best.values), log.join(out, "best.yaml")))
end
io.stdout:write(string.format("results %s, table %s, figure %s\n", results_path, log.join(out, "table.md"),
  log.join(out, "tune.svg")))
if why == "time budget" then
  io.stdout:write(string.format("the time budget (%.0f s) is spent after %.0f s; the table holds what finished\n",
    time_budget, elapsed))
elseif why == "interrupted" then
  io.stderr:write(string.format("interrupted%s; continue with: %s\n", stopped_job and string.format(
    " during trial %d (rung %d), which keeps its checkpoint", stopped_job.trial, stopped_job.rung) or "",
    this_command()))
  os.exit(130)
end
if not best and #records > 0 then
  dm.cli.die(string.format("no trial succeeded (%d jobs failed); the table says why", #records))
end
