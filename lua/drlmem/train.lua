-- train.lua: the building blocks of scripts/train.lua, kept here so the
-- script itself reads in one sitting and the pieces can be tested alone.
--
--   train.model_config(cfg, V)        the dm.Controller config of a run
--   train.optimizer(net, cfg)         AdamW / Adam / SGD from cfg
--   train.scheduler(opt, cfg)         cosine / plateau / step / none, and
--   train.scheduler_step(s, cfg, v)   its once-per-epoch step
--   train.criterion(cfg)              the loss: loss, dlogits, count
--   train.train_epoch(ctx, epoch, o)  one epoch of (accumulated) steps
--   train.evaluate(net, split, cfg)   loss, perplexity, accuracy, F1
--   train.EarlyStopping(patience)     the seed's counter
--   train.guard(fn)                   runs fn so that Ctrl-C lands only at
--                                     its safe points (see below)
--   train.save_model / save_resumable / resume   checkpoints (drlmem.checkpoint
--                                     format; resume restores weights, optimizer
--                                     moments, schedule, early stopping, rng and
--                                     the position inside an epoch)
--   train.ensure_data, record, describe_epoch, resume_command   script chores
--   train.checkpoint_config, file_split, detokenize   for evaluate/generate/
--                                     explore_memory
--
-- Ctrl-C. The drlmem host answers SIGINT by setting a debug hook on the
-- main Lua thread that raises "interrupted!" at its next instruction. Hooks
-- belong to one thread, so guard(fn) runs fn in a coroutine, which the hook
-- never reaches, and fn yields (train.safe_point()) only where the state is
-- consistent: after a whole optimizer step (forward, backward, clip, step,
-- zero_grad, memory write) and after an epoch's checkpoint. The error then
-- fires in the main thread between two resumes, guard returns
-- "interrupted", and the caller saves what the last safe point described.
-- A Ctrl-C during an evaluation waits for the end of the epoch.
--
-- A NaN or infinite training loss raises a train.NonFinite error (a table
-- with epoch, batch and a message) before that batch's backward, so the
-- weights and the last checkpoint stay those of the last good step.
local dm = require "drlmem"
local progress = require "drlmem.progress"

local train = {}

train.now = progress.now

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end
train.finite = finite

---------------------------------------------------------------------------
-- Model, optimizer, scheduler, loss
---------------------------------------------------------------------------

--- The dm.Controller config of cfg for a vocabulary of V tokens.
train.WRITE_POLICY_KEYS = { "write_policy", "episodic_slots", "policy_bias_init", "policy_gamma",
  "write_cost", "policy_alpha", "baseline_beta", "entropy_eta", "advantage_decay", "normalize_advantage",
  "write_actions", "random_write_rate" }

function train.model_config(cfg, V)
  local m = {
    vocab_size = V,
    embedding_dim = cfg.embedding_dim,
    memory_embedding_dim = cfg.memory_embedding_dim or cfg.embedding_dim,
    memory_size = cfg.memory_size,
    hidden_size = cfg.hidden_size,
    num_layers = cfg.num_layers,
    dropout = cfg.dropout,
    output_activation = cfg.output_activation,
  }
  -- The issue-6 keys go in only when they change the model, so a seed
  -- config's model (and its checkpoints) stay exactly the upstream's.
  if cfg.use_memory == false then m.use_memory = false end
  if cfg.write_policy == "reinforce" then
    for _, k in ipairs(train.WRITE_POLICY_KEYS) do m[k] = cfg[k] end
  end
  return m
end

