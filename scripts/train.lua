-- train.lua: trains DRLMemNet and leaves a model, a log, metrics and a plot.
--
--   drlmem scripts/train.lua [--config FILE] [--set key=value ...] [--resume CKPT]
--                            [--progress bar|plain|none]
--
-- Per epoch: train (gradients accumulated over accumulation_steps batches,
-- then clip, optimizer step, zero_grad and the memory write), validate,
-- step the learning-rate schedule, check early stopping (the seed's
-- counter: stop once more than `patience` epochs passed without a better
-- validation loss), and evaluate on the test split (loss, perplexity,
-- accuracy, weighted and macro F1 over non-pad targets).
--
-- Written under save_path: memory_model_epoch_N.safetensors at each
-- improvement, last.safetensors (resumable) after every epoch, and at the
-- end memory_model.safetensors, the best epoch's weights with vocabulary
-- and config. Beside log_file: the log, metrics.jsonl and training.svg.
-- Ctrl-C finishes the current step, saves last.safetensors and prints the
-- command that resumes (exit status 130); a NaN or infinite loss stops the
-- run, keeping the last good checkpoint (exit status 1). The building
-- blocks live in lua/drlmem/train.lua.
local dm = require "drlmem"
local train, log, progress = dm.train, dm.log, dm.progress

local args, cfg = dm.cli.parse {
  name = "train.lua",
  description = "Trains DRLMemNet on data_path; writes checkpoints to save_path and the log, "
    .. "metrics.jsonl and training.svg beside log_file.",
  options = function(p)
    p:option("--resume", "Continue from a resumable checkpoint (save_path/last.safetensors)."):argname("<checkpoint>")
    p:option("--progress", "Progress display: bar (default on a terminal), plain or none.")
      :choices { "bar", "plain", "none" }
  end,
}

