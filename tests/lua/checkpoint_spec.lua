-- checkpoint_spec.lua: drlmem.checkpoint. A PyTorch-written checkpoint
-- (tests/fixtures/export/tiny.safetensors, golden.py --export-safetensors)
-- loads and gives PyTorch's eval logits; the file layout and metadata; save
-- -> load -> save is byte-identical; training 2 steps equals 1 step, save,
-- load in a fresh process, 1 more step (bit-identical weights); corrupt,
-- truncated, mutated and mismatched files are refused with a message naming
-- the file and the problem.
local dm = require "drlmem"
local slurp, spit = require("helpers").slurp, require("helpers").spit
local checkpoint = require "drlmem.checkpoint"

local EXPORT = "tests/fixtures/export/tiny.safetensors"
local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12,
             num_layers = 2, dropout = 0.3}

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p '" .. tmpdir .. "'"))
local function tmp(name) return tmpdir .. "/" .. name end

teardown(function() os.execute("rm -rf '" .. tmpdir .. "'") end)

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function has(s, sub)
  assert(s:find(sub, 1, true), ("expected %q to contain %q"):format(s, sub))
end

local function flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for _, v in ipairs(x) do walk(v) end else out[#out + 1] = x end
  end
  walk(type(t) == "table" and t or t:totable())
  return out
end

local function read_json(path) return dm.json.decode(slurp(path), path) end

local function vocab20()
  local v = {"<pad>", "<unk>", "<sos>", "<eos>"}
  for i = 5, 20 do v[i] = "w" .. i end
  return v
end

-- one upstream training step
local function step(net, opt, x, y)
  local logits = net:forward(x)
  local _, d = dm.nn.cross_entropy(logits, y)
  net:zero_grad()
  net:backward(d)
  dm.clip_grad_norm(net, 1.0)
  opt:step()
  net:write_memory(0.1)
end

describe("checkpoint.load of a PyTorch-written file", function()
  it("builds the net from the metadata and gives PyTorch's eval logits", function()
    local exp = read_json("tests/fixtures/export/tiny.expected.json")
    local ck = checkpoint.load(EXPORT)
    assert.are.equal(20, #ck.vocab)
    assert.are.equal("<pad>", ck.vocab[1])
    assert.are.same({vocab_size = 20, embedding_dim = 8, memory_embedding_dim = 8, memory_size = 6,
                     hidden_size = 12, num_layers = 2, dropout = 0.3, output_activation = "gelu"},
                    ck.config)
    assert.is_nil(ck.state)
    assert.is_nil(ck.optimizer)
    local net = ck.net
    net:eval()
    local x = dm.tensor(exp.inputs, "int32")
    local logits = flat(net:forward(x))
    local want = flat(exp.logits)
    assert.are.equal(#want, #logits)
    local scale, err = 0, 0
    for i = 1, #want do
      scale = math.max(scale, math.abs(want[i]))
      err = math.max(err, math.abs(logits[i] - want[i]))
    end
    assert(err <= 1e-5 * scale, ("logits: max err %g, scale %g"):format(err, scale))
    assert.are.same(flat(exp.usage_counts_after), flat(net:memory_usage()))
    local loss = dm.nn.cross_entropy(net:forward(x), dm.tensor(exp.targets, "int32"))
    assert.is_true(loss == loss)
  end)
end)

describe("checkpoint.save", function()
  local function trained()
    dm.manual_seed(21)
    local net = dm.Controller(CFG)
    local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
    local sched = dm.optim.CosineAnnealingLR(opt, {T_max = 10, eta_min = 1e-6})
    step(net, opt, dm.tensor({{2, 5, 6, 7}, {2, 9, 0, 0}}, "int32"), dm.tensor({{5, 6, 7, 3}, {9, 3, 0, 0}}, "int32"))
    sched:step()
    return net, opt, sched
  end

  it("writes parameters, moments and metadata as documented", function()
    local net, opt, sched = trained()
    local path = tmp("a.safetensors")
    checkpoint.save(path, net, {vocab = vocab20(), config = {learning_rate = 0.01, batch_size = 2},
                                optimizer = opt, scheduler = sched,
                                state = {epoch = 1, step = 1, best_val = math.huge, bad_epochs = 0,
                                         rng = dm.get_rng_state()}})
    local tensors, meta, names = dm.load_safetensors(path)
    local _, order = net:state_dict()
    for i, n in ipairs(order) do assert.are.equal(n, names[i]) end
    -- 17 trained tensors x 2 moments, after the state_dict
    assert.are.equal(#order + 34, #names)
    assert.are.equal("optim.exp_avg.memory.keys", names[#order + 1])
    assert.are.equal("optim.exp_avg_sq.fc_output.bias", names[#names])
    assert.is_nil(tensors["optim.exp_avg.fc_query_memory.weight"]) -- frozen: no state
    assert.are.equal("drlmem-1", meta.format)
    local cfg = dm.json.decode(meta.config)
    assert.are.equal(8, cfg.embedding_dim)
    assert.are.equal("gelu", cfg.output_activation)
    assert.are.equal("w20", dm.json.decode(meta.vocab)[20])
    local st = dm.json.decode(meta.state)
    assert.are.same({__float__ = "inf"}, st.best_val)
    assert.are.equal(1, st.epoch)
    local o = dm.json.decode(meta.optimizer)
    assert.are.equal("AdamW", o.kind)
    assert.are.equal(1, o.step["rnn.weight_hh_l1"])
    assert.are.equal(0, o.step["fc_value_memory.bias"])
    assert.are.equal(1, dm.json.decode(meta.scheduler).last_epoch)
    assert.are.equal(2, dm.json.decode(meta.train_config).batch_size)
    -- and back
    local ck = checkpoint.load(path)
    assert.are.equal(math.huge, ck.state.best_val)
    assert.are.equal(dm.get_rng_state(), ck.state.rng)
    assert.are.equal(0.01, ck.train_config.learning_rate)
    assert.are.equal(1, ck.optimizer.step["fc1.weight"])
    local sd = ck.net:state_dict()
    local mine = net:state_dict()
    for _, n in ipairs(order) do assert.are.same(flat(mine[n]), flat(sd[n])) end
  end)

  it("save -> load -> save gives the same bytes", function()
    local net, opt, sched = trained()
    local a, b = tmp("b1.safetensors"), tmp("b2.safetensors")
    local state = {epoch = 3, step = 12, best_val = 2.75, bad_epochs = 1, rng = dm.get_rng_state(),
                   history = dm.json.array({})}
    checkpoint.save(a, net, {vocab = vocab20(), config = {seed = 1, dropout = 0.3}, optimizer = opt,
                             scheduler = sched, state = state})
    local ck = checkpoint.load(a)
    local opt2 = dm.optim.AdamW(ck.net:parameters(), {lr = 0.5, weight_decay = 1e-4})
    local sched2 = dm.optim.CosineAnnealingLR(opt2, {T_max = 10, eta_min = 1e-6})
    checkpoint.restore_optimizer(opt2, ck)
    checkpoint.restore_scheduler(sched2, ck)
    assert.are.equal(opt:get_lr(), opt2:get_lr())
    checkpoint.save(b, ck.net, {vocab = ck.vocab, config = ck.train_config, optimizer = opt2,
                                scheduler = sched2, state = ck.state})
    assert.is_true(slurp(a) == slurp(b), "files differ")
    -- a plain model checkpoint too
    checkpoint.save(a, net, {vocab = vocab20()})
    checkpoint.save(b, checkpoint.load(a).net, {vocab = vocab20()})
    assert.is_true(slurp(a) == slurp(b), "plain files differ")
  end)

  it("2 steps == 1 step, save, load in a new process, 1 more step (bit-identical)", function()
    local x1 = "{{2, 5, 6, 7, 8}, {2, 9, 10, 0, 0}}"
    local y1 = "{{5, 6, 7, 8, 3}, {9, 10, 3, 0, 0}}"
    local x2 = "{{2, 11, 12, 13, 14}, {2, 15, 16, 17, 0}}"
    local y2 = "{{11, 12, 13, 14, 3}, {15, 16, 17, 3, 0}}"
    local function T(s) return dm.tensor(load("return " .. s)(), "int32") end
    dm.manual_seed(77)
    local net = dm.Controller(CFG)
    local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
    local sched = dm.optim.CosineAnnealingLR(opt, {T_max = 10, eta_min = 1e-6})
    step(net, opt, T(x1), T(y1))
    sched:step()
    local ckpath = tmp("resume.safetensors")
    checkpoint.save(ckpath, net, {vocab = vocab20(), optimizer = opt, scheduler = sched,
                                  state = {epoch = 1, step = 1, rng = dm.get_rng_state()}})
    step(net, opt, T(x2), T(y2)) -- this one draws a dropout mask from the global generator
    local here = tmp("final_here.safetensors")
    checkpoint.save(here, net, {vocab = vocab20()})

    local script = tmp("resume.lua")
    spit(script, ([[
local dm = require "drlmem"
local checkpoint = require "drlmem.checkpoint"
dm.manual_seed(12345) -- anything: the checkpoint's generator state must win
local ck = checkpoint.load(arg[1])
local opt = dm.optim.AdamW(ck.net:parameters(), {lr = 0.01, weight_decay = 1e-4})
local sched = dm.optim.CosineAnnealingLR(opt, {T_max = 10, eta_min = 1e-6})
checkpoint.restore_optimizer(opt, ck)
checkpoint.restore_scheduler(sched, ck)
checkpoint.restore_rng(ck)
local net = ck.net
local logits = net:forward(dm.tensor(%s, "int32"))
local _, d = dm.nn.cross_entropy(logits, dm.tensor(%s, "int32"))
net:zero_grad()
net:backward(d)
dm.clip_grad_norm(net, 1.0)
opt:step()
net:write_memory(0.1)
checkpoint.save(arg[2], net, {vocab = ck.vocab})
]]):format(x2, y2))
    local exe = os.getenv("DRLMEM_EXE")
    if not exe or not io.open(exe, "rb") then exe = "lua5.4" end
    local there = tmp("final_there.safetensors")
    local ok = os.execute(("'%s' '%s' '%s' '%s'"):format(exe, script, ckpath, there))
    assert.is_true(ok == true, "the resumed process failed")
    assert.is_true(slurp(here) == slurp(there), "resumed weights differ from uninterrupted ones")
    -- and the resumption matters: without the generator state it differs
    spit(script, slurp(script):gsub("checkpoint.restore_rng%(ck%)", "-- no rng"))
    assert.is_true(os.execute(("'%s' '%s' '%s' '%s'"):format(exe, script, ckpath, there)) == true)
    assert.is_false(slurp(here) == slurp(there))
  end)

  it("a failed save leaves the previous checkpoint intact", function()
    local net = dm.Controller(CFG)
    local path = tmp("keep.safetensors")
    checkpoint.save(path, net, {vocab = vocab20()})
    local before = slurp(path)
    has(errmsg(checkpoint.save, path, net, {vocab = vocab20(), state = {bad = print}}),
        "checkpoint.save: cannot encode opts.state as JSON")
    has(errmsg(checkpoint.save, path, net, {vocab = {"a", "b"}}),
        "checkpoint.save: the vocabulary has 2 tokens, the net's vocab_size is 20")
    has(errmsg(checkpoint.save, tmp("no/such/dir/x.safetensors"), net, {vocab = vocab20()}),
        "no/such/dir/x.safetensors")
    assert.is_true(slurp(path) == before)
  end)
end)

describe("checkpoint.load refuses bad files", function()
  local good = tmp("good.safetensors")
  local bytes

  setup(function()
    dm.manual_seed(4)
    local net = dm.Controller(CFG)
    local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01})
    step(net, opt, dm.tensor({{2, 5, 6}}, "int32"), dm.tensor({{5, 6, 3}}, "int32"))
    checkpoint.save(good, net, {vocab = vocab20(), optimizer = opt, state = {epoch = 1}})
    bytes = slurp(good)
  end)

  -- writes a file from tensors/metadata, altered by f(tensors, meta, names)
  local function variant(name, f)
    local tensors, meta, names = dm.load_safetensors(good)
    f(tensors, meta, names)
    local list = {}
    for _, n in ipairs(names) do if tensors[n] then list[#list + 1] = {n, tensors[n]} end end
    for n, t in pairs(tensors) do
      local listed = false
      for _, m in ipairs(names) do listed = listed or m == n end
      if not listed then list[#list + 1] = {n, t} end
    end
    local p = tmp(name)
    dm.save_safetensors(p, list, meta)
    return p
  end

  it("names what is wrong", function()
    has(errmsg(checkpoint.load, tmp("missing.safetensors")), "checkpoint.load: ")
    has(errmsg(checkpoint.load, tmp("missing.safetensors")), "missing.safetensors")
    local p = tmp("text.safetensors")
    spit(p, "hello, I am not a checkpoint at all")
    has(errmsg(checkpoint.load, p), "checkpoint.load: ")
    p = variant("nofmt.safetensors", function(_, meta) meta.format = nil end)
    has(errmsg(checkpoint.load, p), "nofmt.safetensors: not a drlmem checkpoint (metadata 'format' is missing")
    p = variant("fmt2.safetensors", function(_, meta) meta.format = "drlmem-9" end)
    has(errmsg(checkpoint.load, p), "(metadata 'format' is \"drlmem-9\", expected \"drlmem-1\")")
    p = variant("miss.safetensors", function(t) t["rnn.bias_hh_l1"] = nil end)
    has(errmsg(checkpoint.load, p), "miss.safetensors: tensor rnn.bias_hh_l1 is missing")
    p = variant("shape.safetensors", function(_, meta)
      meta.config = meta.config:gsub('"hidden_size":12', '"hidden_size":16') end)
    has(errmsg(checkpoint.load, p), "shape.safetensors: config.hidden_size is 16 but tensor rnn.weight_hh_l0 has columns 12")
    p = variant("shape2.safetensors", function(t) t["fc1.weight"] = dm.zeros(12, 11) end)
    has(errmsg(checkpoint.load, p), "shape2.safetensors: tensor fc1.weight has shape 12x11, expected 12x12 (from the config)")
    p = variant("dtype.safetensors", function(t) t["fc1.bias"] = t["fc1.bias"]:int() end)
    has(errmsg(checkpoint.load, p), "tensor fc1.bias has dtype int32, expected float32")
    p = variant("extra.safetensors", function(t) t["fc2.weight"] = dm.zeros(2, 2) end)
    has(errmsg(checkpoint.load, p), "unexpected tensor fc2.weight (not a parameter of this model)")
    -- a name from the file with a newline in it is escaped: the message stays one line
    p = variant("nlname.safetensors", function(t) t["optim.exp_avg_stack\nl0"] = dm.zeros(2, 2) end)
    local nlmsg = errmsg(checkpoint.load, p)
    has(nlmsg, "unexpected tensor optim.exp_avg_stack\\x0al0 (not a parameter of this model)")
    assert.is_nil(nlmsg:find("\n", 1, true))
    -- and so is one in the safetensors header, refused before any tensor is read
    p = tmp("nlheader.safetensors")
    local header = '{"a\\nb": {"dtype": "F32", "shape": [1]}}'
    local f = assert(io.open(p, "wb"))
    f:write(string.pack("<I8", #header), header)
    f:close()
    nlmsg = errmsg(checkpoint.load, p)
    has(nlmsg, "tensor 'a\\x0ab': missing")
    assert.is_nil(nlmsg:find("\n", 1, true))
    p = variant("moment.safetensors", function(t) t["optim.exp_avg.fc1.weight"] = dm.zeros(3, 3) end)
    has(errmsg(checkpoint.load, p), "tensor optim.exp_avg.fc1.weight has shape 3x3, expected 12x12")
    p = variant("frozen.safetensors", function(t) t["optim.exp_avg.fc_query_memory.bias"] = dm.zeros(8) end)
    has(errmsg(checkpoint.load, p), "'fc_query_memory.bias' is not a trained parameter")
    p = variant("json.safetensors", function(_, meta) meta.config = "{\"embedding_dim\": 8," end)
    has(errmsg(checkpoint.load, p), "metadata 'config' is not valid JSON")
    p = variant("vocab.safetensors", function(_, meta) meta.vocab = '["<pad>", "<unk>", "<sos>", "<eos>", "b"]' end)
    has(errmsg(checkpoint.load, p), "config.vocab_size is 20 but the vocabulary has 5 tokens")
    p = variant("cfgkey.safetensors", function(_, meta)
      meta.config = meta.config:gsub('"dropout"', '"drop_out"') end)
    has(errmsg(checkpoint.load, p), "metadata 'config' has an unknown key 'drop_out'")
    p = variant("badcfg.safetensors", function(_, meta)
      meta.config = meta.config:gsub('"dropout":0.3', '"dropout":2') end)
    has(errmsg(checkpoint.load, p), "bad config: Controller: dropout must be in [0, 1), got 2")
    has(errmsg(checkpoint.restore_optimizer, nil, checkpoint.load(EXPORT)),
        "the checkpoint has no optimizer state")
    -- a kind mismatch is the optimizer's to report
    local ck = checkpoint.load(good)
    has(errmsg(checkpoint.restore_optimizer, dm.optim.SGD(ck.net:parameters(), {lr = 0.1}), ck),
        "state is for AdamW, this optimizer is SGD")
  end)

  it("a config larger than the file's tensors is refused before anything is allocated", function()
    -- The controller built from such a config would take gigabytes (2^27
    -- slots: 17 GB) before the first shape is compared; the refusal must be
    -- immediate and name the key and the tensor that fixes it.
    local cases = {
      {"memory_size", 1 << 27, "config.memory_size is 134217728 but tensor memory.keys has rows 6 (shape 6x8)"},
      {"memory_size", 16777216, "config.memory_size is 16777216 but tensor memory.keys has rows 6"},
      {"vocab_size", 1 << 26, "config.vocab_size is 67108864 but tensor embedding.weight has rows 20"},
      {"embedding_dim", 1 << 24, "config.embedding_dim is 16777216 but tensor embedding.weight has columns 8"},
      {"memory_embedding_dim", 1 << 24, "config.memory_embedding_dim is 16777216 but tensor memory.keys has columns 8"},
      {"hidden_size", 1 << 20, "config.hidden_size is 1048576 but tensor rnn.weight_hh_l0 has columns 12"},
      {"num_layers", 3, "config.num_layers is 3 but the file holds 2 GRU layers"},
      {"memory_size", 1e300, "config.memory_size must be an integer, got 1e+300"},
      {"hidden_size", 2.5, "config.hidden_size must be an integer, got 2.5"},
    }
    for i, c in ipairs(cases) do
      local p = variant("big" .. i .. ".safetensors", function(_, meta)
        local cfg = dm.json.decode(meta.config)
        cfg[c[1]] = c[2]
        if c[1] == "vocab_size" then meta.vocab = "[]" end
        meta.config = dm.json.encode(cfg)
      end)
      local t0 = os.clock()
      local msg = errmsg(checkpoint.load, p)
      has(msg, "checkpoint.load: " .. p .. ": ")
      has(msg, c[3])
      assert.is_true(os.clock() - t0 < 0.5, c[1] .. ": the refusal took " .. (os.clock() - t0) .. " s")
    end
  end)

  it("a vocabulary with specials out of place, repeated or odd tokens is refused", function()
    local function with_vocab(name, edit, config_edit)
      return variant(name, function(_, meta)
        local v = vocab20()
        edit(v)
        meta.vocab = dm.json.encode(dm.json.array(v))
        if config_edit then
          local cfg = dm.json.decode(meta.config)
          config_edit(cfg)
          meta.config = dm.json.encode(cfg)
        end
      end)
    end
    local cases = {
      {function(v) v[1], v[5] = v[5], v[1] end, 'vocab[1] (id 0) must be <pad>, got "w5"'},
      {function(v) v[3] = "<start>" end, 'vocab[3] (id 2) must be <sos>, got "<start>"'},
      {function(v) v[20] = "w7" end, 'vocab[20] "w7" repeats vocab[7]'},
      {function(v) v[9] = "" end, "vocab[9] is an empty string"},
      {function(v) v[9] = 9 end, "vocab[9] is not a string"},
      {function(v) table.remove(v, 1) end, 'vocab[1] (id 0) must be <pad>, got "<unk>"',
       function(cfg) cfg.vocab_size = 19 end},
    }
    for i, c in ipairs(cases) do
      local p = with_vocab("voc" .. i .. ".safetensors", c[1], c[3])
      local msg = errmsg(checkpoint.load, p)
      has(msg, "checkpoint.load: " .. p .. ": " .. c[2])
      assert.is_nil(msg:find("\n"), "one line: " .. msg)
    end
    local p = variant("vocobj.safetensors", function(_, meta) meta.vocab = '{"a": "b"}' end)
    has(errmsg(checkpoint.load, p), "metadata 'vocab' must be a JSON array of tokens")
    -- a vocabulary as the data module builds it, saved and loaded: accepted
    assert.are.equal(20, #checkpoint.load(good).vocab)
  end)

  it("generate.lua reports a bad vocabulary in one line", function()
    local p = variant("gen.safetensors", function(_, meta)
      meta.vocab = meta.vocab:gsub('"<pad>"', '"<nothing>"') end)
    local h = io.popen(("%s scripts/generate.lua --checkpoint %s --prime w5 2>&1; echo rc=$?"):format(
      os.getenv("DRLMEM_EXE") or "./build/drlmem", p))
    local out = h:read("a")
    h:close()
    has(out, 'vocab[1] (id 0) must be <pad>, got "<nothing>"')
    has(out, "rc=1")
    assert.is_nil(out:find("traceback", 1, true), out)
  end)

  it("truncated files are refused", function()
    local p = tmp("cut.safetensors")
    for _, n in ipairs({0, 4, 7, 8, 9, 100, #bytes // 2, #bytes - 1}) do
      spit(p, bytes:sub(1, n))
      local ok, err = pcall(checkpoint.load, p)
      assert.is_false(ok, "a file cut to " .. n .. " bytes loaded")
      has(tostring(err), "checkpoint.load: ")
    end
  end)

  it("survives many random mutations: each loads or is refused cleanly", function()
    local p = tmp("mut.safetensors")
    local hlen = string.unpack("<I8", bytes)
    local refused = 0
    local rng = dm.Generator(2024)
    for i = 1, 300 do
      local b = {bytes:byte(1, -1)}
      local kind = rng:random(3)
      if kind == 1 then -- flip bytes in the length or the header
        for _ = 1, rng:random(3) do
          local at = rng:random(8 + hlen)
          b[at] = (b[at] + rng:random(255)) % 256
        end
      elseif kind == 2 then -- flip anywhere
        local at = rng:random(#b)
        b[at] = b[at] ~ (1 << (rng:random(8) - 1))
      end
      local s = {}
      for k = 1, #b, 4096 do s[#s + 1] = string.char(table.unpack(b, k, math.min(k + 4095, #b))) end
      s = table.concat(s)
      if kind == 3 then s = s:sub(1, rng:random(#s) - 1) end
      spit(p, s)
      local ok, err = pcall(checkpoint.load, p)
      if not ok then
        refused = refused + 1
        assert.are.equal("string", type(err))
        has(err, "checkpoint.load: ")
      else
        assert.are.equal("userdata", type(err.net)) -- a data byte changed: still a checkpoint
      end
    end
    assert.is_true(refused > 100, "only " .. refused .. " of 300 refused")
  end)
end)
