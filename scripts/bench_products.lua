-- bench_products.lua: the matrix products of one training or evaluation
-- step of the seed model, as sgemm shapes, for the benchmarks
-- (scripts/bench.lua times them alone to get the limit a step could reach;
-- scripts/blas_compare.lua times them through several BLAS libraries).
--
-- Each product is {name, m, n, k, ta, tb, count}: C (m,n) = op(A) (m,k) .
-- op(B) (k,n), row-major, with the transposes the core hands to BLAS
-- (src/core/nn.c, memory.c, gru.c), `count` times per step. N = B*T rows.
-- The embedding is a gather, not a product, and is left out. Forward:
-- the query projection, the memory read (scores and weighted sum), each GRU
-- layer's input projection over all timesteps and its T-1 recurrent
-- products (h0 = 0 makes the first one a bias), fc1 and the output layer.
-- Backward doubles each: the input gradient and the weight gradient (the
-- GRU's dW_hh is one product over N-1 rows). A training step adds the
-- memory write's two projections (fc_query_memory, fc_value_memory), which
-- run on every token. This is reference.py's `flops` model (3 x forward +
-- write) with the recurrent products counted T-1 times instead of T.
--
--   local products = dofile(dir .. "bench_products.lua")
--   local list = products.step{V = 10000, B = 16, mode = "train"}
--   products.flops(list)   --> matrix-product FLOPs of the step
local products = {}

products.seed = {T = 100, E = 128, D = 128, M = 512, H = 256, L = 2}

--- The products of one step; s = {V, B, mode = "train"|"eval", and
-- optionally T, E, D, M, H, L (default: the seed's)}.
function products.step(s)
  local d = products.seed
  local V, B = assert(s.V, "V"), assert(s.B, "B")
  local T, E, D, M, H, L = s.T or d.T, s.E or d.E, s.D or d.D, s.M or d.M, s.H or d.H, s.L or d.L
  assert(s.mode == "train" or s.mode == "eval", "mode must be train or eval")
  local N, G = B * T, 3 * H
  local list = {}
  local function add(name, m, n, k, ta, tb, count)
    list[#list + 1] = {name = name, m = m, n = n, k = k, ta = ta, tb = tb, count = count or 1}
  end
  -- A linear layer out (N,o) = in (N,i) W (o,i)^T, and its two gradients.
  local function linear(name, i, o, rows)
    rows = rows or N
    add(name, rows, o, i, "N", "T")
    if s.mode == "train" then
      add(name .. ".dx", rows, i, o, "N", "N")
      add(name .. ".dW", o, i, rows, "T", "N")
    end
  end
  linear("fc_query", E, D)
  -- memory read: scores (N,M) = q K^T; out (N,D) = softmax(scores) V
  add("mem.scores", N, M, D, "N", "T")
  add("mem.read", N, D, M, "N", "N")
  if s.mode == "train" then
    add("mem.dweights", N, M, D, "N", "T")  -- dW = dout V^T
    add("mem.dvalues", M, D, N, "T", "N")   -- dV = W^T dout
    add("mem.dquery", N, D, M, "N", "N")    -- dq = dscores K
    add("mem.dkeys", M, D, N, "T", "N")     -- dK = dscores^T q
  end
  for l = 1, L do
    local In = l == 1 and D or H
    local tag = "gru" .. (l - 1)
    add(tag .. ".input", N, G, In, "N", "T")
    if T > 1 then add(tag .. ".recurrent", B, G, H, "N", "T", T - 1) end
    if s.mode == "train" then
      add(tag .. ".dW_ih", G, In, N, "T", "N")
      add(tag .. ".dx", N, In, G, "N", "N")
      if T > 1 then
        add(tag .. ".dh", B, H, G, "N", "N", T - 1)
        add(tag .. ".dW_hh", G, H, N - 1, "T", "N")
      end
    end
  end
  linear("fc1", H, H)
  linear("fc_output", H, V)
  if s.mode == "train" then
    add("write.fc_query_memory", N, D, D, "N", "T")
    add("write.fc_value_memory", N, D, V, "N", "T")
  end
  return list
end

--- Matrix-product FLOPs (2mnk per product) of a list.
function products.flops(list)
  local f = 0
  for _, p in ipairs(list) do f = f + 2 * p.m * p.n * p.k * p.count end
  return f
end

--- The product's shape as blas_compare takes it: "MxNxK:AB".
function products.shape_key(p)
  return string.format("%dx%dx%d:%s%s", p.m, p.n, p.k, p.ta, p.tb)
end

--- The distinct shapes of several lists, in first-seen order.
function products.distinct(lists)
  local seen, out = {}, {}
  for _, list in ipairs(lists) do
    for _, p in ipairs(list) do
      local key = products.shape_key(p)
      if not seen[key] then seen[key] = true; out[#out + 1] = key end
    end
  end
  return out
end

return products
