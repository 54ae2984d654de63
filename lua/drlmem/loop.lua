-- loop.lua: the training loop, in one place. scripts/train.lua runs it, and
-- the specs run the very same functions (with their own hooks instead of
-- files), so what is tested is what trains.
--
--   local st = loop.setup(cfg, data)           net, opt, sched, stopper, vocab, cfg, run
--   local status, sig = loop.run(st, data, hooks)  "done" | "interrupted" (sig "INT"|"TERM"|"HUP")
--
-- loop.run trains epoch after epoch (loop.epoch: train, validate, step the
-- schedule, early stopping, test, one metrics record) until cfg.epochs or
-- early stopping, and calls the hooks where a run writes its files:
--   on_improved(epoch)        the validation loss improved (save the best model)
--   on_epoch(rec, stop)       an epoch is done, st.run already points at the next
--   on_checkpoint(pos)        periodic: every cfg.checkpoint_minutes of training
--                             and/or cfg.checkpoint_steps optimizer steps
--   on_step(pos)              after every optimizer step (st.run updated)
--   on_finish()               the last epoch is done
-- st.run = {epoch = the epoch in progress, batch = batches of it done, sums =
-- their partial sums, carry = the recurrent state they left (carry_state),
-- history = records of the finished epochs, best_path}
-- is the position a resumable checkpoint stores (drlmem.resume).
--
-- Ctrl-C, SIGTERM, SIGHUP. The drlmem host answers them by setting a debug
-- hook on the main Lua thread that raises "interrupted!" (with
-- "(SIGTERM)"/"(SIGHUP)" after it for those) at its next instruction.
-- Hooks belong to one thread, so loop.guard(fn) runs fn in a coroutine,
-- which the hook never reaches, and fn yields (loop.safe_point()) only where
-- the state is consistent: after a whole optimizer step (forward, backward,
-- clip, step, zero_grad, memory write) and after an epoch's hooks. The
-- error then fires in the main thread between two resumes, guard returns
-- "interrupted", and the caller saves what the last safe point described.
-- A signal during an evaluation or a save waits for its end. Under mpirun
-- a signal may reach one rank only: guard then lets fn run on to its next
-- safe point, where an allreduce of the pending signal stops every rank
-- at the same step (so the save, which gathers every rank's generator,
-- is met by all), and the periodic checkpoint's clock is rank 0's.
--
-- A NaN or infinite training loss raises a loop.NonFinite error (a table
-- with epoch, batch and a message) before that batch's backward, so the
-- weights and the last checkpoint stay those of the last good step.
local dm = require "drlmem"
local train = require "drlmem.train"
local evaluation = require "drlmem.evaluation"
local progress = require "drlmem.progress"
local tasks = require "drlmem.tasks"
local log = require "drlmem.log"

local loop = {}

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

---------------------------------------------------------------------------
-- Errors the loop raises on purpose, and the host's interrupt
---------------------------------------------------------------------------
local NonFinite = {}
NonFinite.__index = NonFinite
NonFinite.__name = "drlmem.loop.NonFinite"
NonFinite.__tostring = function(e) return e.message end
loop.NonFinite = NonFinite

function loop.is_nonfinite(err) return getmetatable(err) == NonFinite end

--- Whether err is the host's interrupt error ("...: interrupted!").
function loop.is_interrupt(err)
  return type(err) == "string" and err:find("interrupted!", 1, true) ~= nil
end

--- The signal behind an interrupt error: "INT" (Ctrl-C), "TERM" or "HUP".
function loop.stop_signal(err)
  return type(err) == "string" and err:match("interrupted! %(SIG(%u+)%)") or "INT"
end

--- The exit status of a run stopped by a signal: 128 + its number, as a
-- shell reports a process that signal killed (130, 143, 129).
loop.SIGNAL_STATUS = { INT = 130, TERM = 143, HUP = 129 }

---------------------------------------------------------------------------
-- Early stopping
---------------------------------------------------------------------------
local Early = {}
Early.__index = Early
Early.__name = "drlmem.EarlyStopping"

