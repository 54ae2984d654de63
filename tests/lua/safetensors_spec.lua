-- safetensors_spec.lua: dm.save_safetensors / dm.load_safetensors round
-- trips (both dtypes, scalars, non-contiguous views, list and map forms),
-- determinism of saves, the PyTorch-written fixture, and the error texts
-- for missing, truncated and malformed files and for bad metadata.
local dm = require "drlmem"
local slurp, spit = require("helpers").slurp, require("helpers").spit

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
local function tmp(name) return dir .. "/" .. name end



describe("safetensors", function()
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("round-trips float32 and int32 tensors with metadata", function()
    local w = dm.tensor({{1.5, -2.25, 3}, {0.125, 1e-30, -7}})
    local ids = dm.tensor({3, -1, 2147483647}, "int32")
    local s = dm.tensor(2.5)
    local p = tmp("a.safetensors")
    dm.save_safetensors(p, {w = w, ids = ids, s = s}, {format = "drlmem-1", note = "hé"})
    local t, meta, names = dm.load_safetensors(p)
    assert.are.same({"ids", "s", "w"}, names) -- the map form is written sorted
    assert.are.same({format = "drlmem-1", note = "hé"}, meta)
    assert.are.equal("float32", t.w:dtype())
    assert.are.equal("int32", t.ids:dtype())
    assert.are.same({2, 3}, t.w:shape())
    assert.are.same(w:totable(), t.w:totable())
    assert.are.same({3, -1, 2147483647}, t.ids:totable())
    assert.are.equal(0, t.s:dim())
    assert.are.equal(2.5, t.s:get())
  end)

  it("gives byte-identical files for save -> load -> save", function()
    local a, b = tmp("one.safetensors"), tmp("two.safetensors")
    dm.save_safetensors(a, {{"z", dm.ones(2, 2)}, {"a", dm.arange(0, 5, 1, "int32")}},
                        {config = dm.json.encode({lr = 0.01, layers = 2})})
    local t, meta, names = dm.load_safetensors(a)
    assert.are.same({"z", "a"}, names) -- the list form keeps its order
    local list = {}
    for i, n in ipairs(names) do list[i] = {n, t[n]} end
    dm.save_safetensors(b, list, meta)
    assert.are.equal(slurp(a), slurp(b))
    -- the map form is deterministic whatever the table's internal order
    dm.save_safetensors(a, t, meta)
    dm.save_safetensors(b, {a = t.a, z = t.z}, {config = meta.config})
    assert.are.equal(slurp(a), slurp(b))
  end)

  it("saves non-contiguous views by value", function()
    local m = dm.tensor({{1, 2, 3}, {4, 5, 6}})
    local mt = m:t()
    assert.is_false(mt:is_contiguous())
    local p = tmp("view.safetensors")
    dm.save_safetensors(p, {mt = mt, col = m:select(2, 2)})
    local t = dm.load_safetensors(p)
    assert.are.same({{1, 4}, {2, 5}, {3, 6}}, t.mt:totable())
    assert.are.same({2, 5}, t.col:totable())
  end)

  it("reads the checkpoint PyTorch's reference wrote", function()
    local t, meta, names = dm.load_safetensors("tests/fixtures/export/tiny.safetensors")
    assert.are.equal(22, #names)
    assert.are.equal("memory.keys", names[1])
    assert.are.same({20, 8}, t["embedding.weight"]:shape())
    assert.are.same({36, 12}, t["rnn.weight_hh_l0"]:shape())
    assert.are.equal("drlmem-1", meta.format)
    local vocab = dm.json.decode(meta.vocab, "vocab")
    assert.are.equal("<pad>", vocab[1])
    assert.are.equal(20, #vocab)
    local cfg = dm.json.decode(meta.config)
    assert.are.equal(8, cfg.embedding_dim)
    assert.are.equal(0.3, cfg.dropout)
    assert.are.equal("gelu", cfg.output_activation)
  end)

  it("names the file for a missing or truncated file", function()
    local missing = tmp("nope.safetensors")
    local ok, err = pcall(dm.load_safetensors, missing)
    assert.is_false(ok)
    assert.matches(missing, err, 1, true)
    assert.matches("No such file or directory", err, 1, true)

    local good = tmp("good.safetensors")
    dm.save_safetensors(good, {x = dm.ones(4, 4)})
    local bytes = slurp(good)
    local cut = tmp("cut.safetensors")
    spit(cut, bytes:sub(1, #bytes - 10))
    ok, err = pcall(dm.load_safetensors, cut)
    assert.is_false(ok)
    assert.matches(cut, err, 1, true)
    assert.matches("tensor 'x'", err, 1, true)
    assert.matches("beyond the data section", err, 1, true)

    spit(cut, bytes:sub(1, 5))
    ok, err = pcall(dm.load_safetensors, cut)
    assert.is_false(ok)
    assert.matches("shorter than the 8%-byte header length", err)

    spit(cut, bytes:sub(1, 20))
    ok, err = pcall(dm.load_safetensors, cut)
    assert.is_false(ok)
    assert.matches("exceeds the file size", err, 1, true)
  end)

  it("rejects bad metadata and bad tensors, naming the key", function()
    local p = tmp("bad.safetensors")
    local ok, err = pcall(dm.save_safetensors, p, {x = dm.ones(2)}, {step = 3})
    assert.is_false(ok)
    assert.matches("metadata 'step': value is a number, expected a string", err, 1, true)
    ok, err = pcall(dm.save_safetensors, p, {x = dm.ones(2)}, {[1] = "v"})
    assert.is_false(ok)
    assert.matches("metadata: key of type number", err, 1, true)
    ok, err = pcall(dm.save_safetensors, p, {x = 5})
    assert.is_false(ok)
    assert.matches("tensor 'x': expected Tensor, got number", err, 1, true)
    ok, err = pcall(dm.save_safetensors, p, {{"x", dm.ones(1)}, {"x", dm.ones(1)}})
    assert.is_false(ok)
    assert.matches("'x' appears twice", err, 1, true)
    ok, err = pcall(dm.save_safetensors, p, {{"x", dm.ones(1)}, y = dm.ones(1)})
    assert.is_false(ok)
    assert.matches("mixes list entries", err, 1, true)
    -- nothing was written by the failed saves
    assert.is_nil(io.open(p, "rb"))
  end)

  it("keeps the previous file when a save fails", function()
    local p = tmp("keep.safetensors")
    dm.save_safetensors(p, {x = dm.ones(3)})
    local before = slurp(p)
    local ok, err = pcall(dm.save_safetensors, tmp("no/such/dir/f.safetensors"), {x = dm.ones(3)})
    assert.is_false(ok)
    assert.matches("no/such/dir/f.safetensors", err, 1, true)
    ok = pcall(dm.save_safetensors, p, {x = dm.ones(3)}, {bad = true})
    assert.is_false(ok)
    assert.are.equal(before, slurp(p))
  end)
end)
