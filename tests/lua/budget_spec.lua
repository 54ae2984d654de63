-- budget_spec.lua: drlmem.budget, the memory estimate of a training run:
-- its parameter count is the controller's own, and runs that cannot fit
-- (max_memory, sizes past what a BLAS call takes, numbers beyond float32)
-- are refused in one line that names the keys.
local dm = require "drlmem"
local budget = require "drlmem.budget"

local function cfg_with(over)
  local cfg = dm.config.defaults()
  for k, v in pairs(over or {}) do cfg[k] = v end
  return cfg
end

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- a stand-in for dm.data.load's result: the vocabulary and a training split
local function fake_data(V, n)
  return {vocab = {size = V}, train = {size = function() return n end}}
end

describe("drlmem.budget", function()
  it("counts the parameters as the controller does", function()
    for _, over in ipairs {
      {embedding_dim = 8, memory_size = 6, hidden_size = 12, num_layers = 2},
      {embedding_dim = 8, memory_embedding_dim = 5, memory_size = 7, hidden_size = 12, num_layers = 3},
      {embedding_dim = 8, memory_size = 6, hidden_size = 12, num_layers = 1, write_policy = "reinforce"},
    } do
      local cfg = cfg_with(over)
      local net = dm.Controller(dm.train.model_config(cfg, 23))
      assert.are.equal(net:num_parameters(), budget.parameters(cfg, 23))
    end
  end)

  it("accepts the default run and refuses one past max_memory, naming the keys", function()
    local cfg = cfg_with {max_memory = 64}
    local est = budget.check(cfg, fake_data(10000, 5000))
    assert.is_true(est.total > 100e6 and est.total < 4e9, "default run estimated at " .. est.total)
    -- configs/tiny.yaml with 10^7 memory slots: about 34.6 GiB
    cfg = cfg_with {embedding_dim = 16, memory_embedding_dim = 16, memory_size = 10000000, hidden_size = 32, num_layers = 1,
                    max_seq_length = 24, batch_size = 8, max_memory = 8}
    local msg = errmsg(budget.check, cfg, fake_data(30, 24))
    assert.are.equal("config: the run needs about 34.6 GiB (memory attention: 28.6 GiB) but may take "
      .. "max_memory = 8.0 GiB; lower batch_size, max_seq_length, memory_size", msg)
    assert.is_nil(msg:find("\n"))
  end)

  it("uses min(batch_size, training samples) as the batch", function()
    local cfg = cfg_with {batch_size = 1000000, max_memory = 64}
    assert.are.equal(24, budget.check(cfg, fake_data(30, 24)).batch)
  end)

  it("refuses a matrix past 2^31-1 elements whatever the memory", function()
    local cfg = cfg_with {batch_size = 64, max_seq_length = 100000, memory_size = 16, max_memory = 1e9}
    local msg = errmsg(budget.check, cfg, fake_data(10000, 1000))
    assert.truthy(msg:find("^config: a batch's logits"), msg)
    assert.truthy(msg:find("more than a BLAS call takes", 1, true), msg)
  end)

  it("refuses, before the file is read, data arrays that cannot fit and numbers beyond float32", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    for i = 1, 1000 do f:write("line ", i, "\n") end
    f:close()
    local cfg = cfg_with {data_path = path, max_seq_length = 10000000, max_memory = 1}
    local msg = errmsg(budget.check_data, cfg)
    assert.truthy(msg:find("^config: the run needs about 74.6 GiB %(data arrays"), msg)
    assert.truthy(msg:find("lower max_seq_length, max_samples", 1, true), msg)
    cfg.max_samples = 10
    budget.check_data(cfg)
    os.remove(path)
    msg = errmsg(budget.check_data, cfg_with {write_cost = 1e300})
    assert.are.equal("config: key 'write_cost' is 1e+300, beyond what float32 holds (at most 3.403e+38)", msg)
  end)

  it("reads the machine's available memory", function()
    local bytes, source = budget.available(cfg_with {})
    assert.is_true(bytes > 0)
    assert.truthy(source == "MemAvailable" or source == "MemTotal" or source == "no limit known")
    assert.are.same({2 * 1024 ^ 3, "max_memory"}, {budget.available(cfg_with {max_memory = 2})})
  end)
end)
