-- bench.lua: training and evaluation throughput of drlmem at the seed's
-- shapes, against the PyTorch reference at its best, in the same session.
--
--   drlmem scripts/bench.lua                         # V 64,10000 x B 16,64, 3 rounds
--   drlmem scripts/bench.lua --vocab 64 --batch 16 --rounds 5 --steps 10
--   drlmem scripts/bench.lua --ref-settings t1-b2    # no calibration, one setting
--   drlmem scripts/bench.lua --one --vocab 64        # one measurement, one JSON line
--
-- A training step is what scripts/train.lua does per batch: forward, the
-- upstream loss (pads counted), zero_grad + backward, clip_grad_norm(1.0),
-- AdamW(lr 0.01, weight decay 1e-4) and the memory write (0.1). An eval step
-- is the eval-mode forward and the loss (no dlogits, as torch.no_grad).
-- Both keep the logits in the core (net:forward(x, false), net:loss), as
-- the training loop and the evaluation do. Shapes are the seed's
-- (sequence 100, embedding 128, memory 512 x 128, GRU 256 x 2) at each
-- --vocab and --batch; batches are random tokens with trailing pads on a
-- quarter of the rows, as the reference's `bench` makes them. Each figure
-- is the median step time over --steps steps after --warmup steps, as
-- tokens/s (B*T / median).
--
-- The run has three phases, all in this one invocation:
-- 1. Calibration: for each vocabulary and batch, the reference runs a few
--    steps under each of its thread and allocator settings (--ref-settings):
--    torch's intra-op pool at 1 with 1 or --threads OpenBLAS threads, or
--    torch at --threads with OMP_WAIT_POLICY=PASSIVE (so its pool and
--    OpenBLAS's do not spin against each other), each without and with
--    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge pages for
--    malloc: PyTorch allocates its large activations afresh every step and
--    pays page faults for them). The fastest setting per case (train and
--    eval apart) is the one drlmem is compared with, and the table names it.
--    drlmem is calibrated the same way over 1 and --threads threads
--    (--no-dm-calibration: --threads only), and runs its faster count.
-- 2. The limit: each distinct matrix-product shape of the cases
--    (scripts/bench_products.lua) is timed alone (build/blas_compare)
--    through the library each side runs its products on (drlmem: oneDNN
--    or OpenBLAS, dm.blas_info().gemm; the reference: OpenBLAS), its
--    fastest repetition at 1 or --threads threads. The sum over a step's
--    products is the time a step would take if nothing but its sgemms cost
--    anything; "fraction" is that time over the step's measured time, the
--    share of the BLAS's reach an implementation achieves.
-- 3. Rounds: drlmem and the reference (its chosen setting) alternate, each
--    measurement in a fresh process (so peak RSS is that configuration's
--    own), so a noisy neighbour slows both; the ratio drlmem/reference of a
--    case is the median over rounds of back-to-back pairs, and the spread
--    is the range of the per-round ratios.
-- OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE stay as the environment sets them
-- unless --blas-core names a core type, which then applies to both sides.
local dm = require "drlmem"

