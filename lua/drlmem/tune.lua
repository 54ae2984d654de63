-- tune.lua: hyperparameter search by successive halving (scripts/tune.lua).
--
-- A search space is a YAML file of config keys, each a list of values or a
-- range (`lr: {range: [0.001, 0.03], scale: log}`), checked against the
-- config schema (dm.config) with errors naming the file, line and key.
-- Trials draw their values from a seeded sampler (plain random or a
-- scrambled Halton sequence), so trial N has the same values whatever ran
-- before it. Budgets are epochs on rungs r, r*eta, r*eta^2, ...; the
-- scheduler is ASHA's rule run one job at a time: promote a trial of rung
-- k to rung k+1 when it is among the best 1/eta of the jobs finished at
-- rung k, else start a new trial. Which job comes next is a function of
-- the finished jobs only, so a search replayed from its results.jsonl
-- continues exactly where it stopped. tune.search runs the loop over a
-- runner (scripts/tune.lua's runs scripts/train.lua in a child process;
-- the specs use a function), records one JSON line per job, and stops at
-- the end, at the time budget or when a job reports an interrupt.
-- Also here: the results table, best.yaml (a full config train.lua
-- accepts) and the figure.
local dm = require "drlmem"

local tune = {}

-- Keys the search itself sets for every trial.
tune.RESERVED = {
  epochs = "the search sets it from the rung budgets (--min-epochs, --eta, --max-epochs)",
  save_path = "the search sets it to the trial's folder",
  log_file = "the search sets it to the trial's folder",
}

---------------------------------------------------------------------------
-- The search space
---------------------------------------------------------------------------
local FORMS = "a list of values, or {range: [low, high], scale: linear|log}"

local function is_list(v) return type(v) == "table" and (v[1] ~= nil or next(v) == nil) end

