-- resume.lua: the checkpoints of a training run, in drlmem.checkpoint's
-- format: the model file (weights, vocabulary, training config; what
-- evaluate/generate/explore_memory read) and the resumable one
-- (last.safetensors: everything a resumed run needs to continue bit for
-- bit: weights, optimizer moments, schedule, early stopping, rng, the
-- write policy's advantage scale, the position inside an epoch and, with
-- carry_state, the recurrent state the next batch starts from).
--
--   resume.save_model(path, net, vocab, cfg)
--   resume.save(path, st)              st = loop.setup's table, with st.run
--   resume.load(path, st, opts)        -> run, notes (config keys that differ)
--   resume.command(ckpt, argv)         the command line that resumes
--
-- resume.load checks every field of the training state before it changes
-- anything, and a bad one is a one-line error naming the file and the
-- field ("last.safetensors: training state 'epoch' must be an integer >= 1,
-- got -5"): a checkpoint is user input.
local dm = require "drlmem"

local resume = {}

--- Saves net with its vocabulary and the training config (a model file:
-- memory_model*.safetensors).
function resume.save_model(path, net, vocab, cfg)
  dm.checkpoint.save(path, net, { vocab = vocab:list(), config = dm.config.totable(cfg) })
end

--- Saves everything a resumed run needs. st: net, opt, sched (or nil),
-- stopper, vocab, cfg, run = {epoch = the epoch in progress, batch =
-- batches of it done, sums = its partial sums (or nil), history = the
-- metrics records of the finished epochs, best_path = the best model file}.
-- opts.rng_ranks: under mpirun, every rank's generator state in rank
-- order (dm.dist.allgather), which a resumed run of as many ranks restores.
function resume.save(path, st, opts)
  local run = st.run
  local ranks = opts and opts.rng_ranks
  dm.checkpoint.save(path, st.net, {
    vocab = st.vocab:list(),
    config = dm.config.totable(st.cfg),
    optimizer = st.opt,
    scheduler = st.sched,
    carry = run.batch > 0 and run.carry or nil, -- (carry_state, mid-epoch: the next batch's initial state)
    state = {
      epoch = run.epoch, batch = run.batch, sums = run.sums or dm.json.null,
      history = dm.json.array(run.history or {}), best_path = run.best_path or dm.json.null,
      early = st.stopper:state(), rng = dm.get_rng_state(),
      write_state = st.net:write_state() or dm.json.null,
      rng_ranks = ranks and dm.json.array(ranks) or nil,
    },
  })
end

-- Keys of the training config a resumed run may change without changing
-- what it computes.
local FREE_KEYS = { epochs = true, patience = true, log_file = true, save_path = true, threads = true,
  data_path = true, checkpoint_minutes = true, checkpoint_steps = true }

-- A message without the "file.lua:12: " position Lua puts in front of it:
-- the user needs the checkpoint's name and field, not our line.
local function bare(err)
  return (tostring(err):gsub("^[^\n]-%.lua:%d+: ", ""):match("^[^\n]*"))
end

local function is_null(v) return v == nil or v == dm.json.null end

-- Checks the training state s of checkpoint path; raises on the first bad
-- field. batches: the number of batches of an epoch with this config.
local function check_state(path, s, batches)
  local function bad(field, want, got)
    local shown = type(got) == "string" and string.format("%q", got) or tostring(got)
    if type(got) == "table" then shown = "a table" end
    error(string.format("%s: training state '%s' must be %s, got %s", path, field, want, shown), 0)
  end
  local function int_in(field, v, lo, hi, want)
    local i = math.tointeger(v)
    if i == nil or i < lo or (hi and i > hi) then bad(field, want, v) end
    return i
  end
  local function num(field, v, lo)
    if type(v) ~= "number" or v ~= v or (lo and v < lo) then
      bad(field, lo and string.format("a number >= %g", lo) or "a number", v)
    end
  end
  local epoch = int_in("epoch", s.epoch, 1, nil, "an integer >= 1")
  local batch = int_in("batch", s.batch == nil and 0 or s.batch, 0, batches,
    string.format("an integer in [0, %d] (the batches of an epoch)", batches))
  if not is_null(s.sums) then
    if type(s.sums) ~= "table" then bad("sums", "an object or null", s.sums) end
    for _, k in ipairs { "loss", "seconds" } do
      if s.sums[k] ~= nil then num("sums." .. k, s.sums[k], k == "seconds" and 0 or nil) end
    end
    for _, k in ipairs { "batches", "tokens", "padded_tokens" } do
      if s.sums[k] ~= nil then int_in("sums." .. k, s.sums[k], 0, nil, "an integer >= 0") end
    end
    if s.sums.write ~= nil and not is_null(s.sums.write) and type(s.sums.write) ~= "table" then
      bad("sums.write", "an object", s.sums.write)
    end
  end
  local h = s.history
  if h ~= nil and type(h) ~= "table" then bad("history", "an array of epoch records", h) end
  h = h or {}
  if #h ~= epoch - 1 then
    error(string.format("%s: training state 'history' holds %d epochs, but 'epoch' = %d says %d are done",
      path, #h, epoch, epoch - 1), 0)
  end
  for i, r in ipairs(h) do
    if type(r) ~= "table" or math.tointeger(r.epoch) ~= i then
      bad(string.format("history[%d]", i), string.format("the record of epoch %d", i),
        type(r) == "table" and ("epoch " .. tostring(r.epoch)) or r)
    end
  end
  if not is_null(s.best_path) and type(s.best_path) ~= "string" then bad("best_path", "a string or null", s.best_path) end
  local e = s.early
  if e ~= nil then
    if type(e) ~= "table" then bad("early", "an object", e) end
    local b = e.best
    if type(b) == "string" then b = (b == "inf" and math.huge) or tonumber(b) end
    if e.best ~= nil and type(b) ~= "number" then bad("early.best", "a number", e.best) end
    if e.best_epoch ~= nil then int_in("early.best_epoch", e.best_epoch, 0, epoch - 1,
      string.format("an integer in [0, %d]", epoch - 1)) end
    if e.counter ~= nil then int_in("early.counter", e.counter, 0, nil, "an integer >= 0") end
  end
  if not is_null(s.write_state) and type(s.write_state) ~= "table" then
    bad("write_state", "an object or null", s.write_state)
  end
  return epoch, batch
end

--- Loads a resumable checkpoint into st (net, opt, sched, stopper, vocab,
-- cfg, as for resume.save) and returns the run table {epoch, batch, sums,
-- history, best_path} plus a list of notes (config keys that differ from
-- the checkpoint's). opts.batches: the batches of an epoch with this
-- config (default: any batch position is accepted). Raises a one-line
-- error naming the file for a model file, another vocabulary, another
-- model shape or a bad field of the training state (the training state's
-- fields are all checked before st changes; a caller stops on an error).
function resume.load(path, st, opts)
  opts = opts or {}
  local ck = dm.checkpoint.load(path)
  local s = ck.state
  if type(s) ~= "table" or ck.optimizer == nil or s.epoch == nil then
    error(string.format("%s is not a resumable checkpoint (it has no training state); resume from the "
      .. "last.safetensors a run writes in its save_path", path), 0)
  end
  -- Every rank's stream is in the checkpoint of a run of N ranks: only a
  -- run of N ranks continues it (and its batch positions are of global
  -- batches of batch_size x N).
  local world = dm.dist.available() and dm.dist.size() or 1
  local saved_n = type(s.rng_ranks) == "table" and #s.rng_ranks or 1
  if saved_n ~= world then
    error(string.format("%s: saved by a run of %d process%s, this run has %d: resume with the same number "
      .. "(%s)", path, saved_n, saved_n == 1 and "" or "es", world,
      saved_n == 1 and "without mpirun" or ("mpirun -np " .. saved_n)), 0)
  end
  local rng = world > 1 and s.rng_ranks[dm.dist.rank() + 1] or s.rng
  local epoch, batch = check_state(path, s, opts.batches or math.maxinteger)
  if st.cfg.carry_state and batch > 0 and not ck.carry then
    error(string.format("%s: training state 'carry' is missing: the run stopped inside an epoch with "
      .. "carry_state, and the recurrent state its next batch starts from is not in the file", path), 0)
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
  -- The restores check their own parts (kinds, shapes, hex digits); their
  -- errors become one line naming the file and the field.
  local function restore(field, fn, ...)
    local ok, err = pcall(fn, ...)
    if not ok then error(string.format("%s: training state '%s': %s", path, field, bare(err)), 0) end
  end
  if st.sched and ck.scheduler == nil then
    error(string.format("%s: training state 'scheduler' is missing (the config asks for %s)", path,
      tostring(st.cfg.scheduler)), 0)
  end
  -- the rng state is only tried here (and put back): it is restored last
  restore("rng", function()
    local saved = dm.get_rng_state()
    local ok, err = pcall(dm.set_rng_state, rng)
    dm.set_rng_state(saved)
    if not ok then error(err, 0) end
  end)
  restore("optimizer", dm.checkpoint.restore_optimizer, st.opt, ck)
  if st.sched then restore("scheduler", dm.checkpoint.restore_scheduler, st.sched, ck) end
  if type(s.write_state) == "table" and st.net:write_state() then
    restore("write_state", st.net.set_write_state, st.net, s.write_state)
  end
  st.net:load_state_dict((ck.net:state_dict()))
  st.stopper:load_state(s.early or {})
  dm.set_rng_state(rng)
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
  if is_null(sums) then sums = nil end
  local best_path = s.best_path
  if is_null(best_path) then best_path = nil end
  return { epoch = epoch, batch = batch, sums = sums, history = s.history or {}, best_path = best_path,
    carry = batch > 0 and ck.carry or nil }, notes
end

local function shq(s)
  s = tostring(s)
  if s:match("^[%w@%%+=:,./_-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The command line that resumes this run from ckpt: the running command
-- with its --resume and --overwrite (if any) replaced.
function resume.command(ckpt, argv)
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
    elseif not a:match("^%-%-resume=") and a ~= "--overwrite" then
      parts[#parts + 1] = shq(a)
    end
    i = i + 1
  end
  parts[#parts + 1] = "--resume"
  parts[#parts + 1] = shq(ckpt)
  return table.concat(parts, " ")
end

return resume
