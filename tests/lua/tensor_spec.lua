-- tensor_spec.lua: the Lua surface of dm.Tensor and of the random
-- generators: constructors, indexing, views, arithmetic and metamethods,
-- reductions, matmul, printing, and the text of every class of error.
local dm = require "drlmem"

-- Runs f and returns its error message (failing the test when f succeeds),
-- without the "file:line: " that luaL_error prefixes when the failing
-- function was called from Lua code (an operator, t[i]).
local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return (tostring(msg):gsub("^[^:\n]+:%d+: ", ""))
end

local function same(t, expected)
  assert.are.same(expected, t:totable())
end

describe("dm.Tensor constructors", function()
  it("makes zeros, ones and full from varargs or a table, with a dtype", function()
    local z = dm.zeros(2, 3)
    assert.are.same({2, 3}, z:shape())
    assert.are.equal("float32", z:dtype())
    same(z, {{0, 0, 0}, {0, 0, 0}})
    same(dm.ones{2}, {1, 1})
    local i = dm.ones(3, "int32")
    assert.are.equal("int32", i:dtype())
    assert.are.equal(math.type(i[1]), "integer")
    same(dm.full({2, 2}, 7.5), {{7.5, 7.5}, {7.5, 7.5}})
    same(dm.full(3, -2, "int32"), {-2, -2, -2})
    assert.are.same({}, dm.zeros():shape())
    assert.are.equal(1, dm.zeros():numel())
  end)

  it("builds tensors from nested tables and numbers", function()
    local t = dm.tensor{{1, 2}, {3, 4}}
    assert.are.same({2, 2}, t:shape())
    same(t, {{1, 2}, {3, 4}})
    local ids = dm.tensor({5, 6, 7}, "int32")
    assert.are.equal("int32", ids:dtype())
    same(ids, {5, 6, 7})
    assert.are.equal(3, dm.tensor(3):totable())
    assert.are.same({0}, dm.tensor{}:shape())
  end)

  it("makes PyTorch-style half-open ranges", function()
    same(dm.arange(4), {0, 1, 2, 3})
    same(dm.arange(1, 3), {1, 2})
    same(dm.arange(0, 1, 0.25), {0, 0.25, 0.5, 0.75})
    assert.are.equal("int32", dm.arange(3, "int32"):dtype())
  end)

  it("draws rand/randn from the seeded global generator", function()
    dm.manual_seed(7)
    local a = dm.randn(3, 4)
    local u = dm.rand{100}
    dm.manual_seed(7)
    assert.is_true(dm.allclose(a, dm.randn(3, 4), 0, 0))
    assert.is_true(dm.allclose(u, dm.rand(100), 0, 0))
    assert.is_true(u:min() >= 0 and u:max() < 1)
    -- a private generator gives its own, repeatable stream
    local g1, g2 = dm.Generator(3), dm.Generator(3)
    assert.is_true(dm.allclose(dm.randn(5, g1), dm.randn(5, g2), 0, 0))
  end)
end)

