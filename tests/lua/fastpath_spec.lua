-- fastpath_spec.lua: the allocation-free forms that the training loop and
-- scripts/bench.lua use: net:forward(tokens, out), dm.nn.cross_entropy with
-- {out = t} and {grad = false}, and train.buffers(). Each must give
-- exactly (bit for bit) what the allocating form gives, and refuse a
-- buffer of the wrong shape or one that overlaps the logits.
local dm = require "drlmem"
local train = require "drlmem.train"

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function has(s, sub)
  assert(s:find(sub, 1, true), ("expected %q to contain %q"):format(s, sub))
end

local function same(a, b)
  assert.same(a:shape(), b:shape())
  local fa, fb = a:contiguous():reshape({a:numel()}), b:contiguous():reshape({b:numel()})
  for i = 1, a:numel() do
    if fa:get(i) ~= fb:get(i) then
      error(("element %d differs: %.9g vs %.9g"):format(i, fa:get(i), fb:get(i)))
    end
  end
end

local V, B, T = 23, 3, 5

local function batch(seed)
  local g = dm.Generator(seed)
  local x, y = dm.zeros({B, T}, "int32"), dm.zeros({B, T}, "int32")
  for b = 1, B do
    for t = 1, T do
      x:set(g:random(V) - 1, b, t)
      y:set(t == T and 0 or g:random(V) - 1, b, t)
    end
  end
  return x, y
end

local function net()
  dm.manual_seed(3)
  local n = dm.Controller{vocab_size = V, embedding_dim = 8, memory_size = 6, hidden_size = 12,
                          num_layers = 2, dropout = 0.0}
  n:eval()
  return n
end

describe("net:forward(tokens, out)", function()
  it("copies the logits into out, returns out, and matches the fresh copy", function()
    local x = batch(1)
    local a, b = net(), net()
    local fresh = a:forward(x)
    local out = dm.full({B, T, V}, 7.0, "float32")
    local r = b:forward(x, out)
    assert.is_true(rawequal(r, out) or r == out)
    same(fresh, out)
    -- reused: a second batch overwrites it completely
    local x2 = batch(2)
    same(a:forward(x2), b:forward(x2, out))
  end)

  it("refuses a wrong shape, dtype or a non-contiguous buffer", function()
    local x = batch(1)
    local n = net()
    has(errmsg(n.forward, n, x, dm.zeros({B, T, V + 1}, "float32")), "out must be a contiguous float32 tensor of shape 3x5x23")
    has(errmsg(n.forward, n, x, dm.zeros({B, T, V}, "int32")), "float32")
    local t = dm.zeros({V, T, B}, "float32"):transpose(1, 3)
    has(errmsg(n.forward, n, x, t), "not contiguous")
  end)
end)

describe("dm.nn.cross_entropy out and grad options", function()
  local logits = dm.rand({B, T, V}) * 8
  local _, y = batch(4)

  it("{out = t} writes the same dlogits into t (overwriting it) and returns t", function()
    local l1, d1, c1 = dm.nn.cross_entropy(logits, y, {ignore_index = 0, scale = 0.5})
    local out = dm.full({B, T, V}, 3.0, "float32")
    local l2, d2, c2 = dm.nn.cross_entropy(logits, y, {ignore_index = 0, scale = 0.5, out = out})
    assert.equal(l1, l2)
    assert.equal(c1, c2)
    assert.is_true(rawequal(d2, out) or d2 == out)
    same(d1, out)
  end)

  it("{grad = false} gives the same loss and count and no dlogits", function()
    local l1, _, c1 = dm.nn.cross_entropy(logits, y)
    local l2, d2, c2 = dm.nn.cross_entropy(logits, y, {grad = false})
    assert.equal(l1, l2)
    assert.equal(c1, c2)
    assert.is_nil(d2)
  end)

  it("refuses an out of another shape, overlapping the logits, or a non-boolean grad", function()
    has(errmsg(dm.nn.cross_entropy, logits, y, {out = dm.zeros({B, T, V - 1}, "float32")}),
      "option out has shape")
    has(errmsg(dm.nn.cross_entropy, logits, y, {out = logits}), "shares memory with the logits")
    has(errmsg(dm.nn.cross_entropy, logits, y, {grad = 1}), "option grad: expected a boolean")
  end)
end)

describe("train.buffers", function()
  it("reuses a buffer per name while the batch shape holds, and reallocates when it changes", function()
    local buf = train.buffers()
    local x = dm.zeros({B, T}, "int32")
    local a = buf("logits", x, V)
    assert.same({B, T, V}, a:shape())
    assert.equal(a, buf("logits", x, V))
    assert.are_not.equal(a, buf("dlogits", x, V))
    local b = buf("logits", dm.zeros({B - 1, T}, "int32"), V)
    assert.same({B - 1, T, V}, b:shape())
    assert.are_not.equal(a, b)
  end)
end)
