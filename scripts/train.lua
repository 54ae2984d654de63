-- train.lua: trains DRLMemNet and leaves a model, a log, metrics and a plot.
--
--   drlmem scripts/train.lua [--config FILE] [--set key=value ...] [--resume CKPT | --overwrite]
--                            [--progress bar|plain|none]
--
-- Per epoch (lua/drlmem/loop.lua): train (gradients accumulated over
-- accumulation_steps batches, then clip, optimizer step, zero_grad and the
-- memory write), validate, step the learning-rate schedule, check early
-- stopping (the seed's counter: stop once more than `patience` epochs
-- passed without a better validation loss), and evaluate on the test split
-- (loss, perplexity, accuracy, weighted and macro F1 over non-pad targets).
--
-- Written under save_path: at each improvement memory_model_epoch_N and
-- memory_model.safetensors (the best so far, with vocabulary and config),
-- and last.safetensors (resumable) after every epoch and every
-- checkpoint_minutes / checkpoint_steps of training. Beside log_file: the
-- log, metrics.jsonl and training.svg (redrawn every epoch). A folder that
-- holds an earlier run's results is refused unless --resume or
-- --overwrite; a folder another run is using is refused (lua/drlmem/rundir.lua).
-- Ctrl-C, SIGTERM and SIGHUP finish the current step, save last.safetensors
-- and print the command that resumes (exit status 130, 143, 129); more
-- signals during the save are ignored (a third Ctrl-C stops at once). A
-- NaN or infinite loss or a failed write stops the run, keeping the last
-- good checkpoint (exit status 1).
local dm = require "drlmem"
local loop, log, progress, resume = dm.loop, dm.log, dm.progress, dm.resume

local args, cfg = dm.cli.parse {
  name = "train.lua",
  description = "Trains DRLMemNet on data_path; writes checkpoints to save_path and the log, "
    .. "metrics.jsonl and training.svg beside log_file.",
  options = function(p)
    p:option("--resume", "Continue from a resumable checkpoint (save_path/last.safetensors)."):argname("<checkpoint>")
    p:flag("--overwrite", "Replace the results of an earlier run in save_path and beside log_file.")
    p:option("--progress", "Progress display: bar (default on a terminal), plain or none.")
      :choices { "bar", "plain", "none" }
  end,
}

