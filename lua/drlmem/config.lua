-- config.lua: the configuration schema of drlmem and its loader.
--
-- Every setting a script reads is declared once below with its type, default,
-- allowed range and a one-line description; configs/default.yaml mirrors the
-- defaults. config.load(path, overrides) starts from the defaults, applies a
-- YAML file (read by dm.yaml, which also reports the line of every key), then
-- `--set key=value` overrides typed by the schema, and checks everything.
-- Errors name where the bad value came from and the key:
--   configs/x.yaml:7: key 'batch_size': expected a positive integer, got -3
--   configs/x.yaml:3: unknown key 'bach_size' (did you mean 'batch_size'?)
--   --set batch_size=abc: expected an integer
-- The returned cfg is a plain table of values whose metatable remembers where
-- each value came from (config.source, config.describe) and makes reading an
-- undeclared key an error, so a typo in a script fails loudly.
--
-- Adding a setting is one line: F(name, kind, default, range_or_choices, doc).
-- kind is "int", "number", "string", "bool" or "enum"; a trailing "?" lets the
-- value be null (nil in cfg until resolved). Ranges read "[1,inf)", "(0,1)",
-- "[0,1]"; choices read "adamw|adam|sgd".
local dm = require "drlmem"

local config = {}

config.fields = {} -- name -> spec
config.order = {}  -- names in declaration order

local function parse_range(s)
  local lo_br, lo, hi, hi_br = s:match("^%s*([%[%(])%s*([^,]+)%s*,%s*([^%]%)]+)%s*([%]%)])%s*$")
  assert(lo_br, "config: bad range '" .. s .. "'")
  local function num(x) return x == "inf" and math.huge or x == "-inf" and -math.huge or assert(tonumber(x)) end
  return { lo = num(lo), hi = num(hi), lo_open = lo_br == "(", hi_open = hi_br == ")", text = s }
end

local function fmt_num(x)
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if math.type(x) == "float" and x == math.floor(x) and math.abs(x) < 1e15 then
    return string.format("%d", x)
  end
  return tostring(x)
end

-- "a positive integer", "a number in [0, 1)", ...
local function describe_expected(spec)
  local r = spec.range
  if spec.kind == "int" then
    if not r or (r.lo == -math.huge and r.hi == math.huge) then return "an integer" end
    if r.hi == math.huge and r.lo == 1 and not r.lo_open then return "a positive integer" end
    if r.hi == math.huge and r.lo == 0 and not r.lo_open then return "a non-negative integer" end
    if r.hi == math.huge then return "an integer >= " .. fmt_num(r.lo_open and r.lo + 1 or r.lo) end
  elseif spec.kind == "number" then
    if not r then return "a number" end
    if r.hi == math.huge and r.lo == 0 and r.lo_open then return "a positive number" end
    if r.hi == math.huge and r.lo == 0 then return "a non-negative number" end
  elseif spec.kind == "string" then
    return "a non-empty string"
  elseif spec.kind == "bool" then
    return "true or false"
  elseif spec.kind == "enum" then
    return "one of " .. table.concat(spec.choices_list(), "|")
  end
  return (spec.kind == "int" and "an integer" or "a number") .. " in "
    .. (r.lo_open and "(" or "[") .. fmt_num(r.lo) .. ", " .. fmt_num(r.hi) .. (r.hi_open and ")" or "]")
end

