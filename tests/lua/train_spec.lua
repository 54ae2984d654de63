-- train_spec.lua: the training loop (lua/drlmem/loop.lua, the one
-- scripts/train.lua runs), its evaluation, checkpoints and resume
-- (evaluation.lua, resume.lua) and its helpers (log.lua, progress.lua,
-- inference.lua): early stopping, gradient accumulation, the tokens that
-- count, the metrics of an evaluation against values computed here by
-- hand, resume equivalence (whole epochs and mid-epoch, through the Ctrl-C
-- guard), tampered training states, periodic checkpoints, the log after a
-- resume, the NaN stop, and the command-line errors of scripts/train.lua.
-- Everything runs on a tiny model and a generated text of a few dozen
-- lines, in a second or two.
local dm = require "drlmem"
local train, loop, evaluation, resume, inference = dm.train, dm.loop, dm.evaluation, dm.resume, dm.inference
local helpers = require "helpers"

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

-- A small deterministic corpus: who went where, then a question about it.
local function write_corpus(path, n)
  local names = { "mary", "john", "sandra", "daniel" }
  local places = { "kitchen", "garden", "office", "hallway", "park" }
  local g = dm.Generator(7)
  local f = assert(io.open(path, "w"))
  for _ = 1, n do
    local who, where = names[g:random(#names)], places[g:random(#places)]
    local other = names[g:random(#names)]
    f:write(string.format("%s went to the %s . %s slept . where is %s ? %s .\n", who, where, other, who, where))
  end
  f:close()
  return path
end
local corpus = write_corpus(tmpdir .. "/corpus.txt", 60)

local function tiny_cfg(extra)
  local over = { data_path = corpus, embedding_dim = 8, memory_size = 6, hidden_size = 8, num_layers = 1,
    max_seq_length = 12, batch_size = 4, epochs = 2, dropout = 0.2, seed = 3,
    save_path = tmpdir .. "/models", log_file = tmpdir .. "/logs/training.log" }
  for k, v in pairs(extra or {}) do over[k] = v end
  return dm.config.load(nil, over)
end

local setup, untimed = helpers.setup_run, helpers.untimed

-- The loop scripts/train.lua runs, with a hook after each step instead of
-- the files (until st.cfg.epochs).
local function run_epochs(st, data, on_step)
  return loop.run(st, data, { on_step = on_step })
end

-- Every tensor of the state dict and of the optimizer state, flattened.
local function snapshot(st)
  local out = {}
  local sd, names = st.net:state_dict()
  for _, n in ipairs(names) do out["w:" .. n] = sd[n] end
  local os_ = st.opt:state()
  for k, v in pairs(os_) do
    if type(v) == "table" and k ~= "step" then
      for n, t in pairs(v) do out["o:" .. k .. ":" .. n] = t end
    elseif k == "step" then
      for n, c in pairs(v) do out["s:" .. n] = c end
    end
  end
  out.lr = st.opt:get_lr()
  out.rng = dm.get_rng_state()
  return out
end

local function assert_identical(a, b)
  local n = 0
  for k, v in pairs(a) do
    n = n + 1
    local w = b[k]
    assert.is_not_nil(w, "missing " .. k)
    if type(v) == "userdata" then
      assert.same(v:shape(), w:shape())
      assert.equal(0, (v - w):abs():max(), k .. " differs")
      assert.same(v:totable(), w:totable(), k)
    else
      assert.equal(v, w, k)
    end
  end
  for k in pairs(b) do assert.is_not_nil(a[k], "extra " .. k) end
  assert.is_true(n > 10)
end

describe("loop.EarlyStopping", function()
  it("counts epochs without a better validation loss and stops once the count exceeds patience", function()
    local es = loop.EarlyStopping(2)
    local losses = { 3.0, 2.0, 2.5, 2.0, 2.6, 1.9, 1.95, 1.95, 1.99 }
    local want = { -- improved, stop, counter after the epoch
      { true, false, 0 }, { true, false, 0 }, { false, false, 1 },
      { false, false, 2 }, -- equal to the best is no improvement
      { false, true, 3 }, { true, false, 0 }, { false, false, 1 }, { false, false, 2 }, { false, true, 3 } }
    for e, v in ipairs(losses) do
      local improved, stop = es:update(v, e)
      assert.same(want[e], { improved, stop, es.counter }, "epoch " .. e)
    end
    assert.equal(1.9, es.best)
    assert.equal(6, es.best_epoch)
  end)

  it("with patience 0 stops at the first epoch that does not improve", function()
    local es = loop.EarlyStopping(0)
    assert.same({ true, false }, { es:update(1.0, 1) })
    assert.same({ false, true }, { es:update(1.0, 2) })
  end)

  it("a NaN validation loss never improves", function()
    local es = loop.EarlyStopping(1)
    assert.same({ false, false }, { es:update(0 / 0, 1) })
    assert.same({ false, true }, { es:update(0 / 0, 2) })
    assert.equal(0, es.best_epoch)
  end)

  it("saves and restores its state, infinity included", function()
    local es = loop.EarlyStopping(3)
    local fresh = loop.EarlyStopping(3):load_state(es:state())
    assert.equal(math.huge, fresh.best)
    es:update(2.5, 1)
    es:update(2.7, 2)
    local back = loop.EarlyStopping(3):load_state(es:state())
    assert.same({ 2.5, 1, 1 }, { back.best, back.best_epoch, back.counter })
    assert.has_error(function() loop.EarlyStopping(-1) end)
  end)
end)

describe("train.scheduler plateau", function()
  -- The SGD language models' schedule (word_language_model: lr /= 4 when
  -- the validation loss does not improve): plateau, plateau_patience 0.
  it("divides the learning rate by 1/gamma at each epoch whose validation loss does not improve", function()
    local cfg = tiny_cfg { optimizer = "sgd", learning_rate = 20.0, scheduler = "plateau", gamma = 0.25,
      plateau_patience = 0 }
    local net = dm.Controller(train.model_config(cfg, 10))
    local opt = train.optimizer(net, cfg)
    assert.truthy(tostring(opt):find("^SGD"))
    local sched = train.scheduler(opt, cfg)
    local lrs = {}
    for _, v in ipairs { 5.0, 4.0, 4.5, 3.0, 3.0, 2.0 } do
      train.scheduler_step(sched, cfg, v)
      lrs[#lrs + 1] = opt:get_lr()
    end
    assert.same({ 20.0, 20.0, 5.0, 5.0, 1.25, 1.25 }, lrs)
  end)

  it("keeps torch's patience of 10 by default", function()
    local cfg = tiny_cfg { scheduler = "plateau" }
    assert.equal(10, cfg.plateau_patience)
    local opt = train.optimizer(dm.Controller(train.model_config(cfg, 10)), cfg)
    local sched = train.scheduler(opt, cfg)
    for i = 1, 11 do
      train.scheduler_step(sched, cfg, 1.0)
      assert.equal(cfg.learning_rate, opt:get_lr(), "epoch " .. i)
    end
    train.scheduler_step(sched, cfg, 1.0)
    assert.near(cfg.learning_rate * cfg.gamma, opt:get_lr(), 1e-12)
  end)
end)

describe("evaluation.run", function()
  -- Metrics recomputed here from the logits, without drlmem.metrics.
  local function by_hand(net, split, cfg)
    local V = nil
    local nll, n, correct = 0.0, 0, 0
    local tp, fp, fn = {}, {}, {}
    local loss_sum, nb = 0.0, 0
    net:eval()
    for x, y in split:batches(cfg.batch_size) do
      local logits = net:forward(x)
      V = logits:shape()[3]
      local lp = logits:log_softmax(-1):totable()
      local lt, yt = logits:totable(), y:totable()
      local bsum, bcnt, ball = 0.0, 0, 0
      for b = 1, #yt do
        for t = 1, #yt[b] do
          local target = yt[b][t]
          local l = -lp[b][t][target + 1]
          ball = ball + 1
          if target ~= 0 then
            bsum, bcnt = bsum + l, bcnt + 1
            nll, n = nll + l, n + 1
            local best, arg = -math.huge, nil
            for v = 1, V do if lt[b][t][v] > best then best, arg = lt[b][t][v], v - 1 end end
            if arg == target then
              correct = correct + 1
              tp[target] = (tp[target] or 0) + 1
            else
              fp[arg] = (fp[arg] or 0) + 1
              fn[target] = (fn[target] or 0) + 1
            end
          end
        end
      end
      loss_sum, nb = loss_sum + bsum / bcnt, nb + 1
    end
    net:train()
    -- weighted and macro F1 over the union of labels, as sklearn (zero_division=1)
    local labels, wsum, msum, nl, support = {}, 0.0, 0.0, 0, 0
    for _, t in ipairs { tp, fp, fn } do for l in pairs(t) do labels[l] = true end end
    for l in pairs(labels) do
      local a, b, c = tp[l] or 0, fp[l] or 0, fn[l] or 0
      local f1 = 2 * a / (2 * a + b + c)
      wsum, msum, nl, support = wsum + (a + c) * f1, msum + f1, nl + 1, support + a + c
    end
    return { loss = loss_sum / nb, ppl = math.exp(nll / n), accuracy = correct / n, f1_weighted = wsum / support,
      f1_macro = msum / nl, n = n }
  end

  local function close(a, b, tol) return math.abs(a - b) <= tol * math.max(1, math.abs(b)) end

  it("pools loss, perplexity, accuracy and F1 over the non-pad test targets", function()
    local cfg = tiny_cfg()
    local st, data = setup(cfg)
    loop.epoch(st, data) -- a model that predicts something
    local want = by_hand(st.net, data.test, cfg)
    local got = evaluation.run(st.net, data.test, cfg, { metrics = true })
    assert.is_true(st.net:training())
    assert.equal(want.n, got.n)
    assert.is_true(close(got.loss, want.loss, 1e-5), got.loss .. " vs " .. want.loss)
    assert.is_true(close(got.ppl, want.ppl, 1e-5), got.ppl .. " vs " .. want.ppl)
    assert.equal(want.accuracy, got.accuracy)
    assert.is_true(close(got.f1_weighted, want.f1_weighted, 1e-12))
    assert.is_true(close(got.f1_macro, want.f1_macro, 1e-12))
    assert.is_true(got.accuracy > 0 and got.accuracy < 1)
    assert.is_true(got.f1_macro < got.f1_weighted)
    assert.is_number(got.acc_upstream)
    assert.is_number(got.f1_upstream)
  end)

  it("without loss_ignore_pad reports the upstream loss but the same perplexity and accuracy", function()
    local cfg = tiny_cfg { max_seq_length = 20 } -- lines of 16 targets: 4 pads each
    local st, data = setup(cfg)
    local a = evaluation.run(st.net, data.test, cfg, { metrics = true })
    local b = evaluation.run(st.net, data.test, tiny_cfg { max_seq_length = 20, loss_ignore_pad = false },
      { metrics = true })
    assert.is_true(math.abs(a.loss - b.loss) > 1e-4) -- pads counted: another mean
    assert.is_true(close(a.ppl, b.ppl, 1e-6), a.ppl .. " vs " .. b.ppl .. " n " .. a.n .. " " .. b.n)
    assert.equal(a.accuracy, b.accuracy)
    assert.equal(a.f1_weighted, b.f1_weighted)
  end)
end)

describe("loop.train_epoch", function()
  it("steps once per accumulation group and once more for a partial last group", function()
    local cfg = tiny_cfg { accumulation_steps = 5 }
    local st, data = setup(cfg)
    local n = data.train:nbatches(cfg.batch_size)
    assert.is_true(n % 5 ~= 0, "the corpus should leave a partial group")
    local steps_seen = {}
    local tr = loop.train_epoch({ net = st.net, opt = st.opt, cfg = cfg, split = data.train }, 1,
      { on_step = function(pos) steps_seen[#steps_seen + 1] = pos.batch end })
    assert.equal((n + 4) // 5, tr.steps)
    assert.equal(n, steps_seen[#steps_seen])
    for i = 1, #steps_seen - 1 do assert.equal(5 * i, steps_seen[i]) end
    assert.equal(tr.steps, st.opt:state().step["embedding.weight"])
    assert.equal(n, tr.batches)
    assert.equal(data.train:size() * cfg.max_seq_length, tr.padded_tokens)
  end)

  it("counts the tokens that count: non-pad targets, with and without loss_ignore_pad", function()
    for _, ignore in ipairs { true, false } do
      local cfg = tiny_cfg { max_seq_length = 20, loss_ignore_pad = ignore } -- lines of 16 targets: padded
      local st, data = setup(cfg)
      local want, all = 0, 0
      for _, y in data.train:batches(cfg.batch_size, 1) do
        for _, row in ipairs(y:totable()) do
          for _, v in ipairs(row) do
            all = all + 1
            if v ~= 0 then want = want + 1 end
          end
        end
      end
      assert.is_true(want < all, "the corpus should be padded")
      local tr = loop.train_epoch({ net = st.net, opt = st.opt, cfg = cfg, split = data.train }, 1)
      assert.equal(want, tr.tokens)
      assert.equal(all, tr.padded_tokens)
      -- and the epoch's record: tokens/s of those, the padded rate labelled as such
      local st2 = setup(cfg, data)
      local rec = loop.epoch(st2, data)
      assert.equal(want, rec.tokens)
      assert.is_true(math.abs(rec.tokens_per_s / rec.padded_tokens_per_s - want / all) < 1e-9)
      assert.truthy(dm.log.describe_epoch(rec, 2):find(string.format("%.0f tok/s", rec.tokens_per_s), 1, true))
    end
  end)

  it("the training loss falls over a few epochs", function()
    local cfg = tiny_cfg { epochs = 4, learning_rate = 0.02 }
    local st, data = setup(cfg)
    assert.equal("done", run_epochs(st, data))
    local h = st.run.history
    assert.is_true(h[4].train_loss < h[1].train_loss - 0.3, h[1].train_loss .. " -> " .. h[4].train_loss)
    assert.is_true(h[4].val_loss < h[1].val_loss)
  end)

  it("stops at a NaN loss naming the epoch and batch, before that batch changes the weights", function()
    local cfg = tiny_cfg()
    local st, data = setup(cfg)
    local crit = train.criterion(cfg)
    local calls, before = 0, nil
    local ctx = { net = st.net, opt = st.opt, cfg = cfg, split = data.train,
      criterion = function(logits, y, scale)
        calls = calls + 1
        local loss, d, c = crit(logits, y, scale)
        if calls == 3 then return 0 / 0, d, c end
        return loss, d, c
      end }
    local ok, err = pcall(loop.train_epoch, ctx, 2, {
      on_step = function(pos) if pos.batch == 2 then before = snapshot(st) end end })
    assert.is_false(ok)
    assert.is_true(loop.is_nonfinite(err))
    assert.equal(2, err.epoch)
    assert.equal(3, err.batch)
    local n = data.train:nbatches(cfg.batch_size)
    assert.equal(string.format("the training loss is %s at epoch 2, batch 3 of %d", tostring(0 / 0), n),
      tostring(err))
    -- the forward of batch 3 counted memory usage and drew dropout, nothing else moved
    local now = snapshot(st)
    now["w:memory.usage_counts"], before["w:memory.usage_counts"] = nil, nil
    now.rng, before.rng = nil, nil
    assert_identical(before, now)
    -- an infinite loss too
    calls = 0
    local ok2, err2 = pcall(loop.train_epoch, { net = st.net, opt = st.opt, cfg = cfg, split = data.train,
      criterion = function(l, y, s)
        local _, d, c = crit(l, y, s)
        return math.huge, d, c
      end }, 5)
    assert.is_false(ok2)
    assert.truthy(tostring(err2):find("is inf at epoch 5, batch 1", 1, true), tostring(err2))
  end)
end)

describe("resume", function()
  local function path(name) return tmpdir .. "/" .. name end

  it("2 epochs == 1 epoch, save, load into fresh objects, 1 more epoch (identical weights and metrics)", function()
    local cfg = tiny_cfg()
    local a, data = setup(cfg)
    assert.equal("done", run_epochs(a, data))

    local b = setup(tiny_cfg { epochs = 1 }, data)
    assert.equal("done", run_epochs(b, data))
    resume.save(path("r1.safetensors"), b)
    dm.manual_seed(999) -- a fresh process: another generator state
    local c = setup(tiny_cfg { seed = 3 }, data)
    dm.manual_seed(12345)
    local run, notes = resume.load(path("r1.safetensors"), c)
    c.run = run
    assert.same({}, notes)
    assert.same({ 2, 0 }, { run.epoch, run.batch })
    assert.equal(1, #run.history)
    assert.equal("done", run_epochs(c, data))
    assert_identical(snapshot(a), snapshot(c))
    assert.same(untimed(a.run.history), untimed(c.run.history))
  end)

  it("continues identically from a Ctrl-C in the middle of an epoch", function()
    local cfg = tiny_cfg { accumulation_steps = 2, scheduler = "plateau" }
    local a, data = setup(cfg)
    assert.equal("done", run_epochs(a, data))

    -- The host's SIGINT sets a hook on the main thread; do the same from
    -- inside the loop after the 3rd step of epoch 2.
    local b = setup(cfg, data)
    local status = helpers.run_until_interrupted(b, data, 2, 6)
    assert.equal("interrupted", status)
    assert.same({ 2, 6 }, { b.run.epoch, b.run.batch })
    resume.save(path("mid.safetensors"), b)

    local c = setup(cfg, data)
    c.run = resume.load(path("mid.safetensors"), c)
    assert.same({ 2, 6 }, { c.run.epoch, c.run.batch })
    assert.equal("done", run_epochs(c, data))
    assert_identical(snapshot(a), snapshot(c))
    assert.same(untimed(a.run.history), untimed(c.run.history))
  end)

  it("refuses a model file, another vocabulary and another model size, naming the file", function()
    local cfg = tiny_cfg()
    local a, data = setup(cfg)
    resume.save_model(path("model.safetensors"), a.net, data.vocab, cfg)
    local ok, err = pcall(resume.load, path("model.safetensors"), setup(cfg, data))
    assert.is_false(ok)
    assert.truthy(err:find("model.safetensors is not a resumable checkpoint", 1, true), err)

    resume.save(path("r.safetensors"), a)
    local other = setup(tiny_cfg { embedding_dim = 12 }, data)
    ok, err = pcall(resume.load, path("r.safetensors"), other)
    assert.is_false(ok)
    assert.truthy(err:find("the model has embedding_dim = 8, the config asks for 12", 1, true), err)

    local small = write_corpus(path("small.txt"), 20)
    local cfg2 = tiny_cfg { data_path = small, seed = 11 }
    ok, err = pcall(resume.load, path("r.safetensors"), setup(cfg2))
    assert.is_false(ok)
    assert.truthy(err:find("vocabulary", 1, true), err)

    -- a changed learning rate is allowed but noted
    local st = setup(tiny_cfg { learning_rate = 0.5 }, data)
    local _, notes = resume.load(path("r.safetensors"), st)
    assert.equal(1, #notes)
    assert.truthy(notes[1]:find("^learning_rate = 0.5"), notes[1])
  end)
end)

describe("tampered training state", function()
  -- A resumable checkpoint whose training state (or optimizer/scheduler
  -- metadata) is edited by fn(meta_tables); returns its path.
  local function tampered(name, st, fn)
    local p = tmpdir .. "/" .. name
    resume.save(p, st)
    local tensors, meta, names = dm.load_safetensors(p)
    local decoded = {}
    for _, k in ipairs { "state", "optimizer", "scheduler" } do decoded[k] = dm.json.decode(meta[k]) end
    fn(decoded)
    for k, v in pairs(decoded) do meta[k] = dm.json.encode(v) end
    local list = {}
    for i, n in ipairs(names) do list[i] = { n, tensors[n] } end
    dm.save_safetensors(p, list, meta)
    return p
  end

  it("is refused field by field with one line naming the file and the field", function()
    local cfg = tiny_cfg()
    local st, data = setup(cfg)
    local nb = data.train:nbatches(cfg.batch_size)
    local cases = {
      { function(m) m.state.epoch = -5 end, "training state 'epoch' must be an integer >= 1, got -5" },
      { function(m) m.state.epoch = "x" end, "training state 'epoch' must be an integer >= 1, got \"x\"" },
      { function(m) m.state.epoch = 1.5 end, "training state 'epoch' must be an integer >= 1, got 1.5" },
      { function(m) m.state.batch = 1e9 end,
        string.format("training state 'batch' must be an integer in [0, %d] (the batches of an epoch)", nb) },
      { function(m) m.state.batch = -1 end, "training state 'batch' must be an integer in [0," },
      { function(m) m.state.epoch = 3 end, "training state 'history' holds 0 epochs, but 'epoch' = 3 says 2 are done" },
      { function(m) m.state.sums = { loss = "a" } end, "training state 'sums.loss' must be a number, got \"a\"" },
      { function(m) m.state.early = { counter = -2 } end, "training state 'early.counter' must be an integer >= 0" },
      { function(m) m.state.rng = "zz" end, "training state 'rng': set_rng_state: state string has 2 characters" },
      { function(m) m.optimizer.kind = "Bogus" end, "training state 'optimizer': " },
      { function(m) m.scheduler.kind = "Bogus" end,
        "training state 'scheduler': LRScheduler.load_state: state is for Bogus" },
    }
    for i, c in ipairs(cases) do
      local p = tampered("t" .. i .. ".safetensors", st, c[1])
      local fresh = setup(cfg, data)
      local ok, err = pcall(resume.load, p, fresh, { batches = nb })
      assert.is_false(ok, c[2])
      err = tostring(err)
      assert.truthy(err:find(p .. ": " .. c[2], 1, true), err)
      assert.falsy(err:find("\n", 1, true), err)
      assert.falsy(err:find("%.lua:%d+:"), err) -- no internal position
    end
    -- the untampered state loads
    local good = tampered("good.safetensors", st, function() end)
    assert.equal(1, resume.load(good, setup(cfg, data), { batches = nb }).epoch)
  end)
end)

describe("periodic checkpoints", function()
  it("come every checkpoint_steps optimizer steps and every checkpoint_minutes, one clock read per step", function()
    local cfg = tiny_cfg { checkpoint_steps = 4, checkpoint_minutes = 0 }
    local st, data = setup(cfg)
    local n = data.train:nbatches(cfg.batch_size)
    local at = {}
    assert.equal("done", loop.run(st, data, { on_checkpoint = function(pos) at[#at + 1] = pos.epoch .. ":" .. pos.batch end }))
    local want = {}
    for e = 1, 2 do for b = 4, n, 4 do want[#want + 1] = e .. ":" .. b end end
    assert.same(want, at)

    -- minutes: a fake clock that advances 30 s per read
    local t = 0
    local function clock() t = t + 30 return t end
    local st2 = setup(tiny_cfg { checkpoint_minutes = 1.5, epochs = 1 }, data)
    local at2 = {}
    loop.run(st2, data, { clock = clock, on_checkpoint = function(pos) at2[#at2 + 1] = pos.batch end })
    -- one read at the start and per step, one more after each save: a save every 3 steps (90 s)
    assert.same({ 3, 6, 9, 12 }, { at2[1], at2[2], at2[3], at2[4] })

    -- the checkpoint a periodic save writes resumes bit for bit
    local a = setup(cfg, data)
    assert.equal("done", run_epochs(a, data))
    local b = setup(cfg, data)
    local p = tmpdir .. "/periodic.safetensors"
    local ok = pcall(loop.run, b, data, { on_checkpoint = function(pos)
      if pos.epoch == 2 then
        resume.save(p, b)
        error("stop here") -- as a kill right after the save
      end
    end })
    assert.is_false(ok)
    local c = setup(cfg, data)
    c.run = resume.load(p, c)
    assert.same({ 2, 4 }, { c.run.epoch, c.run.batch })
    assert.equal("done", run_epochs(c, data))
    assert_identical(snapshot(a), snapshot(c))
    assert.same(untimed(a.run.history), untimed(c.run.history))
  end)
end)

describe("log.reconcile", function()
  it("drops the epoch lines a resumed checkpoint does not know and repeated ones, and adds missing ones", function()
    local p = tmpdir .. "/reconcile.log"
    local function line(e) return "2026-01-01 10:00:0" .. e .. " epoch " .. e .. "/5: train 1.0  val 2.0" end
    helpers.spit(p, table.concat({ "2026-01-01 10:00:00 config:", line(1), line(2),
      "2026-01-01 10:00:05 resuming from x at epoch 2, batch 0", line(2), line(3), "" }, "\n"))
    local hist = { { epoch = 1 }, { epoch = 2 } }
    assert.same({ 2, 0 }, { dm.log.reconcile(p, hist, 5) })
    local text = helpers.slurp(p)
    local n2 = 0
    for _ in text:gmatch("epoch 2/5:") do n2 = n2 + 1 end
    assert.equal(1, n2)
    assert.falsy(text:find("epoch 3/5", 1, true))
    assert.truthy(text:find("resuming from x", 1, true))
    -- a known epoch the log lacks (killed between checkpoint and log line) is added
    local r3 = dm.log.record { epoch = 3, train_loss = 1.5, val_loss = 1.6, test_loss = 1.7, test_ppl = 5.5, test_acc = 0.5,
      test_f1_weighted = 0.4, test_f1_macro = 0.3, lr = 0.01, seconds = 1, train_seconds = 1, tokens_per_s = 10 }
    hist[3] = r3
    assert.same({ 0, 1 }, { dm.log.reconcile(p, hist, 5) })
    assert.truthy(helpers.slurp(p):find("epoch 3/5: train 1.5000", 1, true))
    assert.same({ 0, 0 }, { dm.log.reconcile(tmpdir .. "/no-such.log", hist, 5) })
  end)
end)

describe("the default data", function()
  it("is made by the library (no script file run), with the bytes make_data.lua writes", function()
    local exe = os.getenv("DRLMEM_EXE")
    if not exe then return pending("DRLMEM_EXE is not set (run through make test)") end
    local dir = tmpdir .. "/gen"
    assert(os.execute("mkdir -p '" .. dir .. "/data'"))
    local saved_loadfile, saved_dofile = loadfile, dofile
    loadfile = function() error("the library ran a script file") end
    dofile = loadfile
    local cwd_cfg = dm.config.load(nil, { data_path = dir .. "/data/tiny.txt" })
    -- stories.ensure makes only the generated names; run it from the folder
    local ok, err = pcall(function()
      local n = dm.stories.write(cwd_cfg.data_path, { tiny = true, seed = 42 })
      assert.equal(400, n)
    end)
    loadfile, dofile = saved_loadfile, saved_dofile
    assert.is_true(ok, tostring(err))
    local out = dir .. "/script.txt"
    assert.is_true(os.execute(string.format("env -u LD_PRELOAD %s scripts/make_data.lua --tiny --out %s >/dev/null", exe, out)))
    assert.equal(helpers.slurp(out), helpers.slurp(cwd_cfg.data_path))
    assert.is_nil(dm.stories.ensure(cwd_cfg)) -- exists: nothing to do
    local none = dm.config.load(nil, { data_path = dir .. "/data/other.txt" })
    assert.is_nil(dm.stories.ensure(none)) -- not a generated name
    for _, m in ipairs { "loop", "train", "resume", "evaluation", "inference", "stories", "rundir", "log" } do
      local src = helpers.slurp("lua/drlmem/" .. m .. ".lua")
      assert.falsy(src:find("loadfile", 1, true) or src:find("dofile", 1, true) or src:find("_G.arg", 1, true), m)
    end
  end)
end)

describe("loop.guard", function()
  it("returns done, and passes errors through with the loop's traceback", function()
    assert.equal("done", loop.guard(function() loop.safe_point() end))
    local ok, err = pcall(loop.guard, function() error("boom") end)
    assert.is_false(ok)
    assert.truthy(err:find("boom", 1, true))
    assert.truthy(err:find("stack traceback", 1, true))
    local e = setmetatable({ message = "m" }, loop.NonFinite)
    ok, err = pcall(loop.guard, function() error(e) end)
    assert.equal(e, err)
  end)

  it("recognises the host's interrupt message", function()
    assert.is_true(loop.is_interrupt("scripts/train.lua:12: interrupted!"))
    assert.is_false(loop.is_interrupt("interrupted"))
    assert.is_false(loop.is_interrupt({}))
  end)
end)

describe("log, progress and the script's helpers", function()
  it("writes the log and metrics.jsonl beside it, and reads the metrics back", function()
    local lf = tmpdir .. "/deep/er/run.log"
    local out = io.open(tmpdir .. "/echo.txt", "w")
    local lg = dm.log.open(lf, { echo = out })
    lg:info("vocab %d", 51)
    lg:quiet("only in the log")
    lg:metrics(dm.log.record { epoch = 1, val_loss = 0 / 0, train_loss = 2.5, early_stop = false })
    lg:metrics(dm.log.record { epoch = 2, val_loss = 1.5, train_loss = 2.0, early_stop = true })
    lg:close()
    out:close()
    local text = assert(io.open(lf)):read("a")
    assert.truthy(text:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d vocab 51\n"))
    assert.truthy(text:find("only in the log", 1, true))
    assert.equal("vocab 51\n", assert(io.open(tmpdir .. "/echo.txt")):read("a"))
    assert.equal(tmpdir .. "/deep/er/metrics.jsonl", dm.log.metrics_path(lf))
    local recs = assert(dm.log.read_metrics(dm.log.metrics_path(lf)))
    assert.equal(2, #recs)
    assert.equal(dm.json.null, recs[1].val_loss)
    assert.same({ 2, 1.5, true }, { recs[2].epoch, recs[2].val_loss, recs[2].early_stop })
    -- a resumed log appends, and its metrics are rewritten from the checkpoint's history
    local lg2 = dm.log.open(lf, { append = true, echo = false })
    lg2:reset_metrics({ recs[1] })
    lg2:info("again")
    lg2:close()
    assert.equal(1, #assert(dm.log.read_metrics(dm.log.metrics_path(lf))))
    assert.truthy(assert(io.open(lf)):read("a"):find("vocab 51.*again"))
  end)

  it("draws a bar with \\r on a terminal and plain lines otherwise", function()
    local t = 0
    local function clock() return t end
    local buf = {}
    local sink = { write = function(_, ...) for _, s in ipairs { ... } do buf[#buf + 1] = s end end, flush = function() end }
    local bar = dm.progress.new { total = 10, label = "epoch 1/3", mode = "bar", out = sink, clock = clock }
    t = 2
    bar:update(5, { loss = 1.23456, tokens = 500 })
    t = 4
    bar:update(10, { loss = 1.0, tokens = 1000 })
    bar:finish()
    local s = table.concat(buf)
    assert.truthy(s:find("\repoch 1/3 [############............] 5/10 loss 1.2346 250 tok/s 00:02<00:02", 1, true), s)
    assert.truthy(s:find("10/10 loss 1.0000 250 tok/s 00:04<00:00", 1, true), s)
    assert.equal("\n", s:sub(-1))

    -- a resumed epoch (6 of 10 batches done before): ETA from this run's pace
    buf, t = {}, 0
    local resumed = dm.progress.new { total = 10, mode = "bar", out = sink, clock = clock, first = 6 }
    t = 2
    resumed:update(8, { tokens = 200 })
    s = table.concat(buf)
    assert.truthy(s:find("8/10 100 tok/s 00:02<00:02", 1, true), s)

    buf, t = {}, 0
    local plain = dm.progress.new { total = 10, mode = "plain", out = sink, clock = clock, lines = 5, min_interval = 0 }
    for i = 1, 10 do
      t = i
      plain:update(i, { loss = 2.0 })
    end
    s = table.concat(buf)
    assert.falsy(s:find("\r", 1, true))
    local n = 0
    for _ in s:gmatch("\n") do n = n + 1 end
    assert.equal(5, n)
    assert.truthy(s:find("batch 10/10 loss 2.0000 elapsed 00:10 eta 00:00\n", 1, true), s)
    assert.equal("1:01:01", dm.progress.hms(3661))
    assert.equal("--:--", dm.progress.hms(nil))
  end)

  it("builds the resume command from the running one", function()
    local argv = { [-1] = "./drlmem", [0] = "scripts/train.lua", "--config", "configs/tiny.yaml", "--resume",
      "old.safetensors", "--set", "log_file=my logs/x.log" }
    assert.equal("./drlmem scripts/train.lua --config configs/tiny.yaml --set 'log_file=my logs/x.log' "
      .. "--resume models/last.safetensors", resume.command("models/last.safetensors", argv))
  end)
end)

describe("helpers of the evaluation scripts", function()
  it("file_split encodes every sample of a file with a given vocabulary (unknown words as <unk>)", function()
    local vocab = dm.data.Vocab { "<pad>", "<unk>", "<sos>", "<eos>", "mary", "went", "." }
    local f = assert(io.open(tmpdir .. "/probe.txt", "w"))
    f:write("Mary went.\n\nMary flew away.\n")
    f:close()
    local split = inference.file_split(tmpdir .. "/probe.txt", vocab, tiny_cfg { max_seq_length = 5 })
    assert.equal(2, split:size())
    local x, y, n = split:batches(8)()
    assert.equal(2, n)
    assert.same({ { 2, 4, 5, 6, 0 }, { 2, 4, 1, 1, 6 } }, x:totable())
    assert.same({ { 4, 5, 6, 3, 0 }, { 4, 1, 1, 6, 3 } }, y:totable())
  end)

  it("detokenize attaches punctuation to words and joins characters", function()
    assert.equal("where is mary? kitchen.", inference.detokenize({ "where", "is", "mary", "?", "kitchen", "." }, "word"))
    assert.equal("ab c", inference.detokenize({ "a", "b", " ", "c" }, "char"))
    assert.equal("the cat sat .", inference.detokenize({ "the", "cat", "sat", "." }, "whitespace"))
  end)

  it("checkpoint_config takes the checkpoint's training config, with --set on top", function()
    local ck = { train_config = dm.config.totable(tiny_cfg { batch_size = 5, learning_rate = 0.003 }) }
    local cfg = inference.checkpoint_config(ck, { set = { "batch_size=7" } })
    assert.same({ 7, 0.003, 8, corpus }, { cfg.batch_size, cfg.learning_rate, cfg.embedding_dim, cfg.data_path })
    local own = inference.checkpoint_config(ck, { set = {} , config = nil })
    assert.equal(5, own.batch_size)
    -- no training config (a PyTorch export): the defaults
    assert.equal(16, inference.checkpoint_config({}, { set = {} }).batch_size)
  end)
end)

describe("scripts/train.lua command line", function()
  local exe = os.getenv("DRLMEM_EXE")
  local function run(args)
    local out = tmpdir .. "/cli.out"
    local cmd = string.format("env -u LD_PRELOAD %s scripts/train.lua %s >%s 2>&1", exe, args, out)
    local _, _, code = os.execute(cmd)
    local text = assert(io.open(out)):read("a")
    return code, text
  end
  local base = "--set data_path=" .. corpus .. " --set save_path=" .. tmpdir .. "/cli/m --set log_file=" .. tmpdir
    .. "/cli/l/t.log --set embedding_dim=8 --set memory_size=4 --set hidden_size=8 --set num_layers=1 "
    .. "--set max_seq_length=12 --progress none"

  it("rejects bad options with the usage and status 2", function()
    if not exe then return pending("DRLMEM_EXE is not set (run through make test)") end
    local code, text = run("--progress fancy")
    assert.equal(2, code)
    assert.truthy(text:find("Usage:", 1, true), text)
    assert.truthy(text:find("'--progress' must be one of", 1, true), text)
    code, text = run("--set bach_size=3")
    assert.equal(2, code)
    assert.truthy(text:find("unknown key 'bach_size' (did you mean 'batch_size'?)", 1, true), text)
    code, text = run("--resume")
    assert.equal(2, code)
    assert.truthy(text:find("--resume", 1, true), text)
  end)

  it("reports a missing or non-resumable checkpoint with status 1", function()
    if not exe then return pending("DRLMEM_EXE is not set (run through make test)") end
    local code, text = run(base .. " --resume " .. tmpdir .. "/nope.safetensors")
    assert.equal(1, code)
    assert.truthy(text:find("nope.safetensors", 1, true), text)
    local cfg = tiny_cfg { embedding_dim = 8, memory_size = 4, hidden_size = 8 }
    local st, data = setup(cfg)
    resume.save_model(tmpdir .. "/m.safetensors", st.net, data.vocab, cfg)
    code, text = run(base .. " --resume " .. tmpdir .. "/m.safetensors")
    assert.equal(1, code)
    assert.truthy(text:find("is not a resumable checkpoint", 1, true), text)
    -- a resumable checkpoint with a tampered training state: one line naming the file and field
    local p = tmpdir .. "/tampered.safetensors"
    resume.save(p, st)
    local tensors, meta, names = dm.load_safetensors(p)
    local state = dm.json.decode(meta.state)
    state.epoch = -5
    meta.state = dm.json.encode(state)
    local list = {}
    for i, n in ipairs(names) do list[i] = { n, tensors[n] } end
    dm.save_safetensors(p, list, meta)
    code, text = run(base .. " --resume " .. p)
    assert.equal(1, code)
    assert.truthy(text:find(p .. ": training state 'epoch' must be an integer >= 1, got -5", 1, true), text)
    assert.falsy(text:find("traceback", 1, true), text)
  end)
end)