--- The parameter groups gradient clipping treats separately: one group
-- (net:parameters()) for the seed model; with reinforce, the policy and
-- baseline parameters (policy.*, baseline.*) form a group of their own.
-- The baseline regresses discounted returns of log-probabilities (tens of
-- nats), so its gradient is orders of magnitude larger than the language
-- model's: one global norm would shrink every model gradient to nothing.
-- The episodic read parameters learn from the cross-entropy and stay with
-- the model.
function train.clip_groups(net, cfg)
  local all = net:parameters()
  if not train.reinforce(cfg) then return { all } end
  local model, rl = {}, {}
  for _, p in ipairs(all) do
    local g = (p.name:match("^policy%.") or p.name:match("^baseline%.")) and rl or model
    g[#g + 1] = p
  end
  return { model, rl }
end

--- Whether cfg trains the reinforce write policy.
function train.reinforce(cfg) return cfg.write_policy == "reinforce" end

--- The write options of an epoch (1-based): soft writes during the
-- curriculum's first curriculum_epochs epochs, then sampled hard writes;
-- the entropy weight decays as entropy_eta * entropy_decay^epoch.
function train.write_options(cfg, epoch)
  return { soft = epoch <= cfg.curriculum_epochs, eta = cfg.entropy_eta * cfg.entropy_decay ^ epoch }
end

-- The six per-epoch statistics of the write policy (means over the
-- epoch's batches of net:reinforce's results).
train.WRITE_STATS = { "write_rate", "entropy", "mean_reward", "mean_advantage", "baseline_loss", "slot_usage" }

--- The optimizer of cfg.optimizer over net's parameters.
function train.optimizer(net, cfg)
  local opts = { lr = cfg.learning_rate, weight_decay = cfg.weight_decay }
  if cfg.optimizer == "adamw" then return dm.optim.AdamW(net:parameters(), opts) end
  if cfg.optimizer == "adam" then return dm.optim.Adam(net:parameters(), opts) end
  if cfg.optimizer == "sgd" then return dm.optim.SGD(net:parameters(), opts) end
  error("unknown optimizer '" .. tostring(cfg.optimizer) .. "'", 2)
end

--- The scheduler of cfg.scheduler (nil for "none").
function train.scheduler(opt, cfg)
  local s = cfg.scheduler
  if s == "cosine" then return dm.optim.CosineAnnealingLR(opt, { T_max = cfg.t_max, eta_min = cfg.eta_min }) end
  if s == "step" then return dm.optim.StepLR(opt, { step_size = cfg.step_size, gamma = cfg.gamma }) end
  if s == "plateau" then return dm.optim.ReduceLROnPlateau(opt, { factor = cfg.gamma }) end
  if s == "none" then return nil end
  error("unknown scheduler '" .. tostring(s) .. "'", 2)
end

--- The once-per-epoch scheduler step (after validation; plateau watches
-- the validation loss).
function train.scheduler_step(sched, cfg, val_loss)
  if not sched then return end
  if cfg.scheduler == "plateau" then
    sched:step(val_loss)
  else
    sched:step()
  end
end

--- The training loss of cfg: fn(logits, targets, scale [, out]) -> loss,
-- dlogits, count. With loss_ignore_pad the mean runs over non-pad targets;
-- without, over every position as upstream. scale multiplies dlogits only.
-- out: a float32 tensor of the logits' shape that receives dlogits (and is
-- returned as it), or false for no dlogits at all (evaluation).
function train.criterion(cfg)
  local ignore = cfg.loss_ignore_pad and 0 or nil
  local ce = dm.nn.cross_entropy
  return function(logits, y, scale, out)
    return ce(logits, y, { ignore_index = ignore, scale = scale or 1.0, out = out or nil,
      grad = out ~= false })
  end
end

--- A source of reusable float32 (B,T,V) buffers, one per name: the logits
-- and dlogits of a batch are 4*B*T*V bytes each (64 MB at the seed's batch
-- and V=10000), and allocating them every batch costs page faults and lets
-- garbage pile up that Lua's collector cannot see the size of. A buffer is
-- reallocated only when the batch shape changes (the last, smaller batch).
function train.buffers()
  local cache = {}
  return function(name, x, V)
    local B, T = x:size(1), x:size(2)
    local t = cache[name]
    if not t or t:size(1) ~= B or t:size(2) ~= T or t:size(3) ~= V then
      t = dm.zeros({ B, T, V }, "float32")
      cache[name] = t
    end
    return t
  end
