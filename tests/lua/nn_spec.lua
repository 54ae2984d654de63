-- nn_spec.lua: the Lua face of the layers (dm.nn): shapes, parameter names
-- and order, views that write through to the module, gradient accumulation
-- and zero_grad, train/eval dropout, a finite-difference check of the GRU
-- through the Lua surface, and the text of the errors. The
-- numerics themselves are proven in tests/c/test_layers.c (finite
-- differences) and tests/c/test_parity.c (PyTorch).
local dm = require "drlmem"

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function has(s, sub)
  assert(s:find(sub, 1, true), ("expected %q to contain %q"):format(s, sub))
end

local function names(m)
  local t = {}
  for i, p in ipairs(m:parameters()) do t[i] = p.name end
  return t
end

describe("dm.nn.Linear", function()
  it("maps (N,I) and (B,T,I) and names its parameters as PyTorch", function()
    dm.manual_seed(1)
    local l = dm.nn.Linear(8, 4)
    assert.are.equal("Linear(in=8, out=4)", tostring(l))
    assert.are.same({4}, l:forward(dm.randn(8)):shape())
    assert.are.same({5, 4}, l:forward(dm.randn(5, 8)):shape())
    assert.are.same({2, 3, 4}, l:forward(dm.randn(2, 3, 8)):shape())
    assert.are.same({"weight", "bias"}, names(l))
    local p = l:parameters()
    assert.are.same({4, 8}, p[1].value:shape())
    assert.are.same({4}, p[2].value:shape())
    assert.are.same({4, 8}, p[1].grad:shape())
    local nb = dm.nn.Linear(8, 4, {bias = false})
    assert.are.equal("Linear(in=8, out=4, bias=false)", tostring(nb))
    assert.are.same({"weight"}, names(nb))
  end)

  it("computes x W^T + b through parameter views that write into the module", function()
    local l = dm.nn.Linear(3, 2)
    local p = l:parameters()
    p[1].value:fill(1)
    p[2].value:fill(0.5)
    p[1].value:set(2, 2, 3) -- weight[2][3] = 2
    local y = l:forward(dm.tensor({{1, 2, 3}}))
    assert.are.near(6.5, y:get(1, 1), 1e-6)
    assert.are.near(9.5, y:get(1, 2), 1e-6)
  end)

  it("initialises as PyTorch by default and as the seed model with kaiming", function()
    dm.manual_seed(3)
    local d = dm.nn.Linear(16, 32)
    local w, b = d:parameters()[1].value, d:parameters()[2].value
    assert.is_true(w:abs():max() <= 0.25 and w:abs():max() > 0.2)
    assert.is_true(b:abs():max() <= 0.25 and b:abs():max() > 0)
    local k = dm.nn.Linear(6, 50, {init = "kaiming"})
    w, b = k:parameters()[1].value, k:parameters()[2].value
    assert.is_true(w:abs():max() <= 1.0 and w:abs():max() > 0.9) -- sqrt(6/6)
    assert.are.equal(0, b:abs():max())
    has(errmsg(dm.nn.Linear, 2, 2, {init = "xavier"}), 'expected "default" or "kaiming", got "xavier"')
  end)

  it("accumulates gradients in backward until zero_grad", function()
    local l = dm.nn.Linear(3, 2)
    local x = dm.randn(4, 3)
    l:forward(x)
    local dy = dm.ones(4, 2)
    local dx = l:backward(dy)
    assert.are.same({4, 3}, dx:shape())
    local g = l:parameters()[2].grad
    assert.are.near(4, g:get(1), 1e-6) -- bias grad = column sums of dy
    l:backward(dy)
    assert.are.near(8, g:get(2), 1e-6)
    local gw = l:parameters()[1].grad
    assert.are.near(4 * x:sum(), gw:sum(), 1e-4) -- 2 rows, 2 backwards: 4 * sum(x)
    assert.is_true(l:zero_grad() == l)
    assert.are.equal(0, g:abs():max())
    assert.are.equal(0, gw:abs():max())
  end)

  it("names the layer and both shapes on a mismatch", function()
    local l = dm.nn.Linear(8, 4)
    has(errmsg(l.forward, l, dm.randn(2, 5)),
        "Linear: input of shape 2x5 does not match weight 4x8 (last dim 5 != 8)")
    has(errmsg(l.backward, l, dm.ones(2, 4)), "no forward to go back through")
    l:forward(dm.randn(3, 8))
    has(errmsg(l.backward, l, dm.ones(2, 4)),
        "Linear:backward: gradient of shape 2x4 does not match the forward's output 3x4")
    has(errmsg(l.forward, l, "x"), "Linear: argument x: expected Tensor, got string")
    has(errmsg(dm.nn.Linear, 0, 3), "Linear: argument in_features: expected a positive integer, got 0")
  end)

  it("keeps the module alive while a parameter view lives", function()
    local w = dm.nn.Linear(2, 2):parameters()[1].value
    collectgarbage(); collectgarbage()
    w:fill(3)
    assert.are.equal(12, w:sum())
  end)
end)

