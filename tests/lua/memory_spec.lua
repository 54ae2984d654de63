-- memory_spec.lua: the Lua surface of dm.Memory: the REPL example, shapes of
-- read/backward for (D), (N,D) and (B,T,D) queries, usage counting, the
-- keys/values views and their assignment, topk, parameters/zero_grad, and
-- the text of every class of error.
local dm = require "drlmem"

local function err_of(f, ...)
  local ok, msg = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return (tostring(msg):gsub("^[^:\n]+:%d+: ", ""))
end

local function close(a, b, tol)
  return dm.allclose(a, b, tol or 1e-5, tol or 1e-6)
end

describe("dm.Memory", function()
  it("runs the REPL example", function()
    local m = dm.Memory(8, 4)
    assert.are.equal("Memory(slots=8, width=4)", tostring(m))
    local out, w = m:read(dm.randn(2, 4))
    assert.are.same({2, 4}, out:shape())
    assert.are.same({2, 8}, w:shape())
    m:write(dm.randn(3, 4), dm.randn(3, 4), 0.5)
    local u = m:usage()
    assert.are.same({8}, u:shape())
    -- ones plus one per distinct winning slot: 1 or 2 slots won
    assert.is_true(u:sum() == 9 or u:sum() == 10)
    assert.are.equal(8, m.slots)
    assert.are.equal(4, m.width)
  end)

  it("initialises keys and values kaiming-uniform and usage at ones", function()
    dm.manual_seed(3)
    local m = dm.Memory(64, 6)
    local b = math.sqrt(6 / 6)
    assert.is_true(m.keys:max() <= b and m.keys:min() >= -b)
    assert.is_true(m.values:max() > 0.8 * b)
    assert.are.equal(64, m:usage():sum())
  end)

  it("computes softmax(q k^T) v and keeps the query's shape", function()
    local m = dm.Memory(5, 3)
    local q = dm.randn(2, 4, 3)
    local out, w = m:read(q)
    assert.are.same({2, 4, 3}, out:shape())
    assert.are.same({2, 4, 5}, w:shape())
    local q2 = q:reshape(8, 3)
    local ref_w = q2:matmul(m.keys:transpose(1, 2)):softmax(2)
    assert.is_true(close(w:reshape(8, 5), ref_w))
    assert.is_true(close(out:reshape(8, 3), ref_w:matmul(m.values)))
    assert.is_true(close(m:weights(), w, 0))
    local o1, w1 = m:read(dm.randn(3))
    assert.are.same({3}, o1:shape())
    assert.are.same({5}, w1:shape())
  end)

  it("counts each distinct argmax slot once per read", function()
    local m = dm.Memory(4, 2)
    m.keys = dm.tensor{{1, 0}, {0, 1}, {-1, 0}, {0, -1}}
    m:read(dm.tensor{{5, 0}, {4, 0.1}, {0, 3}})
    assert.are.same({2, 2, 1, 1}, m:usage():totable())
    m:reset_usage()
    assert.are.same({1, 1, 1, 1}, m:usage():totable())
  end)

  it("backward returns dquery and accumulates into the memory grads", function()
    local m = dm.Memory(6, 3)
    local q = dm.randn(4, 3)
    m:read(q)
    local dq = m:backward(dm.ones(4, 3))
    assert.are.same({4, 3}, dq:shape())
    local p = m:parameters()
    assert.are.equal("keys", p[1].name)
    assert.are.equal("values", p[2].name)
    local g1 = p[2].grad:clone()
    -- d(sum out)/d values = column sums of the weights, broadcast over D
    assert.is_true(g1:abs():sum() > 0)
    m:backward(dm.ones(4, 3))
    assert.is_true(close(p[2].grad, g1 * 2))
    m:zero_grad()
    assert.are.equal(0, p[1].grad:abs():sum())
    assert.are.equal(0, p[2].grad:abs():sum())
  end)

  it("matches finite differences in the query", function()
    local m = dm.Memory(5, 3)
    local q = dm.randn(2, 3)
    local r = dm.randn(2, 3)
    m:read(q)
    local dq = m:backward(r)
    local h = 1e-2
    for i = 1, 2 do
      for j = 1, 3 do
        local qp, qm = q:clone(), q:clone()
        qp:set(q:get(i, j) + h, i, j)
        qm:set(q:get(i, j) - h, i, j)
        local num = ((m:read(qp) * r):sum() - (m:read(qm) * r):sum()) / (2 * h)
        assert.is_true(math.abs(num - dq:get(i, j)) < 2e-3 + 2e-2 * math.abs(num))
      end
    end
  end)

  it("exposes keys and values as views that can be assigned", function()
    local m = dm.Memory(3, 2)
    local k = m.keys
    m.keys = dm.tensor{{1, 2}, {3, 4}, {5, 6}}
    assert.are.same({{1, 2}, {3, 4}, {5, 6}}, k:totable())
    k:fill(0)
    assert.are.equal(0, m.keys:abs():sum())
    m.values = dm.ones(3, 2)
    assert.are.equal(6, m.values:sum())
    assert.are.equal("Memory: keys must be 3x2, got 2x2", err_of(function() m.keys = dm.ones(2, 2) end))
    assert.matches("cannot set field 'slots'", err_of(function() m.slots = 4 end))
  end)

  it("writes the normalised mean into every row", function()
    local m = dm.Memory(2, 2)
    m.keys = dm.tensor{{1, 0}, {0, 1}}
    m.values = dm.tensor{{0, 2}, {2, 0}}
    m:write(dm.tensor{{3, 4}, {0, 2}}, dm.tensor{{1, 0}, {1, 0}}, 0.5)
    local n0, n1 = math.sqrt(0.65 ^ 2 + 0.45 ^ 2), math.sqrt(0.15 ^ 2 + 0.95 ^ 2)
    assert.is_true(close(m.keys, dm.tensor{{0.65 / n0, 0.45 / n0}, {0.15 / n1, 0.95 / n1}}))
    assert.matches("written after the last read", err_of(function()
      m:read(dm.ones(2)); m:write(dm.ones(1, 2), dm.ones(1, 2), 0.1); m:backward(dm.ones(2))
    end))
  end)

  it("returns the top-k slots (1-based) without counting usage", function()
    local m = dm.Memory(4, 2)
    m.keys = dm.tensor{{1, 0}, {0, 1}, {-1, 0}, {0.5, 0.5}}
    local v, i = m:topk(dm.tensor{{3, 0}, {0, 3}}, 2)
    assert.are.same({{1, 4}, {2, 4}}, i:totable())
    assert.are.equal("int32", i:dtype())
    assert.is_true(v:get(1, 1) >= v:get(1, 2))
    assert.are.equal(4, m:usage():sum())
    assert.are.equal("Memory.topk: k must be in [1, 4], got 5", err_of(m.topk, m, dm.ones(2), 5))
  end)

  it("gives NaN rows, not a crash, for a NaN query", function()
    local m = dm.Memory(3, 2)
    local out, w = m:read(dm.tensor{{0 / 0, 1}, {1, 0}})
    assert.is_true(out:get(1, 1) ~= out:get(1, 1))
    assert.is_true(w:get(2, 1) == w:get(2, 1))
  end)

  it("rejects bad sizes, shapes and strengths with clear messages", function()
    assert.are.equal("Memory: slots must be >= 1, got 0", err_of(dm.Memory, 0, 4))
    assert.are.equal("Memory: width must be >= 1, got -2", err_of(dm.Memory, 4, -2))
    assert.matches("expected an integer", err_of(dm.Memory, 2.5, 4))
    local m = dm.Memory(8, 4)
    assert.are.equal("Memory.read: query must have shape (4), (N,4) or (B,T,4), got 2x3",
                     err_of(m.read, m, dm.randn(2, 3)))
    assert.matches("expected Tensor, got number", err_of(m.read, m, 3))
    assert.matches("no read to differentiate", err_of(m.backward, m, dm.ones(2, 4)))
    m:read(dm.randn(2, 4))
    assert.are.equal("Memory.backward: dout must have the last read's shape 2x4, got 3x4",
                     err_of(m.backward, m, dm.ones(3, 4)))
    assert.are.equal("Memory.write: strength must be in [0, 1], got 2",
                     err_of(m.write, m, dm.ones(3, 4), dm.ones(3, 4), 2))
    assert.are.equal("Memory.write: keys have 3 rows but values have 2",
                     err_of(m.write, m, dm.ones(3, 4), dm.ones(2, 4), 0.5))
    assert.matches("expected a Memory", err_of(m.read, {}, dm.ones(4)))
  end)
end)
