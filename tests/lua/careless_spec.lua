-- What a careless user meets through the library: errors about a file start
-- with that file (not with the Lua line that read it), writes are
-- crash-safe and checked, messages say what to do.
local dm = require "drlmem"
local err_of = require("helpers").err_of

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function tmp(name) return dir .. "/" .. name end
local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

teardown(function() os.execute("rm -rf " .. dir) end)

describe("file errors", function()
  it("a YAML error raised under a Lua caller starts with the file, not the caller's line", function()
    local p = tmp("tab.yaml")
    write(p, "epochs: 2\n\tbatch_size: 4\n")
    -- called from a Lua function, as config.load does: no "careless_spec.lua:N:" in front
    local msg = err_of(function() return dm.yaml.load(p) end)
    assert.equal(p .. ":2:", msg:sub(1, #p + 3))
    assert.matches("YAML indents with spaces only", msg, 1, true)
    write(p, "a: 1\na: 2\n")
    assert.equal(p .. ":2: duplicate key 'a' (first at line 1)", err_of(function() return dm.yaml.load(p) end))
  end)

  it("a config with a syntax error reads as FILE:LINE through the command line", function()
    local p = tmp("bad.yaml")
    write(p, "epochs: 2\n  batch_size: 4\n")
    local args, msg = dm.cli.try_parse { name = "t", argv = { "--config", p } }
    assert.is_nil(args)
    assert.equal(p .. ":2:", msg:sub(1, #p + 3))
  end)

  it("dm.write_file replaces a file atomically and reports failures by path", function()
    local p = tmp("out.txt")
    dm.write_file(p, "first")
    dm.write_file(p, "second\n")
    assert.equal("second\n", read(p))
    local missing = tmp("no/such/folder/x.txt")
    local msg = err_of(function() dm.write_file(missing, "x") end)
    assert.equal("write " .. missing, msg:sub(1, #missing + 6))
    assert.matches("No such file or directory", msg, 1, true)
    -- the rename fails (a non-empty folder holds the name): the folder is untouched, no temporary is left
    local d = tmp("isdir")
    assert(os.execute("mkdir -p " .. d .. " && echo keep > " .. d .. "/inner"))
    err_of(dm.write_file, d, "x")
    assert.equal("keep\n", read(d .. "/inner"))
    assert.is_nil(read(d .. ".tmp"))
    assert.matches("string expected, got nil", err_of(dm.write_file, p, nil), 1, true)
  end)

  it("log.write_file creates the folder (mkdir -p)", function()
    local p = tmp("a/b/c.txt")
    assert.equal(p, dm.log.write_file(p, "hello"))
    assert.equal("hello", read(p))
  end)

  it("SVG:save creates the folder and names the path on failure", function()
    local svg = dm.plot.SVG(10, 10)
    local p = tmp("fig/sub/x.svg")
    svg:save(p)
    assert.is_true(dm.plot.check_svg(read(p)))
    assert.equal("plot: cannot create folder '/proc/drlmem-none': No such file or directory",
      err_of(svg.save, svg, "/proc/drlmem-none/x.svg"))
  end)

  it("a metrics line that cannot be written is an error, not a silent loss", function()
    -- /dev/full accepts the open and the buffered write; the error shows at close
    local f = io.open("/dev/full", "a")
    if not f then return end
    f:close()
    local lg = dm.log.open(tmp("run/t.log"), { append = true, echo = false, metrics = "/dev/full" })
    assert.matches("^cannot write '/dev/full': .*No space left on device", err_of(lg.metrics, lg, { epoch = 1 }))
    lg:close()
  end)

  it("checkpoint.save into a missing folder: the path and reason, no Lua position", function()
    local net = dm.Controller { vocab_size = 5, embedding_dim = 4, memory_size = 3, hidden_size = 4, num_layers = 1 }
    local p = tmp("nope/ck.safetensors")
    local msg = err_of(dm.checkpoint.save, p, net)
    assert.equal("checkpoint.save: write " .. p, msg:sub(1, #p + 23))
  end)
end)

describe("data file messages", function()
  local function cfg_for(path)
    local cfg = dm.config.defaults()
    cfg.data_path = path
    return cfg
  end

  it("one sample: no negative split size in the message", function()
    local p = tmp("one.txt")
    write(p, "once upon a time\n")
    local msg = err_of(dm.data.load, cfg_for(p))
    assert.matches("gives only 1 sample: too few", msg, 1, true)
    assert.matches("give 0/1/1%)$", msg)
    assert.is_nil(msg:find("-1", 1, true))
  end)

  it("latin-1 text gets the iconv command, a binary file a question", function()
    local p = tmp("latin1.txt")
    write(p, "le caf\xe9\nun th\xe9\n")
    assert.matches("iconv -f latin1 -t utf-8 " .. p, err_of(dm.data.load, cfg_for(p)), 1, true)
    local b = tmp("bin.dat")
    write(b, "\x7fELF\0\0\0\1\xd0\xff")
    assert.matches("(a binary file?)", err_of(dm.data.load, cfg_for(b)), 1, true)
  end)
end)

describe("methods called with '.'", function()
  it("say how to call them", function()
    local t = dm.zeros(3)
    assert.matches("sum: argument self: expected Tensor, got no value (call it as t:sum(...), not t.sum(...))",
      err_of(t.sum), 1, true)
    assert.matches("(call it as t:fill(...), not t.fill(...))", err_of(t.fill, 1), 1, true)
    local g = dm.Generator(1)
    assert.matches("random: argument self: expected Generator, got no value (call it as g:random(...)",
      err_of(g.random), 1, true)
    -- a wrong non-self argument keeps the plain message
    assert.equal("matmul: argument 2: expected Tensor, got no value", err_of(dm.matmul, t):gsub("^[^:]*:%d+: ", ""))
  end)
end)