local args = dm.cli.parse {
  name = "bench.lua",
  description = "drlmem vs PyTorch reference throughput, with the BLAS-alone limit.",
  config = false,
  options = function(p)
    p:option("--vocab", "Vocabulary size(s), comma-separated.", "64,10000")
    p:option("--batch", "Batch size(s), comma-separated.", "16,64")
    p:option("--seq", "Sequence length (the seed's is 100).", "100")
    p:option("--rounds", "Alternating rounds per case.", "3")
    p:option("--steps", "Timed steps per measurement.", "5")
    p:option("--warmup", "Untimed steps first.", "2")
    p:option("--threads", "Matrix-product threads for drlmem and for the BLAS-alone timing.", "2")
    p:option("--gemm", "drlmem's matrix-product library: openblas, dnnl or auto (default: DRLMEM_GEMM, else auto).")
    p:option("--blas-core", "OPENBLAS_CORETYPE for both sides (e.g. SkylakeX); default: as the environment sets it.")
    p:option("--reference", "Path of reference.py.", "../shared/reference/reference.py")
    p:option("--python", "Interpreter that runs the reference.", "/usr/bin/python3")
    p:option("--ref-settings", "Reference settings to calibrate over, comma-separated, or all "
      .. "(names: t1-b1, t1-bN, tN-passive with N = --threads, each also with +hugetlb).", "all")
    p:option("--calib-steps", "Timed steps of each calibration run.", "2")
    p:option("--blas-compare", "The blas_compare binary (default: next to the drlmem executable).")
    p:option("--json", "Append every measurement as a JSON line to this file.")
    p:flag("--one", "Measure drlmem once and print one JSON line (used internally).")
    p:option("--one-count", "Run one warm step, then one counted step of train or eval (used internally by --counts).")
      :choices{"train", "eval"}
    p:flag("--counts", "Instruction counts of one training and one eval step per case under callgrind, instead of timings.")
    p:option("--valgrind", "The valgrind executable for --counts.", "valgrind")
    p:option("--count-modes", "Steps --counts counts, comma-separated (train, eval).", "train,eval")
    p:flag("--no-reference", "Skip the PyTorch reference.")
    p:flag("--no-limit", "Skip the BLAS-alone timing of the products.")
    p:flag("--no-dm-calibration", "Run drlmem at --threads threads only (default: the faster of 1 and --threads per case and mode).")
  end,
}

local function usage_error(msg)
  io.stderr:write("bench.lua: ", msg, "\n")
  os.exit(2)
end

local function positive_int(name, s, min)
  local n = tonumber(s)
  if not n or n ~= math.floor(n) or n < (min or 1) or n > 1e6 then
    usage_error(string.format("--%s expects a whole number >= %d, got %q", name, min or 1, tostring(s)))
  end
  return math.tointeger(n)
end

