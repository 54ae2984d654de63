-- bench_mpi.lua: one measurement of the data-parallel training step, run
-- by scripts/bench_mpi.sh under mpirun (N ranks) or alone (one process),
-- at the seed's shapes (sequence 100, embedding 128, memory 512 x 128, GRU
-- 256 x 2, dropout 0.3, GELU output) and the given vocabulary and batch
-- per rank.
--
--   drlmem scripts/bench_mpi.lua --vocab 64 --batch 16 [--steps 4 --warmup 1 --threads 1]
--   drlmem scripts/bench_mpi.lua --report FILE   the table of FILE's JSON lines
--
-- A step is what lua/drlmem/loop.lua does per batch across processes: the
-- rank's target count and share (dm.dist.target_weight), forward, the
-- core's loss scaled by the share, zero_grad + backward, the gradients'
-- average (dm.dist.average_gradients, timed apart), clip_grad_norm(1.0),
-- AdamW and the memory write of the global batch's means; in one process
-- every collective returns at once. Rank 0 prints one JSON line: the
-- median step time over --steps steps after --warmup, tokens/s of the
-- global batch (B x ranks x T per step), the median allreduce time and its
-- share of the step, and the bytes each rank hands to allreduce per step
-- (the gradients, float32, plus the few numbers of the loss, the write and
-- the stop check).
local dm = require "drlmem"

local args = dm.cli.parse {
  name = "bench_mpi.lua",
  description = "Time the data-parallel training step (one JSON line).",
  config = false,
  options = function(p)
    p:option("--vocab", "Vocabulary size.", "64")
    p:option("--batch", "Sequences per rank.", "16")
    p:option("--seq", "Sequence length.", "100")
    p:option("--steps", "Timed steps.", "4")
    p:option("--warmup", "Untimed steps first.", "1")
    p:option("--threads", "OpenBLAS threads of each process.", "1")
    p:option("--report", "Print the table of the JSON lines in this file (what bench_mpi.sh collected).")
  end,
}

-- --report: one row per vocabulary and batch, the three layouts side by side.
if args.report then
  local f = io.open(args.report) or dm.cli.die("bench_mpi.lua: cannot read " .. args.report)
  local rows, order = {}, {}
  for line in f:lines() do
    local ok, r = pcall(dm.json.decode, line)
    if ok and type(r) == "table" and r.vocab then
      local key = r.vocab .. "/" .. r.batch_per_rank
      if not rows[key] then rows[key] = {}; order[#order + 1] = key end
      rows[key][r.ranks .. "x" .. r.threads] = r
    end
  end
  f:close()
  print("| V | batch per rank | 1 x 1 thread tok/s | 1 x 2 threads tok/s | 2 ranks x 1 thread tok/s | 2x1 / 1x1 | 2x1 / 1x2 | allreduce share of a step | allreduce ms | MiB per step per rank |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  local function tok(r) return r and ("%.0f"):format(r.tokens_per_s) or "-" end
  local function ratio(a, b) return (a and b) and ("%.2f"):format(a.tokens_per_s / b.tokens_per_s) or "-" end
  for _, key in ipairs(order) do
    local c = rows[key]
    local m = c["2x1"]
    local V, Bk = key:match("^(%d+)/(%d+)$")
    print(("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(V, Bk, tok(c["1x1"]), tok(c["1x2"]), tok(m),
      ratio(m, c["1x1"]), ratio(m, c["1x2"]), m and ("%.1f%%"):format(100 * m.allreduce_share) or "-",
      m and ("%.0f"):format(1000 * m.allreduce_s) or "-", m and ("%.1f"):format(m.bytes_per_step / 2 ^ 20) or "-"))
  end
  os.exit(0)
end
local function int_arg(name, lo)
  local v = math.tointeger(tonumber(args[name]))
  if not v or v < lo then dm.cli.die(("bench_mpi.lua: --%s must be an integer >= %d, got %s"):format(name, lo, args[name])) end
  return v
end
local V, B, T = int_arg("vocab", 5), int_arg("batch", 1), int_arg("seq", 1)
local steps, warmup, threads = int_arg("steps", 1), int_arg("warmup", 0), int_arg("threads", 1)

local dist = dm.dist
local rank, size = dist.init()
dm.set_num_threads(threads)

dm.manual_seed(0)
local net = dm.Controller { vocab_size = V, embedding_dim = 128, memory_size = 512, hidden_size = 256,
  num_layers = 2, dropout = 0.3, output_activation = "gelu" }
net:set_reduce(size > 1)
local opt = dm.optim.AdamW(net:parameters(), { lr = 0.01, weight_decay = 1e-4 })
dm.manual_seed(1 + rank) -- the rank's own dropout stream
-- random tokens in [4, V), this rank's own rows
local g = dm.Generator(100 + rank)
local batches = {}
for i = 1, 2 do
  local x, y = dm.zeros({ B, T }, "int32"), dm.zeros({ B, T }, "int32")
  for b = 1, B do
    for t = 1, T do
      x:set(3 + g:random(V - 4), b, t)
      y:set(3 + g:random(V - 4), b, t)
    end
  end
  batches[i] = { x, y }
end

local grad_elems = 0
for _, p in ipairs(net:parameters()) do if p.grad then grad_elems = grad_elems + p.grad:numel() end end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local step_t, ar_t = {}, {}
dist.barrier()
for i = 1, warmup + steps do
  local x, y = table.unpack(batches[(i - 1) % #batches + 1])
  local t0 = dm.clock()
  local w = dist.target_weight(B * T)
  net:forward(x, false)
  local loss = net:loss(y, { scale = w })
  loss = dist.allreduce(loss, "mean")
  net:zero_grad()
  net:backward()
  local t1 = dm.clock()
  dist.average_gradients(net)
  local t2 = dm.clock()
  dm.clip_grad_norm(net, 1.0)
  opt:step()
  net:write_memory(0.1)
  dist.any(false) -- the loop's stop check at its safe point
  local t3 = dm.clock()
  if i > warmup then
    step_t[#step_t + 1], ar_t[#ar_t + 1] = t3 - t0, t2 - t1
  end
end
local st, ar = median(step_t), median(ar_t)
-- the steps of all ranks end together (collectives): rank 0's times stand for the job
if rank == 0 then
  -- target_weight 2 doubles, the loss 1, the write's sums 2 x 128 + 1, the stop check 1: 261
  local small = 8 * (2 + 1 + 2 * 128 + 1 + 1)
  print(dm.json.encode {
    ranks = size, threads = threads, vocab = V, batch_per_rank = B, seq = T, steps = steps,
    n_params = net:num_parameters(), median_step_s = st, tokens_per_s = B * size * T / st,
    allreduce_s = size > 1 and ar or 0, allreduce_share = size > 1 and ar / st or 0,
    bytes_per_step = size > 1 and (4 * grad_elems + small) or 0,
  })
end
dist.finalize()