describe("dm.nn.Embedding", function()
  it("looks up 0-based ids, (B,T) -> (B,T,E)", function()
    dm.manual_seed(2)
    local e = dm.nn.Embedding(20, 8)
    assert.are.equal("Embedding(vocab=20, dim=8)", tostring(e))
    assert.are.same({"weight"}, names(e))
    local w = e:parameters()[1].value
    assert.are.same({20, 8}, w:shape())
    local y = e:forward(dm.tensor({{0, 19, 3}, {3, 3, 0}}, "int32"))
    assert.are.same({2, 3, 8}, y:shape())
    for j = 1, 8 do
      assert.are.equal(w:get(1, j), y:get(1, 1, j))  -- id 0 is row 1 in Lua
      assert.are.equal(w:get(20, j), y:get(1, 2, j))
    end
    -- float32 ids holding whole numbers are accepted too
    assert.are.same({3, 8}, e:forward(dm.tensor({1, 2, 3})):shape())
  end)

  it("is drawn from N(0, 0.1^2) like the seed model", function()
    dm.manual_seed(5)
    local w = dm.nn.Embedding(100, 50):parameters()[1].value
    local sd = math.sqrt((w * w):sum() / 5000)
    assert.is_true(math.abs(sd - 0.1) < 0.01, "std " .. sd)
  end)

  it("adds the rows of dy into the used rows and returns nil", function()
    local e = dm.nn.Embedding(5, 2)
    e:forward(dm.tensor({1, 1, 4}, "int32"))
    assert.is_nil(e:backward(dm.ones(3, 2)))
    e:backward(dm.ones(3, 2))
    local g = e:parameters()[1].grad
    assert.are.equal(4, g:get(2, 1)) -- id 1 twice, two backwards
    assert.are.equal(2, g:get(5, 2))
    assert.are.equal(0, g:get(1, 1))
    e:zero_grad()
    assert.are.equal(0, g:abs():max())
  end)

  it("names the bad id and the vocabulary size", function()
    local e = dm.nn.Embedding(20, 4)
    local m = errmsg(e.forward, e, dm.tensor({1, 20}, "int32"))
    has(m, "token id 20"); has(m, "vocabulary size 20")
    m = errmsg(e.forward, e, dm.tensor({-1, 2}, "int32"))
    has(m, "token id -1"); has(m, "vocabulary size 20")
    has(errmsg(e.forward, e, dm.tensor({1.5})), "token id 1.5 at position 0 is not an integer")
  end)
end)

describe("dm.nn.GELU", function()
  it("is the exact erf form, forward and backward", function()
    local g = dm.nn.GELU()
    assert.are.equal("GELU()", tostring(g))
    assert.are.same({}, g:parameters())
    local y = g:forward(dm.tensor({{1, -1, 0}}))
    assert.are.near(0.8413447, y:get(1, 1), 1e-6)
    assert.are.near(-0.1586553, y:get(1, 2), 1e-6)
    local dx = g:backward(dm.ones(1, 3))
    assert.are.same({1, 3}, dx:shape())
    assert.are.near(0.5, dx:get(1, 3), 1e-7)              -- Phi(0)
    assert.are.near(1.0833155, dx:get(1, 1), 1e-6)        -- Phi(1) + phi(1)
  end)
end)

describe("dm.nn.Dropout", function()
  it("drops about p in training, scales kept values by 1/(1-p), and is the identity in eval", function()
    dm.manual_seed(4)
    local d = dm.nn.Dropout(0.3)
    assert.are.equal("Dropout(p=0.3)", tostring(d))
    assert.is_true(d:is_training())
    local x = dm.ones(100, 100)
    local y = d:forward(x)
    local zeros, kept = 0, 0
    for _, row in ipairs(y:totable()) do
      for _, v in ipairs(row) do
        if v == 0 then zeros = zeros + 1 else
          kept = kept + 1
          assert.are.near(1 / 0.7, v, 1e-6)
        end
      end
    end
    assert.is_true(zeros > 2700 and zeros < 3300, "dropped " .. zeros)
    -- backward routes dy through the same mask
    local dx = d:backward(dm.ones(100, 100))
    assert.are.near(y:sum(), dx:sum(), 1e-2)
    assert.is_true(d:eval() == d)
    assert.is_false(d:is_training())
    local z = dm.randn(3, 4)
    assert.are.equal(0, (d:forward(z) - z):abs():max())
    assert.are.equal(0, (d:backward(z) - z):abs():max())
    d:train()
    assert.is_true(d:is_training())
    has(errmsg(dm.nn.Dropout, 1.5), "Dropout: p must be in [0, 1], got 1.5")
  end)
end)

