-- checkgrad_spec.lua: dm.checkgrad accepts right gradients, catches wrong
-- ones, restores x, and says what is wrong with bad arguments.
local dm = require "drlmem"

describe("dm.checkgrad", function()
  it("accepts a layer's analytic gradient and leaves x unchanged", function()
    dm.manual_seed(3)
    local lin = dm.nn.Linear(3, 2)
    local x = dm.randn(4, 3)
    local before = x:clone()
    local err = dm.checkgrad(function(v)
      local y = lin:forward(v)
      local w = dm.tensor{{1, -2}, {0.5, 3}, {-1, 1}, {2, 0.25}}
      lin:zero_grad()
      return (y * w):sum(), lin:backward(w)
    end, x)
    assert.is_true(err < 2e-3, "err " .. err)
    assert.is_true(dm.allclose(x, before, 0, 0))
  end)

  it("catches a wrong gradient", function()
    local x = dm.tensor{1.5, -0.5, 2}
    -- loss = sum x^2, true gradient 2x; claim x instead.
    local err, worst = dm.checkgrad(function(v) return (v * v):sum(), v:clone() end, x)
    assert.is_true(err > 0.2, "err " .. err)
    assert.are.equal(3, worst)
  end)

  it("checks its arguments", function()
    local x = dm.zeros(2)
    assert.has_error(function() dm.checkgrad(1, x) end,
      "checkgrad: argument 1: expected a function f(x) -> loss, grad, got number")
    assert.has_error(function() dm.checkgrad(function() end, dm.zeros({2}, "int32")) end,
      "checkgrad: argument 2: expected a float32 tensor, got int32")
    assert.has_error(function() dm.checkgrad(function(v) return 0, v end, x, -1) end,
      "checkgrad: argument 3: expected a positive step eps, got -1")
    assert.has_error(function() dm.checkgrad(function(v) return 0, dm.zeros(3) end, x) end,
      "checkgrad: the gradient has 3 elements, x has 2")
  end)
end)