end

---------------------------------------------------------------------------
-- Errors the loop raises on purpose
---------------------------------------------------------------------------
local NonFinite = {}
NonFinite.__index = NonFinite
NonFinite.__name = "drlmem.train.NonFinite"
NonFinite.__tostring = function(e) return e.message end
train.NonFinite = NonFinite

function train.is_nonfinite(err) return getmetatable(err) == NonFinite end

--- Whether err is the host's Ctrl-C error ("...: interrupted!").
function train.is_interrupt(err)
  return type(err) == "string" and err:find("interrupted!", 1, true) ~= nil
end

---------------------------------------------------------------------------
-- Early stopping
---------------------------------------------------------------------------
local Early = {}
Early.__index = Early
Early.__name = "drlmem.EarlyStopping"

--- The seed's early stopping: counter = epochs since the best validation
-- loss; training stops once it exceeds patience.
function train.EarlyStopping(patience)
  assert(math.type(patience) == "integer" and patience >= 0, "EarlyStopping: patience must be an integer >= 0")
  return setmetatable({ patience = patience, best = math.huge, best_epoch = 0, counter = 0 }, Early)
end

--- Records an epoch's validation loss; returns improved, stop.
function Early:update(val_loss, epoch)
  local improved = val_loss < self.best
  if improved then
    self.best, self.best_epoch, self.counter = val_loss, epoch, 0
  else
    self.counter = self.counter + 1
  end
  return improved, self.counter > self.patience
end

--- A plain table of the state ({best=, best_epoch=, counter=}).
function Early:state()
  return { best = self.best, best_epoch = self.best_epoch, counter = self.counter }
end

function Early:load_state(s)
  local b = s.best
  if type(b) == "string" then b = (b == "inf" and math.huge) or tonumber(b) end
  self.best = b or math.huge
  self.best_epoch = math.tointeger(s.best_epoch) or 0
  self.counter = math.tointeger(s.counter) or 0
  return self
end

---------------------------------------------------------------------------
-- Training and evaluation
---------------------------------------------------------------------------

--- A yield point for guard: the caller's state is consistent here.
function train.safe_point()
  if coroutine.isyieldable() then coroutine.yield() end
end