describe("dm.nn.GRU", function()
  it("runs batch-first (B,T,I) -> (B,T,H) and returns h_n (L,B,H)", function()
    dm.manual_seed(6)
    local g = dm.nn.GRU(8, 12, 2)
    assert.are.equal("GRU(input=8, hidden=12, layers=2)", tostring(g))
    assert.are.same({"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                     "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"}, names(g))
    local p = g:parameters()
    assert.are.same({36, 8}, p[1].value:shape())
    assert.are.same({36, 12}, p[5].value:shape())
    assert.are.same({36}, p[8].value:shape())
    local bound = 1 / math.sqrt(12)
    for _, q in ipairs(p) do assert.is_true(q.value:abs():max() <= bound) end
    local x = dm.randn(3, 5, 8)
    local y, hn = g:forward(x)
    assert.are.same({3, 5, 12}, y:shape())
    assert.are.same({2, 3, 12}, hn:shape())
    for j = 1, 12 do assert.are.equal(y:get(2, 5, j), hn:get(2, 2, j)) end
    local dx = g:backward(dm.ones(3, 5, 12))
    assert.are.same({3, 5, 8}, dx:shape())
    local gsum = p[4].grad:abs():sum()
    assert.is_true(gsum > 0)
    g:backward(dm.ones(3, 5, 12))
    assert.are.near(2 * gsum, p[4].grad:abs():sum(), 1e-4 * gsum)
    g:zero_grad()
    assert.are.equal(0, p[4].grad:abs():max())
    -- one unbatched sequence (T,I)
    local y1, h1 = g:forward(dm.randn(5, 8))
    assert.are.same({5, 12}, y1:shape())
    assert.are.same({2, 12}, h1:shape())
  end)

  it("passes a finite-difference check of the input and every parameter gradient", function()
    -- two layers, 4 timesteps, so the gradient flows back through time and
    -- between layers; the loss sum(y .* R) gives every output its own weight
    dm.manual_seed(11)
    local g = dm.nn.GRU(3, 4, 2)
    local x = dm.randn(2, 4, 3)
    local R = dm.randn(2, 4, 4)
    local function loss(v)
      local y = g:forward(v)
      return (y * R):sum()
    end
    local err = dm.checkgrad(function(v)
      local l = loss(v)
      g:zero_grad()
      return l, g:backward(R)
    end, x)
    assert.is_true(err < 3e-3, "GRU input gradient: relative error " .. err)
    for _, p in ipairs(g:parameters()) do
      local e = dm.checkgrad(function()
        local l = loss(x)
        g:zero_grad()
        g:backward(R)
        return l, p.grad
      end, p.value)
      assert.is_true(e < 3e-3, ("GRU %s gradient: relative error %g"):format(p.name, e))
    end
  end)

  it("names the layer and the shapes on a bad input", function()
    local g = dm.nn.GRU(4, 3)
    assert.are.equal("GRU(input=4, hidden=3, layers=1)", tostring(g))
    has(errmsg(g.forward, g, dm.randn(2, 3, 5)),
        "GRU: input of shape 2x3x5 does not match (B,T,4) or (T,4) (last dim 5 != 4)")
    has(errmsg(g.forward, g, dm.randn(4)), "GRU: expected an input of shape (B,T,4) or (T,4), got 4")
  end)
end)

describe("dm.nn.cross_entropy", function()
  it("is log(V) on equal logits, with dlogits (p - onehot)/N", function()
    local x = dm.zeros(2, 3, 5)
    local t = dm.tensor({{1, 2, 0}, {4, 0, 3}}, "int32")
    local loss, dl, n = dm.nn.cross_entropy(x, t)
    assert.are.near(math.log(5), loss, 1e-6)
    assert.are.equal(6, n)
    assert.are.same({2, 3, 5}, dl:shape())
    assert.are.near((0.2 - 1) / 6, dl:get(1, 1, 2), 1e-7)
    assert.are.near(0.2 / 6, dl:get(1, 1, 1), 1e-7)
  end)

  it("skips ignore_index targets and scales the gradient", function()
    local x = dm.randn(6, 4)
    local t = dm.tensor({0, 1, 0, 2, 3, 0}, "int32")
    local full, _, n_all = dm.nn.cross_entropy(x, t)
    local loss, dl, n = dm.nn.cross_entropy(x, t, {ignore_index = 0, scale = 0.5})
    assert.are.equal(6, n_all)
    assert.are.equal(3, n)
    assert.are_not.equal(full, loss)
    for j = 1, 4 do assert.are.equal(0, dl:get(1, j)) end
    -- each counted row of dlogits sums to 0
    assert.is_true(math.abs(dl:sum()) < 1e-6)
    local all, dl0, n0 = dm.nn.cross_entropy(x, dm.zeros(6, "int32"), {ignore_index = 0})
    assert.is_true(all ~= all) -- NaN: nothing counted
    assert.are.equal(0, n0)
    assert.are.equal(0, dl0:abs():max())
  end)

  it("stays finite for huge logits", function()
    local loss, dl = dm.nn.cross_entropy(dm.tensor({{1e4, 0, -1e4}}), dm.tensor({1}, "int32"))
    assert.are.near(1e4, loss, 1e-2)
    assert.is_true(dl:abs():max() <= 1)
  end)

  it("names a target out of range and mismatched shapes", function()
    local m = errmsg(dm.nn.cross_entropy, dm.randn(3, 5), dm.tensor({1, 2, 5}, "int32"))
    has(m, "target 5"); has(m, "vocabulary size 5")
    has(errmsg(dm.nn.cross_entropy, dm.randn(3, 5), dm.tensor({1, 2}, "int32")),
        "cross_entropy: targets of shape 2 do not match logits 3x5 (expected 3)")
  end)
end)

describe("dm.nn lifetime", function()
  it("refuses to be a to-be-closed variable, so no view outlives its arenas", function()
    -- __close would free the parameter arenas under live views; the
    -- module has none, so Lua refuses the <close> declaration up front.
    local chunk = assert(load([[
      local u
      do local m <close> = dm.nn.Linear(2, 2); u = m end
      return u:forward(dm.zeros(1, 2))
    ]], "close_test", "t", setmetatable({dm = dm}, {__index = _G})))
    local ok, err = pcall(chunk)
    assert.is_false(ok)
    assert.matches("non%-closable value", err)
  end)
end)

-- dm.nn.LSTM is the controller's LSTM part run over the module's arenas:
-- torch.nn.LSTM's outputs, h_n and gradients (tests/fixtures/lstm, made by
-- tests/fixtures/make_lstm.py) to 1e-5 of each tensor's scale.
describe("dm.nn.LSTM", function()
  local helpers = require "helpers"
  local fx = dm.json.decode(helpers.slurp("tests/fixtures/lstm/lstm.json")).two_layers
  local d = fx.dims

  local function close(got, want, what)
    local g = helpers.flat(got)
    assert.are.equal(#want, #g, what)
    local scale = 0
    for i = 1, #want do scale = math.max(scale, math.abs(want[i])) end
    for i = 1, #want do
      assert(math.abs(g[i] - want[i]) <= 1e-5 * scale, ("%s[%d]: %g vs %g"):format(what, i, g[i], want[i]))
    end
  end

  local function tensor(flatv, shape)
    local t = dm.zeros(table.unpack(shape))
    local v = t:view(#flatv)
    for i = 1, #flatv do v:set(flatv[i], i) end
    return t
  end

  it("matches torch.nn.LSTM: outputs, h_n and every gradient", function()
    local m = dm.nn.LSTM(d.In, d.H, d.L)
    assert.are.equal("LSTM(input=4, hidden=6, layers=2)", tostring(m))
    assert.are.same(fx.names, names(m))
    for _, p in ipairs(m:parameters()) do
      local src = tensor(fx.params[p.name], p.value:shape())
      p.value:copy(src)
    end
    local x = tensor(fx.x, {d.B, d.T, d.In})
    local y, hn = m:forward(x)
    close(y, fx.out, "out")
    close(hn, fx.h_n, "h_n")
    local dx = m:backward(tensor(fx.R, {d.B, d.T, d.H}))
    close(dx, fx.dx, "dx")
    for _, p in ipairs(m:parameters()) do close(p.grad, fx.grads[p.name], p.name) end
    assert.are.same({24, 4}, m:parameters()[1].value:shape()) -- 4H gate rows
  end)

  it("names the layer and the shapes on a bad input", function()
    local m = dm.nn.LSTM(4, 3)
    has(errmsg(m.forward, m, dm.randn(2, 3, 5)),
        "LSTM: input of shape 2x3x5 does not match (B,T,4) or (T,4) (last dim 5 != 4)")
    has(errmsg(m.backward, m, dm.randn(2, 3, 3)), "no forward to go back through")
  end)
end)