--- Parses a space from a YAML document (as dm.yaml.load returns it: doc and
-- the line of each key). Returns a list of dimensions in file order:
-- {key=, line=, values = {...}} or {key=, line=, low=, high=, scale =
-- "linear"|"log", int = true|false}. Raises "FILE:LINE: key 'k': ..." for
-- an unknown key, a key the search sets, or a value of the wrong form or
-- type for the schema.
function tune.parse_space(doc, lines, name)
  name = name or "<space>"
  lines = lines or {}
  if doc == nil then error(string.format("%s:1: the search space is empty: give one key per line, each %s", name, FORMS), 0) end
  if type(doc) ~= "table" or doc == dm.yaml.null or is_list(doc) then
    error(string.format("%s:1: expected a mapping of config key: values at the top level, got %s", name,
      dm.config.repr(doc)), 0)
  end
  local keys = {}
  for k in pairs(doc) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return (lines[a] or 0) < (lines[b] or 0) end)
  local dims = {}
  for _, key in ipairs(keys) do
    local line = lines[key] or 0
    local where = string.format("%s:%d", name, line)
    local v = doc[key]
    local spec = dm.config.fields[key]
    if not spec then dm.config.check(key, nil, where) end -- raises: unknown key, did you mean
    if tune.RESERVED[key] then error(string.format("%s: key '%s': %s", where, key, tune.RESERVED[key]), 0) end
    local function bad(fmt, ...)
      error(string.format("%s: key '%s': " .. fmt, where, key, ...), 0)
    end
    if is_list(v) then
      if #v == 0 then bad("the list of values is empty") end
      local values, seen = {}, {}
      for i, x in ipairs(v) do
        local val = dm.config.check(key, x, where)
        local text = dm.json.encode(val == nil and dm.json.null or val)
        if seen[text] then bad("value %s appears twice in the list", dm.config.repr(x)) end
        seen[text] = true
        values[i] = val == nil and dm.yaml.null or val
      end
      dims[#dims + 1] = { key = key, line = line, values = values }
    elseif type(v) == "table" and v ~= dm.yaml.null then
      for f in pairs(v) do
        if f ~= "range" and f ~= "scale" then
          error(string.format("%s:%d: key '%s': unknown field '%s' (a range has range: [low, high] and "
            .. "scale: linear|log)", name, lines[key .. "." .. f] or line, key, tostring(f)), 0)
        end
      end
      local r = v.range
      local rwhere = string.format("%s:%d", name, lines[key .. ".range"] or line)
      if spec.kind ~= "int" and spec.kind ~= "number" then
        error(string.format("%s: key '%s': a range needs a numeric key, this one is %s: give a list of values",
          rwhere, key, spec.expected), 0)
      end
      if not is_list(r) or #r ~= 2 then
        error(string.format("%s: key '%s': range: expected [low, high], got %s", rwhere, key,
          r == nil and "nothing" or dm.config.repr(r)), 0)
      end
      local lo, hi = dm.config.check(key, r[1], rwhere), dm.config.check(key, r[2], rwhere)
      if not (lo < hi) then
        error(string.format("%s: key '%s': range: low %s must be below high %s", rwhere, key,
          dm.config.repr(r[1]), dm.config.repr(r[2])), 0)
      end
      local scale = v.scale
      if scale == nil then scale = "linear" end
      if scale ~= "linear" and scale ~= "log" then
        error(string.format("%s:%d: key '%s': scale: expected linear or log, got %s", name,
          lines[key .. ".scale"] or line, key, dm.config.repr(scale)), 0)
      end
      if scale == "log" and lo <= 0 then
        error(string.format("%s: key '%s': a log range needs low > 0, got %s", rwhere, key, dm.config.repr(r[1])), 0)
      end
      dims[#dims + 1] = { key = key, line = line, low = lo, high = hi, scale = scale, int = spec.kind == "int" }
    else
      bad("expected %s, got %s", FORMS, dm.config.repr(v))
    end
  end
  if #dims == 0 then error(string.format("%s:1: the search space is empty: give one key per line, each %s", name, FORMS), 0) end
  return dims
end

--- Reads and parses a space file (see parse_space).
function tune.load_space(path)
  local doc, lines = dm.yaml.load(path)
  return tune.parse_space(doc, lines, path)
end

---------------------------------------------------------------------------
-- Sampling
---------------------------------------------------------------------------

-- SplitMix64: a tiny seeded generator with no global state, so a trial's
-- values depend on (seed, trial) only. Lua 5.4 integers wrap at 2^64.
local function splitmix(state)
  return function()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) * (1.0 / 9007199254740992.0) -- [0, 1), 53 bits
  end
end

--- A seeded stream of uniforms in [0, 1) for a (seed, stream) pair.
function tune.uniforms(seed, stream)
  local mix = splitmix(seed * 0x100000001B3 + stream)
  mix() -- (decorrelate neighbouring seeds)
  return mix
end

local PRIMES = { 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97 }

--- The i-th point (i >= 0) of a Halton sequence in dims dimensions, each
-- dimension's digits scrambled by a seeded permutation that keeps 0 (so the
-- trailing zero digits stay zero), then shifted by a seeded amount modulo
-- 1 (base 2 has no digit to permute). The first p^k points still fall one
-- in each of the p^k strata of a base-p dimension: spread more evenly than
-- random points.
function tune.halton(i, dims, seed)
  if dims > #PRIMES then error(string.format("halton: at most %d dimensions, got %d", #PRIMES, dims), 0) end
  local u = {}
  for d = 1, dims do
    local p = PRIMES[d]
    local rnd = tune.uniforms(seed, -d) -- the same permutation for every point
    local perm = { [0] = 0 }
    for k = 1, p - 1 do perm[k] = k end
    for k = p - 1, 2, -1 do -- Fisher-Yates over 1..p-1
      local j = 1 + math.floor(rnd() * k)
      perm[k], perm[j] = perm[j], perm[k]
    end
    local shift = rnd()
    local x, f, n = 0.0, 1.0 / p, i
    while n > 0 do
      x = x + perm[n % p] * f
      n, f = n // p, f / p
    end
    x = x + shift
    u[d] = x >= 1 and x - 1 or x
  end
  return u
end

-- 6 significant digits: exact as text (the --set value is the recorded one).
local function round6(x) return tonumber(string.format("%.6g", x)) + 0.0 end