--- Runs one training epoch. ctx: net, opt, cfg, split (the training Split),
-- criterion (default train.criterion(cfg)). opts:
--   start_batch: batches of this epoch already done (resume), 0
--   sums: the partial sums carried with them {loss=, batches=, tokens=, seconds=}
--   on_step(pos): called after each optimizer step, pos = {epoch=, batch=, sums=}
--                 (a copy; batch counts the batches done so far)
--   progress: "bar" | "plain" | "none" (default none), label
-- The loss of a batch is its criterion; backward uses dlogits scaled by
-- 1/accumulation_steps; every accumulation_steps batches, and after the
-- epoch's last batch, the gradients are clipped to grad_clip (0: no clip),
-- the optimizer steps (clipping each of train.clip_groups separately), the
-- gradients are cleared and the memory is written.
-- With write_policy reinforce, the epoch starts with
-- net:set_write_options(train.write_options(cfg, epoch)) and each batch
-- calls net:reinforce(y, pad) after its forward (pad = 0 with
-- loss_ignore_pad, else none), adding the policy and baseline gradients
-- before the step; sums.write (running sums of train.WRITE_STATS and their
-- batch count) carries over a resume like the loss.
-- Returns {loss = mean batch loss, batches=, tokens=, seconds=, steps=,
-- write = {write_rate=, entropy=, ...} (reinforce only)}.
function train.train_epoch(ctx, epoch, opts)
  opts = opts or {}
  local net, opt, cfg, split = ctx.net, ctx.opt, ctx.cfg, ctx.split
  local criterion = ctx.criterion or train.criterion(cfg)
  local buf, V = train.buffers(), net:config().vocab_size
  local B, acc = cfg.batch_size, cfg.accumulation_steps
  local n = split:nbatches(B)
  local start = opts.start_batch or 0
  local s0 = opts.sums or {}
  local loss_sum, nb, tokens, carried = s0.loss or 0.0, s0.batches or 0, s0.tokens or 0, s0.seconds or 0.0
  local rl = train.reinforce(cfg)
  local wsum = {}
  if rl then
    for k, v in pairs(s0.write or {}) do wsum[k] = v end
    wsum.n = wsum.n or 0
    for _, k in ipairs(train.WRITE_STATS) do wsum[k] = wsum[k] or 0.0 end
    net:set_write_options(train.write_options(cfg, epoch))
  end
  local bar = progress.new { total = n, label = opts.label or ("epoch " .. epoch), mode = opts.progress or "none",
    first = start }
  local t0 = train.now()
  local steps = 0
  local ignore = cfg.loss_ignore_pad and 0 or -1
  local clip_groups = train.clip_groups(net, cfg)
  local function sums_copy()
    local w
    if rl then
      w = {}
      for k, v in pairs(wsum) do w[k] = v end
    end
    return { loss = loss_sum, batches = nb, tokens = tokens, seconds = carried + train.now() - t0, write = w }
  end
  net:train()
  net:zero_grad()
  local i = 0
  for x, y, rows in split:batches(B, epoch) do
    i = i + 1
    if i > start then
      local logits = net:forward(x, buf("logits", x, V))
      local loss, dlogits, count = criterion(logits, y, 1.0 / acc, buf("dlogits", x, V))
      if count > 0 then
        if not finite(loss) then
          error(setmetatable({ epoch = epoch, batch = i, batches = n, loss = loss,
            message = string.format("the training loss is %s at epoch %d, batch %d of %d", tostring(loss),
              epoch, i, n) }, NonFinite), 0)
        end
        if rl then
          local ws = net:reinforce(y, ignore)
          if ws.count > 0 then
            for _, k in ipairs(train.WRITE_STATS) do wsum[k] = wsum[k] + ws[k] end
            wsum.n = wsum.n + 1
          end
        end
        net:backward(dlogits)
        loss_sum, nb = loss_sum + loss, nb + 1
      end
      tokens = tokens + x:numel()
      if i % acc == 0 or i == n then
        if cfg.grad_clip > 0 then
          for _, group in ipairs(clip_groups) do dm.clip_grad_norm(group, cfg.grad_clip) end
        end
        opt:step()
        net:zero_grad()
        net:write_memory(cfg.write_strength)
        steps = steps + 1
        if opts.on_step then
          opts.on_step { epoch = epoch, batch = i, sums = sums_copy() }
        end
      end
      -- the bar's rate counts the tokens of this run, not those carried over
      bar:update(i, { loss = nb > 0 and loss_sum / nb or nil, tokens = tokens - (s0.tokens or 0) })
    end
  end
  bar:finish()
  local write
  if rl then
    write = {}
    for _, k in ipairs(train.WRITE_STATS) do write[k] = wsum.n > 0 and wsum[k] / wsum.n or 0 / 0 end
  end
  return { loss = nb > 0 and loss_sum / nb or 0 / 0, batches = nb, tokens = tokens,
    seconds = carried + train.now() - t0, steps = steps, write = write }
end

