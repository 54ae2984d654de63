-- config_spec.lua: dm.yaml, dm.config and dm.cli: values, defaults, and the
-- messages that point at the file, line and key of a bad setting.
local dm = require "drlmem"
local write_tmp, err_of = require("helpers").write_tmp, require("helpers").err_of

describe("dm.yaml", function()
  it("resolves plain scalars like the YAML 1.2 core schema", function()
    local v = dm.yaml.load_string(table.concat({
      "i: 42", "neg: -3", "hex: 0x1F", "f: 1.5", "e: 1e-4", "inf: .inf", "ninf: -.inf",
      "t: true", "F: False", "n: null", "tilde: ~", "q: \"12\"", "sq: 'true'", "s: hello world",
    }, "\n"))
    assert.equal(42, v.i); assert.equal("integer", math.type(v.i))
    assert.equal(-3, v.neg)
    assert.equal(31, v.hex)
    assert.equal(1.5, v.f)
    assert.equal(1e-4, v.e); assert.equal("float", math.type(v.e))
    assert.equal(math.huge, v.inf)
    assert.equal(-math.huge, v.ninf)
    assert.is_true(v.t)
    assert.is_false(v.F)
    assert.equal(dm.yaml.null, v.n)
    assert.equal(dm.yaml.null, v.tilde)
    assert.equal("12", v.q)
    assert.equal("true", v.sq)
    assert.equal("hello world", v.s)
  end)

  it("reports the line of every key, nested keys dotted", function()
    local v, lines = dm.yaml.load_string("a: 1\n\nb:\n  c: [1, 2]\n  d:\n    e: x\n")
    assert.same({ 1, 2 }, v.b.c)
    assert.equal("x", v.b.d.e)
    assert.same({ a = 1, b = 3, ["b.c"] = 4, ["b.d"] = 5, ["b.d.e"] = 6 }, lines)
  end)

  it("names the file and line of syntax errors, duplicates and aliases", function()
    -- libyaml reports where it noticed the problem and the line of the construct
    assert.matches("^bad%.yaml:%d+:%d+: YAML syntax error: .* %(line 2%)$",
      err_of(dm.yaml.load_string, "a: 1\nb: [1\n", "bad.yaml"))
    assert.equal("bad.yaml:2:5: YAML syntax error: mapping values are not allowed in this context",
      err_of(dm.yaml.load_string, "a: 1\nb: c: d\n", "bad.yaml"))
    assert.equal("bad.yaml:3: duplicate key 'a' (first at line 1)",
      err_of(dm.yaml.load_string, "a: 1\nb: 2\na: 3\n", "bad.yaml"))
    assert.matches("bad%.yaml:2: YAML aliases", err_of(dm.yaml.load_string, "a: 1\nb: *x\n", "bad.yaml"))
    assert.matches("bad%.yaml:1: YAML anchors", err_of(dm.yaml.load_string, "a: &x 1\n", "bad.yaml"))
    assert.matches("bad%.yaml:1:", err_of(dm.yaml.load_string, "a: \255\n", "bad.yaml"))
  end)

  it("reads files and names a missing one", function()
    local path = write_tmp("k: v\n")
    assert.equal("v", dm.yaml.load(path).k)
    os.remove(path)
    assert.matches("^/nonexistent/x%.yaml: cannot open", err_of(dm.yaml.load, "/nonexistent/x.yaml"))
  end)

  it("returns nil for an empty document", function()
    assert.is_nil((dm.yaml.load_string("")))
    assert.is_nil((dm.yaml.load_string("# only a comment\n")))
  end)
end)