-- A bad data file, folder or checkpoint is a message, not a traceback; a
-- signal before training starts has nothing to save.
local function try(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then
    if loop.is_interrupt(r[2]) then
      local sig = loop.stop_signal(r[2])
      io.stderr:write(string.format("\ntrain.lua: stopped by SIG%s before training started; nothing to save\n", sig))
      os.exit(loop.SIGNAL_STATUS[sig])
    end
    dm.cli.die(r[2])
  end
  return table.unpack(r, 2, r.n)
end

-- Under mpirun (README: Training across processes) every rank trains its
-- shard of each global batch of batch_size x N, and only rank 0 claims the
-- folders and writes data, logs, checkpoints and figures; a plain run is
-- rank 0 of 1.
local writer = not dm.dist.available() or dm.dist.rank() == 0
local world = dm.dist.available() and dm.dist.size() or 1

-- The output folders: locked, writable, no earlier run's results unless
-- resuming or overwriting.
local claim = writer and try(dm.rundir.claim, cfg, { resume = args.resume, overwrite = args.overwrite })
  or { removed = {} }

-- Data: the generated default data is made on first use (by rank 0; the
-- others wait for it).
if writer then
  local made, made_bytes = try(dm.stories.ensure, cfg)
  if made then print(string.format("wrote %s: %d stories, %d bytes", cfg.data_path, made, made_bytes)) end
end
if world > 1 then try(dm.dist.barrier) end
if cfg.threads > 0 and dm.set_num_threads then dm.set_num_threads(cfg.threads) end
try(dm.budget.check_data, cfg) -- sizes that cannot fit: one line, before anything is allocated
local data = try(dm.data.load, cfg)
try(dm.budget.check, cfg, data)
if world > 1 then
  -- every rank derived them itself, from the file and the seed
  try(dm.dist.assert_same, "the vocabulary", table.concat(data.vocab:list(), "\n"))
  try(dm.dist.assert_same, "the training split", table.concat(data.train.index, ","))
end

-- Model, optimizer, schedule, early stopping; the position of a resumed run.
local st = loop.setup(cfg, data)
local run, notes = st.run, {}
if args.resume then
  run, notes = try(resume.load, args.resume, st, { batches = data.train:nbatches(cfg.batch_size * world) })
  st.run = run
end

local function saved(name) return log.join(cfg.save_path, name) end
local last_path, best_path = saved("last.safetensors"), saved("memory_model.safetensors")
if args.resume then try(log.reconcile, cfg.log_file, run.history, cfg.epochs) end
-- ranks other than 0 log nothing
local lg = writer and try(log.open, cfg.log_file, { append = args.resume ~= nil })
  or setmetatable({}, { __index = function() return function() end end })
try(lg.reset_metrics, lg, run.history)
local svg_path = log.join(log.dirname(cfg.log_file), "training.svg")
local mode = writer and (args.progress or progress.default_mode()) or "none"

if args.resume then
  lg:info("resuming from %s at epoch %d, batch %d", args.resume, run.epoch, run.batch)
  for _, n in ipairs(notes) do lg:info("note: %s", n) end
end
for _, f in ipairs(claim.removed) do lg:info("removed %s (left by a killed run)", f) end
lg:quiet("config:\n  " .. table.concat(dm.config.describe(cfg), "\n  "))
lg:info("%s", dm.data.describe(data))
for _, w in ipairs(data.warnings) do lg:warn("warning: %s", w) end
lg:info("model: %d parameters, vocab %d; optimizer %s, scheduler %s; %d train / %d val / %d test samples",
  st.net:num_parameters(), data.vocab.size, tostring(st.opt), cfg.scheduler, data.train:size(), data.val:size(),
  data.test:size())

-- last.safetensors and what it holds (for the messages).
local function position()
  if run.batch > 0 then return string.format("epoch %d, batch %d", run.epoch, run.batch) end
  return string.format("end of epoch %d", run.epoch - 1)
end
local last_desc = args.resume == last_path and position() or nil
local function save_last()
  -- every rank's generator, gathered by all, written by rank 0
  local rngs = world > 1 and dm.dist.allgather(dm.get_rng_state()) or nil
  if writer then resume.save(last_path, st, { rng_ranks = rngs }) end
  run.saved, last_desc = true, position()
end

local t_start = progress.now()
local ok, status, sig = pcall(loop.run, st, data, {
  progress = mode,
  on_step = function() run.saved = false end,
  on_checkpoint = save_last,
  -- the best so far, under its epoch's name and as memory_model.safetensors
  on_improved = function(epoch)
    run.best_path = saved(string.format("memory_model_epoch_%d.safetensors", epoch))
    if not writer then return end
    resume.save_model(run.best_path, st.net, data.vocab, cfg)
    resume.save_model(best_path, st.net, data.vocab, cfg)
  end,
  -- the checkpoint first: a run killed between the two logs the epoch at
  -- its resume (log.reconcile), never twice
  on_epoch = function(rec, stop)
    save_last()
    lg:metrics(rec)
    lg:info("%s", log.describe_epoch(rec, cfg.epochs))
    if writer then dm.plot.training_figure(run.history, svg_path, { title = cfg.data_path }) end
    if stop then
      lg:info("early stopping: %d epochs without a better validation loss (patience %d)", st.stopper.counter,
        cfg.patience)
    end
  end,
  on_finish = function()
    run.finished = true
    if not writer then return end
    lg:info("training took %s", progress.hms(progress.now() - t_start))
    if run.best_path then
      -- (a run resumed into another save_path has its best model elsewhere)
      local f = io.open(best_path, "rb")
      if f then
        f:close()
      else
        local okb, ck = pcall(dm.checkpoint.load, run.best_path)
        if okb then resume.save_model(best_path, ck.net, data.vocab, cfg) else lg:warn("%s", ck) end
      end
      lg:info("best validation loss %.4f at epoch %d; saved %s", st.stopper.best, st.stopper.best_epoch, best_path)
    else
      resume.save_model(best_path, st.net, data.vocab, cfg)
      lg:info("no epoch improved the validation loss; saved the last weights as %s", best_path)
    end
    dm.plot.training_figure(run.history, svg_path, { title = cfg.data_path })
    lg:info("log %s, metrics %s, figure %s", cfg.log_file, lg.metrics_file, svg_path)
    run.finished = true
  end,
})

-- A failed write (full disk, folder gone) stops the run like a NaN loss:
-- one message and where the last good checkpoint is. Anything else is a
-- bug and keeps its traceback.
local function is_write_failure(err)
  return type(err) == "string" and (err:find("^checkpoint%.save: ") or err:find("^plot: ")
    or err:find("^log: ") or err:find("^write ") or err:find("^cannot write ")) ~= nil
end
-- A failed collective under mpirun (a rank that stopped, died or hangs;
-- dm.dist's deadline): one line from the rank that saw it, whichever it is.
local function dist_failure(err)
  if type(err) ~= "string" then return nil end
  local first = err:match("^[^\n]*"):gsub("^[^\n]-%.lua:%d+: ", "")
  return first:find("^dist[%.%w_]*: ") and first or nil
end
-- What is printed now starts on its own line: not after a half-drawn bar,
-- nor after the "^C" a terminal echoes where the cursor was.
if not progress.end_line() and status == "interrupted" and dm.isatty("stderr") then io.stderr:write("\n") end
if not ok then
  local err = status
  local df = dist_failure(err)
  if df then
    io.stderr:write(string.format("train.lua: rank %d of %d stopped: %s\n", dm.dist.rank(), world, df))
    if last_desc then
      io.stderr:write(string.format("train.lua: the last good checkpoint is %s (%s)\n", last_path, last_desc))
    end
    os.exit(1)
  end
  local nonfinite = loop.is_nonfinite(err)
  if not nonfinite and not is_write_failure(err) then error(err, 0) end
  -- The log may sit on the full disk too: a line it cannot take goes to
  -- stderr instead.
  local function warn(fmt, ...)
    if not pcall(lg.warn, lg, fmt, ...) then io.stderr:write("train.lua: ", string.format(fmt, ...), "\n") end
  end
  -- (loop.guard adds a traceback to errors; a write failure needs none)
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
  local what = sig == "INT" and "interrupted" or ("stopped by SIG" .. sig)
  if not run.saved then
    -- further signals are ignored by the host until this is on disk
    lg:warn("%s: saving %s (more Ctrl-C or SIGTERM are ignored until it is written; a third Ctrl-C "
      .. "stops at once)", what, last_path)
    local sok, serr = pcall(save_last)
    if not sok then
      lg:warn("stopped: %s", tostring(serr):match("^[^\n]*"))
      lg:warn(last_desc and ("the last good checkpoint is " .. last_path .. " (" .. last_desc .. ")")
        or "no checkpoint was written by this run")
      os.exit(1)
    end
  end
  lg:warn("%s at epoch %d after %d of %d batches; saved %s", what, run.epoch, run.batch,
    data.train:nbatches(cfg.batch_size * world), last_path)
  -- (under mpirun the ranks' launcher goes first; its other options are the user's own)
  lg:warn("resume with: %s%s", world > 1 and ("mpirun -np " .. world .. " ") or "", resume.command(last_path))
  os.exit(loop.SIGNAL_STATUS[sig] or 130)
end