-- A bad data file or checkpoint is a message, not a traceback.
local function try(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then dm.cli.die(r[2]) end
  return table.unpack(r, 2, r.n)
end

-- Data: the generated default data is made on first use.
try(train.ensure_data, cfg)
if cfg.threads > 0 and dm.set_num_threads then dm.set_num_threads(cfg.threads) end
try(dm.budget.check_data, cfg) -- sizes that cannot fit: one line, before anything is allocated
local data = try(dm.data.load, cfg)
try(dm.budget.check, cfg, data)

-- Model, optimizer, schedule, early stopping.
dm.manual_seed(cfg.seed)
local net = dm.Controller(train.model_config(cfg, data.vocab.size))
local opt = train.optimizer(net, cfg)
local sched = train.scheduler(opt, cfg)
local stopper = train.EarlyStopping(cfg.patience)
local st = { net = net, opt = opt, sched = sched, stopper = stopper, vocab = data.vocab, cfg = cfg }

-- Where the run stands: epoch in progress, batches of it done, their sums.
local run = { epoch = 1, batch = 0, history = {} }
local notes = {}
if args.resume then run, notes = try(train.resume, args.resume, st) end
st.run = run

local save_dir = cfg.save_path
try(log.mkdir_p, save_dir)
local function saved(name) return log.join(save_dir, name) end
local last_path = saved("last.safetensors")
local lg = try(log.open, cfg.log_file, { append = args.resume ~= nil })
try(lg.reset_metrics, lg, run.history)
local svg_path = log.join(log.dirname(cfg.log_file), "training.svg")
local mode = args.progress or progress.default_mode()

if args.resume then
  lg:info("resuming from %s at epoch %d, batch %d", args.resume, run.epoch, run.batch)
  for _, n in ipairs(notes) do lg:info("note: %s", n) end
end
lg:quiet("config:\n  " .. table.concat(dm.config.describe(cfg), "\n  "))
lg:info("%s", dm.data.describe(data))
for _, w in ipairs(data.warnings) do lg:warn("warning: %s", w) end
lg:info("model: %d parameters, vocab %d; optimizer %s, scheduler %s; %d train / %d val / %d test samples",
  net:num_parameters(), data.vocab.size, tostring(opt), cfg.scheduler, data.train:size(), data.val:size(),
  data.test:size())

-- last.safetensors and what it holds (for the messages).
local function position()
  if run.batch > 0 then return string.format("epoch %d, batch %d", run.epoch, run.batch) end
  return string.format("end of epoch %d", run.epoch - 1)
end
local last_desc = args.resume == last_path and position() or nil
local function save_last()
  train.save_resumable(last_path, st)
  run.saved, last_desc = true, position()
end

-- One epoch: train, validate, schedule, early stopping, test, record.
local function epoch_body(epoch)
  local t0, carried = train.now(), run.sums and run.sums.seconds or 0 -- (carried: a resumed epoch's time)
  local lr = opt:get_lr()
  local tr = train.train_epoch({ net = net, opt = opt, cfg = cfg, split = data.train }, epoch, {
    start_batch = run.batch, sums = run.sums, -- 0 and nil unless resuming inside this epoch
    progress = mode, label = string.format("epoch %d/%d", epoch, cfg.epochs),
    on_step = function(pos)
      run.batch, run.sums, run.saved = pos.batch, pos.sums, false
      train.safe_point() -- Ctrl-C lands here, after a whole step
    end,
  })
  local val = train.evaluate(net, data.val, cfg)
  train.scheduler_step(sched, cfg, val.loss)
  local improved, stop = stopper:update(val.loss, epoch)
  if improved then
    run.best_path = saved(string.format("memory_model_epoch_%d.safetensors", epoch))
    train.save_model(run.best_path, net, data.vocab, cfg)
  end
  local test = train.evaluate(net, data.test, cfg, { metrics = true, task = cfg.task, vocab = data.vocab })
  local rec = train.record {
    epoch = epoch, train_loss = tr.loss, val_loss = val.loss, test_loss = test.loss, test_ppl = test.ppl,
    test_acc = test.accuracy, test_f1_weighted = test.f1_weighted, test_f1_macro = test.f1_macro,
    test_acc_upstream = test.acc_upstream, test_f1_upstream = test.f1_upstream, lr = lr,
    seconds = carried + train.now() - t0, train_seconds = tr.seconds, tokens_per_s = tr.tokens / tr.seconds,
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
    rec = train.record(rec)
  end
  run.history[#run.history + 1] = rec
  lg:metrics(rec)
  lg:info("%s", train.describe_epoch(rec, cfg.epochs))
  run.epoch, run.batch, run.sums = epoch + 1, 0, nil
  save_last()
  return stop
end

local function finish()
  local best = stopper.best_epoch
  if run.best_path then
    local ck = dm.checkpoint.load(run.best_path)
    train.save_model(saved("memory_model.safetensors"), ck.net, data.vocab, cfg)
    lg:info("best validation loss %.4f at epoch %d; saved %s", stopper.best, best, saved("memory_model.safetensors"))
  else
    train.save_model(saved("memory_model.safetensors"), net, data.vocab, cfg)
    lg:info("no epoch improved the validation loss; saved the last weights as %s", saved("memory_model.safetensors"))
  end
  dm.plot.training_figure(run.history, svg_path, { title = cfg.data_path })
  lg:info("log %s, metrics %s, figure %s", cfg.log_file, lg.metrics_file, svg_path)
  run.finished = true
end

local ok, status = pcall(train.guard, function()
  local t0 = train.now()
  while run.epoch <= cfg.epochs and stopper.counter <= cfg.patience do
    local stop = epoch_body(run.epoch)
    train.safe_point()
    if stop then
      lg:info("early stopping: %d epochs without a better validation loss (patience %d)", stopper.counter,
        cfg.patience)
      break
    end
  end
  lg:info("training took %s", progress.hms(train.now() - t0))
  finish()
end)

if not ok and train.is_interrupt(status) then ok, status = true, "interrupted" end
-- A failed write (full disk, folder gone) stops the run like a NaN loss:
-- one message and where the last good checkpoint is. Anything else is a
-- bug and keeps its traceback.
local function is_write_failure(err)
  return type(err) == "string" and (err:find("^checkpoint%.save: ") or err:find("^plot: ")
    or err:find("^log: ") or err:find("^write ")) ~= nil
end
if not ok then
  local err = status
  local nonfinite = train.is_nonfinite(err)
  if not nonfinite and not is_write_failure(err) then error(err, 0) end
  -- The log may sit on the full disk too: a line it cannot take goes to
  -- stderr instead.
  local function warn(fmt, ...)
    if not pcall(lg.warn, lg, fmt, ...) then io.stderr:write("train.lua: ", string.format(fmt, ...), "\n") end
  end
  -- (train.guard adds a traceback to errors; a write failure needs none)
  warn("stopped: %s", nonfinite and err.message or err:match("^[^\n]*"))
  if last_desc then
    warn("the last good checkpoint is %s (%s); nothing after it was saved", last_path, last_desc)
  else
    warn("no checkpoint was written by this run")
  end
  if nonfinite then warn("try a lower learning_rate or grad_clip") end
  os.exit(1)
end
if status == "interrupted" and not run.finished then
  if not run.saved then save_last() end
  lg:warn("interrupted at epoch %d after %d of %d batches; saved %s", run.epoch, run.batch,
    data.train:nbatches(cfg.batch_size), last_path)
  lg:warn("resume with: %s", train.resume_command(last_path))
  os.exit(130)
end