describe("dm.config", function()
  local seed_values = {
    data_path = "data/augmented_text_data.txt", log_file = "logs/training.log", embedding_dim = 128,
    memory_size = 512, learning_rate = 0.01, batch_size = 16, max_seq_length = 100,
    train_size_ratio = 0.8, val_size_ratio = 0.1, epochs = 50, accumulation_steps = 1,
    write_strength = 0.1, patience = 3, save_path = "models/",
  }
  local extra_values = {
    seed = 42, optimizer = "adamw", weight_decay = 1e-4, grad_clip = 1.0, scheduler = "cosine",
    t_max = 10, eta_min = 1e-6, hidden_size = 256, num_layers = 2, dropout = 0.3,
    output_activation = "gelu", memory_embedding_dim = 128, loss_ignore_pad = true, tokenizer = "word",
    sample_mode = "lines", min_freq = 1, max_vocab_size = 0, threads = 0,
  }

  it("has the seed's values and the upstream defaults", function()
    local cfg = dm.config.defaults()
    for k, v in pairs(seed_values) do assert.equal(v, cfg[k], k) end
    for k, v in pairs(extra_values) do assert.equal(v, cfg[k], k) end
    assert.equal("integer", math.type(cfg.batch_size))
    assert.equal("float", math.type(cfg.learning_rate))
  end)

  it("configs/default.yaml holds exactly the defaults, the seed's keys first", function()
    local doc, lines = dm.yaml.load("configs/default.yaml")
    local cfg, defaults = dm.config.load("configs/default.yaml"), dm.config.defaults()
    for _, k in ipairs(dm.config.order) do
      assert.is_not_nil(doc[k], "configs/default.yaml lacks " .. k)
      -- (rawget: a key whose default is null is absent, and reading it raises)
      assert.equal(rawget(defaults, k), rawget(cfg, k), k)
      assert.equal(math.type(rawget(defaults, k)), math.type(rawget(cfg, k)), k)
    end
    for k, v in pairs(seed_values) do assert.equal(v, doc[k], k) end
    local last_seed_line = 0
    for k in pairs(seed_values) do last_seed_line = math.max(last_seed_line, lines[k]) end
    for k in pairs(extra_values) do assert.is_true(lines[k] > last_seed_line, k) end
  end)

  it("configs/lm-sgd.yaml loads: plain SGD, the learning rate divided by 4 at each plateau", function()
    local cfg = dm.config.load("configs/lm-sgd.yaml")
    assert.same({ "sgd", "plateau", 0.25, 0 }, { cfg.optimizer, cfg.scheduler, cfg.gamma, cfg.plateau_patience })
  end)

  it("configs/lm-char.yaml and lm-word.yaml load: the LM options they are built on, and a model of them builds", function()
    local char = dm.config.load("configs/lm-char.yaml")
    assert.same({ "char", "stream", true, false, 512, 0.25 },
      { char.tokenizer, char.sample_mode, char.carry_state, char.use_memory, char.hidden_size, char.layer_dropout })
    local word = dm.config.load("configs/lm-word.yaml")
    assert.same({ "word", "position", true, true, 10000 },
      { word.tokenizer, word.split, word.carry_state, word.tie_weights, word.max_vocab_size })
    for _, cfg in ipairs { char, word } do
      local net = dm.Controller(dm.train.model_config(cfg, 70))
      assert.equal(70, net:config().vocab_size)
    end
  end)

  it("configs/tiny.yaml loads and is small", function()
    local cfg = dm.config.load("configs/tiny.yaml")
    assert.is_true(cfg.embedding_dim <= 32 and cfg.memory_size <= 32 and cfg.max_seq_length <= 32)
    assert.is_true(cfg.epochs <= 3)
    assert.equal(cfg.embedding_dim, cfg.memory_embedding_dim)
  end)

  it("names file, line and key of a bad value", function()
    local path = write_tmp("# comment\nepochs: 3\n\n\n\n\nbatch_size: -3\n")
    assert.equal(path .. ":7: key 'batch_size': expected a positive integer, got -3", err_of(dm.config.load, path))
    os.remove(path)
  end)

  it("suggests the closest key for an unknown one", function()
    local path = write_tmp("epochs: 3\nbach_size: 4\n")
    assert.equal(path .. ":2: unknown key 'bach_size' (did you mean 'batch_size'?)", err_of(dm.config.load, path))
    os.remove(path)
    path = write_tmp("learnin_rate: 0.1\n")
    assert.equal(path .. ":1: unknown key 'learnin_rate' (did you mean 'learning_rate'?)", err_of(dm.config.load, path))
    os.remove(path)
  end)

  it("rejects wrong types", function()
    local cases = {
      { "batch_size: abc\n", "key 'batch_size': expected a positive integer, got 'abc'" },
      { "batch_size: 16.0\n", "key 'batch_size': expected a positive integer, got 16.0" },
      { "learning_rate: fast\n", "key 'learning_rate': expected a positive number, got 'fast'" },
      { "loss_ignore_pad: 1\n", "key 'loss_ignore_pad': expected true or false, got 1" },
      { "data_path: 12\n", "key 'data_path': expected a non-empty string, got 12" },
      { "optimizer: rmsprop\n", "key 'optimizer': expected one of adamw|adam|sgd, got 'rmsprop'" },
      { "epochs: [1, 2]\n", "key 'epochs': expected a positive integer, got a list" },
      { "epochs:\n", "key 'epochs': expected a positive integer, got null" },
    }
    for _, c in ipairs(cases) do
      local path = write_tmp(c[1])
      assert.equal(path .. ":1: " .. c[2], err_of(dm.config.load, path))
      os.remove(path)
    end
  end)

  it("rejects out-of-range values", function()
    local cases = {
      { "write_strength: 1.5", "key 'write_strength': expected a number in [0, 1], got 1.5" },
      { "write_strength: -0.1", "key 'write_strength': expected a number in [0, 1], got -0.1" },
      { "dropout: 1.0", "key 'dropout': expected a number in [0, 1), got 1.0" },
      { "memory_size: 0", "key 'memory_size': expected a positive integer, got 0" },
      { "learning_rate: 0", "key 'learning_rate': expected a positive number, got 0" },
      { "learning_rate: .inf", "key 'learning_rate': expected a positive number, got inf" },
      { "train_size_ratio: 1.0", "key 'train_size_ratio': expected a number in (0, 1), got 1.0" },
      { "patience: -1", "key 'patience': expected a non-negative integer, got -1" },
    }
    for _, c in ipairs(cases) do
      local path = write_tmp(c[1] .. "\n")
      assert.equal(path .. ":1: " .. c[2], err_of(dm.config.load, path))
      os.remove(path)
    end
    -- edges that are allowed
    local path = write_tmp("write_strength: 1\ndropout: 0\npatience: 0\n")
    local cfg = dm.config.load(path)
    assert.equal(1.0, cfg.write_strength)
    assert.equal(0.0, cfg.dropout)
    os.remove(path)
  end)

  it("rejects ratios that leave no test split, naming the line", function()
    local path = write_tmp("train_size_ratio: 0.8\nval_size_ratio: 0.2\n")
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ":2: key 'val_size_ratio': .* leaves no test split",
      err_of(dm.config.load, path))
    os.remove(path)
    assert.matches("^%-%-set train_size_ratio=0%.95: key 'train_size_ratio': .* leaves no test split",
      err_of(dm.config.load, nil, { "train_size_ratio=0.95" }))
  end)

  it("types --set values by the schema", function()
    local cfg = dm.config.load(nil, { "batch_size=4", "learning_rate=1e-3", "loss_ignore_pad=false",
      "data_path=123", "tokenizer=char", "memory_embedding_dim=7" })
    assert.equal(4, cfg.batch_size); assert.equal("integer", math.type(cfg.batch_size))
    assert.equal(1e-3, cfg.learning_rate)
    assert.is_false(cfg.loss_ignore_pad)
    assert.equal("123", cfg.data_path)
    assert.equal("char", cfg.tokenizer)
    assert.equal(7, cfg.memory_embedding_dim)
    assert.equal("--set batch_size=abc: expected an integer", err_of(dm.config.load, nil, { "batch_size=abc" }))
    assert.equal("--set batch_size=2.5: expected an integer", err_of(dm.config.load, nil, { "batch_size=2.5" }))
    assert.equal("--set learning_rate=x: expected a number", err_of(dm.config.load, nil, { "learning_rate=x" }))
    assert.equal("--set loss_ignore_pad=yes: expected true or false",
      err_of(dm.config.load, nil, { "loss_ignore_pad=yes" }))
    assert.equal("--set batch_size=-3: key 'batch_size': expected a positive integer, got -3",
      err_of(dm.config.load, nil, { "batch_size=-3" }))
    assert.equal("--set bach_size=3: unknown key 'bach_size' (did you mean 'batch_size'?)",
      err_of(dm.config.load, nil, { "bach_size=3" }))
    assert.equal("--set batch_size: expected key=value", err_of(dm.config.load, nil, { "batch_size" }))
  end)

  it("applies file then --set, and remembers where each value came from", function()
    local path = write_tmp("batch_size: 8\nepochs: 5\n")
    local cfg = dm.config.load(path, { "epochs=7" })
    assert.equal(8, cfg.batch_size)
    assert.equal(7, cfg.epochs)
    assert.equal(path .. ":1", dm.config.source(cfg, "batch_size"))
    assert.equal("--set epochs=7", dm.config.source(cfg, "epochs"))
    assert.equal("default", dm.config.source(cfg, "seed"))
    assert.equal("derived from embedding_dim", dm.config.source(cfg, "memory_embedding_dim"))
    local described = table.concat(dm.config.describe(cfg), "\n")
    assert.matches("batch_size%s+= 8%s+%(" .. path:gsub("%p", "%%%0") .. ":1%)", described)
    assert.equal(8, dm.config.totable(cfg).batch_size)
    assert.is_nil(getmetatable(dm.config.totable(cfg)))
    os.remove(path)
  end)

  it("checks one value against the schema for other files (config.check)", function()
    assert.equal(32, dm.config.check("hidden_size", 32, "space.yaml:3"))
    assert.equal("float", math.type(dm.config.check("dropout", 0, "space.yaml:4")))
    assert.equal("space.yaml:3: key 'hidden_size': expected a positive integer, got 0",
      err_of(dm.config.check, "hidden_size", 0, "space.yaml:3"))
    assert.equal("space.yaml:5: key 'optimizer': expected one of adamw|adam|sgd, got 'lion'",
      err_of(dm.config.check, "optimizer", "lion", "space.yaml:5"))
    assert.equal("space.yaml:6: unknown key 'hiden_size' (did you mean 'hidden_size'?)",
      err_of(dm.config.check, "hiden_size", 1, "space.yaml:6"))
  end)

  it("makes reading an undeclared key an error", function()
    local cfg = dm.config.defaults()
    assert.matches("config has no key 'bach_size' %(did you mean 'batch_size'%?%)",
      err_of(function() return cfg.bach_size end))
  end)

  it("adds a field with one line", function()
    dm.config.field("spec_only_field", "int", 5, "[1,9]", "a field this spec adds")
    assert.equal(5, dm.config.defaults().spec_only_field)
    assert.equal("--set spec_only_field=10: key 'spec_only_field': expected an integer in [1, 9], got 10",
      err_of(dm.config.load, nil, { "spec_only_field=10" }))
    -- leave the schema as the other specs expect it
    dm.config.fields.spec_only_field = nil
    table.remove(dm.config.order)
  end)

  it("accepts a registered tokenizer name", function()
    dm.data.register_tokenizer("spec_split", function(text)
      local t = {}
      for w in text:gmatch("%S+") do t[#t + 1] = w end
      return t
    end)
    assert.equal("spec_split", dm.config.load(nil, { "tokenizer=spec_split" }).tokenizer)
    dm.data.tokenizers.spec_split = nil
    assert.equal("--set tokenizer=spec_split: key 'tokenizer': expected a known tokenizer (char|upstream|"
      .. "whitespace|word, or one registered from Lua by a module loaded first: drlmem -l MODULE SCRIPT ...), got "
      .. "'spec_split'", err_of(dm.config.load, nil, { "tokenizer=spec_split" }))
  end)
end)