--- Evaluates net on a split in eval mode (no dropout; usage counts still
-- count, as upstream). Returns {loss = mean batch criterion (the training
-- loss of cfg), batches=}, and with opts.metrics also ppl (exp of the mean
-- NLL over all non-pad targets), accuracy, f1_weighted, f1_macro (pooled
-- over non-pad targets), acc_upstream, f1_upstream (per batch, weighted by
-- rows, as upstream) and n (non-pad targets). opts.task ("recall" | "copy")
-- with opts.vocab adds answer_acc and answers (dm.tasks.Accumulator); with
-- write_policy reinforce, write_rate and slot_usage are the means over the
-- batches of the evaluation forwards (thresholded actions unless
-- sample_eval). Leaves net in training mode.
function train.evaluate(net, split, cfg, opts)
  opts = opts or {}
  local criterion = train.criterion(cfg)
  local ce = dm.nn.cross_entropy
  local buf, V = train.buffers(), net:config().vocab_size
  local with_metrics = opts.metrics
  local pooled = with_metrics and dm.metrics.Accumulator { pad = 0 }
  local per_batch = with_metrics and dm.metrics.Accumulator { pad = 0, mode = "batch" }
  local loss_sum, nb, nll_sum, n_tok = 0.0, 0, 0.0, 0
  local answers = opts.task and opts.task ~= "none" and dm.tasks.Accumulator(opts.task, opts.vocab)
  local wr_sum, su_sum, nw = 0.0, 0.0, 0
  net:eval()
  local ok, err = pcall(function()
    for x, y in split:batches(opts.batch_size or cfg.batch_size) do
      local logits = net:forward(x, buf("logits", x, V))
      local loss, _, count = criterion(logits, y, 1.0, false)
      if count > 0 then loss_sum, nb = loss_sum + loss, nb + 1 end
      local ws = net:write_stats()
      if ws then wr_sum, su_sum, nw = wr_sum + ws.write_rate, su_sum + ws.slot_usage, nw + 1 end
      if answers then answers:add(logits, y) end
      if with_metrics then
        local nll, cnt = loss, count
        if not cfg.loss_ignore_pad then
          nll, _, cnt = ce(logits, y, { ignore_index = 0, grad = false })
        end
        if cnt > 0 then nll_sum, n_tok = nll_sum + nll * cnt, n_tok + cnt end
        pooled:add(logits, y)
        per_batch:add(logits, y)
      end
    end
  end)
  net:train()
  if not ok then error(err, 0) end
  local r = { loss = nb > 0 and loss_sum / nb or 0 / 0, batches = nb }
  if nw > 0 then r.write_rate, r.slot_usage = wr_sum / nw, su_sum / nw end
  if answers then
    local a = answers:result()
    r.answer_acc, r.answers = a.accuracy, a.total
  end
  if with_metrics then
    local m, u = pooled:compute(), per_batch:compute()
    r.ppl = n_tok > 0 and dm.metrics.perplexity(nll_sum / n_tok) or 0 / 0
    r.nll = n_tok > 0 and nll_sum / n_tok or 0 / 0
    r.accuracy, r.f1_weighted, r.f1_macro, r.n = m.accuracy, m.f1_weighted, m.f1_macro, n_tok
    r.acc_upstream, r.f1_upstream = u.accuracy, u.f1_weighted
  end
  return r
end

---------------------------------------------------------------------------
-- The script's chores
---------------------------------------------------------------------------

-- Data files scripts/make_data.lua generates, with its options.
train.GENERATED = { ["data/augmented_text_data.txt"] = {}, ["data/tiny.txt"] = { "--tiny" } }

