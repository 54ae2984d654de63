-- writetrain_spec.lua: the RL write policy wired into configuration and
-- training: the config keys and their checks, train.model_config,
-- the epoch schedule of the write options, a tiny reinforce training run
-- (statistics, the policy learns, resume stays bit-identical in the middle
-- of an epoch, the advantage scale included), answer-token accuracy in
-- evaluation.run, and the "GRU without memory" switch (use_memory = false)
-- of dm.Controller: its outputs ignore the memory, its gradients match
-- finite differences, its checkpoints load, and use_memory = true is the
-- seed model bit for bit.
local dm = require "drlmem"
local train = dm.train

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

-- associative recall lines (lua/drlmem/tasks.lua), n = 3
local corpus = tmpdir .. "/recall.txt"
do
  local f = assert(io.open(corpus, "w"))
  f:write(table.concat(dm.tasks.generate("recall", { n = 3, samples = 60, seed = 5, keys = 6, values = 6 }), "\n"),
    "\n")
  f:close()
end

local function tiny_cfg(extra)
  local over = { data_path = corpus, embedding_dim = 8, memory_size = 6, hidden_size = 8, num_layers = 1,
    max_seq_length = 12, batch_size = 4, epochs = 2, dropout = 0.2, seed = 3, write_policy = "reinforce",
    episodic_slots = 4, policy_bias_init = 0.0, task = "recall",
    save_path = tmpdir .. "/models", log_file = tmpdir .. "/logs/training.log" }
  for k, v in pairs(extra or {}) do over[k] = v end
  return dm.config.load(nil, over)
end

local helpers = require "helpers"
local setup, untimed = helpers.setup_run, helpers.untimed
local run_until_interrupted = helpers.run_until_interrupted

-- The loop scripts/train.lua runs (until st.cfg.epochs), with a hook after each step.
local function run_epochs(st, data, on_step)
  return dm.loop.run(st, data, { on_step = on_step })
end

local function snapshot(st)
  local out = {}
  local sd, names = st.net:state_dict()
  for _, n in ipairs(names) do out["w:" .. n] = sd[n] end
  for k, v in pairs(st.opt:state()) do
    if type(v) == "table" and k ~= "step" then
      for n, t in pairs(v) do out["o:" .. k .. ":" .. n] = t end
    end
  end
  out.rng = dm.get_rng_state()
  local ws = st.net:write_state()
  if ws then out.m, out.n = ws.second_moment, ws.updates end
  return out
end

local function assert_identical(a, b)
  local n = 0
  for k, v in pairs(a) do
    n = n + 1
    local w = b[k]
    assert.is_not_nil(w, "missing " .. k)
    if type(v) == "userdata" then
      assert.same(v:totable(), w:totable(), k)
    else
      assert.equal(v, w, k)
    end
  end
  for k in pairs(b) do assert.is_not_nil(a[k], "extra " .. k) end
  assert.is_true(n > 10)
end

describe("config keys of the write policy", function()
  it("have the documented defaults", function()
    local c = dm.config.defaults()
    assert.equal("blend", c.write_policy)
    assert.equal(16, c.episodic_slots)
    assert.equal(-2.0, c.policy_bias_init)
    assert.equal(0.95, c.policy_gamma)
    assert.equal(0.01, c.write_cost)
    assert.equal(1.0, c.policy_alpha)
    assert.equal(0.5, c.baseline_beta)
    assert.equal(0.01, c.entropy_eta)
    assert.equal(0.99, c.advantage_decay)
    assert.is_true(c.normalize_advantage)
    assert.equal("policy", c.write_actions)
    assert.is_true(c.use_memory)
    assert.equal("none", c.task)
    assert.equal(0, c.curriculum_epochs)
  end)

  it("reject bad values naming the key", function()
    local bad = {
      { "write_policy=rl", "key 'write_policy': expected one of blend|reinforce|content|seed, got 'rl'" },
      { "episodic_slots=0", "key 'episodic_slots': expected a positive integer, got 0" },
      { "policy_gamma=1.5", "key 'policy_gamma'" },
      { "write_cost=-1", "key 'write_cost'" },
      { "advantage_decay=1", "key 'advantage_decay'" },
      { "entropy_decay=2", "key 'entropy_decay'" },
      { "write_actions=never", "expected one of policy|always|random" },
      { "random_write_rate=1.1", "key 'random_write_rate'" },
      { "curriculum_epochs=-1", "key 'curriculum_epochs'" },
      { "task=sort", "expected one of none|recall|copy" },
    }
    for _, b in ipairs(bad) do
      local ok, err = pcall(dm.config.load, nil, { b[1] })
      assert.is_false(ok, b[1])
      assert.truthy(tostring(err):find(b[2], 1, true), tostring(err))
      assert.truthy(tostring(err):find("--set " .. b[1], 1, true), tostring(err))
    end
    local ok, err = pcall(dm.config.load, nil, { "use_memory=maybe" })
    assert.is_false(ok)
    assert.truthy(err:find("expected true or false", 1, true), err)
  end)
end)