local function int_list(name, s)
  local out = {}
  for item in tostring(s):gmatch("[^,]+") do out[#out + 1] = positive_int(name, item) end
  if #out == 0 then usage_error("--" .. name .. " expects a comma-separated list of whole numbers") end
  return out
end

local vocabs, batches = int_list("vocab", args.vocab), int_list("batch", args.batch)
for _, V in ipairs(vocabs) do
  if V < 5 then usage_error("--vocab: each size must be at least 5 (ids 0..3 are special), got " .. V) end
end
local T = positive_int("seq", args.seq)
local rounds = positive_int("rounds", args.rounds)
local steps = positive_int("steps", args.steps)
local warmup = positive_int("warmup", args.warmup, 0)
local threads = positive_int("threads", args.threads)
local calib_steps = positive_int("calib-steps", args.calib_steps)
local E, M, H, L = 128, 512, 256, 2

local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/"
local products = dofile(here .. "bench_products.lua")

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

-- ---- one measurement (--one) ------------------------------------------------

local function peak_rss_mib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local kb = line:match("^VmHWM:%s+(%d+)")
    if kb then f:close(); return tonumber(kb) / 1024 end
  end
  f:close()
end

-- The reference's batches: tokens in [4, V), trailing 10% pads on B/4 rows.
local function make_batch(V, B, g)
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

-- The model, optimizer, batches and the two step functions of one case.
local function build_case(V, B)
  if args.gemm then dm.set_gemm(args.gemm) end
  dm.manual_seed(0)
  local net = dm.Controller{vocab_size = V, embedding_dim = E, memory_size = M,
                            hidden_size = H, num_layers = L, dropout = 0.3,
                            output_activation = "gelu"}
  local opt = dm.optim.AdamW(net:parameters(), {lr = 0.01, weight_decay = 1e-4})
  local g = dm.Generator(0)
  local data = {}
  for i = 1, 4 do data[i] = {make_batch(V, B, g)} end
  -- The logits stay in the core, as lua/drlmem/loop.lua and
  -- evaluation.lua keep them: net:loss computes the loss (and in training
  -- its gradient) where they live, and net:backward() takes that gradient,
  -- so no B*T*V buffer is copied to Lua or allocated there.
  local c = {net = net, data = data}
  function c.train_step(x, y)
    net:forward(x, false)
    local loss = net:loss(y)
    net:zero_grad()
    net:backward()
    dm.clip_grad_norm(net, 1.0)
    opt:step()
    net:write_memory(0.1)
    c.last_loss = loss
  end
  function c.eval_step(x, y)
    net:forward(x, false)
    net:loss(y, {grad = false})
  end
  return c
end

local function measure_one(V, B)
  local c = build_case(V, B)
  local res = {impl = "drlmem", vocab = V, batch = B, seq = T, threads = dm.get_num_threads(),
               n_params = c.net:num_parameters(), blas = dm.blas_info()}
  local function run(step)
    local times = {}
    for i = 1, warmup + steps do
      local x, y = table.unpack(c.data[(i - 1) % #c.data + 1])
      local t0 = dm.clock()
      step(x, y)
      if i > warmup then times[#times + 1] = dm.clock() - t0 end
    end
    return median(times)
  end
  c.net:train()
  local tr = run(c.train_step)
  c.net:eval()
  local ev = run(c.eval_step)
  res.train = {median_step_s = tr, tokens_per_s = B * T / tr, last_loss = c.last_loss}
  res.eval = {median_step_s = ev, tokens_per_s = B * T / ev}
  res.peak_rss_mib = peak_rss_mib()
  return res
end

-- --one-count MODE: one warm-up step, then one step of MODE inside a
-- coroutine. Under `valgrind --tool=callgrind --collect-atstart=no
-- --toggle-collect=lua_resume` (as --counts runs it) only that step is
-- counted: lua_resume is on the C stack exactly while a coroutine runs, and
-- nothing else in drlmem runs one.
local function count_one(V, B, mode)
  local c = build_case(V, B)
  local step = mode == "train" and c.train_step or c.eval_step
  if mode == "train" then c.net:train() else c.net:eval() end
  step(table.unpack(c.data[1]))
  coroutine.wrap(function() step(table.unpack(c.data[2])) end)()
  print(dm.json.encode({vocab = V, batch = B, seq = T, mode = mode, blas = dm.blas_info()}))
end

if args.one or args.one_count then
  if #vocabs ~= 1 or #batches ~= 1 then usage_error("--one and --one-count measure one --vocab and one --batch") end
  if args.one then
    print(dm.json.encode(measure_one(vocabs[1], batches[1])))
  else
    count_one(vocabs[1], batches[1], args.one_count)
  end
  os.exit(0)
end

-- ---- orchestration -----------------------------------------------------------

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exe_path()
  -- arg[-1] is the interpreter as it was invoked (./drlmem or build/drlmem).
  local i = -1
  while arg[i - 1] do i = i - 1 end
  return arg[i]
end

local function file_exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Runs cmd; returns the decoded last line of its output (stdout and
-- stderr) that is a JSON object, or nil and the whole output.
local function run_json(cmd)
  local f = io.popen(cmd .. " 2>&1", "r")
  local out = f:read("a")
  local ok = f:close()
  -- The reference prints a summary line on stderr after its JSON line.
  local line
  for l in out:gmatch("[^\n]+") do
    if l:match("^%s*{.*}%s*$") then line = l end
  end
  if not ok or not line then return nil, out end
  local decoded_ok, v = pcall(dm.json.decode, line)
  if not decoded_ok then return nil, out end
  return v
end

local jf = args.json and assert(io.open(args.json, "a"))
local function log_json(kind, rec)
  if jf then jf:write(dm.json.encode({phase = kind, result = rec}), "\n"); jf:flush() end
end

local function note(fmt, ...) io.stderr:write("bench: ", string.format(fmt, ...), "\n") end

-- --blas-core: OpenBLAS 0.3.21 does not recognise some recent CPUs and
-- falls back to older kernels; naming the core type selects others. Both
-- implementations and the BLAS-alone timing get the same environment.
local core_env = args.blas_core and "OPENBLAS_CORETYPE=" .. shell_quote(args.blas_core) .. " " or ""

local cases = {}
for _, V in ipairs(vocabs) do
  for _, B in ipairs(batches) do cases[#cases + 1] = {V = V, B = B} end
end

-- ---- --counts: instruction counts under callgrind -------------------------
-- One OpenBLAS thread: under valgrind the threads run one at a time, and
-- the instructions a worker spins while it waits would vary run to run.
-- The kernel OpenBLAS picks under valgrind can differ from the native one
-- (valgrind's CPU model), so the table names it.
if args.counts then
  local modes = {}
  for m in args.count_modes:gmatch("[^,]+") do
    if m ~= "train" and m ~= "eval" then usage_error(string.format("--count-modes: expected train or eval, got %q", m)) end
    modes[#modes + 1] = m
  end
  local out_file = os.tmpname()
  local rows, kernel = {}, nil
  for _, c in ipairs(cases) do
    local row = {V = c.V, B = c.B}
    for _, mode in ipairs(modes) do
      local cmd = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 " .. core_env .. shell_quote(args.valgrind)
        .. " --tool=callgrind --collect-atstart=no --toggle-collect=lua_resume --callgrind-out-file="
        .. shell_quote(out_file) .. " " .. shell_quote(exe_path()) .. " " .. shell_quote(arg[0])
        .. " --one-count " .. mode .. " --vocab " .. c.V .. " --batch " .. c.B .. " --seq " .. T
      local r, err = run_json(cmd)
      if not r then os.remove(out_file); dm.cli.die("callgrind run failed:\n" .. tostring(err)) end
      kernel = r.blas.gemm .. " " .. r.blas.kernel
      local f = io.open(out_file)
      local text = f and f:read("a") or ""
      if f then f:close() end
      local n = text:match("\nsummary:%s*(%d+)") or text:match("\ntotals:%s*(%d+)")
      if not n then os.remove(out_file); dm.cli.die("no instruction total in callgrind's output " .. out_file) end
      row[mode] = tonumber(n)
      log_json("counts", {vocab = c.V, batch = c.B, seq = T, mode = mode, instructions = row[mode], kernel = kernel})
      note("V=%d B=%d %s: %d instructions", c.V, c.B, mode, row[mode])
    end
    rows[#rows + 1] = row
  end
  os.remove(out_file)
  if jf then jf:close() end
  print(string.format("drlmem instruction counts %s (callgrind Ir of one warm step; T=%d E=D=%d M=%d H=%dx%d; "
    .. "1 thread, %s under valgrind)", os.date("!%Y-%m-%d %H:%M UTC"), T, E, M, H, L, kernel))
  print("")
  print("| case | train instructions | eval instructions |")
  print("|---|---:|---:|")
  for _, r in ipairs(rows) do
    print(string.format("| V=%d B=%d | %s | %s |", r.V, r.B, r.train or "-", r.eval or "-"))
  end
  os.exit(0)
end

-- The reference's settings: name, torch intra-op threads, OpenBLAS threads
-- and extra environment.
local HUGETLB = "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"
local all_settings = {}
do
  local base = {{"t1-b1", 1, 1, ""}}
  if threads > 1 then
    base[#base + 1] = {"t1-b" .. threads, 1, threads, ""}
    base[#base + 1] = {"t" .. threads .. "-passive", threads, threads, "OMP_WAIT_POLICY=PASSIVE"}
  end
  for _, huge in ipairs{false, true} do
    for _, s in ipairs(base) do
      all_settings[#all_settings + 1] = {
        name = s[1] .. (huge and "+hugetlb" or ""), torch_threads = s[2], blas_threads = s[3],
        env = s[4] .. (huge and ((s[4] ~= "" and " " or "") .. HUGETLB) or "")}
    end
  end
end
local settings = {}
if args.ref_settings == "all" then
  settings = all_settings
else
  local by_name = {}
  for _, s in ipairs(all_settings) do by_name[s.name] = s end
  for name in args.ref_settings:gmatch("[^,]+") do
    local s = by_name[name]
    if not s then
      local names = {}
      for _, x in ipairs(all_settings) do names[#names + 1] = x.name end
      usage_error(string.format("--ref-settings: unknown setting %q (with --threads %d: %s, or all)",
        name, threads, table.concat(names, ", ")))
    end
    settings[#settings + 1] = s
  end
end

local function have_reference()
  if args.no_reference then return false, "--no-reference" end
  if not file_exists(args.reference) then return false, args.reference .. " not found" end
  -- `flops` imports torch like `bench` does, and is quick.
  local f = io.popen(shell_quote(args.python) .. " " .. shell_quote(args.reference) .. " flops --vocab 64 2>&1")
  local out = f:read("a")
  if not f:close() then
    return false, args.python .. " " .. args.reference .. " flops failed (python3-torch installed?): "
      .. tostring(out):gsub("%s+$", ""):sub(-300)
  end
  return true
end

local ref_ok, why = have_reference()
if not ref_ok then note("PyTorch reference skipped: %s", why) end

local function dm_measure(V, B, n, nsteps, nwarm, phase)
  local cmd = "OPENBLAS_NUM_THREADS=" .. n .. " OMP_NUM_THREADS=" .. n .. " " .. core_env
    .. shell_quote(exe_path()) .. " " .. shell_quote(arg[0]) .. " --one --vocab " .. V .. " --batch " .. B
    .. " --seq " .. T .. " --steps " .. nsteps .. " --warmup " .. nwarm
    .. (args.gemm and " --gemm " .. shell_quote(args.gemm) or "")
  local d, err = run_json(cmd)
  if not d then dm.cli.die("drlmem measurement failed:\n" .. tostring(err)) end
  log_json(phase, d)
  return d
end

local function ref_measure(V, B, s, nsteps, nwarm, phase)
  local cmd = s.env .. (s.env ~= "" and " " or "") .. core_env .. shell_quote(args.python) .. " "
    .. shell_quote(args.reference) .. " bench --vocab " .. V .. " --batch " .. B .. " --seq " .. T
    .. " --steps " .. nsteps .. " --warmup " .. nwarm .. " --threads " .. s.torch_threads
    .. " --blas-threads " .. s.blas_threads
  local r, err = run_json(cmd)
  if not r then dm.cli.die("reference measurement failed (" .. s.name .. "):\n" .. tostring(err)) end
  r.impl, r.setting = "pytorch", s.name
  log_json(phase, r)
  return r
end

-- 1. calibration. drlmem is calibrated too, over 1 and --threads threads
-- (on a loaded machine a second thread that finds no free core makes
-- every product wait for it), so both sides run at their best.
for _, c in ipairs(cases) do
  c.dm_threads = {train = threads, eval = threads}
  if threads > 1 and not args.no_dm_calibration then
    c.dm_calib = {}
    local best = {}
    for _, n in ipairs{1, threads} do
      local r = dm_measure(c.V, c.B, n, calib_steps, 1, "dm_calibration")
      c.dm_calib[#c.dm_calib + 1] = {threads = n, train = r.train.tokens_per_s, eval = r.eval.tokens_per_s}
      for _, mode in ipairs{"train", "eval"} do
        if not best[mode] or r[mode].tokens_per_s > best[mode].tps then best[mode] = {tps = r[mode].tokens_per_s, n = n} end
      end
    end
    c.dm_threads = {train = best.train.n, eval = best.eval.n}
    note("V=%d B=%d drlmem calibrated: train %d, eval %d threads", c.V, c.B, c.dm_threads.train, c.dm_threads.eval)
  end
  if ref_ok then
    if #settings == 1 then
      c.ref_train, c.ref_eval = settings[1], settings[1]
    else
      c.calib = {}
      local best = {}
      for _, s in ipairs(settings) do
        local r = ref_measure(c.V, c.B, s, calib_steps, 1, "calibration")
        c.calib[#c.calib + 1] = {setting = s.name, train = r.train.tokens_per_s, eval = r.eval.tokens_per_s}
        for _, mode in ipairs{"train", "eval"} do
          if not best[mode] or r[mode].tokens_per_s > best[mode].tps then
            best[mode] = {tps = r[mode].tokens_per_s, s = s}
          end
        end
      end
      c.ref_train, c.ref_eval = best.train.s, best.eval.s
      note("V=%d B=%d calibrated: train %s, eval %s", c.V, c.B, c.ref_train.name, c.ref_eval.name)
    end
  end
end

-- 2. the limit: every distinct product shape timed alone
local function default_blas_compare()
  local dir = exe_path():match("^(.*)/[^/]*$") or "."
  for _, p in ipairs{dir .. "/blas_compare", dir .. "/build/blas_compare"} do
    if file_exists(p) then return p end
  end
  return dir .. "/build/blas_compare"
end
local limit_ok = not args.no_limit
-- The library drlmem's products run on here (its --one runs resolve it
-- the same way), and the reference's (PyTorch over OpenBLAS).
if args.gemm then dm.set_gemm(args.gemm) end
local dm_lib = dm.blas_info().gemm == "oneDNN" and "dnnl" or "openblas"
local libs = dm_lib == "openblas" and {"openblas"} or {dm_lib, "openblas"}
local shape_time = {dnnl = {}, openblas = {}}
local blas_alone_kernel = {}
if limit_ok then
  local bc = args.blas_compare or default_blas_compare()
  if not file_exists(bc) then
    limit_ok = false
    note("BLAS-alone limit skipped: %s not found (make %s)", bc, bc)
  else
    local lists = {}
    for _, c in ipairs(cases) do
      for _, mode in ipairs{"train", "eval"} do
        lists[#lists + 1] = products.step{V = c.V, B = c.B, T = T, mode = mode}
      end
    end
    -- The limit is the BLAS at its best on each shape: the fastest
    -- repetition at 1 or --threads threads (a small product can run slower
    -- on two threads than on one, most of all on a loaded machine, where
    -- the second thread waits for a core).
    local counts = threads > 1 and {1, threads} or {1}
    for _, lib in ipairs(libs) do
      for _, n in ipairs(counts) do
        local cmd = {core_env .. shell_quote(bc) .. " --lib " .. lib .. " --threads " .. n .. " --min-time 0.1"}
        for _, key in ipairs(products.distinct(lists)) do cmd[#cmd + 1] = "--shape " .. key end
        local f = io.popen(table.concat(cmd, " ") .. " 2>&1")
        local out = f:read("a")
        if not f:close() then dm.cli.die("blas_compare failed:\n" .. out) end
        for line in out:gmatch("[^\n]+") do
          local r = dm.json.decode(line)
          local key = string.format("%dx%dx%d:%s%s", r.m, r.n, r.k, r.ta, r.tb)
          shape_time[lib][key] = math.min(shape_time[lib][key] or math.huge, r.min_s)
          blas_alone_kernel[lib] = r.kernel
          log_json("blas_alone", r)
        end
      end
    end
  end
end
for _, c in ipairs(cases) do
  -- limit_s: through drlmem's library; ref_limit_s: through OpenBLAS
  c.flops, c.limit_s, c.ref_limit_s = {}, {}, {}
  for _, mode in ipairs{"train", "eval"} do
    local list = products.step{V = c.V, B = c.B, T = T, mode = mode}
    c.flops[mode] = products.flops(list)
    if limit_ok then
      local t, tr = 0, 0
      for _, p in ipairs(list) do
        t = t + p.count * assert(shape_time[dm_lib][products.shape_key(p)])
        tr = tr + p.count * assert(shape_time.openblas[products.shape_key(p)])
      end
      c.limit_s[mode], c.ref_limit_s[mode] = t, tr
    end
  end
end

-- 3. rounds
for _, c in ipairs(cases) do
  c.dm, c.ref = {}, {train = {}, eval = {}}
  c.ratio = {train = {}, eval = {}}
  for round = 1, rounds do
    local dt = dm_measure(c.V, c.B, c.dm_threads.train, steps, warmup, "drlmem")
    local de = dt
    if c.dm_threads.eval ~= c.dm_threads.train then de = dm_measure(c.V, c.B, c.dm_threads.eval, steps, warmup, "drlmem") end
    local d = {train = dt.train, eval = de.eval, blas = dt.blas,
               peak_rss_mib = math.max(dt.peak_rss_mib or 0, de.peak_rss_mib or 0)}
    c.dm[#c.dm + 1] = d
    if ref_ok then
      local rt = ref_measure(c.V, c.B, c.ref_train, steps, warmup, "pytorch")
      local re = rt
      if c.ref_eval ~= c.ref_train then re = ref_measure(c.V, c.B, c.ref_eval, steps, warmup, "pytorch") end
      c.ref.train[#c.ref.train + 1], c.ref.eval[#c.ref.eval + 1] = rt, re
      c.ratio.train[#c.ratio.train + 1] = d.train.tokens_per_s / rt.train.tokens_per_s
      c.ratio.eval[#c.ratio.eval + 1] = d.eval.tokens_per_s / re.eval.tokens_per_s
    end
    note("V=%d B=%d round %d/%d done", c.V, c.B, round, rounds)
  end
end
if jf then jf:close() end

-- ---- the table ----------------------------------------------------------------

local function med_of(list, f)
  local xs = {}
  for i, r in ipairs(list) do xs[i] = f(r) end
  return median(xs)
end

-- Two decimals; a fraction under 0.01 (tiny test shapes, where the
-- products are nothing) in e-notation rather than as 0.00.
local function fmt_frac(x) return string.format(x >= 0.01 and "%.2f" or "%.1e", x) end

local function range_of(xs)
  local lo, hi = math.huge, -math.huge
  for _, x in ipairs(xs) do lo, hi = math.min(lo, x), math.max(hi, x) end
  return lo, hi
end

local dm_blas = cases[1].dm[1].blas
local dm_kernel = (dm_blas.gemm or "OpenBLAS") .. " " .. (dm_blas.kernel or dm_blas.corename)
local lib_names = {dnnl = "oneDNN", openblas = "OpenBLAS"}
local alone = {}
for _, lib in ipairs(libs) do alone[#alone + 1] = lib_names[lib] .. " " .. tostring(blas_alone_kernel[lib]) end
local ref_kernel, torch_version
if ref_ok then
  local r = cases[1].ref.train[1]
  ref_kernel = r.openblas and (r.openblas.corename or r.openblas.error) or "?"
  torch_version = r.torch
end
print(string.format("drlmem bench %s: T=%d E=D=%d M=%d H=%dx%d; drlmem matrix-product threads: the faster of 1 and %d per case, "
  .. "median of %d rounds x %d steps (%d warm-up)", os.date("!%Y-%m-%d %H:%M UTC"), T, E, M, H, L,
  threads, rounds, steps, warmup))
print(string.format("BLAS kernels: drlmem %s (OpenBLAS %s)%s%s%s", dm_kernel, dm_blas.corename,
  ref_ok and (", PyTorch " .. tostring(torch_version) .. " OpenBLAS " .. ref_kernel) or "",
  limit_ok and (", BLAS-alone " .. table.concat(alone, " and ") .. " (best of 1 and " .. threads .. " threads)") or "",
  args.blas_core and (" (OPENBLAS_CORETYPE=" .. args.blas_core .. ")") or ""))
print("ratio = drlmem/PyTorch tokens/s (median over rounds; spread: per-round min-max); fraction = BLAS-alone time of the step's products (through each side's library) / step time")
print("")
print("| case | drlmem tok/s | PyTorch tok/s | PyTorch setting | ratio | spread | GFLOP/step | BLAS-alone ms drlmem / PyTorch | fraction drlmem / PyTorch | peak RSS MiB drlmem / PyTorch | drlmem threads |")
print("|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|")
for _, c in ipairs(cases) do
  for _, mode in ipairs{"train", "eval"} do
    local d_tps = med_of(c.dm, function(r) return r[mode].tokens_per_s end)
    local d_rss = med_of(c.dm, function(r) return r.peak_rss_mib end)
    local d_step = med_of(c.dm, function(r) return r[mode].median_step_s end)
    local ref_cells = {"-", "-", "-", "-"}
    local r_frac, r_rss = "-", "-"
    if ref_ok then
      local rl = c.ref[mode]
      local r_tps = med_of(rl, function(r) return r[mode].tokens_per_s end)
      local r_step = med_of(rl, function(r) return r[mode].median_step_s end)
      local lo, hi = range_of(c.ratio[mode])
      ref_cells = {string.format("%.0f", r_tps), mode == "train" and c.ref_train.name or c.ref_eval.name,
                   string.format("%.2f", median(c.ratio[mode])), string.format("%.2f-%.2f", lo, hi)}
      if limit_ok then r_frac = fmt_frac(c.ref_limit_s[mode] / r_step) end
      r_rss = string.format("%.0f", med_of(rl, function(r) return r.peak_rss_mib end))
    end
    print(string.format("| V=%d B=%d %s | %.0f | %s | %s | %s | %s | %.3g | %s | %s / %s | %.0f / %s | %d |",
      c.V, c.B, mode, d_tps, ref_cells[1], ref_cells[2], ref_cells[3], ref_cells[4], c.flops[mode] / 1e9,
      limit_ok and string.format("%.1f / %.1f", c.limit_s[mode] * 1e3, c.ref_limit_s[mode] * 1e3) or "-",
      limit_ok and fmt_frac(c.limit_s[mode] / d_step) or "-", r_frac, d_rss, r_rss, c.dm_threads[mode]))
  end
end
local any_dm_calib = false
for _, c in ipairs(cases) do any_dm_calib = any_dm_calib or c.dm_calib ~= nil end
if any_dm_calib then
  print("")
  print(string.format("drlmem calibration (tokens/s, %d steps after 1 warm-up, one run per thread count):", calib_steps))
  for _, c in ipairs(cases) do
    if c.dm_calib then
      local parts = {}
      for _, x in ipairs(c.dm_calib) do parts[#parts + 1] = string.format("%d thread%s %.0f/%.0f", x.threads, x.threads == 1 and "" or "s", x.train, x.eval) end
      print(string.format("  V=%d B=%d train/eval: %s", c.V, c.B, table.concat(parts, ", ")))
    end
  end
end
local any_calib = false
for _, c in ipairs(cases) do any_calib = any_calib or c.calib ~= nil end
if any_calib then
  print("")
  print(string.format("Calibration (reference tokens/s, %d steps after 1 warm-up, one run per setting):", calib_steps))
  for _, c in ipairs(cases) do
    if c.calib then
      local parts = {}
      for _, x in ipairs(c.calib) do parts[#parts + 1] = string.format("%s %.0f/%.0f", x.setting, x.train, x.eval) end
      print(string.format("  V=%d B=%d train/eval: %s", c.V, c.B, table.concat(parts, ", ")))
    end
  end
end
