-- metrics_spec.lua: accuracy, weighted and macro F1 (as sklearn's f1_score
-- with zero_division=1 computes them) and perplexity, against numbers worked
-- out by hand below.
local dm = require "drlmem"
local M = dm.metrics

local function close(a, b) assert.is_true(math.abs(a - b) < 1e-12, ("%.17g vs %.17g"):format(a, b)) end

-- Non-pad targets 4 4 5 6 6 6 against predictions 4 5 5 6 6 7 (pads ignored):
--   label  tp fp fn  support  F1 = 2tp/(2tp+fp+fn)
--   4      1  0  1   2        2/3
--   5      1  1  0   1        2/3
--   6      2  0  1   3        4/5
--   7      0  1  0   0        0     (only predicted: precision 0, recall 0/0 -> 1 under
--                                    zero_division=1, F1 = 2*0*1/(0+1) = 0)
-- accuracy = 4/6; weighted = (2*2/3 + 1*2/3 + 3*4/5 + 0*0)/6 = 4.4/6;
-- macro = (2/3 + 2/3 + 4/5 + 0)/4 = 8/15.
local T = { 4, 4, 0, 5, 6, 6, 6, 0 }
local P = { 4, 5, 9, 5, 6, 6, 7, 3 }

describe("metrics", function()
  it("match the hand-computed values on Lua arrays", function()
    local m = M.compute(P, T)
    close(m.accuracy, 4 / 6)
    close(m.f1_weighted, 4.4 / 6)
    close(m.f1_macro, 8 / 15)
    assert.equal(6, m.n)
    assert.equal(4, m.labels)
  end)

  it("give the same on int32 tensors, rows or flat", function()
    local t = dm.tensor({ { 4, 4, 0, 5 }, { 6, 6, 6, 0 } }, "int32")
    local p = dm.tensor({ { 4, 5, 9, 5 }, { 6, 6, 7, 3 } }, "int32")
    local m = M.compute(p, t)
    close(m.accuracy, 4 / 6)
    close(m.f1_weighted, 4.4 / 6)
    close(m.f1_macro, 8 / 15)
    local nested = M.compute({ { 4, 5, 9, 5 }, { 6, 6, 7, 3 } }, { { 4, 4, 0, 5 }, { 6, 6, 6, 0 } })
    close(nested.f1_macro, 8 / 15)
  end)

  it("take the argmax of float32 logits, first index on ties", function()
    -- V = 8; the row's winner is the prediction above; ties resolve to the lower id
    local rows = {}
    for i = 1, #P do
      local r = { 0, 0, 0, 0, 0, 0, 0, 0 }
      r[P[i] % 8 + 1] = 2.0
      rows[i] = r
    end
    rows[1][8] = 2.0 -- tie between 4 and 7: 4 wins
    local logits = dm.tensor({ rows }, "float32")
    local m = M.compute(logits, dm.tensor({ T }, "int32"))
    -- P[3] = 9 becomes 9 % 8 = 1 but sits on a pad target: no change
    close(m.accuracy, 4 / 6)
    close(m.f1_weighted, 4.4 / 6)
    close(m.f1_macro, 8 / 15)
  end)

  it("accumulate counts over batches", function()
    local acc = M.Accumulator()
    acc:add({ 4, 5, 9 }, { 4, 4, 0 })
    acc:add({ 5, 6 }, { 5, 6 })
    acc:add(dm.tensor({ 6, 7, 3 }, "int32"), dm.tensor({ 6, 6, 0 }, "int32"))
    local m = acc:compute()
    close(m.accuracy, 4 / 6)
    close(m.f1_weighted, 4.4 / 6)
    close(m.f1_macro, 8 / 15)
    acc:reset()
    assert.equal(0, acc:compute().n)
  end)

  it("average per batch weighted by rows in batch mode (upstream reporting)", function()
    local acc = M.Accumulator { mode = "batch" }
    -- batch 1 (2 rows): targets 1 1 / predictions 1 2 -> acc 1/2;
    --   label 1: tp 1 fn 1 -> 2/3; label 2: fp 1 -> 0; weighted = (2*2/3)/2 = 2/3; macro 1/3
    acc:add({ { 1, 0 }, { 2, 0 } }, { { 1, 0 }, { 1, 0 } })
    -- batch 2 (1 row): all right -> 1, 1, 1
    acc:add({ { 5, 5 } }, { { 5, 5 } })
    local m = acc:compute()
    close(m.accuracy, (2 * 0.5 + 1) / 3)
    close(m.f1_weighted, (2 * 2 / 3 + 1) / 3)
    close(m.f1_macro, (2 * 1 / 3 + 1) / 3)
  end)

  it("are zero when every target is pad", function()
    local m = M.compute({ 1, 2 }, { 0, 0 })
    assert.equal(0.0, m.accuracy); assert.equal(0.0, m.f1_weighted); assert.equal(0.0, m.f1_macro)
  end)

  it("reject mismatched inputs", function()
    assert.has_error(function() M.compute({ 1, 2 }, { 1 }) end, "metrics: 2 predictions and 1 targets")
    assert.has_error(function()
      M.compute(dm.tensor({ 1, 2, 3 }, "int32"), dm.tensor({ 1, 2 }, "int32"))
    end)
  end)

  it("perplexity is exp of the loss", function()
    close(M.perplexity(math.log(5)), 5)
    assert.equal(math.huge, M.perplexity(1000))
  end)
end)