describe("train.model_config and the write options", function()
  it("leaves a seed config's model exactly the upstream's eight keys", function()
    local m = train.model_config(dm.config.defaults(), 30)
    local keys = {}
    for k in pairs(m) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "dropout", "embedding_dim", "hidden_size", "memory_embedding_dim", "memory_size", "num_layers",
      "output_activation", "vocab_size" }, keys)
    local net = dm.Controller(m)
    assert.is_nil(net:config().write_policy)
    assert.is_nil(net:config().use_memory)
  end)

  it("passes the reinforce keys and use_memory = false through to the controller", function()
    local cfg = dm.config.load(nil, { "write_policy=reinforce", "episodic_slots=5", "policy_gamma=0.5",
      "write_actions=random", "random_write_rate=0.25", "normalize_advantage=false", "use_memory=false",
      "embedding_dim=4", "memory_size=3", "hidden_size=4" })
    local c = dm.Controller(train.model_config(cfg, 10)):config()
    assert.equal("reinforce", c.write_policy)
    assert.equal(5, c.episodic_slots)
    assert.equal(0.5, c.policy_gamma)
    assert.equal("random", c.write_actions)
    assert.equal(0.25, c.random_write_rate)
    assert.is_false(c.normalize_advantage)
    assert.is_false(c.use_memory)
  end)

  it("schedules soft writes for curriculum_epochs, then hard, and decays the entropy weight", function()
    local cfg = dm.config.load(nil, { "curriculum_epochs=2", "entropy_eta=0.1", "entropy_decay=0.5" })
    assert.same({ soft = true, eta = 0.05 }, train.write_options(cfg, 1))
    assert.same({ soft = true, eta = 0.025 }, train.write_options(cfg, 2))
    assert.same({ soft = false, eta = 0.0125 }, train.write_options(cfg, 3))
  end)
end)