--- The value of dimension dim for a uniform u in [0, 1).
function tune.value(dim, u)
  if dim.values then return dim.values[math.min(#dim.values, 1 + math.floor(u * #dim.values))] end
  local lo, hi = dim.low, dim.high
  if dim.int then
    if dim.scale == "log" then -- (lo >= 1: each integer gets the log-width of [n - 0.5, n + 0.5))
      local a, b = math.log(lo - 0.5), math.log(hi + 0.5)
      return math.max(lo, math.min(hi, math.floor(math.exp(a + u * (b - a)) + 0.5)))
    end
    return math.min(hi, lo + math.floor(u * (hi - lo + 1)))
  end
  local x
  if dim.scale == "log" then
    x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
  else
    x = lo + u * (hi - lo)
  end
  return math.max(lo, math.min(hi, round6(x)))
end

tune.SAMPLERS = { random = true, halton = true }

--- The values of trial i (1-based) as a map key -> value.
function tune.sample(space, i, seed, sampler)
  local u
  if sampler == "halton" then
    u = tune.halton(i, #space, seed)
  elseif sampler == "random" then
    local rnd = tune.uniforms(seed, i)
    u = {}
    for d = 1, #space do u[d] = rnd() end
  else
    error("sample: unknown sampler '" .. tostring(sampler) .. "' (random or halton)", 0)
  end
  local values = {}
  for d, dim in ipairs(space) do values[dim.key] = tune.value(dim, u[d]) end
  return values
end

--- A value as --set and YAML text (floats exactly, with a point).
function tune.value_text(v)
  if v == dm.yaml.null or v == dm.json.null or v == nil then return "null" end
  if math.type(v) == "float" then
    if v == math.huge then return ".inf" end
    local s = string.format("%.17g", v)
    for p = 6, 17 do -- the shortest text that reads back the same
      local t = string.format("%." .. p .. "g", v)
      if tonumber(t) == v then s = t; break end
    end
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

--- The --set items of a values map, in the space's order.
function tune.sets(space, values)
  local out = {}
  for _, dim in ipairs(space) do out[#out + 1] = dim.key .. "=" .. tune.value_text(values[dim.key]) end
  return out
end

---------------------------------------------------------------------------
-- Successive halving
---------------------------------------------------------------------------

--- The rung budgets: min_epochs * eta^k up to max_epochs.
function tune.rungs(min_epochs, max_epochs, eta)
  for _, o in ipairs { { "--min-epochs", min_epochs, 1 }, { "--max-epochs", max_epochs, 1 }, { "--eta", eta, 2 } } do
    if math.type(o[2]) ~= "integer" or o[2] < o[3] then
      error(string.format("%s: expected an integer >= %d, got %s", o[1], o[3], tostring(o[2])), 0)
    end
  end
  if max_epochs < min_epochs then
    error(string.format("--max-epochs %d is below --min-epochs %d", max_epochs, min_epochs), 0)
  end
  local r, b = {}, min_epochs
  while b <= max_epochs do
    r[#r + 1] = b
    b = b * eta
  end
  return r
end

-- Orders the finished records of a rung: successes by loss (then trial),
-- failures last.
local function ranked(list)
  local out = {}
  for _, r in ipairs(list) do out[#out + 1] = r end
  table.sort(out, function(a, b)
    local la = a.status == "ok" and a.val_loss or math.huge
    local lb = b.status == "ok" and b.val_loss or math.huge
    if la ~= lb then return la < lb end
    return a.trial < b.trial
  end)
  return out
end

--- The next job after the finished records, or nil when the search is
-- done: {trial=, rung= (1-based), budget=}. ASHA's rule, one job at a time:
-- from the top rung down, promote the best trial of rung k not yet at
-- rung k+1 if it is among the best floor(n_k / eta) of the n_k jobs done at
-- rung k (failed jobs count in n_k but are never promoted); otherwise
-- start trial (started + 1) while fewer than n_trials started.
function tune.next_job(records, opts)
  local rungs, eta, n_trials = opts.rungs, opts.eta, opts.trials
  local by_rung, at, started = {}, {}, 0
  for k = 1, #rungs do by_rung[k], at[k] = {}, {} end
  for _, r in ipairs(records) do
    table.insert(by_rung[r.rung], r)
    at[r.rung][r.trial] = true
    if r.rung == 1 then started = math.max(started, r.trial) end
  end
  for k = #rungs - 1, 1, -1 do
    local list = ranked(by_rung[k])
    for i = 1, #list // eta do
      local r = list[i]
      if r.status == "ok" and not at[k + 1][r.trial] then
        return { trial = r.trial, rung = k + 1, budget = rungs[k + 1] }
      end
    end
  end
  if started < n_trials then return { trial = started + 1, rung = 1, budget = rungs[1] } end
  return nil
end

--- Runs (or continues) a search. opts: space, seed, sampler, trials,
-- rungs, eta, time_budget (seconds, or nil), elapsed (seconds spent by
-- earlier sessions), records (finished jobs of earlier sessions), now (a
-- clock), and the callbacks
--   run(job) -> {status = "ok"|"failed"|"interrupted", val_loss=, seconds=, error=}
--     (job: trial, rung, budget, values, sets)
--   on_record(record)   after each finished job (write it down)
-- Returns records, why ("done" | "time budget" | "interrupted"), the job
-- that was interrupted (or nil), and the elapsed time. Run under
-- loop.guard, it yields after each record (loop.safe_point).
function tune.search(opts)
  local records = opts.records or {}
  local now = opts.now or os.time
  local t0, spent0 = now(), opts.elapsed or 0
  local function elapsed() return spent0 + (now() - t0) end
  while true do
    local job = tune.next_job(records, opts)
    if not job then return records, "done", nil, elapsed() end
    if opts.time_budget and elapsed() >= opts.time_budget then return records, "time budget", nil, elapsed() end
    job.values = tune.sample(opts.space, job.trial, opts.seed, opts.sampler)
    job.sets = tune.sets(opts.space, job.values)
    local res = opts.run(job)
    if res.status == "interrupted" then return records, "interrupted", job, elapsed() end
    local rec = {
      trial = job.trial, rung = job.rung, budget = job.budget, values = job.values, status = res.status,
      val_loss = res.status == "ok" and res.val_loss or nil,
      -- milliseconds: dm.json writes all reals of a line with the digits the
      -- longest needs, so a time of 17 digits would change how the rest reads
      seconds = tonumber(string.format("%.3f", res.seconds or 0)) + 0.0,
      error = res.status ~= "ok" and (res.error or "failed") or nil,
    }
    records[#records + 1] = rec
    if opts.on_record then opts.on_record(rec) end
    -- under loop.guard, a Ctrl-C that came between two jobs lands here,
    -- once the record is written
    dm.loop.safe_point()
  end
end

---------------------------------------------------------------------------
-- Records and reports
---------------------------------------------------------------------------

--- A record as one JSON line (null for a missing loss or error).
function tune.record_json(rec, space)
  local values = {}
  for _, dim in ipairs(space) do
    local v = rec.values[dim.key]
    values[dim.key] = (v == nil or v == dm.yaml.null) and dm.json.null or v
  end
  return dm.json.encode {
    trial = rec.trial, rung = rec.rung, budget = rec.budget, values = values, status = rec.status,
    val_loss = rec.val_loss or dm.json.null, seconds = rec.seconds, error = rec.error or dm.json.null,
  }
end

--- Reads results.jsonl: the list of records, or raises naming the file and
-- line that does not parse. A missing file is an empty list.
function tune.read_records(path, space)
  local f = io.open(path, "r")
  if not f then return {} end
  local out, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:find("%S") then
      local ok, r = pcall(dm.json.decode, line, path .. ":" .. n)
      if not ok or type(r) ~= "table" or math.type(r.trial) ~= "integer" or math.type(r.rung) ~= "integer" then
        f:close()
        error(string.format("%s:%d: not a record of this search (%s); move the folder away to start afresh",
          path, n, ok and "fields missing" or tostring(r)), 0)
      end
      if r.val_loss == dm.json.null then r.val_loss = nil end
      if r.error == dm.json.null then r.error = nil end
      for _, dim in ipairs(space or {}) do
        if r.values[dim.key] == dm.json.null then r.values[dim.key] = dm.yaml.null end
        -- a number key's float that JSON wrote without a point reads back as an integer
        if dim.low and not dim.int and math.type(r.values[dim.key]) == "integer" then
          r.values[dim.key] = r.values[dim.key] + 0.0
        end
        if dim.values and math.type(r.values[dim.key]) == "integer" and math.type(dim.values[1]) == "float" then
          r.values[dim.key] = r.values[dim.key] + 0.0
        end
      end
      out[#out + 1] = r
    end
  end
  f:close()
  return out
end

--- One row per trial, best first: the highest rung reached, then the loss
-- there. Each row: trial, values, rung, budget, val_loss (at that rung),
-- status, seconds (all its jobs), error.
function tune.summary(records)
  local rows, by = {}, {}
  for _, r in ipairs(records) do
    local row = by[r.trial]
    if not row then
      row = { trial = r.trial, values = r.values, seconds = 0 }
      by[r.trial] = row
      rows[#rows + 1] = row
    end
    row.seconds = row.seconds + (r.seconds or 0)
    if not row.rung or r.rung > row.rung then
      row.rung, row.budget, row.val_loss, row.status, row.error = r.rung, r.budget, r.val_loss, r.status, r.error
    end
  end
  table.sort(rows, function(a, b)
    local oka, okb = a.status == "ok", b.status == "ok"
    if oka ~= okb then return oka end
    if a.rung ~= b.rung then return a.rung > b.rung end
    local la, lb = a.val_loss or math.huge, b.val_loss or math.huge
    if la ~= lb then return la < lb end
    return a.trial < b.trial
  end)
  return rows
end

--- The best trial's row (tune.summary's first successful one), or nil.
function tune.best(records)
  local row = tune.summary(records)[1]
  if row and row.status == "ok" then return row end
  return nil
end

--- The results table as markdown: trial, epochs, val loss, time, status,
-- then one column per key of the space.
function tune.table(records, space)
  local head = { "trial", "epochs", "val loss", "time (s)", "status" }
  for _, dim in ipairs(space) do head[#head + 1] = dim.key end
  local lines = { "| " .. table.concat(head, " | ") .. " |" }
  local sep = {}
  for i = 1, #head do sep[i] = i <= 4 and "---:" or "---" end
  lines[2] = "|" .. table.concat(sep, "|") .. "|"
  for _, row in ipairs(tune.summary(records)) do
    local cells = { tostring(row.trial), tostring(row.budget),
      row.val_loss and string.format("%.4f", row.val_loss) or "–", string.format("%.1f", row.seconds),
      row.status == "ok" and "ok" or ("failed: " .. tostring(row.error):gsub("|", "/")) }
    for _, dim in ipairs(space) do cells[#cells + 1] = tune.value_text(row.values[dim.key]) end
    lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  return table.concat(lines, "\n") .. "\n"
end

-- A string as a double-quoted YAML scalar.
local function yaml_string(s)
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("\n", "\\n"):gsub("\t", "\\t") .. '"'
end

--- The text of a full config file: every key of the schema in declaration
-- order, from cfg (a loaded config) with values (a map) on top. Keys the
-- loader derived (memory_embedding_dim from embedding_dim) are written as
-- null, so that they follow a tuned key again. header: comment lines.
function tune.config_yaml(cfg, values, header)
  local lines = {}
  for _, h in ipairs(header or {}) do lines[#lines + 1] = "# " .. h end
  for _, k in ipairs(dm.config.order) do
    local v = values[k]
    local tuned = v ~= nil
    if not tuned then
      v = rawget(cfg, k)
      if dm.config.source(cfg, k):find("^derived") then v = nil end
    end
    local text
    if v == nil or v == dm.yaml.null then
      text = "null"
    elseif type(v) == "string" then
      text = yaml_string(v)
    else
      text = tune.value_text(v)
    end
    lines[#lines + 1] = string.format("%s: %s%s", k, text, tuned and "    # tuned" or "")
  end
  return table.concat(lines, "\n") .. "\n"
end

--- The figure: validation loss by epochs (the rung budgets), one line per
-- trial; the five best are named, the others drawn grey. Returns the SVG.
function tune.figure(records, path, opts)
  opts = opts or {}
  local rows = tune.summary(records)
  local per = {}
  for _, r in ipairs(records) do
    if r.status == "ok" then
      per[r.trial] = per[r.trial] or {}
      table.insert(per[r.trial], r)
    end
  end
  -- the others first (drawn beneath, grey), then the named from the best
  -- down (the legend lists the best first)
  local grey, named = {}, {}
  for i, row in ipairs(rows) do
    local list = per[row.trial] or {}
    table.sort(list, function(a, b) return a.rung < b.rung end)
    local xs, ys = {}, {}
    for j, r in ipairs(list) do xs[j], ys[j] = r.budget, r.val_loss end
    if i <= 5 and row.status == "ok" then
      named[#named + 1] = { name = string.format("trial %d%s", row.trial, i == 1 and " (best)" or ""), xs = xs,
        ys = ys, color = dm.plot.COLORS[i] }
    else
      grey[#grey + 1] = { legend = false, xs = xs, ys = ys, color = "#bbbbbb" }
    end
  end
  local series = grey
  for _, s in ipairs(named) do series[#series + 1] = s end
  local svg = dm.plot.SVG(700, 420)
  dm.plot.line_chart(svg, { id = "trials", x = 0, y = 0, w = 700, h = 420,
    title = opts.title or "validation loss of each trial by budget",
    xlabel = "epochs (rung budget)", ylabel = "validation loss", series = series })
  if path then svg:save(path) end
  return svg
end

return tune
