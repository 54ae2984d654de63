-- writepolicy_spec.lua: the `write_policy` switch of dm.Controller:
-- `blend` (the default, formerly `seed`) is the upstream model bit for bit, including the
-- golden training step against PyTorch; `reinforce` adds the episodic
-- memory and its policy (parameters after the seed's, drawn after them),
-- keeps causality (a changed future token leaves earlier logits identical),
-- trains through net:reinforce, and round-trips through a checkpoint.
local dm = require "drlmem"
local flat, readbin = require("helpers").flat, require("helpers").readbin

local G = "tests/fixtures/golden_1234/"
local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
             num_layers = 2, dropout = 0.3}

local function with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function same(a, b, what)
  local fa, fb = flat(a), flat(b)
  assert.are.equal(#fb, #fa, what .. ": sizes")
  for i = 1, #fa do
    if fa[i] ~= fb[i] then error(("%s: element %d differs: %.9g vs %.9g"):format(what, i, fa[i], fb[i])) end
  end
end

local function close(a, b, what, rtol)
  rtol = rtol or 1e-5
  local fa, fb = flat(a), flat(b)
  local scale, err = 0, 0
  for i = 1, #fb do
    scale = math.max(scale, math.abs(fb[i]))
    err = math.max(err, math.abs(fa[i] - fb[i]))
  end
  assert(err <= rtol * scale or (scale == 0 and err == 0),
         ("%s: max err %g > %g * scale %g"):format(what, err, rtol, scale))
end

local function golden_net(extra)
  local net = dm.Controller(with(CFG, extra))
  local sd, names = net:state_dict()
  local tbl = {}
  for _, name in ipairs(names) do tbl[name] = readbin(G .. "params/" .. name .. ".bin", sd[name]:shape()) end
  net:load_state_dict(tbl)
  return net
end

local function golden_step(net)
  local x = readbin(G .. "inputs.bin", {3, 5}):int()
  local y = readbin(G .. "targets.bin", {3, 5}):int()
  local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
  net:set_dropout_mask(readbin(G .. "acts/dropout_mask.bin", {3, 5, 12}))
  local logits = net:forward(x)
  local _, dlogits = dm.nn.cross_entropy(logits, y)
  net:zero_grad()
  net:backward(dlogits)
  local total = dm.clip_grad_norm(net, 1.0)
  opt:step()
  net:write_memory(0.1)
  return logits, total
end

describe("write_policy = blend", function()
  it("accepts its old name seed: the same model, the same golden step", function()
    local a, b = golden_net({ write_policy = "blend" }), golden_net({ write_policy = "seed" })
    assert.is_nil(a:config().write_policy)
    local la = golden_step(a)
    local lb = golden_step(b)
    same(lb, la, "logits")
  end)
  it("is the default and reproduces the golden step exactly", function()
    local a, b = golden_net(), golden_net({ write_policy = "seed", episodic_slots = 4 })
    assert.is_nil(a:config().write_policy) -- the seed's config has its eight fields only
    assert.is_nil(b:config().write_policy)
    local la, ta = golden_step(a)
    local lb, tb = golden_step(b)
    same(lb, la, "logits")
    assert.are.equal(ta, tb)
    assert.are.near(0.19793595373630524, tb, 1e-6) -- the gradient norm of the golden step
    local sa, names = a:state_dict()
    local sb, names_b = b:state_dict()
    assert.are.same(names, names_b)
    for _, name in ipairs(names) do
      same(sb[name], sa[name], name)
      close(sb[name], readbin(G .. "step/" .. name .. ".bin", sb[name]:shape()), "step " .. name)
    end
    assert.is_nil(b:write_stats())
    local ok, err = pcall(b.reinforce, b, readbin(G .. "targets.bin", {3, 5}):int())
    assert.is_false(ok)
    assert.truthy(tostring(err):find("write_policy is blend", 1, true))
  end)
end)

describe("write_policy = reinforce", function()
  local RL = with(CFG, { write_policy = "reinforce", episodic_slots = 3 })

  it("appends its parameters after the seed's, which stay the same", function()
    local seed = dm.Controller(CFG, dm.Generator(5))
    local rl = dm.Controller(RL, dm.Generator(5))
    local ss, sn = seed:state_dict()
    local rs, rn = rl:state_dict()
    assert.are.equal(#sn + 9, #rn)
    for i, name in ipairs(sn) do
      assert.are.equal(name, rn[i])
      same(rs[name], ss[name], name)
    end
    assert.are.same({ "episodic.query.weight", "episodic.key.weight", "episodic.value.weight",
      "episodic.gate.weight", "episodic.gate.bias", "policy.weight", "policy.bias",
      "baseline.weight", "baseline.bias" }, { table.unpack(rn, #sn + 1) })
    assert.are.same({ 8, 12 }, rs["episodic.key.weight"]:shape())
    assert.are.equal(-2, rs["policy.bias"]:get(1))
    local c = rl:config()
    assert.are.equal("reinforce", c.write_policy)
    assert.are.equal(3, c.episodic_slots)
    assert.are.equal("policy", c.write_actions)
  end)

  it("rejects bad settings with the field's name", function()
    local function msg(extra)
      local ok, err = pcall(dm.Controller, with(CFG, extra))
      assert.is_false(ok)
      return tostring(err)
    end
    assert.truthy(msg({ write_policy = "rl" }):find("write_policy must be one of blend, reinforce, content, seed, got rl", 1, true))
    assert.truthy(msg({ write_policy = "reinforce", policy_gamma = 2 }):find("gamma must be in [0, 1], got 2", 1, true))
    assert.truthy(msg({ write_policy = "reinforce", write_actions = "never" }):find("write_actions must be one of policy, always, random", 1, true))
    assert.truthy(msg({ write_policy = "reinforce", random_write_rate = 1.5 }):find("random_write_rate must be in [0, 1]", 1, true))
    assert.truthy(msg({ write_policy = "reinforce", episodic_slots = 0 }):find("episodic_slots must be >= 1", 1, true))
  end)

  local function causal(extra, setup)
    local net = dm.Controller(with(RL, extra), dm.Generator(7))
    setup(net)
    local x = dm.tensor({ { 2, 5, 6, 7, 5, 6, 8, 9 }, { 2, 11, 12, 11, 13, 12, 14, 15 } }):int()
    local g1 = dm.Generator(3)
    net:set_generator(g1)
    local l1 = net:forward(x)
    local x2 = x:clone()
    x2:set(17, 1, 6) -- change the token at time 6 of both rows
    x2:set(18, 2, 6)
    net:set_generator(dm.Generator(3))
    local l2 = net:forward(x2)
    local a, b = l1:totable(), l2:totable()
    for r = 1, 2 do
      for t = 1, 8 do
        local equal = true
        for v = 1, 20 do equal = equal and a[r][t][v] == b[r][t][v] end
        if t < 6 then
          assert.is_true(equal, ("row %d time %d changed"):format(r, t))
        elseif t == 6 then
          assert.is_false(equal) -- the change is visible from its own step on
        end
      end
    end
    return net
  end

  it("keeps the past: a changed future token leaves earlier logits identical", function()
    -- every step writes, in eval (no dropout)
    local net = causal({ write_actions = "always" }, function(n) n:eval() end)
    assert.are.near(1, net:write_stats().write_rate, 0)
    assert.are.near(1, net:write_stats().slot_usage, 0)
    -- the learned policy with sampled actions, in training (dropout on)
    causal({ policy_bias_init = 0 }, function(n) n:train() end)
  end)

  it("trains: forward, cross-entropy, backward, reinforce, step", function()
    local net = dm.Controller(RL, dm.Generator(1))
    net:set_generator(dm.Generator(2))
    net:set_write_options({ soft = false, eta = 0.02 })
    local x = dm.tensor({ { 2, 5, 6, 7, 5, 6 }, { 2, 9, 10, 9, 10, 0 } }):int()
    local y = dm.tensor({ { 5, 6, 7, 5, 6, 3 }, { 9, 10, 9, 10, 3, 0 } }):int()
    local opt = dm.optim.AdamW(net:parameters(), { lr = 0.01 })
    local before = net:state_dict()
    local logits = net:forward(x)
    local loss, dlogits = dm.nn.cross_entropy(logits, y, { ignore_index = 0 })
    net:zero_grad()
    net:backward(dlogits)
    local st = net:reinforce(y, 0)
    assert.are.equal(11, st.count) -- one pad target left out
    assert.is_true(st.mean_reward < 0 and st.mean_reward > -10)
    assert.are.near(-loss, st.mean_reward, 1e-5) -- rewards are the per-token log-likelihoods
    assert.is_true(st.entropy > 0 and st.entropy < math.log(2))
    for _, k in ipairs { "write_rate", "mean_advantage", "baseline_loss", "policy_loss", "slot_usage", "adv_scale" } do
      assert.is_true(st[k] == st[k] and math.abs(st[k]) < 1e6, k)
    end
    local grads = {}
    for _, p in ipairs(net:parameters()) do grads[p.name] = p.grad end
    assert.is_true(grads["policy.weight"]:abs():sum() > 0)
    assert.is_true(grads["baseline.bias"]:abs():sum() > 0)
    assert.is_true(grads["episodic.gate.bias"]:abs():sum() > 0)
    opt:step()
    local after = net:state_dict()
    assert.is_true((after["policy.bias"] - before["policy.bias"]):abs():sum() > 0)
    -- the soft curriculum: the policy learns through the write weights
    net:set_write_options({ soft = true })
    net:zero_grad()
    logits = net:forward(x)
    loss, dlogits = dm.nn.cross_entropy(logits, y, { ignore_index = 0 })
    net:backward(dlogits)
    _, grads = nil, {}
    for _, p in ipairs(net:parameters()) do grads[p.name] = p.grad end
    assert.is_true(grads["policy.weight"]:abs():sum() > 0)
    assert.is_true(net:write_stats().write_rate > 0 and net:write_stats().write_rate < 1)
  end)

  it("round-trips through a checkpoint", function()
    local net = dm.Controller(with(RL, { write_actions = "random", random_write_rate = 0.25 }), dm.Generator(4))
    local path = os.tmpname()
    dm.checkpoint.save(path, net, {})
    local ck = dm.checkpoint.load(path)
    os.remove(path)
    local c = ck.net:config()
    assert.are.equal("reinforce", c.write_policy)
    assert.are.equal("random", c.write_actions)
    assert.are.near(0.25, c.random_write_rate, 1e-7)
    local a, names = net:state_dict()
    local b = ck.net:state_dict()
    for _, name in ipairs(names) do same(b[name], a[name], name) end
  end)
end)

describe("write policy parameters", function()
  it("the controller marks the policy's and baseline's as a clipping group of their own", function()
    local net = dm.Controller(with(CFG, { write_policy = "reinforce", episodic_slots = 3 }))
    local marked = {}
    for _, p in ipairs(net:parameters()) do
      if p.group then marked[#marked + 1] = p.name .. "=" .. p.group end
    end
    assert.are.same({ "policy.weight=policy", "policy.bias=policy", "baseline.weight=policy",
                      "baseline.bias=policy" }, marked)
    for _, p in ipairs(dm.Controller(CFG):parameters()) do assert.is_nil(p.group, p.name) end
  end)
end)