--- Declares a setting. kind: int|number|string|bool|enum, with "?" for nullable.
-- check: a range string for int/number, "a|b|c" or a function returning the
-- list of choices for enum, nil otherwise. opts.check(v) returns true for a
-- value the range cannot rule out but that is bad; opts.expected then says
-- what is expected instead of the text made from the range.
function config.field(name, kind, default, check, doc, opts)
  assert(not config.fields[name], "config: field '" .. name .. "' declared twice")
  local nullable = kind:sub(-1) == "?"
  kind = nullable and kind:sub(1, -2) or kind
  assert(({ int = 1, number = 1, string = 1, bool = 1, enum = 1 })[kind], "config: bad kind " .. kind)
  local spec = { name = name, kind = kind, default = default, doc = doc or "", nullable = nullable,
                 extra_check = opts and opts.check, model = opts and opts.model,
                 policy = opts and opts.policy, if_changed = opts and opts.if_changed }
  if (kind == "int" or kind == "number") and check then spec.range = parse_range(check) end
  if kind == "enum" then
    if type(check) == "function" then
      spec.choices_list = check
    else
      local list = {}
      for c in check:gmatch("[^|]+") do list[#list + 1] = c end
      spec.choices_list = function() return list end
    end
  end
  spec.expected = opts and opts.expected or describe_expected(spec)
  config.fields[name] = spec
  config.order[#config.order + 1] = name
  return spec
end
local F = config.field

-- Tokenizer names come from the extensible registry in drlmem.data.
local function tokenizer_names()
  local names = {}
  for k in pairs(dm.data.tokenizers) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- The seed's config.yaml, with its values.
F("data_path", "string", "data/augmented_text_data.txt", nil, "training text, one sample per line (lines mode)")
F("log_file", "string", "logs/training.log", nil, "human-readable log; metrics.jsonl and the figure go beside it")
-- The model's keys (sizes, cell, memory, write policy) are declared by the
-- C core (dm.controller_fields: name, type, default, range, help), which
-- also fills the model from them, so a model key is named in one place.
for _, f in ipairs(dm.controller_fields()) do
  if not f.derived then
    local kind = f.kind .. ((f.default == nil) and "?" or "")
    F(f.name, kind, f.default, f.check, f.doc, {model = true, policy = f.policy, if_changed = f.if_changed})
  end
end
F("learning_rate", "number", 0.01, "(0,inf)", "initial learning rate")
F("batch_size", "int", 16, "[1,inf)", "sequences per batch")
F("max_seq_length", "int", 100, "[1,inf)", "time steps T per sample (longer samples are cut)")
F("train_size_ratio", "number", 0.8, "(0,1)", "fraction of samples for training")
F("val_size_ratio", "number", 0.1, "[0,1)", "fraction of samples for validation (at least one sample)")
F("epochs", "int", 50, "[1,inf)", "maximum number of epochs")
F("accumulation_steps", "int", 1, "[1,inf)", "batches per optimizer step")
F("write_strength", "number", 0.1, "[0,1]", "blend factor of the memory write after each step")
F("patience", "int", 3, "[0,inf)", "stop after more than this many epochs without a better validation loss")
F("save_path", "string", "models/", nil, "folder for checkpoints")
-- Values the upstream program fixed in code.
F("seed", "int", 42, "[0,inf)", "seed of initialisation, dropout, split and batch order")
F("optimizer", "enum", "adamw", "adamw|adam|sgd", "optimizer")
F("weight_decay", "number", 1e-4, "[0,inf)", "decoupled weight decay (adamw) or L2 penalty (adam, sgd)")
F("grad_clip", "number", 1.0, "[0,inf)", "clip the global gradient norm to this (0 = no clipping)")
F("scheduler", "enum", "cosine", "cosine|plateau|step|none", "learning-rate schedule, stepped once per epoch")
F("t_max", "int", 10, "[1,inf)", "cosine: half period in epochs")
F("eta_min", "number", 1e-6, "[0,inf)", "cosine: lowest learning rate")
F("step_size", "int", 10, "[1,inf)", "step: epochs between learning-rate drops")
F("gamma", "number", 0.1, "(0,1]", "step and plateau: factor applied to the learning rate at a drop")
F("plateau_patience", "int", 10, "[0,inf)",
  "plateau: epochs without a better validation loss before the learning rate drops (0: drop at the first "
  .. "epoch that does not improve, as the SGD language models train)")
F("loss_ignore_pad", "bool", true, nil, "leave pad targets out of the loss (false = upstream)")
-- Data.
F("tokenizer", "enum", "word", tokenizer_names,
  "word: lower-cased words (letters, any non-ASCII letter too, and digits), . , ? ! and <unk>-style specials "
  .. "as tokens, every other character deleted; whitespace: split on whitespace, kept as written (PTB, "
  .. "WikiText); upstream: runs of a-z0-9 exactly as upstream; char: every character; or a tokenizer "
  .. "registered from Lua (dm.data.register_tokenizer, loaded with drlmem -l MODULE)",
  { expected = "a known tokenizer (char|upstream|whitespace|word, or one registered from Lua by a module "
    .. "loaded first: drlmem -l MODULE SCRIPT ...)" })
F("sample_mode", "enum", "lines", "lines|stream|babi", "lines: a sample per line; stream: windows of max_seq_length+1 tokens; babi: a sample per question of a bAbI file")
F("min_freq", "int", 1, "[1,inf)", "tokens seen fewer times in the training split become <unk>")
F("max_vocab_size", "int", 0, "[0,inf)", "cap on the vocabulary size, specials included (0 = unlimited)",
  { expected = "0 (unlimited) or an integer >= 5 (the 4 specials and a token)",
    check = function(v) return v ~= 0 and v < 5 end })
F("max_samples", "int", 0, "[0,inf)", "use only the first N samples of data_path (0 = all; val_data and test_data are used whole)")
F("vocab_from", "enum", "train", "train|all", "build the vocabulary from the training split or from all samples")
-- Data files and splits (README "Train on your own text").
F("val_data", "string?", nil, nil,
  "validation file, used as it is (with test_data; data_path is then all training data, not re-split)")
F("test_data", "string?", nil, nil, "test file, used as it is (with val_data); evaluate.lua reports on it")
F("stream_line_end", "enum", "none", "none|eos",
  "stream mode: none (line ends go to the tokenizer like any whitespace) or eos (each line's tokens, then <eos>: "
  .. "the PTB/WikiText language-model stream)")
F("carry_state", "bool", false, nil,
  "stream mode, truncated BPTT: each part is one continuous stream in batch_size parallel rows, batch k holds "
  .. "window k of every row, and the recurrent state at the end of a batch is the initial state of the next "
  .. "(detached; reset at each epoch's start and each evaluation's)")
F("max_data_bytes", "int", 1 << 30, "[1,inf)", "largest data file read, in bytes (checked before reading; 1 GiB)")
F("split", "enum", "random", "random|position",
  "without val_data/test_data: cut data_path by a seeded permutation (random) or in file order (position: "
  .. "the first train_size_ratio of the samples, then val, then test)")
F("threads", "int", 0, "[0,1024]", "matrix-product threads, oneDNN or OpenBLAS (0 = the library default; dm.set_num_threads takes 1..1024)")
F("max_memory", "number", 0.0, "[0,inf)", "GiB a run may take by the estimate of drlmem.budget (0 = the machine's available memory)")
-- The RL write policy's training settings (README "RL write policy"); its
-- model keys come from dm.controller_fields above.
F("entropy_decay", "number", 0.9, "[0,1]", "reinforce: the entropy weight of epoch e is entropy_eta * entropy_decay^e")
F("curriculum_epochs", "int", 0, "[0,inf)", "reinforce: first epochs with soft writes (weight p_t), then sampled hard writes")
F("task", "enum", "none", "none|recall|copy|babi", "data_path holds this synthetic task: evaluation adds answer-token accuracy (sample_mode babi sets babi)")
F("loss_positions", "enum", "all", "all|answers",
  "the training loss is over every target (all) or only the task's answer positions (answers: the targets "
  .. "no memory can predict, such as recall's random keys and values, add no gradient; needs task)")
F("reward_positions", "enum", "all", "all|answers",
  "reinforce: the policy's reward log p(target) at every target (all) or only at the task's answer positions "
  .. "(answers: the reads a write serves; every action is still credited with the reward-to-go; needs task)")

-- bAbI question answering (lua/drlmem/babi.lua).
F("babi_context", "int", 50, "[0,inf)", "sample_mode babi: the most recent statements of a story kept as a question's context (50 as MemN2N; 0 = all)")
-- The run's periodic resumable checkpoint (scripts/train.lua, lua/drlmem/loop.lua).
F("checkpoint_minutes", "number", 10.0, "[0,inf)", "also write last.safetensors every this many minutes of training (0 = only at epoch ends)")
F("checkpoint_steps", "int", 0, "[0,inf)", "also write last.safetensors every this many optimizer steps (0 = never)")

-- Cross-field checks: each returns nil, or the keys involved and a message;
-- the error names the last of those keys that was set (not left default).
config.checks = {
  function(cfg)
    local s = cfg.train_size_ratio + cfg.val_size_ratio
    if s >= 1 then
      return { "train_size_ratio", "val_size_ratio" }, string.format(
        "train_size_ratio + val_size_ratio = %s + %s = %s leaves no test split (the sum must be below 1)",
        fmt_num(cfg.train_size_ratio), fmt_num(cfg.val_size_ratio), fmt_num(s))
    end
  end,
}

-- task babi scores the answer after a question's `?`, which sample_mode babi makes.
config.checks[#config.checks + 1] = function(cfg)
  if cfg.task == "babi" and cfg.sample_mode ~= "babi" then
    return { "sample_mode", "task" }, "task babi scores the samples of sample_mode babi (a bAbI file): set "
      .. "sample_mode: babi"
  end
  if cfg.sample_mode == "babi" and cfg.task ~= "babi" then
    return { "sample_mode", "task" }, "sample_mode babi is scored as task babi (the answer after each question), "
      .. "not " .. cfg.task .. ": leave task out"
  end
end

-- Only a task knows its answer positions.
config.checks[#config.checks + 1] = function(cfg)
  if cfg.loss_positions == "answers" and cfg.task == "none" then
    return { "task", "loss_positions" }, "loss_positions answers trains on the answer positions of a task: "
      .. "set task (recall, copy or babi)"
  end
  if cfg.reward_positions == "answers" and cfg.task == "none" then
    return { "task", "reward_positions" }, "reward_positions answers rewards the answer positions of a task: "
      .. "set task (recall, copy or babi)"
  end
end

-- Fixed split files come as a pair, and they replace the split of data_path.
config.checks[#config.checks + 1] = function(cfg)
  -- (rawget: a null key is absent, and reading an absent key is an error)
  local val, test = rawget(cfg, "val_data"), rawget(cfg, "test_data")
  if val == nil and test ~= nil and cfg.sample_mode == "babi" then
    return nil -- (bAbI ships train and test: validation is held out of data_path)
  end
  if (val == nil) ~= (test == nil) then
    return { "val_data", "test_data" }, "val_data and test_data go together: give both files (validation "
      .. "and test), or neither (data_path is then split by train_size_ratio and val_size_ratio)"
  end
  if val ~= nil and cfg.split ~= "random" then
    return { "val_data", "split" }, "split: " .. cfg.split .. " cuts data_path into three parts, but with "
      .. "val_data and test_data the files are the parts: leave split out"
  end
end

-- Truncated BPTT carries the state along one stream in file order.
config.checks[#config.checks + 1] = function(cfg)
  if not cfg.carry_state then return nil end
  if cfg.sample_mode ~= "stream" then
    return { "sample_mode", "carry_state" }, "carry_state carries the recurrent state along a token stream: set "
      .. "sample_mode: stream (it is " .. cfg.sample_mode .. ")"
  end
  if rawget(cfg, "val_data") == nil and cfg.split ~= "position" then
    return { "split", "carry_state" }, "carry_state needs each part to be one run of the stream: set split: "
      .. "position, or give val_data and test_data (split random scatters the windows)"
  end
  if cfg.write_policy == "reinforce" then
    return { "write_policy", "carry_state" }, "carry_state with write_policy reinforce is not supported: the "
      .. "episodic memory starts empty with every sequence"
  end
end

-- Variational dropout is a way of drawing the three recurrent dropouts.
config.checks[#config.checks + 1] = function(cfg)
  if cfg.variational_dropout and cfg.input_dropout == 0 and cfg.layer_dropout == 0 and cfg.output_dropout == 0 then
    return { "input_dropout", "layer_dropout", "output_dropout", "variational_dropout" }, "variational_dropout "
      .. "draws input_dropout, layer_dropout and output_dropout once per sequence, and all three are 0: set one "
      .. "of them above 0"
  end
  if cfg.layer_dropout > 0 and cfg.num_layers < 2 then
    return { "num_layers", "layer_dropout" }, "layer_dropout acts between recurrent layers, and num_layers is "
      .. cfg.num_layers .. ": set num_layers >= 2, or use input_dropout/output_dropout"
  end
end

---------------------------------------------------------------------------
-- Values, their text and the closest key
---------------------------------------------------------------------------
local function is_null(v) return v == nil or (dm.yaml and v == dm.yaml.null) end

--- How a value reads in a message: 'abc', -3, 0.5, true, null, a list.
function config.repr(v)
  if is_null(v) then return "null" end
  local t = type(v)
  if t == "string" then
    -- control characters escaped, so a value never splits the message's line
    local esc = {["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}
    return "'" .. v:gsub("%c", function(c) return esc[c] or string.format("\\x%02x", c:byte()) end) .. "'"
  end
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 1e15 then
      return string.format("%.1f", v)
    end
    return fmt_num(v)
  end
  if t == "table" then return (v[1] ~= nil or next(v) == nil) and "a list" or "a mapping" end
  return tostring(v)
end

local function levenshtein(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    local ai = a:byte(i)
    for j = 1, #b do
      local cost = ai == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

--- The declared key closest to name (edit distance; declaration order breaks ties).
function config.closest(name)
  local best, bestd
  for _, k in ipairs(config.order) do
    local d = levenshtein(name, k)
    if not bestd or d < bestd then best, bestd = k, d end
  end
  return best
end

local function unknown_key(where, key)
  error(string.format("%s: unknown key '%s' (did you mean '%s'?)", where, key, config.closest(key)), 0)
end

-- Checks v against spec; returns the normalised value or raises naming where.
local function check_value(spec, v, where)
  local given = v
  local function bad()
    error(string.format("%s: key '%s': expected %s, got %s", where, spec.name, spec.expected,
      config.repr(given)), 0)
  end
  if is_null(v) then
    if spec.nullable then return nil end
    bad()
  end
  local k = spec.kind
  if k == "int" then
    if math.type(v) ~= "integer" then bad() end
  elseif k == "number" then
    if type(v) ~= "number" or v ~= v then bad() end
    v = v + 0.0
  elseif k == "string" then
    if type(v) ~= "string" or v == "" then bad() end
  elseif k == "bool" then
    if type(v) ~= "boolean" then bad() end
  elseif k == "enum" then
    local ok = false
    for _, c in ipairs(spec.choices_list()) do if v == c then ok = true end end
    if not ok then bad() end
  end
  local r = spec.range
  if r then
    if v < r.lo or v > r.hi or (r.lo_open and v == r.lo) or (r.hi_open and v == r.hi) then bad() end
  end
  if spec.extra_check and spec.extra_check(v) then bad() end
  return v
end

--- Checks one value for key against the schema, as a config file's value is
-- checked: returns the normalised value (a number key's integer becomes a
-- float), or raises "WHERE: key 'k': expected ..., got ..." or "WHERE:
-- unknown key 'k' (did you mean ...?)". where: e.g. "space.yaml:4". Other
-- files that hold config values (a search space) check them with this.
function config.check(key, v, where)
  local spec = config.fields[key]
  if not spec then unknown_key(where, key) end
  return check_value(spec, v, where)
end

-- Turns the text of --set key=value into a value of the field's kind, or
-- raises "--set key=text: expected an integer".
local function parse_text(spec, text, where)
  if spec.nullable and (text == "null" or text == "~" or text == "") then return dm.yaml.null end
  local k = spec.kind
  local function bad(what) error(string.format("%s: expected %s", where, what), 0) end
  if k == "int" then
    local n = tonumber(text)
    if not n or math.type(n) ~= "integer" then bad("an integer") end
    return n
  elseif k == "number" then
    local n = tonumber(text)
    if text == "inf" or text == ".inf" then n = math.huge end
    if not n then bad("a number") end
    return n
  elseif k == "bool" then
    if text == "true" or text == "True" or text == "TRUE" then return true end
    if text == "false" or text == "False" or text == "FALSE" then return false end
    bad("true or false")
  end
  return text
end

---------------------------------------------------------------------------
-- The cfg table
---------------------------------------------------------------------------
local CFG_MT_NAME = "drlmem.Config"

local function new_cfg(sources)
  local mt = { __name = CFG_MT_NAME, sources = sources }
  mt.__index = function(_, key)
    error(string.format("config has no key '%s' (did you mean '%s'?)", tostring(key),
      config.closest(tostring(key))), 2)
  end
  return setmetatable({}, mt)
end

--- Where the value of key came from: "default", "configs/x.yaml:7",
-- "--set key=value", "derived from embedding_dim" or "override".
function config.source(cfg, key)
  local mt = getmetatable(cfg)
  return mt and mt.sources and mt.sources[key] or "?"
end

--- A plain copy of the values (no metatable), e.g. for a checkpoint.
function config.totable(cfg)
  local t = {}
  for _, k in ipairs(config.order) do t[k] = rawget(cfg, k) end
  for k, v in pairs(cfg) do t[k] = v end
  return t
end

--- Lines "key = value  (source)" in declaration order, for the log.
function config.describe(cfg)
  local lines, width = {}, 0
  for _, k in ipairs(config.order) do width = math.max(width, #k) end
  for _, k in ipairs(config.order) do
    lines[#lines + 1] = string.format("%-" .. width .. "s = %-30s (%s)", k, config.repr(rawget(cfg, k)),
      config.source(cfg, k))
  end
  return lines
end

local function finish(cfg, sources)
  if rawget(cfg, "memory_embedding_dim") == nil then
    rawset(cfg, "memory_embedding_dim", cfg.embedding_dim)
    sources.memory_embedding_dim = "derived from embedding_dim"
  end
  if cfg.sample_mode == "babi" and cfg.task == "none" then
    rawset(cfg, "task", "babi") -- (a bAbI file's answers are scored)
    sources.task = "derived from sample_mode"
  end
  for _, check in ipairs(config.checks) do
    local keys, msg = check(cfg)
    if keys then
      local key = keys[#keys]
      for _, k in ipairs(keys) do if sources[k] ~= "default" then key = k end end
      error(string.format("%s: key '%s': %s", sources[key], key, msg), 0)
    end
  end
  return cfg
end

--- The defaults alone.
function config.defaults()
  return config.load(nil, nil)
end

--- Loads a config. path: a YAML file or nil (defaults only). overrides: a list
-- of "key=value" strings (as from --set) and/or a map {key = value} of Lua
-- values (applied after the list). Raises an error naming the source and key.
function config.load(path, overrides)
  local sources = {}
  local cfg = new_cfg(sources)
  for _, k in ipairs(config.order) do
    rawset(cfg, k, config.fields[k].default)
    sources[k] = "default"
  end
  if path then
    local doc, lines = dm.yaml.load(path)
    if doc ~= nil then
      if type(doc) ~= "table" or doc == dm.yaml.null or (doc[1] ~= nil) then
        error(string.format("%s:1: expected a mapping of key: value at the top level, got %s", path,
          config.repr(doc)), 0)
      end
      -- declaration order keeps the first error stable when several keys are bad
      local keys = {}
      for k in pairs(doc) do keys[#keys + 1] = k end
      table.sort(keys, function(a, b) return (lines[a] or 0) < (lines[b] or 0) end)
      for _, k in ipairs(keys) do
        local where = string.format("%s:%d", path, lines[k] or 0)
        local spec = config.fields[k]
        if not spec then unknown_key(where, k) end
        rawset(cfg, k, check_value(spec, doc[k], where))
        sources[k] = where
      end
    end
  end
  overrides = overrides or {}
  for _, item in ipairs(overrides) do
    local where = "--set " .. tostring(item)
    local key, text = tostring(item):match("^%s*([^=]-)%s*=(.*)$")
    if not key or key == "" then error(where .. ": expected key=value", 0) end
    local spec = config.fields[key]
    if not spec then unknown_key(where, key) end
    rawset(cfg, key, check_value(spec, parse_text(spec, text, where), where))
    sources[key] = where
  end
  for key, v in pairs(overrides) do
    if type(key) == "string" then
      local spec = config.fields[key]
      local where = "override " .. key
      if not spec then unknown_key(where, key) end
      rawset(cfg, key, check_value(spec, v, where))
      sources[key] = where
    end
  end
  return finish(cfg, sources)
end

return config
