-- checkgrad.lua: dm.checkgrad, a finite-difference check of any gradient,
-- for the REPL and for experiment scripts (the C suites check every layer
-- the same way, in tests/c/fdcheck.h).
--
--   local lin = dm.nn.Linear(3, 2)
--   local err = dm.checkgrad(function(x)
--     local y = lin:forward(x)
--     lin:zero_grad()
--     return y:sum(), lin:backward(dm.ones(y:shape()))
--   end, dm.randn(4, 3))
--
-- f(x) returns the loss (a number) and its analytic gradient with respect
-- to x (a float32 tensor of x's shape). checkgrad perturbs each element of x
-- in place by +-eps, takes the central difference (f(x+eps) - f(x-eps)) /
-- (2 eps), restores the element, and returns
--   err = max_i |fd_i - analytic_i| / max(max_i |analytic_i|, max_i |fd_i|, 1e-12)
-- that is, the largest error relative to the gradient's scale (a relative
-- error per element would blow up where the gradient is near zero), then
-- the 1-based flat index of the worst element and its two values.
-- In float32 with eps = 1e-3 a correct gradient gives err around 1e-4 to
-- 1e-3 (rounding of the loss); a wrong one gives err of order 1.
local dm = require "drlmem"

return function(f, x, eps)
  if type(f) ~= "function" then
    error("checkgrad: argument 1: expected a function f(x) -> loss, grad, got " .. type(f), 2)
  end
  if type(x) ~= "userdata" or not x.numel then
    error("checkgrad: argument 2: expected Tensor, got " .. type(x), 2)
  end
  if x:dtype() ~= "float32" then
    error("checkgrad: argument 2: expected a float32 tensor, got " .. x:dtype(), 2)
  end
  eps = eps or 1e-3
  if type(eps) ~= "number" or not (eps > 0) then
    error("checkgrad: argument 3: expected a positive step eps, got " .. tostring(eps), 2)
  end
  local _, grad = f(x)
  if type(grad) ~= "userdata" or not grad.numel then
    error("checkgrad: f(x) must return the loss and a gradient tensor, got " .. type(grad) .. " as gradient", 2)
  end
  if grad:numel() ~= x:numel() then
    error(string.format("checkgrad: the gradient has %d elements, x has %d", grad:numel(), x:numel()), 2)
  end
  -- Flat views: x:view shares x's storage, so perturbing xf perturbs x.
  -- The analytic gradient is copied first, since f may reuse its buffer.
  local xf = x:view(-1)
  local an = grad:contiguous():view(-1):clone()
  local n = x:numel()
  local fd = {}
  for i = 1, n do
    local v = xf[i]
    xf[i] = v + eps
    local lp = f(x)
    xf[i] = v - eps
    local lm = f(x)
    xf[i] = v
    fd[i] = (lp - lm) / (2 * eps)
  end
  local scale, worst, maxerr = 1e-12, 1, -1
  for i = 1, n do
    scale = math.max(scale, math.abs(an[i]), math.abs(fd[i]))
    local e = math.abs(fd[i] - an[i])
    if e > maxerr then maxerr, worst = e, i end
  end
  return maxerr / scale, worst, an[worst], fd[worst]
end