describe("training with write_policy = reinforce", function()
  it("logs the six statistics, trains the policy and reports answer accuracy", function()
    local cfg = tiny_cfg { curriculum_epochs = 1 }
    local st, data = setup(cfg)
    local w0 = st.net:param("policy.weight"):clone()
    assert.equal("done", run_epochs(st, data))
    for e = 1, 2 do
      local h = st.run.history[e]
      for _, k in ipairs { "write_rate", "policy_entropy", "mean_reward", "mean_advantage", "baseline_loss",
        "slot_usage" } do
        assert.is_number(h[k], k)
      end
      assert.is_true(h.write_rate >= 0 and h.write_rate <= 1)
      assert.is_true(h.policy_entropy >= 0 and h.policy_entropy <= math.log(2) + 1e-9)
      assert.is_true(h.mean_reward < 0) -- log-probabilities
      assert.is_true(h.baseline_loss >= 0)
      assert.is_true(h.slot_usage >= 0 and h.slot_usage <= 1)
      assert.is_true(h.test_answer_acc >= 0 and h.test_answer_acc <= 1)
      assert.is_true(h.test_write_rate >= 0 and h.test_write_rate <= 1)
    end
    -- the policy's weights moved: its gradient reached the optimizer
    local w1 = st.net:param("policy.weight")
    assert.is_true((w1 - w0):abs():max() > 0)
    -- the running advantage scale was updated once per batch with a valid target
    assert.is_true(st.net:write_state().updates > 0)
  end)

  it("clips the policy and baseline apart from the model (seed: one group, as before)", function()
    local st = setup(tiny_cfg())
    local g = train.clip_groups(st.net, st.cfg)
    assert.equal(2, #g)
    local names = {}
    for _, p in ipairs(g[2]) do names[#names + 1] = p.name end
    table.sort(names)
    assert.same({ "baseline.bias", "baseline.weight", "policy.bias", "policy.weight" }, names)
    assert.equal(#st.net:parameters(), #g[1] + #g[2])
    for _, p in ipairs(g[1]) do assert.is_nil(p.name:match("^policy%.") or p.name:match("^baseline%."), p.name) end
    local seed = setup(tiny_cfg { write_policy = "seed" })
    local gs = train.clip_groups(seed.net, seed.cfg)
    assert.equal(1, #gs)
    assert.equal(#seed.net:parameters(), #gs[1])
  end)

  it("resumes bit-identically from the middle of an epoch (advantage scale included)", function()
    local cfg = tiny_cfg { accumulation_steps = 2 }
    local a, data = setup(cfg)
    assert.equal("done", run_epochs(a, data))

    local b = setup(cfg, data)
    local status = run_until_interrupted(b, data, 2, 4)
    assert.equal("interrupted", status)
    dm.resume.save(tmpdir .. "/mid.safetensors", b)

    local c = setup(cfg, data)
    c.run = dm.resume.load(tmpdir .. "/mid.safetensors", c)
    assert.same({ 2, 4 }, { c.run.epoch, c.run.batch })
    assert.same(b.net:write_state(), c.net:write_state())
    assert.equal("done", run_epochs(c, data))
    assert_identical(snapshot(a), snapshot(c))
    assert.same(untimed(a.run.history), untimed(c.run.history))
  end)

  it("write_state round-trips and is checked; the seed policy has none", function()
    local st = setup(tiny_cfg())
    st.net:set_write_state { second_moment = 2.5, updates = 7 }
    assert.same({ second_moment = 2.5, updates = 7 }, st.net:write_state())
    local ok, err = pcall(st.net.set_write_state, st.net, { second_moment = -1, updates = 0 })
    assert.is_false(ok)
    assert.truthy(err:find("set_write_state", 1, true), err)
    local seed = dm.Controller { vocab_size = 5, embedding_dim = 3, memory_size = 2, hidden_size = 3 }
    assert.is_nil(seed:write_state())
  end)
end)

describe("write_actions = gumbel (the straight-through Gumbel-sigmoid gate)", function()
  it("reaches the controller and its checkpoint with gumbel_tau; a bad tau is refused naming the key", function()
    assert.equal(1.0, dm.config.defaults().gumbel_tau)
    local st = setup(tiny_cfg { write_actions = "gumbel", gumbel_tau = 0.25 })
    local c = st.net:config()
    assert.equal("gumbel", c.write_actions)
    assert.equal(0.25, c.gumbel_tau)
    local path = os.tmpname()
    dm.checkpoint.save(path, st.net, {})
    local ck = dm.checkpoint.load(path)
    os.remove(path)
    assert.equal("gumbel", ck.net:config().write_actions)
    assert.equal(0.25, ck.net:config().gumbel_tau)
    for _, bad in ipairs { "gumbel_tau=0", "gumbel_tau=-1" } do
      local ok, err = pcall(dm.config.load, nil, { bad })
      assert.is_false(ok, bad)
      assert.truthy(tostring(err):find("key 'gumbel_tau'", 1, true), tostring(err))
    end
  end)

  it("trains the policy through the loss, not REINFORCE, and resumes bit-identically mid-epoch", function()
    local cfg = tiny_cfg { write_actions = "gumbel", gumbel_tau = 0.5 }
    local a, data = setup(cfg)
    local w0 = a.net:param("policy.weight"):clone()
    -- one batch: the loss's gradient reaches the policy; REINFORCE adds nothing to it
    local x, y
    for bx, by in data.train:batches(4, 1) do x, y = bx, by; break end
    a.net:train()
    a.net:zero_grad()
    local logits = a.net:forward(x)
    local _, dlogits = dm.nn.cross_entropy(logits, y, { ignore_index = 0 })
    a.net:backward(dlogits)
    local grads = {}
    for _, p in ipairs(a.net:parameters()) do grads[p.name] = p.grad end
    local gw = grads["policy.weight"]:clone()
    assert.is_true(gw:abs():sum() > 0)
    a.net:reinforce(y, 0)
    assert.same(gw:totable(), grads["policy.weight"]:totable())

    a = setup(cfg, data)
    assert.equal("done", run_epochs(a, data))
    assert.is_true((a.net:param("policy.weight") - w0):abs():max() > 0)
    local h = a.run.history[2]
    assert.is_true(h.write_rate > 0 and h.write_rate < 1)
    assert.is_true(h.test_write_rate >= 0 and h.test_write_rate <= 1)

    local b = setup(cfg, data)
    local status = run_until_interrupted(b, data, 2, 4)
    assert.equal("interrupted", status)
    dm.resume.save(tmpdir .. "/mid-gumbel.safetensors", b)
    local c = setup(cfg, data)
    c.run = dm.resume.load(tmpdir .. "/mid-gumbel.safetensors", c)
    assert.equal("done", run_epochs(c, data))
    assert_identical(snapshot(a), snapshot(c))
    assert.same(untimed(a.run.history), untimed(c.run.history))
  end)
end)

describe("use_memory = false (GRU without memory)", function()
  local base = { vocab_size = 9, embedding_dim = 5, memory_size = 4, hidden_size = 6, num_layers = 2, dropout = 0 }
  local function net_of(extra)
    local c = {}
    for k, v in pairs(base) do c[k] = v end
    for k, v in pairs(extra or {}) do c[k] = v end
    return dm.Controller(c, dm.Generator(11))
  end
  local x = dm.tensor({ { 1, 2, 3, 4 }, { 8, 0, 5, 5 } }):int()

  it("use_memory = true is the seed model bit for bit", function()
    local a, b = net_of(), net_of { use_memory = true }
    assert.same(a:forward(x):totable(), b:forward(x):totable())
    assert.is_nil(b:config().use_memory)
  end)

  it("ignores the memory: outputs, usage counts and write_memory", function()
    local n = net_of { use_memory = false }
    assert.is_false(n:config().use_memory)
    local y0 = n:forward(x):totable()
    local keys = n:param("memory.keys")
    keys:copy(dm.randn(table.unpack(keys:shape())))
    n:param("memory.values"):copy(dm.randn(table.unpack(n:param("memory.values"):shape())))
    local usage0 = n:memory_usage():totable()
    assert.same(y0, n:forward(x):totable())
    assert.same(usage0, n:memory_usage():totable())
    local k0 = keys:clone()
    n:write_memory(0.5)
    assert.same(k0:totable(), n:param("memory.keys"):totable())
    -- the memory gets no gradient: parameters() lists it without one
    for _, p in ipairs(n:parameters()) do
      if p.name == "memory.keys" or p.name == "memory.values" then assert.is_nil(p.grad, p.name) end
    end
    -- and it differs from the model with memory
    local m = net_of()
    local ym = m:forward(x)
    assert.is_true((ym - dm.tensor(y0)):abs():max() > 0)
  end)

  it("has gradients that match finite differences", function()
    local n = net_of { use_memory = false }
    local ignore = -100
    local y = dm.tensor({ { 2, 3, 4, 1 }, { 0, 5, 5, 7 } }):int()
    local function loss() return (dm.nn.cross_entropy(n:forward(x), y, { ignore_index = ignore })) end
    n:zero_grad()
    local _, d = dm.nn.cross_entropy(n:forward(x), y, { ignore_index = ignore })
    n:backward(d)
    -- the gradients are ~1e-3 and float32 central differences carry ~1e-5
    -- of noise, so compare whole tensors: ||g - fd|| <= 3% ||fd||
    for _, name in ipairs { "fc_query.weight", "embedding.weight" } do
      local w, g = n:param(name)
      local flat, gflat = w:view(-1), g:view(-1)
      local diff, norm = 0.0, 0.0
      for i = 1, flat:numel() do
        local v = flat[i]
        local eps = 1e-2
        flat[i] = v + eps
        local lp = loss()
        flat[i] = v - eps
        local lm = loss()
        flat[i] = v
        local fd = (lp - lm) / (2 * eps)
        diff, norm = diff + (fd - gflat[i]) ^ 2, norm + fd ^ 2
      end
      assert.is_true(norm > 0, name)
      assert.is_true(math.sqrt(diff) <= 0.03 * math.sqrt(norm),
        string.format("%s: |backward - finite differences| = %g, |finite differences| = %g", name,
          math.sqrt(diff), math.sqrt(norm)))
    end
  end)

  it("saves and loads through dm.checkpoint", function()
    local n = net_of { use_memory = false }
    local path = tmpdir .. "/nomem.safetensors"
    dm.checkpoint.save(path, n, {})
    local ck = dm.checkpoint.load(path)
    assert.is_false(ck.net:config().use_memory)
    assert.same(n:forward(x):totable(), ck.net:forward(x):totable())
  end)

  it("rejects a non-boolean", function()
    local ok, err = pcall(net_of, { use_memory = 1 })
    assert.is_false(ok)
    assert.truthy(err:find("use_memory must be a boolean", 1, true), err)
  end)
end)
