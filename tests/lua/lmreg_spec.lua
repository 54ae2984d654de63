-- lmreg_spec.lua: the recurrent language model's options end to end: the
-- config keys (off by default, errors for combinations that cannot work),
-- a finite-difference check through the Lua binding with every dropout on
-- (fixed masks: the net's generator is seeded the same before each
-- forward), tied weights through a checkpoint, and truncated BPTT over a
-- stream: the parallel-stream layout, the carried state in evaluation and
-- in training, and a bit-for-bit resume from inside an epoch.
local dm = require "drlmem"
local helpers = require "helpers"
local loop, evaluation, resume = dm.loop, dm.evaluation, dm.resume

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))

-- Running text: one long stream, no line structure that matters.
local function write_corpus(path, n)
  local words = { "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "and", "slept" }
  local g = dm.Generator(11)
  local f = assert(io.open(path, "w"))
  for _ = 1, n do
    local line = {}
    for k = 1, 8 do line[k] = words[g:random(#words)] end
    f:write(table.concat(line, " "), " .\n")
  end
  f:close()
  return path
end
local corpus = write_corpus(tmpdir .. "/stream.txt", 80)

local function cfg_of(extra)
  local over = { data_path = corpus, embedding_dim = 8, memory_size = 6, hidden_size = 8, num_layers = 2,
    max_seq_length = 6, batch_size = 3, epochs = 2, seed = 5, sample_mode = "stream", split = "position",
    checkpoint_minutes = 0, save_path = tmpdir .. "/models", log_file = tmpdir .. "/logs/training.log" }
  for k, v in pairs(extra or {}) do over[k] = v end
  return dm.config.load(nil, over)
end

local function yaml_err(text)
  local p = helpers.write_tmp(text)
  return helpers.err_of(dm.config.load, p), p
end

describe("language-model config keys", function()
  it("are off by default and reach the model only when set", function()
    local d = dm.config.defaults()
    assert.same({ 0, 0, 0, 0, false, false, false },
      { d.input_dropout, d.layer_dropout, d.output_dropout, d.embedding_dropout, d.variational_dropout,
        d.tie_weights, d.carry_state })
    local m = dm.train.model_config(d, 50)
    for _, k in ipairs { "input_dropout", "layer_dropout", "output_dropout", "embedding_dropout",
      "variational_dropout", "tie_weights" } do
      assert.is_nil(m[k], k)
    end
    local net = dm.Controller(dm.train.model_config(cfg_of { output_dropout = 0.25, tie_weights = true }, 50))
    assert.equal(0.25, net:config().output_dropout)
    assert.is_true(net:config().tie_weights)
    assert.is_nil(dm.Controller(dm.train.model_config(d, 50)):config().tie_weights)
  end)

  it("refuse what cannot work, naming the file, line and key", function()
    local e, p = yaml_err("sample_mode: lines\ncarry_state: true\n")
    assert.equal(p .. ":2: key 'carry_state': carry_state carries the recurrent state along a token stream: "
      .. "set sample_mode: stream (it is lines)", e)
    e, p = yaml_err("sample_mode: stream\ncarry_state: true\n")
    assert.truthy(e:find(p .. ":2: key 'carry_state': carry_state needs each part to be one run of the stream", 1, true), e)
    e, p = yaml_err("variational_dropout: true\n")
    assert.truthy(e:find(p .. ":1: key 'variational_dropout': variational_dropout draws", 1, true), e)
    e, p = yaml_err("num_layers: 1\nlayer_dropout: 0.2\n")
    assert.equal(p .. ":2: key 'layer_dropout': layer_dropout acts between recurrent layers, and num_layers is 1: "
      .. "set num_layers >= 2, or use input_dropout/output_dropout", e)
    e, p = yaml_err("input_dropout: 1.5\n")
    assert.equal(p .. ":1: key 'input_dropout': expected a number in [0, 1), got 1.5", e)
    e = helpers.err_of(dm.config.load, nil, { "tie_weights=yes" })
    assert.truthy(e:find("--set tie_weights=yes", 1, true), e)
  end)
end)

describe("regularised controller gradients through the binding", function()
  for _, cell in ipairs { "gru", "lstm" } do
    it(cell .. ": every dropout on, variational, with tied weights, passes dm.checkgrad", function()
      local net = dm.Controller { vocab_size = 9, embedding_dim = 5, memory_size = 3, hidden_size = 6, num_layers = 2,
        cell = cell, output_activation = "none", dropout = 0.2, input_dropout = 0.3, layer_dropout = 0.3,
        output_dropout = 0.3, embedding_dropout = 0.2, variational_dropout = true, tie_weights = true }
      local x = dm.tensor({ { 1, 4, 5, 6 }, { 7, 8, 2, 4 } }, "int32")
      dm.manual_seed(4)
      local R = dm.randn(2, 4, 9)
      local grads = {}
      for _, p in ipairs(net:parameters()) do grads[p.name] = p.grad end
      for _, name in ipairs { "rnn.weight_ih_l1", "tie_proj.weight", "fc_query.weight" } do
        local err = dm.checkgrad(function(v)
          net:set_generator(dm.Generator(21)) -- the same masks at every call
          local logits = net:forward(x)
          net:zero_grad()
          net:backward(R)
          return (logits * R):sum(), grads[name]:clone()
        end, net:param(name), 1e-2)
        assert.is_true(err < 2e-2, name .. ": err " .. err)
      end
    end)
  end
end)

describe("tie_weights", function()
  it("saves and loads under clear names and gives the same logits", function()
    local cfg = cfg_of { tie_weights = true, hidden_size = 10 }
    local st, data = helpers.setup_run(cfg)
    local n = 0
    loop.train_epoch({ net = st.net, opt = st.opt, cfg = cfg, split = data.train }, 1, {
      on_step = function() n = n + 1 end })
    assert.is_true(n > 0)
    local p = tmpdir .. "/tied.safetensors"
    resume.save_model(p, st.net, data.vocab, cfg)
    local _, _, names = dm.load_safetensors(p)
    local has = {}
    for _, k in ipairs(names) do has[k] = true end
    assert.is_true(has["embedding.weight"] and has["tie_proj.weight"] and has["fc_output.bias"])
    assert.is_nil(has["fc_output.weight"])
    local ck = dm.checkpoint.load(p)
    assert.is_true(ck.config.tie_weights)
    local x = dm.tensor({ { 4, 5, 6, 7 } }, "int32")
    st.net:eval()
    ck.net:eval()
    assert.equal(0, (st.net:forward(x) - ck.net:forward(x)):abs():max())
  end)
end)

describe("carry_state (truncated BPTT over a stream)", function()
  it("lays each part out as parallel streams: row b of a batch continues row b of the one before", function()
    local cfg = cfg_of { carry_state = true }
    local data = dm.data.load(cfg)
    assert.is_true(data.train.carry and data.val.carry and data.test.carry)
    local prev, k = nil, 0
    for x, y in data.train:batches(3, 1) do
      k = k + 1
      assert.same({ 3, 6 }, x:shape())
      for b = 1, 3 do
        for t = 1, 5 do assert.equal(y[b][t], x[b][t + 1]) end
        if prev then assert.equal(prev[b][6], x[b][1]) end
      end
      prev = y
    end
    assert.equal(data.train:nbatches(3), k)
    -- the same order every epoch
    local a, b = data.train:batches(3, 1)(), data.train:batches(3, 2)()
    assert.same(a:totable(), b:totable())
    -- a part too short for batch_size streams is refused when the data loads, in one line
    local e = helpers.err_of(dm.data.load, cfg_of { carry_state = true, batch_size = 40 })
    assert.truthy(e:find("^carry_state: the val part %(.-%) has %d+ tokens, too few for 40 parallel streams of "
      .. "max_seq_length%+1 = 7 tokens each %(lower batch_size or max_seq_length%)$"), e)
  end)

  for _, cell in ipairs { "gru", "lstm" } do
    it(cell .. ": evaluation carries the state: one row's windows give one long forward's loss", function()
      local cfg = cfg_of { carry_state = true, cell = cell, loss_ignore_pad = false }
      local st, data = helpers.setup_run(cfg)
      local r = evaluation.run(st.net, data.test, cfg, { batch_size = 1 })
      -- the same tokens in one forward
      local X, Y, nb = data.test:layout(1)
      local xs, ys = {}, {}
      for i = 1, nb do
        for t = 1, 6 do xs[#xs + 1], ys[#ys + 1] = X[i][t], Y[i][t] end
      end
      local net = st.net
      net:eval()
      net:forward(dm.tensor({ xs }, "int32"), false)
      local whole = net:loss(dm.tensor({ ys }, "int32"), { ignore_index = -1, grad = false })
      net:train()
      assert.is_true(nb >= 3)
      assert.is_true(math.abs(r.loss - whole) < 1e-5, r.loss .. " vs " .. whole)
      -- and without the carry each window starts from zeros: another loss
      local plain = evaluation.run(net, setmetatable({ carry = false }, { __index = data.test }), cfg, { batch_size = 1 })
      assert.is_true(math.abs(plain.loss - whole) > 1e-4)
    end)

    it(cell .. ": resumes bit for bit from a checkpoint inside an epoch, carried state included", function()
      local cfg = cfg_of { carry_state = true, cell = cell, checkpoint_steps = 3, output_dropout = 0.2,
        variational_dropout = true }
      local a, data = helpers.setup_run(cfg)
      assert.equal("done", loop.run(a, data))
      local b = helpers.setup_run(cfg, data)
      local p = tmpdir .. "/carry-" .. cell .. ".safetensors"
      local ok = pcall(loop.run, b, data, { on_checkpoint = function(pos)
        if pos.epoch == 2 then
          resume.save(p, b)
          error("stop here") -- as a kill right after the save
        end
      end })
      assert.is_false(ok)
      local _, _, names = dm.load_safetensors(p)
      local has = {}
      for _, k in ipairs(names) do has[k] = true end
      assert.is_true(has["carry.h"])
      assert.equal(cell == "lstm", has["carry.c"] == true)
      local c = helpers.setup_run(cfg, data)
      c.run = resume.load(p, c)
      assert.same({ 2, 3 }, { c.run.epoch, c.run.batch })
      assert.equal("done", loop.run(c, data))
      local sa, na = a.net:state_dict()
      local sc = c.net:state_dict()
      for _, k in ipairs(na) do assert.equal(0, (sa[k] - sc[k]):abs():max(), k) end
      assert.same(helpers.untimed(a.run.history), helpers.untimed(c.run.history))
      -- a resumed run that starts from zeros instead ends elsewhere
      local d = helpers.setup_run(cfg, data)
      d.run = resume.load(p, d)
      d.run.carry = nil
      loop.run(d, data)
      local sd = d.net:state_dict()
      assert.is_true((sa["rnn.weight_hh_l0"] - sd["rnn.weight_hh_l0"]):abs():max() > 0)
    end)
  end

  it("starts each epoch from zeros and leaves no state behind it", function()
    local cfg = cfg_of { carry_state = true }
    local st, data = helpers.setup_run(cfg)
    local x = dm.tensor({ { 4, 5, 6, 7, 8, 9 }, { 5, 6, 7, 8, 9, 4 }, { 6, 7, 8, 9, 4, 5 } }, "int32")
    local ctx = { net = st.net, opt = st.opt, cfg = cfg, split = data.train }
    -- a state left over from elsewhere is not where an epoch starts
    st.net:forward(x, false)
    st.net:set_state(st.net:final_state())
    local net2 = dm.Controller(dm.train.model_config(cfg, data.vocab.size))
    net2:load_state_dict(st.net:state_dict())
    local first
    for bx in data.train:batches(3, 1) do first = bx break end
    net2:eval()
    local from_zeros = net2:forward(first)
    -- the state the epoch's first forward starts from, seen through the
    -- loop's own call: an eval forward of the same tokens just before it
    local seen
    local mt = getmetatable(st.net).__index
    local saved = mt.forward
    mt.forward = function(self, tokens, ...)
      if not seen and self == st.net then
        self:eval()
        seen = saved(self, tokens)
        self:train()
      end
      return saved(self, tokens, ...)
    end
    local ok, err = pcall(loop.train_epoch, ctx, 1, {})
    mt.forward = saved
    assert(ok, err)
    assert.equal(0, (seen - from_zeros):abs():max())
    -- after the epoch: no state (a forward equals a fresh net's with the same weights)
    net2:load_state_dict(st.net:state_dict())
    st.net:eval()
    assert.equal(0, (st.net:forward(x) - net2:forward(x)):abs():max())
  end)

  it("a checkpoint from inside an epoch without the carried state is refused", function()
    local cfg = cfg_of { carry_state = true, checkpoint_steps = 2 }
    local b, data = helpers.setup_run(cfg)
    local p = tmpdir .. "/nocarry.safetensors"
    pcall(loop.run, b, data, { on_checkpoint = function()
      b.run.carry = nil
      resume.save(p, b)
      error("stop")
    end })
    local e = helpers.err_of(resume.load, p, helpers.setup_run(cfg, data))
    assert.equal(p .. ": training state 'carry' is missing: the run stopped inside an epoch with carry_state, "
      .. "and the recurrent state its next batch starts from is not in the file", e)
  end)
end)
