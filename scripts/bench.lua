-- bench.lua: training and evaluation throughput of drlmem at the seed's
-- shapes, side by side with the PyTorch reference in the same session.
--
--   drlmem scripts/bench.lua                      # V = 64 and 10000, 3 rounds
--   drlmem scripts/bench.lua --vocab 64 --rounds 5 --steps 20
--   drlmem scripts/bench.lua --one --vocab 64     # one measurement, one JSON line
--
-- A training step is what scripts/train.lua does per batch: forward, the
-- upstream loss (pads counted), zero_grad + backward, clip_grad_norm(1.0),
-- AdamW(lr 0.01, weight decay 1e-4) and the memory write (0.1). An eval step
-- is the eval-mode forward and the loss (no dlogits, as torch.no_grad).
-- Both reuse one logits and one dlogits buffer. Shapes are the seed's: batch 16,
-- sequence 100, embedding 128, memory 512 x 128, GRU 256 x 2; batches are
-- random tokens with trailing pads on a quarter of the rows, as the
-- reference's `bench` makes them. Each figure is the median step time over
-- --steps steps after --warmup steps, converted to tokens/s (B*T / median).
--
-- Every measurement runs in a fresh process (so peak RSS is that
-- configuration's own), and drlmem and the reference alternate round by
-- round, so a noisy neighbour slows both: compare the ratio, which is the
-- median over rounds of drlmem/reference measured back to back. Threads:
-- both get the same OpenBLAS thread count (--threads, default 2 = this
-- machine's cores); the reference keeps torch's own intra-op pool at 1, as
-- its README advises, so the two pools do not spin against each other.
local dm = require "drlmem"
local argparse = require "argparse"

local p = argparse("bench.lua", "drlmem vs PyTorch reference throughput")
p:option("--vocab", "Vocabulary size(s), comma-separated.", "64,10000")
p:option("--rounds", "Alternating rounds per vocabulary.", "3"):convert(tonumber)
p:option("--steps", "Timed steps per measurement.", "10"):convert(tonumber)
p:option("--warmup", "Untimed steps first.", "3"):convert(tonumber)
p:option("--threads", "OpenBLAS threads for both.", "2"):convert(tonumber)
p:option("--blas-core", "OPENBLAS_CORETYPE for both (e.g. SkylakeX); default: OpenBLAS's own detection.")
p:option("--reference", "Path of reference.py.", "../shared/reference/reference.py")
p:option("--json", "Append every measurement as a JSON line to this file.")
p:flag("--one", "Measure drlmem once and print one JSON line (used internally).")
p:flag("--no-reference", "Skip the PyTorch reference.")
local args = p:parse(arg)

local B, T, E, M, H, L = 16, 100, 128, 512, 256, 2

local function now() return dm.clock() end

local function peak_rss_mib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local kb = line:match("^VmHWM:%s+(%d+)")
    if kb then f:close(); return tonumber(kb) / 1024 end
  end
  f:close()
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- The reference's batches: tokens in [4, V), trailing 10% pads on B/4 rows.
local function make_batch(V, g)
  local x, y = dm.zeros({B, T}, "int32"), dm.zeros({B, T}, "int32")
  local lo = V > 8 and 4 or 1
  local npad = math.floor(T * 0.1)
  for b = 1, B do
    for t = 1, T do
      local pad = (b <= B // 4) and t > T - npad
      x:set(pad and 0 or lo + g:random(V - lo) - 1, b, t)
      y:set(pad and 0 or lo + g:random(V - lo) - 1, b, t)
    end
  end
  return x, y
end

local function measure_one(V)
  dm.manual_seed(0)
  local net = dm.Controller{vocab_size = V, embedding_dim = E, memory_size = M,
                            hidden_size = H, num_layers = L, dropout = 0.3,
                            output_activation = "gelu"}
  local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
  local g = dm.Generator(0)
  local batches = {}
  for i = 1, 4 do batches[i] = {make_batch(V, g)} end
  local res = {impl = "drlmem", vocab = V, batch = B, seq = T, threads = args.threads,
               n_params = net:num_parameters()}
  local function run(step)
    local times = {}
    for i = 1, args.warmup + args.steps do
      local x, y = table.unpack(batches[(i - 1) % #batches + 1])
      local t0 = now()
      step(x, y)
      if i > args.warmup then times[#times + 1] = now() - t0 end
    end
    return median(times)
  end
  -- One logits buffer and one dlogits buffer for every step (B*T*V floats
  -- each, 64 MB at V=10000), as scripts/train.lua does: allocating them
  -- per step costs page faults and lets Lua's GC pile up garbage it cannot
  -- see the size of.
  local logits = dm.zeros({B, T, V}, "float32")
  local dlogits = dm.zeros({B, T, V}, "float32")
  net:train()
  local last_loss
  local tr = run(function(x, y)
    net:forward(x, logits)
    local loss = dm.nn.cross_entropy(logits, y, {out = dlogits})
    net:zero_grad()
    net:backward(dlogits)
    dm.clip_grad_norm(net, 1.0)
    opt:step()
    net:write_memory(0.1)
    last_loss = loss
  end)
  net:eval()
  local ev = run(function(x, y)
    net:forward(x, logits)
    dm.nn.cross_entropy(logits, y, {grad = false})
  end)
  res.train = {median_step_s = tr, tokens_per_s = B * T / tr, last_loss = last_loss}
  res.eval = {median_step_s = ev, tokens_per_s = B * T / ev}
  res.peak_rss_mib = peak_rss_mib()
  return res
end

if args.one then
  print(dm.json.encode(measure_one(tonumber(args.vocab))))
  os.exit(0)
end

-- ---- orchestration: fresh processes, alternating ---------------------------
local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exe_path()
  -- arg[-1] is the interpreter as it was invoked (./drlmem or build/drlmem).
  local i = -1
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

local function run_json(cmd)
  local f = io.popen(cmd, "r")
  local out = f:read("a")
  local ok = f:close()
  local line = out:match("(%b{})%s*$")
  if not ok or not line then return nil, out end
  return dm.json.decode(line)
end

local function have_reference()
  if args.no_reference then return false, "--no-reference" end
  local f = io.open(args.reference)
  if not f then return false, args.reference .. " not found" end
  f:close()
  local ok = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")
  if not ok then return false, "/usr/bin/python3 cannot import torch (apt-get install python3-torch)" end
  return true
end

local ref_ok, why = have_reference()
if not ref_ok then io.stderr:write("bench: PyTorch reference skipped: ", why, "\n") end
-- --blas-core: OpenBLAS 0.3.21 does not recognise some recent CPUs and
-- falls back to its SSE3 (Prescott) kernels; naming the core type selects
-- the right ones. Both implementations get the same environment.
local env = "OPENBLAS_NUM_THREADS=" .. args.threads .. " "
local core_env = args.blas_core and "OPENBLAS_CORETYPE=" .. shell_quote(args.blas_core) .. " " or ""
env = env .. core_env
local jf = args.json and assert(io.open(args.json, "a"))
local summary = {}
for v in tostring(args.vocab):gmatch("[^,]+") do
  local V = tonumber(v)
  local rows = {dm = {}, ref = {}, ratio_train = {}, ratio_eval = {}}
  for round = 1, args.rounds do
    local d, err = run_json(env .. shell_quote(exe_path()) .. " " .. shell_quote(arg[0]) ..
      " --one --vocab " .. V .. " --steps " .. args.steps .. " --warmup " .. args.warmup ..
      " --threads " .. args.threads)
    if not d then error("bench: drlmem measurement failed:\n" .. tostring(err)) end
    rows.dm[#rows.dm + 1] = d
    if jf then jf:write(dm.json.encode(d), "\n") end
    if ref_ok then
      local r, rerr = run_json(core_env .. "/usr/bin/python3 " .. shell_quote(args.reference) ..
        " bench --vocab " .. V .. " --batch " .. B .. " --seq " .. T .. " --steps " .. args.steps ..
        " --warmup " .. args.warmup .. " --threads 1 --blas-threads " .. args.threads .. " 2>/dev/null")
      if not r then error("bench: reference measurement failed:\n" .. tostring(rerr)) end
      r.impl = "pytorch"
      rows.ref[#rows.ref + 1] = r
      rows.ratio_train[#rows.ratio_train + 1] = d.train.tokens_per_s / r.train.tokens_per_s
      rows.ratio_eval[#rows.ratio_eval + 1] = d.eval.tokens_per_s / r.eval.tokens_per_s
      if jf then jf:write(dm.json.encode(r), "\n") end
    end
    io.stderr:write(string.format("bench: V=%d round %d/%d done\n", V, round, args.rounds))
  end
  summary[#summary + 1] = {V = V, rows = rows}
end
if jf then jf:close() end

local function med_of(list, f)
  local xs = {}
  for i, r in ipairs(list) do xs[i] = f(r) end
  return median(xs)
end

print(string.format("drlmem bench: B=%d T=%d E=D=%d M=%d H=%dx%d, OpenBLAS threads %d%s, median of %d rounds x %d steps",
  B, T, E, M, H, L, args.threads, args.blas_core and (", core " .. args.blas_core) or "", args.rounds, args.steps))
print(string.format("%-7s %-8s %14s %14s %12s", "vocab", "impl", "train tok/s", "eval tok/s", "peak RSS MiB"))
for _, s in ipairs(summary) do
  local function line(name, list)
    if #list == 0 then return end
    print(string.format("%-7d %-8s %14.0f %14.0f %12.0f", s.V, name,
      med_of(list, function(r) return r.train.tokens_per_s end),
      med_of(list, function(r) return r.eval.tokens_per_s end),
      med_of(list, function(r) return r.peak_rss_mib end)))
  end
  line("drlmem", s.rows.dm)
  line("pytorch", s.rows.ref)
  if #s.rows.ratio_train > 0 then
    print(string.format("%-7d %-8s %14.2f %14.2f", s.V, "ratio", median(s.rows.ratio_train),
      median(s.rows.ratio_eval)))
  end
end
