-- budget.lua: what a training run will take in memory, estimated from its
-- config before anything is allocated, and the refusal of a run that cannot
-- fit, in one line that names the keys responsible.
--
-- A size that cannot fit would otherwise surface late and badly: the data
-- arrays are (samples, max_seq_length) int32 and are built while the file
-- is read; the controller allocates parameters and gradients at
-- construction and the activations at the first forward, so memory_size
-- 1e7 trains to 5 GB before a forward fails with a traceback. The estimate
-- follows the layout of the controller (its parameters are those of
-- net:state_dict(), under their PyTorch names), float32 everywhere:
--   parameters P, their gradients P, the optimizer's moments (2P for Adam
--   and AdamW, P for SGD), and a copy of the best weights P;
--   activations of a (B,T) batch kept for backward, and their gradients:
--   embedding E, query D, memory scores and weights 2M, memory read D, the
--   GRU 7H per layer, fc1 3H, and the logits' 3V (logits, GELU input,
--   dlogits); the episodic memory of write_policy reinforce B*T*K*(2D+H);
--   the data: two int32 (samples, T) arrays in lines mode.
-- B is min(batch_size, training samples) once the data is known; T is
-- max_seq_length. The BLAS calls take int sizes, so any one matrix of more
-- than 2^31-1 elements is refused as well, whatever the memory.
--
--   budget.estimate(cfg, V, n) -> {total = bytes, parts = {{what, bytes, keys}, ...}}
--   budget.available()         -> bytes, source   (max_memory, else MemAvailable)
--   budget.check(cfg, data)    -- raises "config: ..." when the run cannot fit
--   budget.check_data(cfg)     -- the same for the data arrays alone, before
--                                 the file is read (samples <= lines of data_path),
--                                 and numbers beyond float32's range
local budget = {}

local F32 = 4
local GiB = 1024 ^ 3
local BLAS_MAX = 2 ^ 31 - 1

local function dims(cfg, V)
  local E, H, L = cfg.embedding_dim, cfg.hidden_size, cfg.num_layers
  local D = cfg.memory_embedding_dim or E
  return V, E, D, cfg.memory_size, H, L
end

--- Parameter count of the controller for cfg and a vocabulary of V tokens.
function budget.parameters(cfg, V)
  local V_, E, D, M, H, L = dims(cfg, V)
  local p = V_ * E                                  -- embedding
    + D * E + D                                     -- fc_query
    + 2 * M * D                                     -- memory keys, values (usage counts: M more, not a parameter)
    + 3 * H * D + 3 * H * H + 6 * H                 -- GRU layer 0
    + (L - 1) * (6 * H * H + 6 * H)                 -- GRU layers 1..L-1
    + H * H + H                                     -- fc1
    + V_ * H + V_                                   -- fc_output
    + D * D + D + D * V_ + D                        -- fc_query_memory, fc_value_memory
  if cfg.write_policy == "reinforce" then
    p = p + 2 * D * H + H * H + 3 * H + 3           -- episodic projections, gate, policy, baseline
  end
  return p
end

