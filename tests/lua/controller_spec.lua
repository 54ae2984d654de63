-- controller_spec.lua: the Lua face of the DRLMemNet controller
-- (dm.Controller): construction and config errors, parameter names, order
-- and views, state_dict copies and load_state_dict checks, the forward,
-- backward and write on the golden batch against PyTorch (tolerance 1e-5 of
-- each tensor's max-abs scale), a full training step through dm.optim.AdamW
-- and dm.clip_grad_norm, the accessors for scripts, and the error texts.
-- The strict parity (every gradient, both golden sizes, three steps, the
-- AdamW decay) is tests/c/test_controller.c.
local dm = require "drlmem"
local flat, readbin = require("helpers").flat, require("helpers").readbin

local G = "tests/fixtures/golden_1234/"
local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
             num_layers = 2, dropout = 0.3}

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function has(s, sub)
  assert(s:find(sub, 1, true), ("expected %q to contain %q"):format(s, sub))
end

-- max |a - b| <= rtol * max |b|
local function close(a, b, what, rtol)
  rtol = rtol or 1e-5
  local fa, fb = flat(a), flat(b)
  assert.are.equal(#fb, #fa, what .. ": sizes")
  local scale, err = 0, 0
  for i = 1, #fb do
    scale = math.max(scale, math.abs(fb[i]))
    err = math.max(err, math.abs(fa[i] - fb[i]))
  end
  assert(err <= rtol * scale or (scale == 0 and err == 0),
         ("%s: max err %g > %g * scale %g"):format(what, err, rtol, scale))
end

local function golden_net()
  local net = dm.Controller(CFG)
  local sd, names = net:state_dict()
  local tbl = {}
  for _, name in ipairs(names) do tbl[name] = readbin(G .. "params/" .. name .. ".bin", sd[name]:shape()) end
  net:load_state_dict(tbl)
  return net
end

local function batch()
  local x = readbin(G .. "inputs.bin", {3, 5}):int()
  local y = readbin(G .. "targets.bin", {3, 5}):int()
  return x, y
end

local ORDER = {"memory.keys", "memory.values", "memory.usage_counts", "embedding.weight",
  "fc_query.weight", "fc_query.bias", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0",
  "rnn.bias_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
  "fc1.weight", "fc1.bias", "fc_output.weight", "fc_output.bias", "fc_query_memory.weight",
  "fc_query_memory.bias", "fc_value_memory.weight", "fc_value_memory.bias"}

describe("dm.Controller construction", function()
  it("takes the config table, fills defaults and prints its sizes", function()
    local net = dm.Controller{vocab_size = 64, embedding_dim = 16, memory_size = 32, hidden_size = 24}
    assert.are.same({vocab_size = 64, embedding_dim = 16, memory_embedding_dim = 16,
                     memory_size = 32, hidden_size = 24, num_layers = 2, dropout = 0.3,
                     output_activation = "gelu"}, net:config())
    local n = net:num_parameters()
    assert.are.equal(("Controller(vocab=64, emb=16, mem=32x16, hidden=24x2, params=%d)"):format(n),
                     tostring(net))
    -- torch's sum(p.numel() for p in model.parameters()) for these sizes
    local E, D, V, M, H = 16, 16, 64, 32, 24
    assert.are.equal(2 * M * D + V * E + D * E + D + (3 * H * D + 3 * H * H + 6 * H)
                     + (6 * H * H + 6 * H) + H * H + H + V * H + V + D * D + D + D * V + D, n)
    assert.is_true(net:training())
    net:eval()
    assert.is_false(net:training())
    net:train()
    assert.is_true(net:training())
  end)

  it("names missing, invalid and unknown fields", function()
    has(errmsg(dm.Controller, {embedding_dim = 8, memory_size = 6, hidden_size = 12}),
        "Controller: config field vocab_size is missing")
    has(errmsg(dm.Controller, {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 0}),
        "config field hidden_size must be >= 1, got 0")
    has(errmsg(dm.Controller, {vocab_size = 20.5, embedding_dim = 8, memory_size = 6, hidden_size = 12}),
        "config field vocab_size must be an integer, got 20.5")
    has(errmsg(dm.Controller, {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                               dropout = 1}), "dropout must be in [0, 1), got 1")
    has(errmsg(dm.Controller, {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                               output_activation = "relu"}), "output_activation must be one of gelu, none, got relu")
    has(errmsg(dm.Controller, {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                               hiden_size = 3}), "unknown config field 'hiden_size'")
    has(errmsg(dm.Controller, {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                               num_layers = 99}), "num_layers must be in 1..16, got 99")
    has(errmsg(dm.Controller, 5), "Controller: argument 1 (config): expected a table, got number")
  end)

  it("draws its weights from the global generator or a given one", function()
    dm.manual_seed(3)
    local a = dm.Controller(CFG)
    dm.manual_seed(3)
    local b = dm.Controller(CFG)
    close(a:param("rnn.weight_hh_l1"), b:param("rnn.weight_hh_l1"), "same seed", 0)
    local g1, g2 = dm.Generator(9), dm.Generator(9)
    local c, d = dm.Controller(CFG, g1), dm.Controller(CFG, g2)
    close(c:param("embedding.weight"), d:param("embedding.weight"), "same generator", 0)
  end)
end)

describe("dm.Controller parameters and state", function()
  it("lists parameters in torch's order with views; frozen ones have no grad", function()
    local net = dm.Controller(CFG)
    local ps = net:parameters()
    local expect = {}
    for _, n in ipairs(ORDER) do if n ~= "memory.usage_counts" then expect[#expect + 1] = n end end
    assert.are.equal(#expect, #ps)
    for i, p in ipairs(ps) do
      assert.are.equal(expect[i], p.name)
      local frozen = p.name:find("^fc_query_memory") or p.name:find("^fc_value_memory")
      if frozen then assert.is_nil(p.grad) else assert.are.same(p.value:shape(), p.grad:shape()) end
    end
    assert.are.same({36, 8}, ps[6].value:shape()) -- rnn.weight_ih_l0: (3H, D)
    -- a view writes through; state_dict hands out copies
    ps[1].value:fill(0.25)
    local sd, names = net:state_dict()
    assert.are.same(ORDER, names)
    assert.are.equal(0.25, sd["memory.keys"]:get(2, 3))
    sd["memory.keys"]:fill(7)
    assert.are.equal(0.25, net:param("memory.keys"):get(1, 1))
    assert.are.same({6}, sd["memory.usage_counts"]:shape())
    assert.are.equal(1, sd["memory.usage_counts"]:get(4))
    -- views keep the net alive
    local v = net:param("fc1.bias")
    net, ps, sd = nil, nil, nil
    collectgarbage()
    collectgarbage()
    v:fill(1)
    assert.are.equal(1, v:get(3))
  end)

  it("load_state_dict checks every name, shape and dtype before copying", function()
    local net = dm.Controller(CFG)
    local sd = net:state_dict()
    local before = net:param("fc1.weight"):clone()
    local bad = {}
    for k, v in pairs(sd) do bad[k] = v end
    bad["rnn.weight_ih_l1"] = nil
    has(errmsg(net.load_state_dict, net, bad), "load_state_dict: missing rnn.weight_ih_l1 (expected shape 36x12)")
    bad["rnn.weight_ih_l1"] = dm.zeros(36, 8)
    has(errmsg(net.load_state_dict, net, bad), "load_state_dict: rnn.weight_ih_l1 has shape 36x8, expected 36x12")
    bad["rnn.weight_ih_l1"] = dm.zeros(36, 12):int()
    has(errmsg(net.load_state_dict, net, bad), "load_state_dict: rnn.weight_ih_l1 has dtype int32, expected float32")
    bad["rnn.weight_ih_l1"] = sd["rnn.weight_ih_l1"]
    bad["fc1.weight"] = dm.ones(12, 12)
    bad["optim.exp_avg.fc1.weight"] = dm.ones(12, 12)
    has(errmsg(net.load_state_dict, net, bad), "load_state_dict: unexpected optim.exp_avg.fc1.weight")
    close(net:param("fc1.weight"), before, "unchanged after a failed load", 0)
    bad["optim.exp_avg.fc1.weight"] = nil
    net:load_state_dict(bad)
    assert.are.equal(1, net:param("fc1.weight"):get(12, 12))
    -- into a seed-sized net: the first tensor already differs
    local big = dm.Controller{vocab_size = 20, embedding_dim = 128, memory_size = 512, hidden_size = 256}
    has(errmsg(big.load_state_dict, big, sd), "load_state_dict: memory.keys has shape 6x8, expected 512x128")
  end)
end)

describe("dm.Controller against PyTorch (golden_1234)", function()
  it("forward, losses, gradients and usage match with the injected dropout mask", function()
    local net = golden_net()
    local x, y = batch()
    net:set_dropout_mask(readbin(G .. "acts/dropout_mask.bin", {3, 5, 12}))
    local logits = net:forward(x)
    assert.are.same({3, 5, 20}, logits:shape())
    close(logits, readbin(G .. "acts/logits.bin", {3, 5, 20}), "logits")
    close(net:memory_usage(), readbin(G .. "usage_counts_after_forward.bin"), "usage", 0)
    close(net:last_query(), readbin(G .. "acts/query.bin", {3, 5, 8}), "query")
    close(net:last_attention(), readbin(G .. "acts/mem_weights.bin", {3, 5, 6}), "attention")
    local slots = net:last_slots()
    assert.are.same({3, 5}, slots:shape())
    assert.are.equal("int32", slots:dtype())
    local scores = readbin(G .. "acts/mem_scores.bin", {3, 5, 6})
    local _, idx = scores:max(3)
    assert.are.same(flat(idx), flat(slots)) -- 1-based argmax slots

    local loss, dlogits = dm.nn.cross_entropy(logits, y)
    assert.are.near(readbin(G .. "loss_with_pad.bin"):get(1), loss, 1e-6)
    net:zero_grad()
    net:backward(dlogits)
    for _, p in ipairs(net:parameters()) do
      if p.grad then close(p.grad, readbin(G .. "with_pad/grads/" .. p.name .. ".bin", p.grad:shape()), p.name) end
    end
    local loss_ip, d_ip = dm.nn.cross_entropy(logits, y, {ignore_index = 0})
    assert.are.near(readbin(G .. "loss_ignore_pad.bin"):get(1), loss_ip, 1e-6)
    net:zero_grad()
    net:backward(d_ip)
    local _, g = net:param("rnn.weight_hh_l0")
    close(g, readbin(G .. "grads/rnn.weight_hh_l0.bin", {36, 12}), "ignore-pad grad")

    net:write_memory(0.1)
    close(net:param("memory.keys"), readbin(G .. "write/keys.bin", {6, 8}), "write keys")
    close(net:param("memory.values"), readbin(G .. "write/values.bin", {6, 8}), "write values")
  end)

  it("eval mode: no dropout, usage still counts", function()
    local net = golden_net()
    local x = batch()
    net:eval()
    close(net:forward(x), readbin(G .. "eval/logits.bin", {3, 5, 20}), "eval logits")
    close(net:memory_usage(), readbin(G .. "eval/usage_counts.bin"), "eval usage", 0)
  end)

  it("a full step with dm.optim.AdamW and dm.clip_grad_norm matches step/*", function()
    local net = golden_net()
    local x, y = batch()
    local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
    net:set_dropout_mask(readbin(G .. "acts/dropout_mask.bin", {3, 5, 12}))
    local logits = net:forward(x)
    local _, dlogits = dm.nn.cross_entropy(logits, y)
    net:zero_grad()
    net:backward(dlogits)
    local total = dm.clip_grad_norm(net, 1.0)
    assert.are.near(0.19793595373630524, total, 1e-6)
    opt:step()
    net:write_memory(0.1)
    local sd, names = net:state_dict()
    for _, name in ipairs(names) do
      close(sd[name], readbin(G .. "step/" .. name .. ".bin", sd[name]:shape()), "step " .. name)
    end
  end)
end)

describe("dm.Controller errors and accessors", function()
  it("names bad tokens, shapes and call order", function()
    local net = dm.Controller(CFG)
    assert.is_nil(net:last_query())
    assert.is_nil(net:last_slots())
    has(errmsg(net.backward, net, dm.zeros(3, 5, 20)), "Controller.backward: no forward to differentiate")
    has(errmsg(net.write_memory, net, 0.1), "Controller.write_memory: no forward yet")
    has(errmsg(net.forward, net, dm.zeros(3, 5)), "Controller.forward: tokens must be an int32 tensor")
    has(errmsg(net.forward, net, dm.zeros(15):int()), "tokens must have shape (B,T) with B, T >= 1, got 15")
    has(errmsg(net.forward, net, dm.tensor({{2, 5, 20}, {1, 1, 1}}, "int32")),
        "token id 20 at (batch 1, time 3) is out of range for vocabulary size 20")
    assert.are.same({1, 1, 1, 1, 1, 1}, flat(net:memory_usage())) -- untouched by the failure
    local x = dm.tensor({{2, 5, 6}, {1, 1, 0}}, "int32")
    local logits = net:forward(x)
    assert.are.same({2, 3, 20}, logits:shape())
    has(errmsg(net.backward, net, dm.zeros(3, 2, 20)),
        "Controller.backward: dlogits has shape 3x2x20, expected 2x3x20 (the last forward's B x T x V)")
    has(errmsg(net.backward, net, logits:int()), "expected a float32 tensor")
    has(errmsg(net.write_memory, net, 2), "strength must be in [0, 1], got 2")
    has(errmsg(net.set_dropout_mask, net, dm.ones(2, 3, 5)), "mask must have shape (B,T,12), got 2x3x5")
    net:set_dropout_mask(dm.ones(1, 3, 12))
    has(errmsg(net.forward, net, x), "the injected dropout mask is for a 1x3 batch, the tokens are 2x3")
    has(errmsg(net.param, net, "fc9.weight"), "Controller.param: no parameter named 'fc9.weight'")
    has(errmsg(net.load_state_dict, net, 3), "load_state_dict: expected a table")
    has(errmsg(dm.Controller(CFG).forward, 5), "expected a Controller as self (call it as net:forward(...))")
    -- usage: +1 per distinct argmax slot per forward
    net:set_dropout_mask(nil)
    net:eval()
    local before = flat(net:memory_usage())
    net:forward(x)
    local slots, seen = flat(net:last_slots()), {}
    for _, s in ipairs(slots) do seen[s] = true end
    local after = flat(net:memory_usage())
    for s = 1, 6 do assert.are.equal(before[s] + (seen[s] and 1 or 0), after[s]) end
  end)

  it("a dropout forward draws from the generator; eval is deterministic", function()
    local net = dm.Controller(CFG)
    local x = dm.tensor({{2, 5, 6, 7}}, "int32")
    dm.manual_seed(11)
    local a = net:forward(x)
    dm.manual_seed(11)
    local b = net:forward(x)
    close(a, b, "same seed, same dropout", 0)
    local c = net:forward(x)
    assert.is_true(((a - c):abs():max()) > 0)
    -- with its own generator the net leaves the global one alone
    local s0 = dm.get_rng_state()
    net:set_generator(dm.Generator(5))
    local g1 = net:forward(x)
    assert.are.equal(s0, dm.get_rng_state())
    net:set_generator(dm.Generator(5))
    close(net:forward(x), g1, "same private generator", 0)
    net:set_generator(nil)
    net:forward(x)
    assert.are_not.equal(s0, dm.get_rng_state())
    has(errmsg(net.set_generator, net, 3), "Controller.set_generator: expected a Generator or nil, got number")
    net:eval()
    local s1 = dm.get_rng_state()
    close(net:forward(x), net:forward(x), "eval", 0)
    assert.are.equal(s1, dm.get_rng_state())
  end)
end)

-- Checkpoints written by drlmem before the controller was composed of parts
-- (tests/fixtures/legacy, written by tests/fixtures/legacy/make_legacy.lua
-- run with the code of commit b6b3edd: a tiny model after one AdamW step and
-- a memory write, and its eval logits in expected.json) still load, and the
-- loaded nets give the eval logits the old code gave.
describe("Controller: checkpoints from before the parts", function()
  local checkpoint = require "drlmem.checkpoint"
  local slurp = require("helpers").slurp
  local want = dm.json.decode(slurp("tests/fixtures/legacy/expected.json"))
  for _, kind in ipairs({"seed", "reinforce"}) do
    it("loads the " .. kind .. " one and reproduces its eval logits", function()
      local ck = checkpoint.load("tests/fixtures/legacy/" .. kind .. "_main.safetensors")
      local net = ck.net
      net:eval()
      local got = flat(net:forward(dm.tensor(want.tokens):int()))
      assert.are.equal(#want[kind], #got)
      for i = 1, #got do assert.are.near(want[kind][i], got[i], 1e-6) end
    end)
  end
end)

describe("Controller: config keys declared once, by the core", function()
  local config = require "drlmem.config"
  local train = require "drlmem.train"
  local checkpoint = require "drlmem.checkpoint"
  local helpers = require "helpers"

  it("the schema's model keys are dm.controller_fields', with their defaults and help", function()
    local n = 0
    for _, f in ipairs(dm.controller_fields()) do
      if not f.derived then
        local spec = config.fields[f.name]
        assert.is_truthy(spec, f.name)
        assert.is_true(spec.model, f.name)
        assert.are.equal(f.default, spec.default, f.name)
        assert.are.equal(f.doc, spec.doc, f.name)
        n = n + 1
      end
    end
    assert.is_true(n >= 20)
    -- a float default reads back as written, not as its float32 neighbour
    assert.are.equal(0.95, config.fields.policy_gamma.default)
  end)

  it("cell: lstm from a YAML file builds an LSTM model, a bad cell names file, line and key", function()
    local path = helpers.write_tmp("embedding_dim: 4\nmemory_size: 3\nhidden_size: 5\ncell: lstm\n")
    local cfg = config.load(path)
    os.remove(path)
    local net = dm.Controller(train.model_config(cfg, 9))
    assert.are.equal("lstm", net:config().cell)
    local w = net:param("rnn.weight_hh_l0")
    assert.are.same({20, 5}, w:shape()) -- 4H gate rows
    local bad = helpers.write_tmp("# x\ncell: rnn\n")
    local err = helpers.err_of(config.load, bad)
    os.remove(bad)
    has(err, bad .. ":2: key 'cell': expected one of gru|lstm, got 'rnn'")
    has(errmsg(dm.Controller, {vocab_size = 5, embedding_dim = 2, memory_size = 2, hidden_size = 2,
                               cell = "rnn"}), "config field cell must be one of gru, lstm, got rnn")
  end)

  it("an LSTM checkpoint round-trips: the cell is in its config", function()
    local net = dm.Controller{vocab_size = 6, embedding_dim = 3, memory_size = 2, hidden_size = 4,
                              num_layers = 1, cell = "lstm"}
    net:eval()
    local x = dm.tensor({{1, 2, 3}}):int()
    local a = flat(net:forward(x))
    local path = os.tmpname()
    checkpoint.save(path, net, {vocab = {"<pad>", "<unk>", "<sos>", "<eos>", "e", "f"}})
    local ck = checkpoint.load(path)
    os.remove(path)
    assert.are.equal("lstm", ck.net:config().cell)
    ck.net:eval()
    assert.are.same(a, flat(ck.net:forward(x)))
  end)
end)

describe("Controller: sizes without allocating, and the loss where the logits live", function()
  local cfg = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12, num_layers = 2}

  it("dm.controller_sizes gives the arenas' tables and bytes", function()
    local s = dm.controller_sizes(cfg, 3, 5)
    local net = dm.Controller(cfg)
    local names, sd = {}, nil
    sd, names = net:state_dict()
    assert.are.equal(#names, #s.params)
    local floats = 0
    for i, row in ipairs(s.params) do
      assert.are.equal(names[i], row.name)
      assert.are.same(sd[row.name]:shape(), row.shape)
      floats = floats + row.numel
    end
    assert.is_true(s.param_bytes >= 4 * floats)
    assert.are.equal(2 * s.param_bytes + s.act_bytes, s.total_bytes)
    local big = dm.controller_sizes(cfg, 6, 5)
    assert.is_true(big.act_bytes > s.act_bytes)
    assert.are.equal(big.param_bytes, s.param_bytes)
    has(errmsg(dm.controller_sizes, cfg, 0, 5), "B and T must be >= 1")
    has(errmsg(dm.controller_sizes, {vocab_size = 3}, 1, 1), "config field embedding_dim is missing")
  end)

  it("net:loss + net:backward() equal cross_entropy + backward(dlogits)", function()
    dm.manual_seed(3)
    local a = dm.Controller(cfg)
    dm.manual_seed(3)
    local b = dm.Controller(cfg)
    a:eval(); b:eval()
    local x = dm.tensor({{1, 2, 3, 4}, {5, 6, 7, 0}}):int()
    local y = dm.tensor({{2, 3, 4, 0}, {6, 7, 0, 0}}):int()
    local la, da = dm.nn.cross_entropy(a:forward(x), y, {ignore_index = 0, scale = 0.5})
    a:backward(da)
    b:forward(x)
    local lb, count = b:loss(y, {ignore_index = 0, scale = 0.5})
    assert.are.equal(la, lb)
    assert.are.equal(5, count)
    b:backward()
    local pa, pb = a:parameters(), b:parameters()
    for i = 1, #pa do
      if pa[i].grad then assert.are.same(flat(pa[i].grad), flat(pb[i].grad), pa[i].name) end
    end
    -- the logits view is the forward's, without a copy
    assert.are.same(flat(a:forward(x)), flat(b:logits()))
    has(errmsg(b.loss, b, y, {ignore = 0}), "unknown option 'ignore'")
    b:forward(x)
    has(errmsg(b.backward, b), "no loss since the last forward")
    -- evaluation: the same loss, no gradient kept
    local le = b:loss(y, {ignore_index = 0, scale = 0.5, grad = false})
    assert.are.equal(la, le)
    has(errmsg(b.backward, b), "no loss since the last forward")
  end)
end)

describe("Controller: the fused output loss", function()
  local base = {vocab_size = 23, embedding_dim = 8, memory_size = 6, hidden_size = 12, num_layers = 1}
  local x = dm.tensor({{1, 2, 3, 4, 9}, {5, 6, 7, 0, 0}, {22, 21, 3, 8, 1}}):int()
  local y = dm.tensor({{2, 3, 4, 0, 11}, {6, 7, 0, 0, 0}, {1, 2, 22, 8, 5}}):int()

  for _, act in ipairs{"gelu", "none"} do
    it("gives the gradients of cross_entropy + backward(dlogits) bit for bit, output_activation " .. act, function()
      local cfg = {output_activation = act}
      for k, v in pairs(base) do cfg[k] = v end
      dm.manual_seed(5)
      local a = dm.Controller(cfg)
      dm.manual_seed(5)
      local b = dm.Controller(cfg)
      a:eval(); b:eval()
      local la, da = dm.nn.cross_entropy(a:forward(x), y, {ignore_index = 0, scale = 0.25})
      a:backward(da)
      a:backward(da)
      b:forward(x)
      local lb = b:loss(y, {ignore_index = 0, scale = 0.25})
      assert.are.equal(la, lb)
      -- net:backward() may run twice on one loss, adding twice, as backward(dlogits) does
      b:backward()
      b:backward()
      local pa, pb = a:parameters(), b:parameters()
      for i = 1, #pa do
        if pa[i].grad then assert.are.same(flat(pa[i].grad), flat(pb[i].grad), pa[i].name) end
      end
      -- the logits are intact for the memory write and net:logits()
      assert.are.same(flat(a:logits()), flat(b:logits()))
      -- the loss alone reads only the logits
      assert.are.equal(la, (b:loss(y, {ignore_index = 0, scale = 0.25, grad = false})))
      if act == "gelu" then
        -- the loss gradient has replaced the output pre-activations
        b:forward(x)
        b:loss(y, {ignore_index = 0})
        has(errmsg(b.loss, b, y, {ignore_index = 0}), "a loss gradient of this forward is taken already")
        has(errmsg(b.backward, b, da), "run net:forward again to backpropagate given dlogits")
        assert.is_nil(errmsg(b.backward, b, da):find("\n"))
      end
      -- a fresh forward takes either again
      b:forward(x)
      b:backward(da)
      b:loss(y, {ignore_index = 0})
      b:backward()
    end)
  end
end)

describe("Controller: the epoch loop computes the loss where the logits live", function()
  local train, loop, helpers = require "drlmem.train", require "drlmem.loop", require "helpers"
  it("gives the weights and losses of the Lua criterion, bit for bit, with accumulation and pads", function()
    local path = helpers.write_tmp(("mary went to the kitchen . where is mary ? kitchen .\n"):rep(30))
    local cfg = dm.config.load(nil, { data_path = path, embedding_dim = 6, memory_size = 4, hidden_size = 6,
      num_layers = 1, max_seq_length = 14, batch_size = 4, dropout = 0.2, seed = 5, accumulation_steps = 2 })
    local function run(criterion)
      local st, data = helpers.setup_run(cfg)
      local tr = loop.train_epoch({ net = st.net, opt = st.opt, cfg = cfg, split = data.train,
                                    criterion = criterion }, 1)
      return tr, st.net:state_dict()
    end
    local a, sa = run(train.criterion(cfg)) -- logits copied to Lua, dlogits back
    local b, sb = run(nil)                  -- net:forward(x, false), net:loss, net:backward()
    os.remove(path)
    assert.are.equal(a.loss, b.loss)
    assert.are.equal(a.tokens, b.tokens)
    for name, t in pairs(sa) do assert.are.same(flat(t), flat(sb[name]), name) end
    local net = dm.Controller{vocab_size = 5, embedding_dim = 2, memory_size = 2, hidden_size = 2}
    assert.is_nil(net:forward(dm.tensor({{1, 2}}):int(), false)) -- nothing copied out
    assert.are.same({1, 2, 5}, net:logits():shape())
  end)
end)