--- The seed's early stopping: counter = epochs since the best validation
-- loss; training stops once it exceeds patience.
function loop.EarlyStopping(patience)
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
-- Setup
---------------------------------------------------------------------------

--- What a training run holds, from the seed on: st = {net, opt, sched,
-- stopper, vocab, cfg, run} (run at the start of epoch 1). Seeds the
-- global generator with cfg.seed before the model draws its weights.
function loop.setup(cfg, data)
  dm.manual_seed(cfg.seed)
  local net = dm.Controller(train.model_config(cfg, data.vocab.size))
  local opt = train.optimizer(net, cfg)
  -- Under mpirun every rank drew the same weights above; from here on its
  -- dropout masks and policy samples come from a stream of its own, fixed
  -- by the seed and the rank (a checkpoint keeps every rank's state).
  if dm.dist.available() and dm.dist.size() > 1 then dm.manual_seed(loop.rank_seed(cfg.seed, dm.dist.rank())) end
  return { net = net, opt = opt, sched = train.scheduler(opt, cfg), stopper = loop.EarlyStopping(cfg.patience),
    vocab = data.vocab, cfg = cfg, run = { epoch = 1, batch = 0, history = {} } }
end

--- The seed of rank r's generator after the weights are drawn: the seed
-- mixed with the rank by a 64-bit odd constant (the golden ratio's), so
-- that each (seed, rank) gives its own stream.
function loop.rank_seed(seed, rank)
  return seed ~ (0x9E3779B97F4A7C15 * (rank + 1))
end

---------------------------------------------------------------------------
-- Truncated BPTT (cfg.carry_state): the recurrent state one batch leaves is
-- the next one's initial state. The batches come as parallel streams
-- (data.lua's CarrySplit), so row b of a batch continues row b of the one
-- before. An epoch starts from zeros, or from the state a resumable
-- checkpoint saved mid-epoch; the state is a constant to backward
-- (detached), so backpropagation stops at the window's start.
---------------------------------------------------------------------------

--- At an epoch's start: the state to start from (carried = {h=, c=} from
-- a checkpoint, or nil for zeros).
function loop.carry_begin(net, cfg, carried)
  if not cfg.carry_state then return end
  if carried then net:set_state(carried.h, carried.c) else net:set_state(nil) end
end

--- After a batch's forward: its final state becomes the next forward's
-- initial one; returns it ({h=, c=}, what a checkpoint saves), or nil.
function loop.carry_next(net, cfg)
  if not cfg.carry_state then return nil end
  local h, c = net:final_state()
  net:set_state(h, c)
  return { h = h, c = c }
end

--- After an epoch: back to zeros, so nothing else starts from it.
function loop.carry_end(net, cfg)
  if cfg.carry_state then net:set_state(nil) end
end

---------------------------------------------------------------------------
-- One epoch
---------------------------------------------------------------------------

-- Under mpirun a signal reaches one rank, or all at different moments;
-- guard notes it here (loop.pending_signal) instead of stopping, and the
-- next safe point's allreduce makes every rank stop there, at the same
-- step, with the same signal (the highest code).
local SIG_CODE, CODE_SIG = { INT = 1, HUP = 2, TERM = 3 }, { "INT", "HUP", "TERM" }
local AgreedStop = { __name = "drlmem.loop.AgreedStop" }
loop.pending_signal = nil

local function multi_rank() return dm.dist.available() and dm.dist.size() > 1 end

--- A yield point for guard: the caller's state is consistent here. Under
-- mpirun every rank calls it at the same points (one allreduce of a
-- number each).
function loop.safe_point()
  if not coroutine.isyieldable() then return end
  coroutine.yield()
  if multi_rank() then
    local code = dm.dist.allreduce(SIG_CODE[loop.pending_signal] or 0, "max")
    if code > 0 then error(setmetatable({ signal = CODE_SIG[code] }, AgreedStop), 0) end
  end
end

--- Runs one training epoch. ctx: net, opt, cfg, split (the training Split),
-- criterion (default train.criterion(cfg)). opts:
--   start_batch: batches of this epoch already done (resume), 0
--   sums: the partial sums carried with them {loss=, batches=, tokens=,
--         padded_tokens=, seconds=}
--   carry: with carry_state, the recurrent state those batches left ({h=, c=})
--   on_step(pos): called after each optimizer step, pos = {epoch=, batch=, sums=,
--                 carry=} (a copy; batch counts the batches done so far;
--                 carry: the state the next batch starts from, carry_state only)
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
-- tokens counts the tokens that count: non-pad targets (in lines mode a
-- batch is padded to max_seq_length); padded_tokens counts every position.
-- Returns {loss = mean batch loss, batches=, tokens=, padded_tokens=,
-- seconds=, steps=, write = {write_rate=, entropy=, ...} (reinforce only)}.
function loop.train_epoch(ctx, epoch, opts)
  opts = opts or {}
  local net, opt, cfg, split = ctx.net, ctx.opt, ctx.cfg, ctx.split
  -- Without a criterion of the caller's, the loss and its gradient are
  -- computed in the core, where the logits live (no B*T*V copy to Lua).
  local criterion = ctx.criterion
  local buf, V = train.buffers(), net:config().vocab_size
  local B, acc = cfg.batch_size, cfg.accumulation_steps
  -- Under mpirun (dm.dist, lua/drlmem/dist.lua) each global batch of
  -- batch_size x N rows is sharded by rank; a plain process never touches
  -- MPI and runs exactly the single-process path.
  local dist = dm.dist.available() and dm.dist.size() > 1 and dm.dist or nil
  local world = dist and dist.size() or 1
  B = B * world
  -- Across processes each rank's gradient is scaled by its share of the
  -- global batch: from the targets it counts before its forward (one
  -- allreduce), so the share goes into the core's loss as its scale and
  -- the logits stay in the core there too.
  local n = split:nbatches(B)
  local start = opts.start_batch or 0
  local s0 = opts.sums or {}
  local loss_sum, nb, carried = s0.loss or 0.0, s0.batches or 0, s0.seconds or 0.0
  local tokens, padded = s0.tokens or 0, s0.padded_tokens or 0
  local rl = train.reinforce(cfg)
  -- Across processes the memory write blends the global batch's means and
  -- the reinforce policy's statistics are the global batch's: the
  -- controller sums them over the ranks (net:set_reduce). write_policy
  -- content writes where each token read, which has no sums to add: rank
  -- 0 writes from its shard and broadcasts the memory.
  local memory = {}
  local reduced = dist and cfg.write_policy ~= "content"
  if dist then
    net:set_reduce(reduced)
    if not reduced then
      for _, p in ipairs(net:parameters()) do
        if p.name == "memory.keys" or p.name == "memory.values" then memory[#memory + 1] = p.value end
      end
    end
  end
  local wsum = {}
  if rl then
    for k, v in pairs(s0.write or {}) do wsum[k] = v end
    wsum.n = wsum.n or 0
    for _, k in ipairs(train.WRITE_STATS) do wsum[k] = wsum[k] or 0.0 end
    net:set_write_options(train.write_options(cfg, epoch))
  end
  local bar = progress.new { total = n, label = opts.label or ("epoch " .. epoch), mode = opts.progress or "none",
    first = start }
  local t0 = progress.now()
  local steps = 0
  local ignore = cfg.loss_ignore_pad and 0 or -1
  -- loss_positions answers: only the task's answers are trained on (the
  -- policy's rewards still come from every target)
  local answers_only = cfg.loss_positions == "answers"
  local answer_rewards = rl and cfg.reward_positions == "answers"
  if (answers_only or answer_rewards) and not ctx.vocab then
    error("loop.train_epoch: loss_positions or reward_positions answers needs ctx.vocab (the answer positions)", 2)
  end
  local clip_groups = train.clip_groups(net, cfg)
  local function sums_copy()
    local w
    if rl then
      w = {}
      for k, v in pairs(wsum) do w[k] = v end
    end
    return { loss = loss_sum, batches = nb, tokens = tokens, padded_tokens = padded,
      seconds = carried + progress.now() - t0, write = w }
  end
  if cfg.carry_state and dist then
    error("carry_state across processes is not supported yet: each rank would need its own rows' state", 0)
  end
  net:train()
  net:zero_grad()
  loop.carry_begin(net, cfg, start > 0 and opts.carry or nil)
  local state -- (carry_state: what the next batch starts from)
  local i = 0
  for x, y in split:batches(B, epoch) do
    i = i + 1
    if i > start then
      local xs, ys = x, y
      if dist then xs, ys = dist.shard(x, y) end
      local yr = ys -- every target: what the write policy's reward reads
      if answers_only and ys then ys = tasks.answer_targets(cfg.task, ys, ctx.vocab, ignore) end
      local loss, dlogits, count = 0 / 0, nil, 0
      -- weight: this rank's share of the global batch's mean loss; loss
      -- and total become the global batch's (the same on every rank)
      local weight, total = 1, nil
      if dist and not criterion then
        -- the targets the loss averages: non-pad ones with loss_ignore_pad
        count = not xs and 0 or (cfg.loss_ignore_pad and math.tointeger(ys:float():clamp(0, 1):sum()) or ys:numel())
        weight, total = dist.target_weight(count)
        if xs then net:forward(xs, false) end
        if count > 0 then loss = net:loss(ys, { ignore_index = ignore, scale = weight / acc }) end
        weight = 1 -- (applied)
        local sum = dist.allreduce(count > 0 and loss * count or 0, "sum")
        loss = total > 0 and sum / total or 0 / 0
      else
        if xs then
          if criterion then
            local logits = net:forward(xs, buf("logits", xs, V))
            loss, dlogits, count = criterion(logits, ys, 1.0 / acc, buf("dlogits", xs, V))
          else
            net:forward(xs, false)
            loss, count = net:loss(ys, { ignore_index = ignore, scale = 1.0 / acc })
          end
          state = loop.carry_next(net, cfg)
        end
        total = count
        if dist then weight, total, loss = dist.target_weight(count, loss) end
      end
      if total > 0 then
        if not finite(loss) then
          error(setmetatable({ epoch = epoch, batch = i, batches = n, loss = loss,
            message = string.format("the training loss is %s at epoch %d, batch %d of %d", tostring(loss),
              epoch, i, n) }, NonFinite), 0)
        end
        if rl then
          local ws = net:reinforce(xs and yr, ignore, -- nil: an empty shard
            answer_rewards and yr and tasks.answer_targets(cfg.task, yr, ctx.vocab, ignore) or nil)
          if dist then
            -- the policy's statistics are the global batch's already; the
            -- slot usage (a mean over this rank's sequences) is weighted here
            ws.slot_usage = dist.row_mean(ws.slot_usage, xs and xs:size(1) or 0)
          end
          if ws.count > 0 then
            for _, k in ipairs(train.WRITE_STATS) do wsum[k] = wsum[k] + ws[k] end
            wsum.n = wsum.n + 1
          end
        end
        if count > 0 then
          if weight ~= 1 then dlogits:mul_(weight) end
          net:backward(dlogits) -- nil: net:loss's gradient
        end
        loss_sum, nb = loss_sum + loss, nb + 1
      end
      -- With loss_ignore_pad the criterion counted the non-pad targets;
      -- otherwise count them here (targets are >= 0, pad is 0).
      tokens = tokens + (cfg.loss_ignore_pad and math.tointeger(total) or math.tointeger(y:float():clamp(0, 1):sum()))
      padded = padded + y:numel()
      if i % acc == 0 or i == n then
        if dist then dist.average_gradients(net) end
        if cfg.grad_clip > 0 then
          for _, group in ipairs(clip_groups) do dm.clip_grad_norm(group, cfg.grad_clip) end
        end
        opt:step()
        net:zero_grad()
        if reduced then
          net:write_memory(cfg.write_strength, not xs and { empty = true } or nil)
        elseif not dist or dist.rank() == 0 then
          net:write_memory(cfg.write_strength)
        end
        if dist and not reduced then dist.broadcast(memory, 0) end
        steps = steps + 1
        if opts.on_step then
          opts.on_step { epoch = epoch, batch = i, sums = sums_copy(), carry = state }
        end
      end
      -- the bar's rate counts the tokens of this run, not those carried over
      bar:update(i, { loss = nb > 0 and loss_sum / nb or nil, tokens = tokens - (s0.tokens or 0) })
    end
  end
  bar:finish()
  loop.carry_end(net, cfg)
  local write
  if rl then
    write = {}
    for _, k in ipairs(train.WRITE_STATS) do write[k] = wsum.n > 0 and wsum[k] / wsum.n or 0 / 0 end
  end
  return { loss = nb > 0 and loss_sum / nb or 0 / 0, batches = nb, tokens = tokens, padded_tokens = padded,
    seconds = carried + progress.now() - t0, steps = steps, write = write }
end

--- The epoch st.run.epoch: train (from st.run.batch on, after a resume),
-- validate, step the schedule, early stopping, test, and the metrics
-- record, appended to st.run.history; st.run then points at the start of
-- the next epoch. opts: progress, on_step(pos), on_improved(epoch),
-- criterion (tests). Returns the record and whether early stopping says stop.
function loop.epoch(st, data, opts)
  opts = opts or {}
  local net, opt, cfg, run = st.net, st.opt, st.cfg, st.run
  local epoch = run.epoch
  local t0, carried = progress.now(), run.sums and run.sums.seconds or 0 -- (carried: a resumed epoch's time)
  local lr = opt:get_lr()
  local tr = loop.train_epoch({ net = net, opt = opt, cfg = cfg, split = data.train, criterion = opts.criterion,
      vocab = data.vocab },
    epoch, {
      start_batch = run.batch, sums = run.sums, -- 0 and nil unless resuming inside this epoch
      carry = run.carry,
      progress = opts.progress, label = string.format("epoch %d/%d", epoch, cfg.epochs),
      on_step = function(pos)
        run.batch, run.sums, run.carry = pos.batch, pos.sums, pos.carry
        if opts.on_step then opts.on_step(pos) end
        loop.safe_point() -- a signal lands here, after a whole step
      end,
    })
  local val = evaluation.run(net, data.val, cfg)
  train.scheduler_step(st.sched, cfg, val.loss)
  local improved, stop = st.stopper:update(val.loss, epoch)
  if improved and opts.on_improved then opts.on_improved(epoch) end
  local test = evaluation.run(net, data.test, cfg, { metrics = true, task = cfg.task, vocab = data.vocab })
  local rec = {
    epoch = epoch, train_loss = tr.loss, val_loss = val.loss, test_loss = test.loss, test_ppl = test.ppl,
    test_acc = test.accuracy, test_f1_weighted = test.f1_weighted, test_f1_macro = test.f1_macro,
    test_acc_upstream = test.acc_upstream, test_f1_upstream = test.f1_upstream, lr = lr,
    seconds = carried + progress.now() - t0, train_seconds = tr.seconds,
    -- tokens that count (non-pad targets), and every position as labelled
    tokens = tr.tokens, tokens_per_s = tr.tokens / tr.seconds, padded_tokens_per_s = tr.padded_tokens / tr.seconds,
    early_stop = stop, improved = improved,
    -- task data: accuracy at the answer positions (lua/drlmem/tasks.lua)
    test_answer_acc = test.answer_acc, test_answers = test.answers,
  }
  -- write_policy reinforce: the epoch's policy statistics (training
  -- batches) and the evaluation's write rate (thresholded actions)
  if tr.write then
    local w = tr.write
    rec.write_rate, rec.policy_entropy, rec.mean_reward = w.write_rate, w.entropy, w.mean_reward
    rec.mean_advantage, rec.baseline_loss, rec.slot_usage = w.mean_advantage, w.baseline_loss, w.slot_usage
    rec.test_write_rate, rec.test_slot_usage = test.write_rate, test.slot_usage
  end
  rec = log.record(rec)
  run.history[#run.history + 1] = rec
  run.epoch, run.batch, run.sums, run.carry = epoch + 1, 0, nil, nil
  return rec, stop
end

---------------------------------------------------------------------------
-- The run
---------------------------------------------------------------------------

--- Trains from st.run on until cfg.epochs or early stopping, under
-- loop.guard. hooks (all optional): on_improved, on_epoch, on_checkpoint,
-- on_step, on_finish (see the top of this file), progress, criterion,
-- on_resume (guard's), clock (a function returning seconds, progress.now).
-- The periodic checkpoint costs one clock read per step: on_checkpoint(pos)
-- runs once cfg.checkpoint_minutes (0: never) have passed since the last
-- checkpoint (periodic or an epoch's end) or cfg.checkpoint_steps
-- optimizer steps (0: never) have been taken since. Returns guard's
-- "done" or "interrupted" with the signal ("INT", "TERM", "HUP").
function loop.run(st, data, hooks)
  hooks = hooks or {}
  local cfg, run = st.cfg, st.run
  local clock = hooks.clock or progress.now
  local every_s, every_steps = cfg.checkpoint_minutes * 60, cfg.checkpoint_steps
  local last_t, steps = clock(), 0
  local agree = multi_rank() and every_s > 0
  local on_step = function(pos)
    if hooks.on_step then hooks.on_step(pos) end
    if hooks.on_checkpoint then
      steps = steps + 1
      local due = every_s > 0 and clock() - last_t >= every_s
      -- the ranks' clocks differ: rank 0's decides, for all (the save is collective)
      if agree then due = dm.dist.broadcast(due, 0) end
      if (every_steps > 0 and steps >= every_steps) or due then
        hooks.on_checkpoint(pos)
        last_t, steps = clock(), 0
      end
    end
  end
  local eopts = { progress = hooks.progress, on_step = on_step, on_improved = hooks.on_improved,
    criterion = hooks.criterion }
  return loop.guard(function()
    while run.epoch <= cfg.epochs and st.stopper.counter <= cfg.patience do
      local rec, stop = loop.epoch(st, data, eopts)
      if hooks.on_epoch then hooks.on_epoch(rec, stop) end
      last_t, steps = clock(), 0
      loop.safe_point()
      if stop then
        run.stopped_early = true
        break
      end
    end
    if hooks.on_finish then hooks.on_finish() end
  end, { on_resume = hooks.on_resume })
end

--- Runs fn() in a coroutine so that the host's interrupt error can only
-- land between two of its safe points (loop.safe_point). Returns "done",
-- or "interrupted" and the signal ("INT", "TERM", "HUP") when one arrived
-- (fn is then abandoned at its last safe point, or finished if it was
-- already done: check your own state). An error inside fn is raised again
-- with fn's traceback appended (string errors) or as is (tables such as
-- loop.NonFinite).
-- opts.on_resume(): called in the main thread before each resume (tests
-- use it to simulate the host's hook).
function loop.guard(fn, opts)
  opts = opts or {}
  local co = coroutine.create(fn)
  local inner_err
  local multi = multi_rank()
  loop.pending_signal = nil
  while true do
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
    if ok or inner_err ~= nil then break end -- (fn's error wins over a signal with it)
    if not loop.is_interrupt(err) then error(err, 0) end
    -- Under mpirun fn goes on to its next safe point, where the ranks agree
    -- to stop together (loop.safe_point).
    if not multi or coroutine.status(co) == "dead" then return "interrupted", loop.stop_signal(err) end
    loop.pending_signal = loop.pending_signal or loop.stop_signal(err)
  end
  if getmetatable(inner_err) == AgreedStop then return "interrupted", inner_err.signal end
  -- a signal that arrived together with the error is moot
  if inner_err ~= nil then error(inner_err, 0) end
  if loop.pending_signal then return "interrupted", loop.pending_signal end -- fn was done
  return "done"
end

return loop
