-- recallread_spec.lua: the options that let the episodic memory solve
-- associative recall, as configuration and training see them: the read's
-- score (episodic_similarity: dot or cosine with a learned sharpness
-- episodic.scale), what the key is made of (episodic_key: the state of the
-- step, or of the step before), and loss_positions answers (the training
-- loss on the task's answer positions only, tasks.answer_targets). Their
-- gradients are checked by finite differences in tests/c/test_policy.c;
-- here: defaults that keep today's model, one-line refusals, the keys
-- reaching the controller and its checkpoint, the sharpness parameter
-- existing only with the cosine read, and a training epoch whose loss
-- counts exactly one target per sample.
local dm = require "drlmem"
local train = dm.train
local tasks = dm.tasks
local helpers = require "helpers"

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

local corpus = tmpdir .. "/recall.txt"
do
  local f = assert(io.open(corpus, "w"))
  f:write(table.concat(tasks.generate("recall", { n = 3, samples = 40, seed = 5, keys = 6, values = 6 }), "\n"), "\n")
  f:close()
end

local function tiny_cfg(extra)
  local over = { data_path = corpus, embedding_dim = 8, memory_size = 6, hidden_size = 8, num_layers = 1,
    max_seq_length = 10, batch_size = 4, epochs = 1, dropout = 0, seed = 3, write_policy = "reinforce",
    write_actions = "always", use_memory = false, episodic_slots = 10, task = "recall",
    save_path = tmpdir .. "/models", log_file = tmpdir .. "/logs/training.log" }
  for k, v in pairs(extra or {}) do over[k] = v end
  return dm.config.load(nil, over)
end

local function param_names(net)
  local names = {}
  for _, p in ipairs(net:parameters()) do names[#names + 1] = p.name end
  return names
end

describe("config keys of the episodic read", function()
  it("default to today's memory and loss", function()
    local c = dm.config.defaults()
    assert.equal("dot", c.episodic_similarity)
    assert.equal("state", c.episodic_key)
    assert.equal(5.0, c.episodic_scale_init)
    assert.equal("all", c.loss_positions)
  end)

  it("refuse bad values in one line naming the key", function()
    local bad = {
      { "episodic_similarity=l2", "expected one of dot|cosine" },
      { "episodic_key=next", "expected one of state|previous" },
      { "episodic_scale_init=0", "key 'episodic_scale_init'" },
      { "loss_positions=some", "expected one of all|answers" },
    }
    for _, b in ipairs(bad) do
      local ok, err = pcall(dm.config.load, nil, { b[1] })
      assert.is_false(ok, b[1])
      err = tostring(err)
      assert.truthy(err:find(b[2], 1, true), err)
      assert.is_nil(err:find("\n", 1, true), err)
    end
    local ok, err = pcall(dm.config.load, nil, { "loss_positions=answers" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("loss_positions answers trains on the answer positions of a task", 1, true),
      tostring(err))
  end)

  it("reach the controller; only the cosine read has the sharpness parameter", function()
    local cfg = dm.config.load(nil, { "write_policy=reinforce", "episodic_similarity=cosine",
      "episodic_key=previous", "episodic_scale_init=7.5", "embedding_dim=4", "memory_size=3", "hidden_size=4" })
    local net = dm.Controller(train.model_config(cfg, 10))
    local c = net:config()
    assert.equal("cosine", c.episodic_similarity)
    assert.equal("previous", c.episodic_key)
    assert.equal(7.5, c.episodic_scale_init)
    local names = param_names(net)
    assert.equal("episodic.scale", names[#names])
    assert.equal(7.5, net:param("episodic.scale"):totable()[1])
    -- the dot read keeps the layout it had: no sharpness tensor
    local dot = dm.Controller(train.model_config(dm.config.load(nil, { "write_policy=reinforce",
      "embedding_dim=4", "memory_size=3", "hidden_size=4" }), 10))
    for _, n in ipairs(param_names(dot)) do assert.are_not.equal("episodic.scale", n) end
    assert.equal(#names - 1, #param_names(dot))
  end)

  it("episodic_address token makes the query and key tables of a row per token", function()
    local cfg = dm.config.load(nil, { "write_policy=reinforce", "episodic_address=token",
      "embedding_dim=4", "memory_embedding_dim=6", "memory_size=3", "hidden_size=4" })
    local net = dm.Controller(train.model_config(cfg, 10))
    assert.equal("token", net:config().episodic_address)
    assert.same({ 10, 6 }, net:param("episodic.query.weight"):shape())
    assert.same({ 10, 6 }, net:param("episodic.key.weight"):shape())
    local st = dm.Controller(train.model_config(dm.config.load(nil, { "write_policy=reinforce",
      "embedding_dim=4", "memory_embedding_dim=6", "memory_size=3", "hidden_size=4" }), 10))
    assert.same({ 6, 4 }, st:param("episodic.query.weight"):shape())
    local ok, err = pcall(dm.config.load, nil, { "episodic_address=embedding" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("expected one of state|token", 1, true), tostring(err))
  end)

  it("token addressing trains: the table rows of the tokens seen move", function()
    local cfg = tiny_cfg { episodic_address = "token", episodic_similarity = "cosine", episodic_key = "previous",
      loss_positions = "answers" }
    local st, data = helpers.setup_run(cfg)
    local q0 = st.net:param("episodic.query.weight"):clone()
    assert.equal("done", dm.loop.run(st, data, {}))
    local q1 = st.net:param("episodic.query.weight")
    assert.is_true((q1 - q0):abs():max() > 0)
  end)

  it("write_actions uniform and write_every reach the controller", function()
    local cfg = dm.config.load(nil, { "write_policy=reinforce", "write_actions=uniform", "write_every=3",
      "embedding_dim=4", "memory_size=3", "hidden_size=4" })
    local c = dm.Controller(train.model_config(cfg, 10)):config()
    assert.equal("uniform", c.write_actions)
    assert.equal(3, c.write_every)
    local ok, err = pcall(dm.config.load, nil, { "write_every=0" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("key 'write_every'", 1, true), tostring(err))
  end)

  it("train the sharpness and keep it in the checkpoint", function()
    local cfg = tiny_cfg { episodic_similarity = "cosine", episodic_key = "previous" }
    local st, data = helpers.setup_run(cfg)
    assert.equal("done", dm.loop.run(st, data, {}))
    local s = st.net:param("episodic.scale"):totable()[1]
    assert.are_not.equal(5.0, s) -- the read's gradient reached it
    local path = tmpdir .. "/scale.safetensors"
    dm.checkpoint.save(path, st.net)
    local net2 = dm.checkpoint.load(path).net
    assert.equal(s, net2:param("episodic.scale"):totable()[1])
    assert.equal("previous", net2:config().episodic_key)
  end)
end)

describe("loss_positions answers", function()
  it("tasks.answer_targets keeps the answers and sets every other target to ignore", function()
    local vocab = dm.data.build_vocab({ { "k1", "v1", "k2", "v2", "?" } })
    local id = vocab.stoi
    local y = dm.tensor({ { id.k1, id.v1, id["?"], id.k1, id.v1, vocab.eos },
      { id.k2, id.v2, id["?"], id.k2, id.v2, id.k1 } }, "int32") -- row 2 is cut: no answer
    local t = tasks.answer_targets("recall", y, vocab, -1)
    assert.same({ { -1, -1, -1, -1, id.v1, -1 }, { -1, -1, -1, -1, -1, -1 } }, t:totable())
    assert.are_not.equal(-1, y:totable()[1][1]) -- y itself is unchanged
    assert.has_error(function() tasks.answer_targets("recall", y, vocab, 0.5) end,
      "tasks.answer_targets: ignore must be an integer, got 0.5")
  end)

  it("trains on one target per sample instead of every token", function()
    local counts = {}
    for _, lp in ipairs { "all", "answers" } do
      local cfg = tiny_cfg { loss_positions = lp }
      local st, data = helpers.setup_run(cfg)
      local tr = dm.loop.train_epoch({ net = st.net, opt = st.opt, cfg = st.cfg, split = data.train,
        vocab = data.vocab }, 1)
      counts[lp] = { tokens = tr.tokens, samples = data.train:size() }
    end
    -- a recall sample of n = 3 has 9 tokens and <eos>: 10 targets, 1 answer
    assert.equal(10 * counts.all.samples, counts.all.tokens)
    assert.equal(counts.answers.samples, counts.answers.tokens)
  end)

  it("reward_positions answers rewards the policy at the answers only", function()
    local ok, err = pcall(dm.config.load, nil, { "reward_positions=answers" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("reward_positions answers rewards the answer positions of a task", 1, true),
      tostring(err))
    local cfg = tiny_cfg { write_actions = "policy" }
    local st, data = helpers.setup_run(cfg)
    local x, y
    for bx, by in data.train:batches(4, 1) do x, y = bx, by; break end
    st.net:train()
    st.net:forward(x, false)
    local all = st.net:reinforce(y, 0)
    local at = st.net:reinforce(y, 0, tasks.answer_targets("recall", y, data.vocab, 0))
    assert.equal(all.count, at.count)             -- every action is still scored
    assert.is_true(math.abs(at.mean_reward) < math.abs(all.mean_reward)) -- 1 reward in 10 targets
    assert.has_error(function() st.net:reinforce(y, 0, dm.zeros(2, 2, "int32")) end)
    -- the loop passes them when asked: it trains and logs a policy
    local st2, data2 = helpers.setup_run(tiny_cfg { write_actions = "policy", reward_positions = "answers",
      loss_positions = "answers" })
    assert.equal("done", dm.loop.run(st2, data2, {}))
    assert.is_number(st2.run.history[1].mean_reward)
  end)

  it("is refused by a loop that was not given the vocabulary", function()
    local cfg = tiny_cfg { loss_positions = "answers" }
    local st, data = helpers.setup_run(cfg)
    local ok, err = pcall(dm.loop.train_epoch, { net = st.net, opt = st.opt, cfg = st.cfg, split = data.train }, 1)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("needs ctx.vocab", 1, true), tostring(err))
  end)
end)
