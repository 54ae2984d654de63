-- tune_spec.lua: dm.tune, the hyperparameter search of scripts/tune.lua:
-- the space file and its errors (file, line, key), the seeded samplers,
-- the rungs and ASHA's promotions, the search loop over a fake runner
-- (failures, time budget, interrupt and continue), the records, the table,
-- best.yaml and the figure. tests/host/tune_e2e.sh runs real searches.
local dm = require "drlmem"
local helpers = require "helpers"
local err_of = helpers.err_of
local tune = dm.tune

local function space_of(text)
  local doc, lines = dm.yaml.load_string(text, "space.yaml")
  return tune.parse_space(doc, lines, "space.yaml")
end

local EXAMPLE = table.concat({
  "learning_rate: {range: [0.001, 0.03], scale: log}",
  "hidden_size: [16, 32, 64]",
  "dropout: {range: [0.0, 0.3]}",
  "embedding_dim: {range: [8, 64], scale: log}",
  "num_layers: {range: [1, 3]}",
}, "\n") .. "\n"

describe("tune.parse_space", function()
  it("reads lists and ranges in file order, typed by the schema", function()
    local s = space_of(EXAMPLE)
    assert.equal(5, #s)
    assert.same({ "learning_rate", "hidden_size", "dropout", "embedding_dim", "num_layers" },
      { s[1].key, s[2].key, s[3].key, s[4].key, s[5].key })
    assert.same({ key = "learning_rate", line = 1, low = 0.001, high = 0.03, scale = "log", int = false }, s[1])
    assert.same({ key = "hidden_size", line = 2, values = { 16, 32, 64 } }, s[2])
    assert.equal("linear", s[3].scale)
    assert.equal("float", math.type(s[3].low)) -- a number key's 0 is a float, as in a config
    assert.is_true(s[4].int)
  end)

  it("reads configs/tune-example.yaml", function()
    local s = tune.load_space("configs/tune-example.yaml")
    assert.equal(3, #s)
  end)

  local bad = {
    { "an unknown key, with the closest one", "learning_rate: [0.01]\nhiden_size: [16]\n",
      "space.yaml:2: unknown key 'hiden_size' (did you mean 'hidden_size'?)" },
    { "a key the search sets", "epochs: [1, 2]\n",
      "space.yaml:1: key 'epochs': the search sets it from the rung budgets (--min-epochs, --eta, --max-epochs)" },
    { "a list value of the wrong type", "dropout: [0.1]\nhidden_size: [16, big]\n",
      "space.yaml:2: key 'hidden_size': expected a positive integer, got 'big'" },
    { "a list value out of the schema's range", "dropout: [0.1, 1.5]\n",
      "space.yaml:1: key 'dropout': expected a number in [0, 1), got 1.5" },
    { "an enum value not among the choices", "optimizer: [adamw, lion]\n",
      "space.yaml:1: key 'optimizer': expected one of adamw|adam|sgd, got 'lion'" },
    { "an empty list", "hidden_size: []\n", "space.yaml:1: key 'hidden_size': the list of values is empty" },
    { "a value twice", "hidden_size: [16, 16]\n", "space.yaml:1: key 'hidden_size': value 16 appears twice in the list" },
    { "a bare value", "\nhidden_size: 16\n",
      "space.yaml:2: key 'hidden_size': expected a list of values, or {range: [low, high], scale: linear|log}, got 16" },
    { "a range on a key that is not a number", "optimizer:\n  range: [1, 2]\n",
      "space.yaml:2: key 'optimizer': a range needs a numeric key, this one is one of adamw|adam|sgd: give a list of values" },
    { "a range that is not a pair", "dropout: {range: [0.1]}\n",
      "space.yaml:1: key 'dropout': range: expected [low, high], got a list" },
    { "a range end out of the schema's range", "dropout:\n  range: [0.1, 2]\n",
      "space.yaml:2: key 'dropout': expected a number in [0, 1), got 2" },
    { "a range of the wrong type for an int key", "hidden_size: {range: [8, 32.5]}\n",
      "space.yaml:1: key 'hidden_size': expected a positive integer, got 32.5" },
    { "low not below high", "dropout: {range: [0.3, 0.1]}\n",
      "space.yaml:1: key 'dropout': range: low 0.3 must be below high 0.1" },
    { "a log range from 0", "dropout: {range: [0, 0.5], scale: log}\n",
      "space.yaml:1: key 'dropout': a log range needs low > 0, got 0" },
    { "an unknown scale, at its line", "dropout:\n  range: [0, 0.5]\n  scale: exp\n",
      "space.yaml:3: key 'dropout': scale: expected linear or log, got 'exp'" },
    { "an unknown field, at its line", "dropout:\n  range: [0, 0.5]\n  scael: log\n",
      "space.yaml:3: key 'dropout': unknown field 'scael' (a range has range: [low, high] and scale: linear|log)" },
    { "a list at the top level", "- a\n- b\n",
      "space.yaml:1: expected a mapping of config key: values at the top level, got a list" },
    { "an empty file", "# nothing\n",
      "space.yaml:1: the search space is empty: give one key per line, each a list of values, or {range: [low, high], scale: linear|log}" },
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[1] .. ", naming file, line and key", function()
      assert.equal(case[3], err_of(space_of, case[2]))
    end)
  end

  it("names a missing space file", function()
    assert.matches("^/nonexistent/s%.yaml: cannot open", err_of(tune.load_space, "/nonexistent/s.yaml"))
  end)
end)

describe("tune sampling", function()
  local space = space_of(EXAMPLE)

  for _, sampler in ipairs { "random", "halton" } do
    it(sampler .. ": the same seed gives the same trials; another seed others; all within the space", function()
      local a, b, c = {}, {}, {}
      for i = 1, 30 do
        a[i] = tune.sample(space, i, 7, sampler)
        b[i] = tune.sample(space, i, 7, sampler)
        c[i] = tune.sample(space, i, 8, sampler)
      end
      assert.same(a, b)
      assert.are_not.same(a, c)
      local sizes = {}
      for _, v in ipairs(a) do
        assert.is_true(v.learning_rate >= 0.001 and v.learning_rate <= 0.03)
        assert.equal("float", math.type(v.learning_rate))
        assert.is_true(v.dropout >= 0 and v.dropout <= 0.3)
        assert.equal("integer", math.type(v.embedding_dim))
        assert.is_true(v.embedding_dim >= 8 and v.embedding_dim <= 64)
        assert.equal("integer", math.type(v.num_layers))
        sizes[v.hidden_size] = true
        -- every sampled value passes the schema
        for k, x in pairs(v) do dm.config.check(k, x, "sample") end
      end
      assert.same({ [16] = true, [32] = true, [64] = true }, sizes)
    end)
  end

  it("a trial's values depend on the seed and its number only", function()
    local late = tune.sample(space, 12, 3, "random")
    for i = 1, 11 do tune.sample(space, i, 3, "random") end
    assert.same(late, tune.sample(space, 12, 3, "random"))
  end)

  it("a log range is uniform in the logarithm: the median is near the geometric mean", function()
    local s = space_of("learning_rate: {range: [0.0001, 1.0], scale: log}\n")
    local xs = {}
    for i = 1, 401 do xs[i] = tune.sample(s, i, 1, "random").learning_rate end
    table.sort(xs)
    local median = xs[201]
    assert.is_true(median > 0.003 and median < 0.03, tostring(median)) -- geometric mean 0.01; linear would give ~0.5
  end)

  it("an int range gives every integer, ends included, about equally often", function()
    local s = space_of("num_layers: {range: [1, 3]}\n")
    local count = { 0, 0, 0 }
    for i = 1, 300 do
      local v = tune.sample(s, i, 5, "random").num_layers
      count[v] = count[v] + 1
    end
    for k = 1, 3 do assert.is_true(count[k] > 70 and count[k] < 130, dm.json.encode(count)) end
  end)

  it("halton: the first p^k points fill the p^k strata of each dimension (scrambled, still stratified)", function()
    for _, dim_base in ipairs { { 1, 2, 16 }, { 2, 3, 9 }, { 3, 5, 25 } } do
      local d, n = dim_base[1], dim_base[3]
      local seen = {}
      for i = 0, n - 1 do
        local u = tune.halton(i, 3, 11)[d]
        assert.is_true(u >= 0 and u < 1)
        local bin = math.floor(u * n + 1e-9) % n -- (2/3 * 9 is 5.999... in floats)
        assert.is_nil(seen[bin], string.format("dimension %d: two points in stratum %d", d, bin))
        seen[bin] = true
      end
    end
    assert.are_not.same(tune.halton(5, 3, 1), tune.halton(5, 3, 2)) -- the scrambling follows the seed
  end)

  it("values round to 6 significant digits and read back exactly from their text", function()
    for i = 1, 20 do
      local v = tune.sample(space, i, 1, "random")
      local t = tune.value_text(v.learning_rate)
      assert.equal(v.learning_rate, tonumber(t))
      assert.is_true(#t <= 12, t)
    end
    assert.equal("0.0", tune.value_text(0.0))
    assert.equal("1e+20", tune.value_text(1e20)) -- a float to YAML 1.2 and to Lua
    assert.equal("float", math.type(dm.yaml.load_string("x: 1e+20").x))
    assert.same({ "learning_rate=0.01", "hidden_size=32", "dropout=0.0", "embedding_dim=8", "num_layers=1" },
      tune.sets(space, { learning_rate = 0.01, hidden_size = 32, dropout = 0.0, embedding_dim = 8, num_layers = 1 }))
  end)
end)

describe("tune.rungs", function()
  it("are min_epochs * eta^k up to max_epochs", function()
    assert.same({ 1, 3, 9 }, tune.rungs(1, 9, 3))
    assert.same({ 1, 3, 9 }, tune.rungs(1, 10, 3))
    assert.same({ 1, 2 }, tune.rungs(1, 2, 2))
    assert.same({ 2, 6 }, tune.rungs(2, 6, 3))
    assert.same({ 4 }, tune.rungs(4, 4, 3))
  end)

  it("refuses bad budgets", function()
    assert.equal("--eta: expected an integer >= 2, got 1", err_of(tune.rungs, 1, 9, 1))
    assert.equal("--min-epochs: expected an integer >= 1, got 0", err_of(tune.rungs, 0, 9, 3))
    assert.equal("--max-epochs 2 is below --min-epochs 3", err_of(tune.rungs, 3, 2, 3))
  end)
end)

-- A fake runner: the loss of a trial at a budget is fixed by its trial
-- number (losses[trial]) minus a little per epoch; it lists the jobs run.
local function fake(losses, opts)
  opts = opts or {}
  local jobs = {}
  local clock = 0
  return {
    jobs = jobs,
    now = function() return clock end,
    run = function(job)
      jobs[#jobs + 1] = string.format("%d@%d", job.trial, job.budget)
      clock = clock + job.budget
      if opts.interrupt_at == #jobs then return { status = "interrupted" } end
      if opts.fail and opts.fail[job.trial] then return { status = "failed", error = "boom", seconds = 1 } end
      return { status = "ok", val_loss = losses[job.trial] - 0.01 * job.budget, seconds = job.budget }
    end,
  }
end

describe("tune.search (ASHA, one job at a time)", function()
  local space = space_of("hidden_size: [16, 32, 64]\n")
  local losses = { 3.0, 2.0, 4.0, 1.0, 2.5, 3.5, 0.5, 5.0, 1.5 }
  local function opts(f, extra)
    local o = { space = space, seed = 1, sampler = "random", trials = 9, rungs = { 1, 3, 9 }, eta = 3, run = f.run,
      now = f.now }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end

  it("promotes a trial once it is among the best 1/eta of its rung, else starts a new one", function()
    local f = fake(losses)
    local records, why = tune.search(opts(f))
    assert.equal("done", why)
    -- 3 done at rung 1: the best (2) goes to 3 epochs; 4 done: floor(4/3) = 1
    -- and the best is 4, not yet promoted; 7 done: the best 2 are 7 and 4,
    -- so 7 goes on, and with 2, 4, 7 at rung 2 the best of them (7) goes to 9;
    -- 9 done: the best 3 are 7, 4 and 9 (loss 1.5), so 9 goes to 3 epochs
    assert.same({ "1@1", "2@1", "3@1", "2@3", "4@1", "4@3", "5@1", "6@1", "7@1", "7@3", "7@9", "8@1", "9@1", "9@3" },
      f.jobs)
    assert.equal(#f.jobs, #records)
    local best = tune.best(records)
    assert.equal(7, best.trial)
    assert.equal(9, best.budget)
    assert.near(0.5 - 0.09, best.val_loss, 1e-12)
  end)

  it("eta 2 with rungs of 1 and 2 epochs (the e2e search): 4 trials, the best two go on", function()
    local f = fake({ 3.0, 2.0, 4.0, 1.0 })
    tune.search(opts(f, { trials = 4, rungs = { 1, 2 }, eta = 2 }))
    assert.same({ "1@1", "2@1", "2@2", "3@1", "4@1", "4@2" }, f.jobs)
  end)

  it("records a failed job with its error and never promotes it; the search goes on", function()
    local f = fake(losses, { fail = { [2] = true } })
    local records = tune.search(opts(f))
    local rec2 = records[2]
    assert.same({ trial = 2, rung = 1, budget = 1, status = "failed", error = "boom", seconds = 1 },
      { trial = rec2.trial, rung = rec2.rung, budget = rec2.budget, status = rec2.status, error = rec2.error,
        seconds = rec2.seconds })
    assert.is_nil(rec2.val_loss)
    for _, j in ipairs(f.jobs) do assert.are_not.equal("2@3", j) end
    assert.equal(9, #tune.summary(records))
    local rows = tune.summary(records)
    assert.equal(2, rows[#rows].trial) -- a failed trial ranks last
  end)

  it("stops starting jobs once the time budget is spent, and says so", function()
    local f = fake(losses)
    local records, why = tune.search(opts(f, { time_budget = 5 }))
    assert.equal("time budget", why)
    assert.same({ "1@1", "2@1", "3@1", "2@3" }, f.jobs) -- 6 time units when it looked
    -- a later session with time spent before counts it
    local g = fake(losses)
    local _, why2 = tune.search(opts(g, { time_budget = 5, elapsed = 5 }))
    assert.equal("time budget", why2)
    assert.same({}, g.jobs)
    assert.equal(4, #records)
  end)

  it("an interrupted job is not recorded; continuing from the records gives the uninterrupted search", function()
    local whole = fake(losses)
    local all = tune.search(opts(whole))
    local f = fake(losses, { interrupt_at = 5 })
    local records, why, job = tune.search(opts(f))
    assert.equal("interrupted", why)
    assert.equal(4, #records)
    assert.same({ trial = 4, rung = 1, budget = 1 }, { trial = job.trial, rung = job.rung, budget = job.budget })
    -- through JSON, as results.jsonl keeps them
    local path = os.tmpname()
    local fh = assert(io.open(path, "w"))
    for _, r in ipairs(records) do fh:write(tune.record_json(r, space), "\n") end
    fh:close()
    local g = fake(losses)
    local done = tune.search(opts(g, { records = tune.read_records(path, space) }))
    os.remove(path)
    assert.equal("4@1", g.jobs[1]) -- the interrupted job runs again
    assert.equal(#all, #done)
    for i = 1, #all do
      assert.same({ all[i].trial, all[i].rung, all[i].val_loss, all[i].values },
        { done[i].trial, done[i].rung, done[i].val_loss, done[i].values })
    end
  end)

  it("under loop.guard, a Ctrl-C between two jobs stops after a whole record; continuing ends the same", function()
    local whole = fake(losses)
    local all = tune.search(opts(whole))
    local f = fake(losses)
    local records = {}
    local resumes = 0
    -- the host's Ctrl-C hook raises in the main thread between two resumes
    local status = dm.loop.guard(function()
      tune.search(opts(f, { records = records, on_record = function() end }))
    end, { on_resume = function()
      resumes = resumes + 1
      if resumes == 4 then error("stdin:1: interrupted!") end
    end })
    assert.equal("interrupted", status)
    assert.equal(3, #records) -- three jobs done and recorded, nothing half-done
    local g = fake(losses)
    local done = tune.search(opts(g, { records = records }))
    assert.equal(#all, #done)
    for i = 1, #all do assert.same({ all[i].trial, all[i].rung }, { done[i].trial, done[i].rung }) end
  end)

  it("records times in milliseconds, so that a line minus its time reads the same in every run", function()
    local function one(secs)
      local recs = tune.search(opts({ now = os.time, run = function()
        return { status = "ok", val_loss = 3.606611132621765, seconds = secs }
      end }, { trials = 1, rungs = { 1 } }))
      assert.equal(tonumber(string.format("%.3f", secs)), recs[1].seconds)
      return (tune.record_json(recs[1], space):gsub('"seconds":[^,]*,', ""))
    end
    -- (a time of 17 digits would make dm.json write the loss with 17 too)
    assert.equal(one(0.25), one(0.34905076599989115))
  end)

  it("gives each job the trial's sampled values and --set items", function()
    local seen = {}
    tune.search(opts({ now = os.time, run = function(job)
      seen[#seen + 1] = job
      return { status = "ok", val_loss = job.trial, seconds = 0 }
    end }, { trials = 2, rungs = { 1 } }))
    assert.same(tune.sample(space, 2, 1, "random"), seen[2].values)
    assert.same({ "hidden_size=" .. seen[2].values.hidden_size }, seen[2].sets)
  end)
end)

describe("tune records and reports", function()
  local space = space_of("learning_rate: {range: [0.001, 0.1], scale: log}\ndropout: [0.0, 0.2]\n"
    .. "memory_embedding_dim: [null, 8]\nembedding_dim: [8, 12]\n")

  it("a record survives results.jsonl: integral floats stay floats, null stays null", function()
    local rec = { trial = 3, rung = 2, budget = 3, status = "ok", val_loss = 2.5, seconds = 1.25,
      values = { learning_rate = 0.01, dropout = 0.0, memory_embedding_dim = dm.yaml.null, embedding_dim = 8 } }
    local path = os.tmpname()
    helpers.spit(path, tune.record_json(rec, space) .. "\n" .. tune.record_json({ trial = 4, rung = 1, budget = 1,
      status = "failed", error = "bad", seconds = 0, values = rec.values }, space) .. "\n")
    local back = tune.read_records(path, space)
    assert.same(rec, back[1])
    assert.equal("float", math.type(back[1].values.dropout))
    assert.equal("bad", back[2].error)
    assert.is_nil(back[2].val_loss)
    helpers.spit(path, tune.record_json(rec, space) .. "\n{\"trial\": 1}\n")
    assert.equal(path .. ":2: not a record of this search (fields missing); move the folder away to start afresh",
      err_of(tune.read_records, path, space))
    os.remove(path)
    assert.same({}, tune.read_records("/nonexistent/results.jsonl", space))
  end)

  local function recs()
    local v = function(lr) return { learning_rate = lr, dropout = 0.0, memory_embedding_dim = dm.yaml.null, embedding_dim = 12 } end
    return {
      { trial = 1, rung = 1, budget = 1, status = "ok", val_loss = 3.0, seconds = 1, values = v(0.01) },
      { trial = 2, rung = 1, budget = 1, status = "ok", val_loss = 2.0, seconds = 1, values = v(0.02) },
      { trial = 2, rung = 2, budget = 3, status = "ok", val_loss = 1.9, seconds = 2, values = v(0.02) },
      { trial = 3, rung = 1, budget = 1, status = "failed", error = "train.lua exit status 1: x|y", seconds = 0.5, values = v(0.03) },
    }
  end

  it("the table ranks trials (highest rung, then loss; failures last) with a column per key", function()
    local text = tune.table(recs(), space)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("| trial | epochs | val loss | time (s) | status | learning_rate | dropout | memory_embedding_dim | embedding_dim |",
      lines[1])
    assert.equal("| 2 | 3 | 1.9000 | 3.0 | ok | 0.02 | 0.0 | null | 12 |", lines[3])
    assert.equal("| 1 | 1 | 3.0000 | 1.0 | ok | 0.01 | 0.0 | null | 12 |", lines[4])
    assert.equal("| 3 | 1 | – | 0.5 | failed: train.lua exit status 1: x/y | 0.03 | 0.0 | null | 12 |", lines[5])
  end)

  it("best.yaml is a full config: the base's values with the best trial's on top, and it loads", function()
    local base = dm.config.load("configs/tiny.yaml", { "batch_size=4" })
    local best = tune.best(recs())
    local path = os.tmpname()
    helpers.spit(path, tune.config_yaml(base, best.values, { "a header" }))
    local text = helpers.slurp(path)
    assert.truthy(text:find("^# a header\n"))
    assert.truthy(text:find("\nlearning_rate: 0.02    # tuned\n", 1, true))
    local cfg = dm.config.load(path)
    os.remove(path)
    for _, k in ipairs(dm.config.order) do
      if best.values[k] == nil and k ~= "memory_embedding_dim" then
        assert.equal(rawget(base, k), rawget(cfg, k), k)
      end
    end
    assert.equal(0.02, cfg.learning_rate)
    assert.equal(4, cfg.batch_size)
    assert.equal(12, cfg.embedding_dim)
    -- the base derived memory_embedding_dim from its embedding_dim (16): it follows the tuned one
    assert.equal(12, cfg.memory_embedding_dim)
    assert.equal(#dm.config.order, select(2, text:gsub("\n[%w_]+: ", "")) + (text:find("^[%w_]+: ") and 1 or 0))
  end)

  it("the figure draws a line per trial, names the five best and is valid SVG", function()
    local rs = recs()
    for t = 4, 10 do
      rs[#rs + 1] = { trial = t, rung = 1, budget = 1, status = "ok", val_loss = 3 + t / 10, seconds = 1, values = rs[1].values }
    end
    local text = tune.figure(rs):tostring()
    local ok, counts = dm.plot.check_svg(text)
    assert.is_true(ok, counts)
    assert.equal(10, counts.polyline)
    assert.truthy(text:find(">trial 2 %(best%)<"))
    local named = select(2, text:gsub(">trial %d+[^<]*<", ""))
    assert.equal(5, named)
  end)
end)