--- The estimate for a batch of B = min(batch_size, n) sequences (n: the
-- training samples, nil when unknown) and the data's n_all samples.
function budget.estimate(cfg, V, n, n_all)
  local _, E, D, M, H, L = dims(cfg, V)
  local B = n and math.min(cfg.batch_size, math.max(n, 1)) or cfg.batch_size
  local T = cfg.max_seq_length
  local BT = B * T
  local P = budget.parameters(cfg, V)
  local moments = cfg.optimizer == "sgd" and 1 or 2
  local parts = {
    {"parameters, gradients and optimizer state", (3 + moments) * P * F32,
     {"vocab", "embedding_dim", "memory_size", "hidden_size", "num_layers"}},
    {"memory attention", 2 * 2 * BT * M * F32, {"batch_size", "max_seq_length", "memory_size"}},
    {"logits", 2 * 3 * BT * V * F32, {"batch_size", "max_seq_length", "vocab"}},
    {"activations", 2 * BT * (E + 2 * D + 7 * H * L + 3 * H) * F32,
     {"batch_size", "max_seq_length", "embedding_dim", "hidden_size", "num_layers"}},
  }
  if cfg.write_policy == "reinforce" then
    parts[#parts + 1] = {"episodic memory", 2 * BT * cfg.episodic_slots * (2 * D + H) * F32,
                         {"batch_size", "max_seq_length", "episodic_slots"}}
  end
  if n_all and cfg.sample_mode == "lines" then
    parts[#parts + 1] = {"data arrays", 2 * n_all * T * 4, {"max_seq_length", "max_samples"}}
  end
  local total = 0
  for _, p in ipairs(parts) do total = total + p[2] end
  -- the largest single matrices a BLAS call sees
  local blas = {
    {BT * M, "a batch's memory scores (batch_size x max_seq_length x memory_size)"},
    {BT * V, "a batch's logits (batch_size x max_seq_length x vocab)"},
    {V * math.max(E, H, D), "the embedding or output layer (vocab x width)"},
    {M * D, "the memory (memory_size x memory_embedding_dim)"},
  }
  return {total = total, parts = parts, blas = blas, batch = B, parameters = P}
end

local function meminfo(key)
  local f = io.open("/proc/meminfo")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local kb = text:match(key .. ":%s*(%d+) kB")
  return kb and tonumber(kb) * 1024
end

--- Bytes a run may take, and where that figure comes from.
function budget.available(cfg)
  if cfg and cfg.max_memory and cfg.max_memory > 0 then
    return cfg.max_memory * GiB, "max_memory"
  end
  local avail = meminfo("MemAvailable")
  if avail then return avail, "MemAvailable" end
  local total = meminfo("MemTotal")
  if total then return total, "MemTotal" end
  return math.huge, "no limit known"
end

local function gib(b)
  if b >= 1e6 * GiB then return string.format("%.3g GiB", b / GiB) end
  return string.format("%.1f GiB", b / GiB)
end

local function refuse(cfg, est, limit, source)
  table.sort(est.parts, function(a, b) return a[2] > b[2] end)
  local top = est.parts[1]
  local keys = {}
  for _, k in ipairs(top[3]) do if k ~= "vocab" then keys[#keys + 1] = k end end
  local where = source == "max_memory" and ("max_memory = " .. gib(limit))
    or (gib(limit) .. " " .. source)
  error(string.format("config: the run needs about %s (%s: %s) but may take %s; lower %s",
    gib(est.total), top[1], gib(top[2]), where, table.concat(keys, ", ")), 0)
end

local function check_estimate(cfg, est)
  for _, b in ipairs(est.blas) do
    if b[1] > BLAS_MAX then
      error(string.format("config: %s would have %.3g elements, more than a BLAS call takes (2^31-1)",
        b[2], b[1]), 0)
    end
  end
  local limit, source = budget.available(cfg)
  if not (est.total <= limit) then refuse(cfg, est, limit, source) end
  return est
end

--- Refuses a run whose model and batch cannot fit (after the data is
-- loaded: the vocabulary and the training split are known).
function budget.check(cfg, data)
  local V = data.vocab.size
  return check_estimate(cfg, budget.estimate(cfg, V, data.train:size()))
end

-- The core keeps the model's numbers in float32: a finite value beyond its
-- range would become inf there (write_cost = 1e300 reaches the controller
-- as inf), so such a value is refused here, by name.
local FLT_MAX = 3.4028234663852886e38

local function check_float_range(cfg)
  local config = require "drlmem.config"
  for _, k in ipairs(config.order) do
    local v = rawget(cfg, k) -- an unset nullable key reads as an error through cfg[k]
    if config.fields[k].kind == "number" and type(v) == "number" and v == v
       and math.abs(v) ~= math.huge and math.abs(v) > FLT_MAX then
      error(string.format("config: key '%s' is %g, beyond what float32 holds (at most %.4g)", k, v, FLT_MAX), 0)
    end
  end
end

--- Refuses, before data_path is read, a value the core cannot hold and a
-- run whose data arrays alone cannot fit: at most one sample per line
-- (lines mode), or max_samples.
function budget.check_data(cfg)
  check_float_range(cfg)
  if cfg.sample_mode ~= "lines" then return end
  -- What the file is (missing, a FIFO, a device, a folder, too large) is
  -- the loader's to report: only a regular file of known size is judged.
  local attr = require("lfs").attributes(cfg.data_path) -- stat(): opening a FIFO would block
  local size, max_bytes = attr and attr.size, rawget(cfg, "max_data_bytes")
  if not attr or attr.mode ~= "file" or size <= 0 or (max_bytes and size > max_bytes) then return end
  local T, cap = cfg.max_seq_length, cfg.max_samples
  local limit, source = budget.available(cfg)
  local function arrays(lines)
    if cap > 0 then lines = math.min(lines, cap) end
    return 2 * lines * T * 4
  end
  -- A sample takes at least two bytes (a token and its line end): when even
  -- that many samples fit, the file need not be read here.
  if arrays(size // 2 + 1) <= limit then return end
  local f = io.open(cfg.data_path, "rb")
  if not f then return end
  local lines = 1
  while true do
    local chunk = f:read(1 << 20)
    if not chunk then break end
    local _, k = chunk:gsub("\n", "")
    lines = lines + k
  end
  f:close()
  local bytes = arrays(lines)
  if not (bytes <= limit) then
    refuse(cfg, {total = bytes, parts = {{"data arrays", bytes, {"max_seq_length", "max_samples"}}}},
           limit, source)
  end
end

return budget