describe("dm.Tensor shape and elements", function()
  it("answers shape, size, dim, numel, dtype", function()
    local t = dm.zeros(2, 3, 4)
    assert.are.equal(3, t:dim())
    assert.are.equal(24, t:numel())
    assert.are.equal(3, t:size(2))
    assert.are.equal(4, t:size(-1))
    assert.are.same({2, 3, 4}, t:size())
    assert.are.equal(2, #t)
  end)

  it("gets and sets elements 1-based, and indexes with t[i]", function()
    local t = dm.zeros(2, 3)
    t:set(5, 2, 3)
    assert.are.equal(5, t:get(2, 3))
    assert.are.equal(5, t[2][3])
    t[1] = 9 -- fills the row
    same(t, {{9, 9, 9}, {0, 0, 5}})
    local v = dm.arange(4)
    v[2] = 42
    assert.are.equal(42, v[2])
    assert.are.equal("function", type(v.add)) -- methods still resolve
    assert.is_nil(v.no_such_method)
  end)

  it("shares storage between views and their source", function()
    local t = dm.arange(12):reshape(3, 4)
    local row = t[2]               -- select view
    row:fill(-1)
    same(t[2], {-1, -1, -1, -1})
    local col = t:narrow(2, 2, 2)
    col:mul_(0)
    assert.are.equal(0, t:get(1, 2))
    local tr = t:t()
    assert.is_false(tr:is_contiguous())
    tr:set(100, 4, 3)
    assert.are.equal(100, t:get(3, 4))
    local s = t:select(2, 1)
    same(s, {0, -1, 8})
    local v = t:view(-1)
    assert.are.same({12}, v:shape())
    v[1] = 77
    assert.are.equal(77, t:get(1, 1))
    -- clone and contiguous copy
    local c = tr:contiguous()
    assert.is_true(c:is_contiguous())
    c:fill(0)
    assert.are.equal(100, t:get(3, 4))
    local r = tr:reshape(12) -- copies a strided view
    assert.are.equal(77, r[1])
    local d = dm.zeros(4, 3):copy(tr)
    assert.is_true(dm.allclose(d, tr))
    assert.are.same({4, 3, 2}, dm.zeros(2, 3, 4):transpose(1, 3):shape())
    -- views outlive their source
    local keep = dm.ones(2, 2)[2]
    collectgarbage(); collectgarbage()
    same(keep, {1, 1})
  end)

  it("converts between dtypes", function()
    local f = dm.tensor{1.7, -2.5}
    same(f:int(), {1, -2})
    assert.are.equal("float32", f:int():float():dtype())
  end)
end)

describe("dm.Tensor arithmetic", function()
  local a = dm.tensor{{1, 2, 3}, {4, 5, 6}}

  it("adds, subtracts, multiplies, divides tensors and scalars", function()
    same(a:add(a), {{2, 4, 6}, {8, 10, 12}})
    same(a:sub(1), {{0, 1, 2}, {3, 4, 5}})
    same(a:mul(a), {{1, 4, 9}, {16, 25, 36}})
    same(a:div(2), {{0.5, 1, 1.5}, {2, 2.5, 3}})
    local b = a:clone()
    b:add_(1):mul_(2)
    same(b, {{4, 6, 8}, {10, 12, 14}})
    b:sub_(b):div_(1)
    same(b, {{0, 0, 0}, {0, 0, 0}})
  end)

  it("broadcasts a trailing-dims tensor", function()
    local x = dm.zeros(2, 3, 2)
    local y = x + dm.tensor{1, 2}
    same(y[2], {{1, 2}, {1, 2}, {1, 2}})
    same(a + dm.tensor{{10}, {20}}, {{11, 12, 13}, {24, 25, 26}})
  end)

  it("has metamethods, scalars on either side", function()
    same(a + 1, {{2, 3, 4}, {5, 6, 7}})
    same(10 - a, {{9, 8, 7}, {6, 5, 4}})
    same(2 * a, {{2, 4, 6}, {8, 10, 12}})
    assert.is_true(dm.allclose(6 / a:narrow(2, 1, 2), dm.tensor{{6, 3}, {1.5, 1.2}}))
    same(-a, {{-1, -2, -3}, {-4, -5, -6}})
    same(a - a * 1, {{0, 0, 0}, {0, 0, 0}})
  end)

  it("has the unary functions, in and out of place", function()
    local x = dm.tensor{-4, 0, 4}
    same(x:abs(), {4, 0, 4})
    same(x:clamp(-1, 2), {-1, 0, 2})
    same(x:pow(2), {16, 0, 16})
    assert.is_true(dm.allclose(x:exp():log(), x, 1e-5, 1e-5))
    assert.is_true(dm.allclose(x:sigmoid(), dm.tensor{1 / (1 + math.exp(4)), 0.5, 1 / (1 + math.exp(-4))}))
    assert.is_true(dm.allclose(dm.tensor{4, 9}:sqrt(), dm.tensor{2, 3}))
    local t = dm.tensor{0.5}
    t:tanh_()
    assert.is_true(math.abs(t[1] - 0.46211716) < 1e-6)
    x:clamp_(0)
    same(x, {0, 0, 4})
    x:neg_()
    same(x, {0, 0, -4})
  end)
end)

describe("dm.Tensor reductions", function()
  local a = dm.tensor{{1, 5, 3}, {4, 2, 6}}

  it("reduces everything to numbers", function()
    assert.are.equal(21, a:sum())
    assert.are.equal(3.5, a:mean())
    local v, i = a:max()
    assert.are.equal(6, v)
    assert.are.equal(6, i)
    assert.are.equal(1, a:min())
    assert.are.equal(6, a:argmax())
    assert.is_true(math.abs(dm.tensor{3, 4}:norm() - 5) < 1e-12)
  end)

  it("reduces along a 1-based dimension, with 1-based int32 indices", function()
    same(a:sum(1), {5, 7, 9})
    same(a:sum(2, true), {{9}, {12}})
    same(a:mean(-1), {3, 4})
    local v, i = a:max(2)
    same(v, {5, 6})
    same(i, {2, 3})
    assert.are.equal("int32", i:dtype())
    v, i = a:min(1)
    same(v, {1, 2, 3})
    same(i, {1, 2, 1})
    same(a:argmax(1), {2, 1, 2})
    assert.is_true(dm.allclose(dm.tensor{{3, 4}, {0, 2}}:norm(2), dm.tensor{5, 2}))
  end)

  it("computes stable softmax and log_softmax over the last dimension", function()
    local x = dm.tensor{{1000, 0, -1000}, {-1000, -1000, -1000}}
    local s = x:softmax()
    same(s[1], {1, 0, 0})
    assert.is_true(dm.allclose(s[2], dm.full(3, 1 / 3)))
    local ls = x:log_softmax()
    assert.is_true(dm.allclose(ls[1], dm.tensor{0, -1000, -2000}))
    assert.is_true(dm.allclose(dm.softmax(x), s))
  end)

  it("returns topk sorted descending with 1-based indices", function()
    local v, i = dm.tensor{{3, 1, 4, 1, 5}, {9, 2, 6, 5, 3}}:topk(2)
    same(v, {{5, 4}, {9, 6}})
    same(i, {{5, 3}, {1, 3}})
  end)
end)

describe("dm.matmul", function()
  it("multiplies 2-d, batched 3-d and 3-d x 2-d, with transposed views", function()
    local a = dm.tensor{{1, 2, 3}, {4, 5, 6}}
    same(a:matmul(a:t()), {{14, 32}, {32, 77}})
    same(dm.matmul(a:t(), a), {{17, 22, 27}, {22, 29, 36}, {27, 36, 45}})
    local b = dm.zeros(2, 2, 3)
    b[1]:copy(a)
    b[2]:copy(a * 2)
    local c = b:matmul(b:transpose(2, 3))
    same(c[2], {{56, 128}, {128, 308}})
    local d = b:matmul(dm.ones(3, 1))
    same(d, {{{6}, {15}}, {{12}, {30}}})
  end)
end)

describe("dm.Tensor printing and conversion", function()
  it("prints values and a footer", function()
    local s = tostring(dm.tensor{{1, 2, 3}, {4, 5, 6}})
    assert.are.equal(" 1 2 3\n 4 5 6\n[Tensor float32 2x3]", s)
    assert.are.equal("  0.5000 -1.2500\n[Tensor float32 2]", tostring(dm.tensor{0.5, -1.25}))
    assert.are.equal(" 7 8\n[Tensor int32 2]", tostring(dm.tensor({7, 8}, "int32")))
    assert.are.equal("3\n[Tensor float32 scalar]", tostring(dm.tensor(3)))
    assert.matches("%(2,%.,%.%) =", tostring(dm.zeros(2, 2, 2)))
    assert.matches("%[Tensor float32 0x3%]$", tostring(dm.zeros(0, 3)))
  end)

  it("abbreviates large tensors", function()
    local s = tostring(dm.arange(2000):reshape(40, 50))
    assert.matches("^    0    1    2 %.%.%.   47   48   49\n", s)
    assert.matches("\n %.%.%.\n", s)
    assert.matches("1999\n%[Tensor float32 40x50%]$", s)
    local lines = 0
    for _ in s:gmatch("\n") do lines = lines + 1 end
    assert.are.equal(7, lines)
  end)

  it("compares with allclose using torch's defaults", function()
    local a = dm.tensor{1, 2}
    assert.is_true(dm.allclose(a, a + 1e-6))
    assert.is_false(dm.allclose(a, a + 1e-3))
    assert.is_true(dm.allclose(a, a + 1e-3, 0, 1e-2))
  end)
end)

describe("random state and generators", function()
  it("round-trips the global state exactly, as a string or a table", function()
    dm.manual_seed(123)
    local s = dm.get_rng_state()
    assert.are.equal(64, #s)
    local x = dm.rand(4)
    dm.set_rng_state(s)
    assert.is_true(dm.allclose(x, dm.rand(4), 0, 0))
    local words = {}
    for i = 0, 3 do
      words[i + 1] = math.tointeger(tonumber(s:sub(16 * i + 1, 16 * i + 8), 16) << 32 |
                                    tonumber(s:sub(16 * i + 9, 16 * i + 16), 16))
    end
    dm.set_rng_state(words)
    assert.are.equal(s, dm.get_rng_state())
  end)

  it("gives repeatable permutations and draws", function()
    local g = dm.Generator(42)
    local st = g:state()
    local p = g:randperm(10)
    table.sort(p)
    for i = 1, 10 do assert.are.equal(i, p[i]) end
    g:set_state(st)
    local p1 = g:randperm(10)
    local p2 = dm.Generator(42):randperm(10)
    assert.are.same(p1, p2)
    local r = g:random()
    assert.is_true(r >= 0 and r < 1)
    for _ = 1, 50 do
      local k = g:random(6)
      assert.is_true(math.type(k) == "integer" and k >= 1 and k <= 6)
    end
    dm.manual_seed(5)
    local q1 = dm.randperm(8)
    dm.manual_seed(5)
    assert.are.same(q1, dm.randperm(8))
    assert.are.same({}, dm.randperm(0))
    assert.are.equal("Generator(xoshiro256**)", tostring(g))
  end)

  it("rejects bad states", function()
    assert.matches("set_rng_state: state string has 3 characters, expected 64 hex digits",
                   err_of(dm.set_rng_state, "abc"), 1, true)
    assert.matches("set_rng_state: the all-zero state is invalid", err_of(dm.set_rng_state, {0, 0, 0, 0}), 1, true)
    assert.matches("set_rng_state: argument state: expected a string or a table of 4 integers, got boolean",
                   err_of(dm.set_rng_state, true), 1, true)
    assert.matches("randperm: argument n: expected an integer, got string",
                   err_of(dm.randperm, "x"), 1, true)
  end)
end)

describe("dm.Tensor errors", function()
  local a = dm.zeros(2, 3)

  it("names wrong argument types", function()
    assert.are.equal("add: argument other: expected Tensor or number, got string", err_of(a.add, a, "x"))
    assert.are.equal("matmul: argument 2: expected Tensor, got table", err_of(dm.matmul, a, {}))
    assert.are.equal("narrow: argument start: expected an integer, got 1.5", err_of(a.narrow, a, 1, 1.5, 1))
    assert.are.equal("zeros: argument size 2: expected an integer, got boolean", err_of(dm.zeros, 2, true))
    assert.are.equal("tensor: element [2][1] is string, expected a number", err_of(dm.tensor, {{1}, {"x"}}))
    assert.are.equal("shape: argument self: expected Tensor, got drlmem.Generator",
                     err_of(a.shape, dm.Generator(1)))
    assert.are.equal("zeros: unknown dtype 'float64' (expected \"float32\" or \"int32\")",
                     err_of(dm.zeros, 2, "float64"))
  end)

  it("names shape mismatches", function()
    assert.are.equal("matmul: shapes 2x3 and 4x5 do not match (3 != 4)", err_of(dm.matmul, a, dm.zeros(4, 5)))
    assert.are.equal("add: shapes 2x3 and 2 cannot be broadcast (3 != 2 in dimension 2 of the result)",
                     err_of(function() return a + dm.zeros(2) end))
    assert.are.equal("copy: shapes 2x3 and 3x2 do not match", err_of(a.copy, a, dm.zeros(3, 2)))
    assert.are.equal("view: cannot view a tensor of shape 2x3 (6 elements) as 4x2 (8 elements)",
                     err_of(a.view, a, 4, 2))
    assert.are.equal("view: tensor of shape 3x2 is not contiguous (call contiguous() first)",
                     err_of(a:t().view, a:t(), 6))
    assert.are.equal("tensor: ragged table: element [2] has 1 elements, expected 2",
                     err_of(dm.tensor, {{1, 2}, {3}}))
    assert.are.equal("tensor: element [2] is number, expected a table of 2 (ragged nesting)",
                     err_of(dm.tensor, {{1, 2}, 3}))
    assert.are.equal("matmul: expected 2-d x 2-d, 3-d x 3-d or 3-d x 2-d tensors, got 1-d (3) and 2-d (3x2)",
                     err_of(dm.matmul, dm.zeros(3), dm.zeros(3, 2)))
  end)

  it("names indices out of range", function()
    assert.are.equal("get: index 4 out of range for dimension 2 of size 3", err_of(a.get, a, 1, 4))
    assert.are.equal("get: 1 indices given for a tensor of shape 2x3, expected 2", err_of(a.get, a, 1))
    assert.are.equal("index: index 4 out of range for dimension 1 of size 3",
                     err_of(function() return dm.zeros(3)[4] end))
    assert.are.equal("select: index 0 out of range for dimension 1 of size 2", err_of(a.select, a, 1, 0))
    assert.are.equal("sum: dimension 3 out of range for a 2-d tensor (expected 1 to 2, or -2 to -1)",
                     err_of(a.sum, a, 3))
    assert.are.equal("narrow: length 3 from start 2 exceeds dimension 2 of size 3", err_of(a.narrow, a, 2, 2, 3))
    assert.are.equal("topk: k = 4 out of range for a last dimension of size 3 (expected 0 to 3)",
                     err_of(a.topk, a, 4))
  end)

  it("refuses negative and absurd sizes without crashing", function()
    assert.are.equal("zeros: size of dimension 1 is -2, expected a size >= 0", err_of(dm.zeros, -2, 3))
    assert.are.equal("zeros: shape 1000000000000x1000000000000 is too large (element count overflows)",
                     err_of(dm.zeros, 1e12, 1e12))
    assert.matches("^randn: cannot allocate .* bytes for shape 8388608x8388608 %(out of memory%)$",
                   err_of(dm.randn, 2 ^ 23, 2 ^ 23))
    assert.are.equal("zeros: argument size 1: expected an integer, got 1e+20", err_of(dm.zeros, 1e20))
  end)

  it("refuses int32 tensors where float32 is needed", function()
    local ids = dm.tensor({1, 2}, "int32")
    assert.are.equal("add: argument self: expected a float32 tensor, got int32", err_of(ids.add, ids, 1))
    assert.are.equal("sum: argument self: expected a float32 tensor, got int32", err_of(ids.sum, ids))
    assert.are.equal("matmul: argument 2: expected a float32 tensor, got int32",
                     err_of(dm.matmul, dm.zeros(2, 2), ids:view(2, 1)))
    assert.are.equal("set: value 1.5 does not fit an int32 tensor (expected an integer)",
                     err_of(ids.set, ids, 1.5, 1))
    assert.are.equal("copy: cannot copy a float32 tensor into an int32 tensor (convert explicitly)",
                     err_of(ids.copy, ids, dm.zeros(2)))
  end)

  it("reports a closed tensor instead of crashing", function()
    local t = dm.zeros(2)
    t:free()
    assert.are.equal("numel: argument self: tensor has been freed (closed)", err_of(t.numel, t))
    assert.are.equal("[Tensor (freed)]", tostring(t))
    do
      local c <close> = dm.ones(3)
      assert.are.equal(3, c:sum())
    end
  end)
end)
