-- checkpoint.lua: saving and loading DRLMemNet checkpoints (safetensors),
-- resumable down to the optimizer moments, the schedule and the generator.
--
-- File layout (README "Checkpoint"): every parameter of the controller under
-- its PyTorch state_dict name (F32, state_dict order), then, for a resumable
-- checkpoint, the optimizer moments as "optim.<moment>.<param name>"
-- (exp_avg / exp_avg_sq for Adam and AdamW, momentum_buffer for SGD; only
-- for parameters that have taken a step, as torch's optimizer state), and
-- with opts.carry = {h=, c=} (truncated BPTT stopped inside an epoch) the
-- recurrent state the next batch starts from as "carry.h" and, for an
-- LSTM, "carry.c" ((num_layers,B,hidden_size); ckpt.carry on load). With
-- tie_weights there is no fc_output.weight: the output layer reads
-- embedding.weight (and tie_proj.weight when the widths differ). The
-- `__metadata__` strings:
--   format        "drlmem-1"
--   config        JSON: the model config (net:config(): vocab_size,
--                 embedding_dim, memory_embedding_dim, memory_size,
--                 hidden_size, num_layers, dropout, output_activation)
--   vocab         JSON array of the tokens in index order
--   train_config  JSON: opts.config, the training config (optional)
--   state         JSON: opts.state, the loop's state (epoch, step, best_val,
--                 bad_epochs, rng = dm.get_rng_state(), ...) (optional)
--   optimizer     JSON {kind, lr, step = {name = n}} (with opts.optimizer)
--   scheduler     JSON: sched:state() (with opts.scheduler)
-- JSON goes through dm.json (sorted keys, shortest round-trip floats), so
-- save -> load -> save gives the same bytes. Non-finite numbers (an initial
-- best_val of math.huge, ReduceLROnPlateau's best = inf), which JSON cannot
-- hold, are written as {"__float__": "inf" | "-inf" | "nan"} and read back.
-- The write is atomic (dm.save_safetensors: temp file beside the target,
-- fsync, rename), so a failed save leaves the previous checkpoint intact.
--
--   checkpoint.save(path, net, opts)
--   ckpt = checkpoint.load(path)   -> {net, vocab, config, train_config,
--          state, optimizer, scheduler, carry, tensors, metadata, names}
--   checkpoint.restore_optimizer(opt, ckpt)
--   checkpoint.restore_scheduler(sched, ckpt)
--   checkpoint.restore_rng(ckpt)    dm.set_rng_state(ckpt.state.rng)
--
-- A PyTorch-written checkpoint (golden.py --export-safetensors: the
-- state_dict plus format/config/vocab, config without vocab_size) loads too:
-- vocab_size is then #vocab. Every problem is reported as
-- "checkpoint.load: <path>: <what is wrong>", the first one found.
-- A file is checked before anything is built from it: each size of the
-- config against the tensor that fixes it (so a small file cannot make the
-- loader allocate more than the file holds), the vocabulary (specials in
-- their places, distinct tokens, as many as the embedding has rows).
local dm = require "drlmem"

local checkpoint = {}

checkpoint.FORMAT = "drlmem-1"

-- The model config's keys are the C core's (dm.controller_fields).
local MODEL_KEYS = {}
for _, f in ipairs(dm.controller_fields()) do MODEL_KEYS[#MODEL_KEYS + 1] = f.name end
local MOMENTS = {exp_avg = true, exp_avg_sq = true, momentum_buffer = true}

-- ---- JSON with non-finite numbers ------------------------------------------

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local k = 0
  for _ in pairs(t) do k = k + 1 end
  return k == n
end

-- A copy of v in which every non-finite float is a tagged object.
local function to_json_safe(v, seen)
  if type(v) == "number" then
    if v ~= v then return {__float__ = "nan"} end
    if v == math.huge then return {__float__ = "inf"} end
    if v == -math.huge then return {__float__ = "-inf"} end
    return v
  end
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then error("checkpoint.save: a table in the state refers to itself", 0) end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do out[k] = to_json_safe(x, seen) end
  seen[v] = nil
  if is_array(out) or getmetatable(v) == getmetatable(dm.json.array({})) then dm.json.array(out) end
  return out
end

local function from_json_safe(v)
  if type(v) ~= "table" then return v end
  local tag = rawget(v, "__float__")
  if tag ~= nil and next(v, next(v)) == nil and next(v) == "__float__" then
    if tag == "nan" then return 0 / 0 end
    if tag == "inf" then return math.huge end
    if tag == "-inf" then return -math.huge end
  end
  for k, x in pairs(v) do v[k] = from_json_safe(x) end
  return v
end

local function encode(v, what)
  local ok, s = pcall(dm.json.encode, to_json_safe(v))
  if not ok then error(("checkpoint.save: cannot encode %s as JSON: %s"):format(what, tostring(s)), 0) end
  return s
end

-- ---- save ----------------------------------------------------------------------

-- The optimizer's moment tensors in a fixed order: moments sorted by name,
-- then parameters in the optimizer's order, only those that took a step.
local function optimizer_tensors(opt, list)
  local st = opt:state()
  local order = {}
  for _, p in ipairs(opt:parameters()) do order[#order + 1] = p.name end
  local moments = {}
  for k, v in pairs(st) do
    if k ~= "step" and type(v) == "table" then moments[#moments + 1] = k end
  end
  table.sort(moments)
  for _, m in ipairs(moments) do
    for _, name in ipairs(order) do
      if (st.step[name] or 0) > 0 and st[m][name] then
        list[#list + 1] = {"optim." .. m .. "." .. name, st[m][name]}
      end
    end
  end
  return {kind = st.kind, lr = st.lr, step = st.step}
end

function checkpoint.save(path, net, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("checkpoint.save: path must be a string", 2) end
  if type(opts) ~= "table" then error("checkpoint.save: opts must be a table", 2) end
  local sd, names = net:state_dict()
  local list = {}
  for _, name in ipairs(names) do list[#list + 1] = {name, sd[name]} end
  local vocab = opts.vocab
  if vocab ~= nil then
    if type(vocab) ~= "table" then error("checkpoint.save: opts.vocab must be a list of tokens", 2) end
    local cfg = net:config()
    if #vocab ~= cfg.vocab_size then
      error(("checkpoint.save: the vocabulary has %d tokens, the net's vocab_size is %d"):format(
        #vocab, cfg.vocab_size), 2)
    end
    for i = 1, #vocab do
      if type(vocab[i]) ~= "string" then
        error(("checkpoint.save: vocab[%d] is a %s, expected a string"):format(i, type(vocab[i])), 2)
      end
    end
  end
  local tokens = {}
  for i = 1, vocab and #vocab or 0 do tokens[i] = vocab[i] end
  local meta = {
    format = checkpoint.FORMAT,
    config = encode(net:config(), "the model config"),
    vocab = encode(dm.json.array(tokens), "the vocabulary"),
  }
  if opts.config ~= nil then meta.train_config = encode(opts.config, "opts.config") end
  if opts.state ~= nil then meta.state = encode(opts.state, "opts.state") end
  if opts.optimizer ~= nil then
    meta.optimizer = encode(optimizer_tensors(opts.optimizer, list), "the optimizer state")
  end
  if opts.scheduler ~= nil then meta.scheduler = encode(opts.scheduler:state(), "the scheduler state") end
  -- truncated BPTT's carried recurrent state, (num_layers,B,H) each
  if opts.carry ~= nil then
    list[#list + 1] = {"carry.h", opts.carry.h}
    if opts.carry.c then list[#list + 1] = {"carry.c", opts.carry.c} end
  end
  -- A full disk or a missing folder is about the path, not about this line:
  -- the message names the file, and the previous file there is unchanged.
  local ok, err = pcall(dm.save_safetensors, path, list, meta)
  if not ok then error("checkpoint.save: " .. tostring(err), 0) end
end

-- ---- load ----------------------------------------------------------------------

local function shape_str(s)
  if #s == 0 then return "scalar" end
  local p = {}
  for i, d in ipairs(s) do p[i] = tostring(d) end
  return table.concat(p, "x")
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Each size in the model config is fixed by a tensor of the file (config
-- key, tensor, axis). They are compared before the controller is built,
-- since building it allocates parameters and gradients from the config
-- alone: a small file whose config claims 2^27 memory slots would otherwise
-- cost gigabytes before the first shape is compared. The file's tensors
-- themselves tile its data section (the reader checks that), so once every
-- size matches a tensor the controller is no larger than the file.
local DIMS = {
  {"vocab_size", "embedding.weight", 1},
  {"embedding_dim", "embedding.weight", 2},
  {"memory_size", "memory.keys", 1},
  {"memory_embedding_dim", "memory.keys", 2},
  {"hidden_size", "rnn.weight_hh_l0", 2},
}
local DIM_DEFAULTS = {num_layers = 2}
-- the controller's bound on the GRU's depth (DM_GRU_MAX_LAYERS) is far above
-- this; the file decides the depth, counted only up to here
local MAX_LAYERS_COUNTED = 4096

local function check_dims(mcfg, tensors, fail)
  local function value(key)
    local v = mcfg[key]
    if v == nil and key == "memory_embedding_dim" then v = mcfg.embedding_dim end
    if v == nil then v = DIM_DEFAULTS[key] end
    if v ~= nil and math.type(v) ~= "integer" and not (math.type(v) == "float" and v == math.floor(v)
                                                        and v > -2^53 and v < 2^53) then
      fail("config.%s must be an integer, got %s", key, tostring(v))
    end
    return v and math.tointeger(v)
  end
  for _, d in ipairs(DIMS) do
    local key, name, axis = d[1], d[2], d[3]
    local v, t = value(key), tensors[name]
    if t == nil then fail("tensor %s is missing", name) end
    local s = t:shape()
    if #s ~= 2 then fail("tensor %s has %d dimensions, expected 2", name, #s) end
    if v ~= nil and v ~= s[axis] then
      fail("config.%s is %d but tensor %s has %s %d (shape %s)", key, v, name,
           axis == 1 and "rows" or "columns", s[axis], shape_str(s))
    end
  end
  local layers = 0
  while layers < MAX_LAYERS_COUNTED and tensors["rnn.weight_hh_l" .. layers] do layers = layers + 1 end
  local nl = value("num_layers")
  if nl ~= nil and nl ~= layers then
    fail("config.num_layers is %d but the file holds %d GRU layers (rnn.weight_hh_l<k>)", nl, layers)
  end
end

-- The vocabulary is a list of distinct non-empty strings with the four
-- specials first, in data.SPECIALS order (every script indexes <pad>,
-- <unk>, <sos> and <eos> by position); an empty list stands for a net saved
-- without one. A renamed special or a repeated token would silently
-- change which id a word encodes to, so both are refused.
local SPECIALS = require("drlmem.data").SPECIALS

local function check_vocab(vocab, fail)
  local n = 0
  for k in pairs(vocab) do
    if math.type(k) ~= "integer" then fail("metadata 'vocab' must be a JSON array of tokens") end
    n = n + 1
  end
  if n ~= #vocab then fail("metadata 'vocab' must be a JSON array of tokens") end
  if n == 0 then return end
  local seen = {}
  for i = 1, n do
    local t = vocab[i]
    if type(t) ~= "string" then fail("vocab[%d] is not a string", i) end
    if t == "" then fail("vocab[%d] is an empty string", i) end
    if seen[t] then fail("vocab[%d] %q repeats vocab[%d]", i, t, seen[t]) end
    seen[t] = i
  end
  for i, sp in ipairs(SPECIALS) do
    if vocab[i] ~= sp then
      fail("vocab[%d] (id %d) must be %s, got %q", i, i - 1, sp, tostring(vocab[i]))
    end
  end
end

function checkpoint.load(path)
  if type(path) ~= "string" then error("checkpoint.load: path must be a string", 2) end
  -- Names and tokens come from the file: control characters in them are
  -- escaped, so the message stays one line whatever the file holds.
  local function refuse(msg)
    error((msg:gsub("%c", function(c) return ("\\x%02x"):format(c:byte()) end)), 0)
  end
  local function fail(fmt, ...) refuse(("checkpoint.load: %s: " .. fmt):format(path, ...)) end
  local ok, tensors, meta, names = pcall(dm.load_safetensors, path)
  if not ok then refuse("checkpoint.load: " .. tostring(tensors)) end

  if meta.format ~= checkpoint.FORMAT then
    fail("not a drlmem checkpoint (metadata 'format' is %s, expected \"%s\")",
         meta.format and ("\"" .. meta.format .. "\"") or "missing", checkpoint.FORMAT)
  end
  local function decode(key, required)
    local s = meta[key]
    if s == nil then
      if required then fail("metadata '%s' is missing", key) end
      return nil
    end
    local okd, v = pcall(dm.json.decode, s, key)
    if not okd then fail("metadata '%s' is not valid JSON: %s", key, tostring(v)) end
    return from_json_safe(v)
  end
  local config = decode("config", true)
  if type(config) ~= "table" then fail("metadata 'config' must be a JSON object") end
  local vocab = decode("vocab", true)
  if type(vocab) ~= "table" then fail("metadata 'vocab' must be a JSON array of tokens") end
  check_vocab(vocab, fail)
  -- the model config: known keys only, vocab_size from the vocabulary when absent
  local mcfg = {}
  for _, k in ipairs(MODEL_KEYS) do mcfg[k] = config[k] end
  for k in pairs(config) do
    local known = false
    for _, m in ipairs(MODEL_KEYS) do known = known or m == k end
    if not known then fail("metadata 'config' has an unknown key '%s'", tostring(k)) end
  end
  if mcfg.vocab_size == nil then
    if #vocab == 0 then fail("neither config.vocab_size nor a vocabulary gives the vocabulary size") end
    mcfg.vocab_size = #vocab
  elseif #vocab > 0 and mcfg.vocab_size ~= #vocab then
    fail("config.vocab_size is %s but the vocabulary has %d tokens", tostring(mcfg.vocab_size), #vocab)
  end
  check_dims(mcfg, tensors, fail)
  -- A private generator for the throwaway initial weights, so loading does
  -- not move the global generator (a resumed run restores it, and it may
  -- do so before or after the load); dropout then uses the global one.
  local okn, net = pcall(dm.Controller, mcfg, dm.Generator(0))
  if not okn then fail("bad config: %s", tostring(net)) end
  net:set_generator(nil)

  -- parameters: every one present, with the shape the config gives, F32
  local sd, order = net:state_dict()
  local params = {}
  for _, name in ipairs(order) do
    local t = tensors[name]
    if t == nil then fail("tensor %s is missing", name) end
    if t:dtype() ~= "float32" then fail("tensor %s has dtype %s, expected float32", name, t:dtype()) end
    if not same_shape(t:shape(), sd[name]:shape()) then
      fail("tensor %s has shape %s, expected %s (from the config)", name, shape_str(t:shape()),
           shape_str(sd[name]:shape()))
    end
    params[name] = t
  end
  -- optimizer moments: known moment, trained parameter, same shape
  local trained = {}
  for _, p in ipairs(net:parameters()) do if p.grad then trained[p.name] = p.value:shape() end end
  local moments, carry = {}, nil
  for _, name in ipairs(names) do
    local which = name:match("^carry%.([hc])$")
    if which then
      local t, L, H = tensors[name], net:config().num_layers, net:config().hidden_size
      local s = t:shape()
      if t:dtype() ~= "float32" or #s ~= 3 or s[1] ~= L or s[3] ~= H then
        fail("tensor %s (the carried recurrent state) must be float32 (%d,B,%d), got %s %s", name, L, H,
             t:dtype(), shape_str(s))
      end
      carry = carry or {}
      carry[which] = t
    elseif params[name] == nil then
      local m, pname = name:match("^optim%.([%w_]+)%.(.+)$")
      if not m then fail("unexpected tensor %s (not a parameter of this model)", name) end
      if not MOMENTS[m] then fail("tensor %s: unknown optimizer moment '%s'", name, m) end
      if not trained[pname] then fail("tensor %s: '%s' is not a trained parameter", name, pname) end
      local t = tensors[name]
      if t:dtype() ~= "float32" then fail("tensor %s has dtype %s, expected float32", name, t:dtype()) end
      if not same_shape(t:shape(), trained[pname]) then
        fail("tensor %s has shape %s, expected %s", name, shape_str(t:shape()), shape_str(trained[pname]))
      end
      moments[m] = moments[m] or {}
      moments[m][pname] = t
    end
  end
  local optimizer = decode("optimizer", false)
  if optimizer ~= nil then
    if type(optimizer) ~= "table" or type(optimizer.kind) ~= "string" or type(optimizer.step) ~= "table" then
      fail("metadata 'optimizer' must be an object with kind and step")
    end
    for pname, n in pairs(optimizer.step) do
      if math.type(n) ~= "integer" or n < 0 then
        fail("metadata 'optimizer': step of %s must be an integer >= 0", tostring(pname))
      end
      if not trained[pname] and n > 0 then
        fail("metadata 'optimizer': step of %s, which is not a trained parameter", tostring(pname))
      end
    end
    for m, byname in pairs(moments) do optimizer[m] = byname end
  elseif next(moments) then
    fail("optimizer moments without the 'optimizer' metadata")
  end
  local scheduler = decode("scheduler", false)
  if scheduler ~= nil and type(scheduler) ~= "table" then fail("metadata 'scheduler' must be an object") end
  local state = decode("state", false)
  local train_config = decode("train_config", false)

  if carry and (not carry.h or (carry.c and carry.c:shape()[2] ~= carry.h:shape()[2])) then
    fail("tensors carry.h and carry.c (the carried recurrent state) do not match")
  end
  net:load_state_dict(params)
  return {net = net, carry = carry, vocab = vocab, config = net:config(), train_config = train_config,
          state = state, optimizer = optimizer, scheduler = scheduler, tensors = tensors,
          metadata = meta, names = names}
end

-- ---- restore -------------------------------------------------------------------

function checkpoint.restore_optimizer(opt, ckpt)
  if type(ckpt) ~= "table" or ckpt.optimizer == nil then
    error("checkpoint.restore_optimizer: the checkpoint has no optimizer state (saved without opts.optimizer)", 2)
  end
  local o = ckpt.optimizer
  local st = {kind = o.kind, lr = o.lr, step = o.step}
  for k, v in pairs(o) do if MOMENTS[k] then st[k] = v end end
  opt:load_state(st)
end

function checkpoint.restore_scheduler(sched, ckpt)
  if type(ckpt) ~= "table" or ckpt.scheduler == nil then
    error("checkpoint.restore_scheduler: the checkpoint has no scheduler state (saved without opts.scheduler)", 2)
  end
  sched:load_state(ckpt.scheduler)
end

function checkpoint.restore_rng(ckpt)
  if type(ckpt) ~= "table" or type(ckpt.state) ~= "table" or ckpt.state.rng == nil then
    error("checkpoint.restore_rng: the checkpoint has no state.rng", 2)
  end
  dm.set_rng_state(ckpt.state.rng)
end

return checkpoint