describe("dm.cli", function()
  it("parses --config, repeated --set and script options", function()
    local args, cfg = dm.cli.try_parse {
      name = "t.lua",
      argv = { "--config", "configs/tiny.yaml", "--set", "batch_size=4", "--set", "epochs=1", "--resume", "x" },
      options = function(p) p:option("--resume") end,
    }
    assert.is_not_nil(args, cfg)
    assert.equal("x", args.resume)
    assert.equal(4, cfg.batch_size)
    assert.equal(1, cfg.epochs)
    assert.equal(16, cfg.embedding_dim) -- from tiny.yaml
  end)

  it("returns the usage and a message for bad arguments", function()
    local args, msg, usage = dm.cli.try_parse { name = "t.lua", argv = { "--nope" } }
    assert.is_nil(args)
    assert.matches("unknown option '%-%-nope'", msg)
    assert.matches("^Usage: t%.lua", usage)
    args, msg = dm.cli.try_parse { name = "t.lua", argv = { "--set", "batch_size=abc" } }
    assert.is_nil(args)
    assert.equal("--set batch_size=abc: expected an integer", msg)
  end)

  it("passes negative numbers to options that take a value", function()
    local spec = {
      name = "t.lua", config = false,
      options = function(p)
        p:option("--temperature"):convert(tonumber)
        p:option("--set-point"):count("*")
        p:flag("--keep-going")
      end,
    }
    spec.argv = { "--temperature", "-1", "--set-point", "-2.5e-3", "--set-point", "-.5" }
    local args, msg = dm.cli.try_parse(spec)
    assert.is_not_nil(args, msg)
    assert.equal(-1, args.temperature)
    assert.same({ "-2.5e-3", "-.5" }, args.set_point)
    -- a flag takes no value, so a number after it is still a stray option,
    -- and a word that is not a number stays an option
    spec.argv = { "--keep-going", "-1" }
    args, msg = dm.cli.try_parse(spec)
    assert.is_nil(args)
    assert.matches("unknown option '%-1'", msg)
    spec.argv = { "--temperature", "-x" }
    args, msg = dm.cli.try_parse(spec)
    assert.is_nil(args)
    assert.matches("unknown option '%-x'", msg)
  end)

  it("exits with status 2 and one line for a bad config key, without the usage", function()
    local lua = os.getenv("LUA") or "lua5.4"
    local script = write_tmp([[
      local dm = require "drlmem"
      dm.cli.parse { name = "demo.lua", argv = { "--set", "bach_size=3" } }
      print("not reached")
    ]])
    local errfile = os.tmpname()
    local p = io.popen(lua .. " " .. script .. " 2>" .. errfile .. "; echo rc=$?")
    local out = p:read("a")
    p:close()
    local f = io.open(errfile)
    local err = f:read("a")
    f:close()
    os.remove(script)
    os.remove(errfile)
    assert.matches("rc=2", out)
    assert.not_matches("not reached", out)
    assert.not_matches("Usage", err)
    assert.are.equal("Error: --set bach_size=3: unknown key 'bach_size' (did you mean 'batch_size'?)\n", err)
  end)
end)