--- Makes cfg.data_path with scripts/make_data.lua (in this process) when
-- it is missing and is one of the generated files; returns true if it did.
-- script_dir: where make_data.lua lives (default: beside the running script).
function train.ensure_data(cfg, script_dir)
  local path = cfg.data_path
  -- (a stat, not an open: opening a FIFO to see whether it exists blocks)
  if require("lfs").attributes(path) then return false end
  local extra = train.GENERATED[path]
  if not extra then return false end
  script_dir = script_dir or ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or "scripts")
  local script = script_dir .. "/make_data.lua"
  local chunk, err = loadfile(script)
  if not chunk then error(string.format("%s is missing and cannot be made: %s", path, tostring(err)), 0) end
  local argv = { [0] = script, "--out", path }
  for _, a in ipairs(extra) do argv[#argv + 1] = a end
  local saved_arg = arg
  _G.arg = argv
  local ok, e = pcall(chunk, table.unpack(argv))
  _G.arg = saved_arg
  if not ok then error(string.format("making %s failed: %s", path, tostring(e)), 0) end
  return true
end

--- A metrics record fit for JSON: non-finite numbers become null.
function train.record(t)
  local out = {}
  for k, v in pairs(t) do
    if type(v) == "number" and not finite(v) then v = dm.json.null end
    out[k] = v
  end
  return out
end

local function f4(v) return type(v) == "number" and string.format("%.4f", v) or "nan" end

--- One log line for a metrics record.
function train.describe_epoch(r, epochs)
  return string.format("epoch %d/%d: train %s  val %s  test %s  ppl %s  acc %s  f1w %s  f1m %s  lr %.6g  "
    .. "%.1fs (train %.1fs, %.0f tok/s)%s%s", r.epoch, epochs, f4(r.train_loss), f4(r.val_loss),
    f4(r.test_loss), type(r.test_ppl) == "number" and string.format("%.2f", r.test_ppl) or "nan",
    f4(r.test_acc), f4(r.test_f1_weighted), f4(r.test_f1_macro), r.lr, r.seconds, r.train_seconds,
    type(r.tokens_per_s) == "number" and r.tokens_per_s or 0, r.improved and "  *best*" or "",
    r.early_stop and "  (early stop)" or "") .. train.describe_extras(r)
end

--- The optional parts of an epoch's log line: answer accuracy (task
-- data) and the write policy's statistics (reinforce).
function train.describe_extras(r)
  local parts = {}
  if r.test_answer_acc ~= nil then parts[#parts + 1] = "answer acc " .. f4(r.test_answer_acc) end
  if r.write_rate ~= nil then
    parts[#parts + 1] = string.format("writes: rate %s entropy %s reward %s advantage %s baseline %s "
      .. "slots %s eval rate %s", f4(r.write_rate), f4(r.policy_entropy), f4(r.mean_reward),
      f4(r.mean_advantage), f4(r.baseline_loss), f4(r.slot_usage), f4(r.test_write_rate))
  end
  if #parts == 0 then return "" end
  return "  " .. table.concat(parts, "; ")
end

local function shq(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The command line that resumes this run from ckpt: the running command
-- with its --resume (if any) replaced.
function train.resume_command(ckpt, argv)
  argv = argv or arg or {}
  local exe = -1 -- the interpreter has the lowest index, its options follow
  while argv[exe - 1] ~= nil do exe = exe - 1 end
  local parts = { shq(argv[exe] or "drlmem") }
  for k = exe + 1, 0 do parts[#parts + 1] = shq(argv[k] or "scripts/train.lua") end
  local i = 1
  while argv[i] ~= nil do
    local a = argv[i]
    if a == "--resume" then
      i = i + 1
    elseif not a:match("^%-%-resume=") then
      parts[#parts + 1] = shq(a)
    end
    i = i + 1
  end
  parts[#parts + 1] = "--resume"
  parts[#parts + 1] = shq(ckpt)
  return table.concat(parts, " ")
end

---------------------------------------------------------------------------
-- Checkpoints (the format is drlmem.checkpoint's)
---------------------------------------------------------------------------

--- Saves net with its vocabulary and the training config (a model file:
-- memory_model*.safetensors).
function train.save_model(path, net, vocab, cfg)
  dm.checkpoint.save(path, net, { vocab = vocab:list(), config = dm.config.totable(cfg) })
end

--- Saves everything a resumed run needs. st: net, opt, sched (or nil),
-- stopper, vocab, cfg, run = {epoch = the epoch in progress, batch =
-- batches of it done, sums = its partial sums (or nil), history = the
-- metrics records of the finished epochs, best_path = the best model file}.
function train.save_resumable(path, st)
  local run = st.run
  dm.checkpoint.save(path, st.net, {
    vocab = st.vocab:list(),
    config = dm.config.totable(st.cfg),
    optimizer = st.opt,
    scheduler = st.sched,
    state = {
      epoch = run.epoch, batch = run.batch, sums = run.sums or dm.json.null,
      history = dm.json.array(run.history or {}), best_path = run.best_path or dm.json.null,
      early = st.stopper:state(), rng = dm.get_rng_state(),
      write_state = st.net:write_state() or dm.json.null,
    },
  })
end

-- Keys of the training config a resumed run may change without changing
-- what it computes.
local FREE_KEYS = { epochs = true, patience = true, log_file = true, save_path = true, threads = true,
  data_path = true }

--- Loads a resumable checkpoint into st (net, opt, sched, stopper, vocab,
-- cfg, as for save_resumable) and returns the run table {epoch, batch,
-- sums, history, best_path} plus a list of notes (config keys that differ
-- from the checkpoint's). Raises a clear error for a model file, another
-- vocabulary or another model shape.
function train.resume(path, st)
  local ck = dm.checkpoint.load(path)
  local s = ck.state
  if type(s) ~= "table" or ck.optimizer == nil or s.epoch == nil then
    error(string.format("%s is not a resumable checkpoint (it has no training state); resume from the "
      .. "last.safetensors a run writes in its save_path", path), 0)
  end
  local mine = st.vocab:list()
  if #mine ~= #ck.vocab then
    error(string.format("%s: its vocabulary has %d tokens, the data gives %d (another data file or "
      .. "tokenizer?)", path, #ck.vocab, #mine), 0)
  end
  for i = 1, #mine do
    if mine[i] ~= ck.vocab[i] then
      error(string.format("%s: its vocabulary differs from the data's at index %d ('%s' vs '%s')", path,
        i - 1, ck.vocab[i], mine[i]), 0)
    end
  end
  local want, have = st.net:config(), ck.config
  local keys = {}
  for k in pairs(want) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = want[k]
    if have[k] ~= v then
      error(string.format("%s: the model has %s = %s, the config asks for %s", path, k, tostring(have[k]),
        tostring(v)), 0)
    end
  end
  st.net:load_state_dict((ck.net:state_dict()))
  dm.checkpoint.restore_optimizer(st.opt, ck)
  if st.sched then dm.checkpoint.restore_scheduler(st.sched, ck) end
  st.stopper:load_state(s.early or {})
  dm.checkpoint.restore_rng(ck)
  -- the reinforce policy's running advantage scale
  if type(s.write_state) == "table" and st.net:write_state() then st.net:set_write_state(s.write_state) end
  local notes = {}
  for k, v in pairs(ck.train_config or {}) do
    local ok, mine_v = pcall(function() return st.cfg[k] end)
    if ok and not FREE_KEYS[k] and mine_v ~= v and not (mine_v == nil and v == dm.json.null) then
      notes[#notes + 1] = string.format("%s = %s (the checkpoint was trained with %s)", k, tostring(mine_v),
        tostring(v))
    end
  end
  table.sort(notes)
  local sums = s.sums
  if sums == dm.json.null then sums = nil end
  local best_path = s.best_path
  if best_path == dm.json.null then best_path = nil end
  return { epoch = s.epoch, batch = s.batch or 0, sums = sums, history = s.history or {},
    best_path = best_path }, notes
end

---------------------------------------------------------------------------
-- Using a trained model (scripts/evaluate.lua, generate.lua, explore_memory.lua)
---------------------------------------------------------------------------

local function value_text(v)
  if math.type(v) == "float" then return string.format("%.17g", v) end
  return tostring(v)
end

--- The config of a run that uses checkpoint ck: with --config, that file
-- and the --set items; otherwise the checkpoint's training config (as it
-- was trained) with the --set items on top. args: the parsed command line.
function train.checkpoint_config(ck, args)
  local sets = args.set or {}
  if args.config or not ck.train_config then return dm.config.load(args.config, sets) end
  local overridden = {} -- keys a --set item gives: the checkpoint's value is not checked
  for _, item in ipairs(sets) do
    local k = tostring(item):match("^%s*([^=]-)%s*=")
    if k then overridden[k] = true end
  end
  -- A tokenizer a module registered in training must be registered again:
  -- say so, rather than reject a --set the user never typed.
  local tok = ck.train_config.tokenizer
  if type(tok) == "string" and not overridden.tokenizer then dm.data.check_tokenizer(tok, "the checkpoint's") end
  local list, keys = {}, {}
  for k in pairs(ck.train_config) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = ck.train_config[k]
    if dm.config.fields[k] and v ~= dm.json.null and type(v) ~= "table" and not overridden[k] then
      list[#list + 1] = k .. "=" .. value_text(v)
    end
  end
  for _, item in ipairs(sets) do list[#list + 1] = item end
  return dm.config.load(nil, list)
end

--- Every sample of a text file, encoded with a given vocabulary (words
-- outside it become <unk>), as a split with :batches(B), :size(),
-- :nbatches(B). cfg gives tokenizer, sample_mode and max_seq_length.
function train.file_split(path, vocab, cfg)
  local T = cfg.max_seq_length
  local text = dm.data.read_text(path, "--data", cfg.max_data_bytes)
  local samples, stream = dm.data.samples(text, dm.data.tokenizer(cfg.tokenizer), cfg.sample_mode, T,
    cfg.stream_line_end)
  local X, Y
  if stream then
    local ids = vocab:encode(table.move(stream, 1, #samples * (T + 1), 1, {}))
    if #samples == 0 then error(string.format("data file '%s' has fewer than %d tokens", path, T + 1), 0) end
    X, Y = dm.datautil.encode_windows(ids, T)
  else
    if #samples == 0 then error(string.format("data file '%s' gives no sample", path), 0) end
    local enc = {}
    for i = 1, #samples do enc[i] = vocab:encode(samples[i]) end
    X, Y = dm.datautil.encode_lines(enc, T)
  end
  local order = {}
  for i = 1, #samples do order[i] = i end
  local split = { name = path, X = X, Y = Y }
  function split:size() return #order end
  function split:nbatches(B) return (#order + B - 1) // B end
  function split:batches(B)
    local i = 0
    return function()
      if i >= #order then return nil end
      local cnt = math.min(B, #order - i)
      local x, y = dm.datautil.gather(X, Y, order, i + 1, cnt)
      i = i + cnt
      return x, y, cnt
    end
  end
  return split
end

--- Text of a list of tokens: words joined by spaces with . , ? ! attached
-- to the word before them; characters (tokenizer char) joined as they are;
-- whitespace tokens joined by one space (the text was pre-tokenized).
function train.detokenize(tokens, tokenizer)
  if tokenizer == "char" then return table.concat(tokens) end
  if tokenizer == "whitespace" then return table.concat(tokens, " ") end
  return (table.concat(tokens, " "):gsub(" ([%.,%?!])", "%1"))
end

---------------------------------------------------------------------------
-- Ctrl-C
---------------------------------------------------------------------------

--- Runs fn() in a coroutine so that the host's Ctrl-C error can only land
-- between two of its safe points (train.safe_point). Returns "done", or
-- "interrupted" when Ctrl-C arrived (fn is then abandoned at its last safe
-- point, or finished if it was already done: check your own state). An
-- error inside fn is raised again with fn's traceback appended (string
-- errors) or as is (tables such as train.NonFinite).
-- opts.on_resume(): called in the main thread before each resume (tests
-- use it to simulate the host's hook).
function train.guard(fn, opts)
  opts = opts or {}
  local co = coroutine.create(fn)
  local inner_err
  local ok, err = pcall(function()
    while true do
      if opts.on_resume then opts.on_resume() end
      local rok, e = coroutine.resume(co)
      if not rok then
        inner_err = type(e) == "string" and debug.traceback(co, e) or e
        return
      end
      if coroutine.status(co) == "dead" then return end
    end
  end)
  if inner_err ~= nil then
    -- a Ctrl-C that arrived together with the error is moot
    error(inner_err, 0)
  end
  if ok then return "done" end
  if train.is_interrupt(err) then return "interrupted" end
  error(err, 0)
end

return train
