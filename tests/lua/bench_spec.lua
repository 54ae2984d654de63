-- bench_spec.lua: the benchmark scripts (scripts/bench.lua, its product
-- list scripts/bench_products.lua and the sgemm timer scripts/blas_compare.c)
-- on tiny shapes: the FLOP count against the reference's FLOP model, the
-- calibration's choice of the reference's setting (with a stand-in
-- reference whose speed depends on its environment), the BLAS-alone limit,
-- the instruction counts under callgrind, and the timer's answers for each
-- library and transpose.
local dm = require "drlmem"
local helpers = require "helpers"

local exe = os.getenv("DRLMEM_EXE") or "build/drlmem"
local build = os.getenv("DRLMEM_BUILD") or "build"
local blas_compare = build .. "/blas_compare"
local products = dofile("scripts/bench_products.lua")

local function run(cmd)
  local f = io.popen(cmd .. " 2>&1")
  local out = f:read("a")
  local ok, _, code = f:close()
  return out, ok and 0 or code
end

local function json_lines(out)
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    if line:match("^{") then rows[#rows + 1] = dm.json.decode(line) end
  end
  return rows
end

describe("bench_products", function()
  it("counts reference.py's FLOP model, with T-1 recurrent products instead of T", function()
    -- reference.py flops_per_token, per token: forward f, write w; train = 3f + w.
    local function reference(V, B, T)
      local E, D, M, H, L = 128, 128, 512, 256, 2
      local f = 2 * E * D + 2 * D * M * 2 + 2 * 3 * H * (D + H * (L - 1)) + 2 * 3 * H * H * L
        + 2 * H * H + 2 * H * V
      local w = 2 * D * D + 2 * V * D
      return (3 * f + w) * B * T, f * B * T
    end
    for _, c in ipairs{{64, 16, 100}, {10000, 16, 100}, {10000, 64, 100}, {97, 3, 7}} do
      local V, B, T = c[1], c[2], c[3]
      local train_ref, eval_ref = reference(V, B, T)
      -- h0 = 0: no recurrent product at t = 0 (forward and dh), and dW_hh
      -- sums over N-1 rows; per layer that is 2*3H*H*(2B + 1) FLOPs fewer.
      local G, H = 768, 256
      local fewer_train = 2 * (2 * G * H * (2 * B + 1))
      local fewer_eval = 2 * (2 * G * H * B)
      assert.are.equal(train_ref - fewer_train, products.flops(products.step{V = V, B = B, T = T, mode = "train"}))
      assert.are.equal(eval_ref - fewer_eval, products.flops(products.step{V = V, B = B, T = T, mode = "eval"}))
    end
  end)

  it("lists each distinct shape once, in blas_compare's notation", function()
    local train = products.step{V = 64, B = 16, mode = "train"}
    local eval = products.step{V = 64, B = 16, mode = "eval"}
    local keys = products.distinct{train, eval}
    local seen = {}
    for _, k in ipairs(keys) do
      assert.is_nil(seen[k])
      seen[k] = true
      assert.matches("^%d+x%d+x%d+:[NT][NT]$", k)
    end
    assert.is_true(seen["1600x768x128:NT"])  -- GRU layer 0 input projection
    assert.is_true(seen["16x768x256:NT"])    -- a recurrent step
    assert.is_true(seen["768x256x1599:TN"])  -- dW_hh
  end)
end)

describe("blas_compare", function()
  local shapes = "--shape 33x17x9:NN --shape 33x17x9:NT --shape 33x17x9:TN --shape 33x17x9:TT"
  local function libs()
    local out = {"openblas"}
    if os.execute("test -e /usr/lib/x86_64-linux-gnu/libblis.so.4") then out[#out + 1] = "blis" end
    if os.execute("test -e /usr/lib/x86_64-linux-gnu/libdnnl.so.2") then out[#out + 1] = "dnnl" end
    return out
  end

  it("times every transpose right in each library it can load", function()
    for _, lib in ipairs(libs()) do
      local out, code = run(blas_compare .. " --lib " .. lib .. " --threads 1 --min-time 0 " .. shapes)
      assert.are.equal(0, code, out)
      local rows = json_lines(out)
      assert.are.equal(4, #rows, out)
      for i, r in ipairs(rows) do
        assert.are.equal(lib, r.lib)
        assert.is_true(#r.kernel > 0)
        assert.are.same({33, 17, 9}, {r.m, r.n, r.k})
        assert.are.equal(({"NN", "NT", "TN", "TT"})[i], r.ta .. r.tb)
        assert.is_true(r.reps >= 3 and r.median_s > 0 and r.gflops > 0, out)
        assert.is_true(r.max_rel_err < 1e-5, lib .. " " .. r.ta .. r.tb .. ": error " .. r.max_rel_err)
      end
    end
  end)

  it("rejects a malformed shape or library in one line, exit status 2 or 1", function()
    local out, code = run(blas_compare .. " --shape 3x4")
    assert.are.equal(2, code)
    assert.matches("blas_compare: %-%-shape expects MxNxK or MxNxK:AB", out)
    out, code = run(blas_compare .. " --lib mkl --shape 3x4x5")
    assert.are.equal(1, code)
    assert.matches("blas_compare: unknown %-%-lib mkl", out)
  end)
end)

describe("bench.lua", function()
  local tiny = " --vocab 64 --batch 2 --seq 4 --rounds 1 --steps 1 --warmup 0 --threads 2 "

  -- A stand-in for reference.py: `flops` succeeds, and `bench` answers
  -- with tokens/s that depend on the setting it runs under, so the best
  -- train setting is 2 torch threads with OMP_WAIT_POLICY=PASSIVE and the
  -- hugetlb tunable, and the best eval setting is 1 thread / 1 BLAS thread.
  local fake = os.tmpname()
  helpers.spit(fake, [[
local cmd = arg[1]
if cmd == "flops" then print("{}") os.exit(0) end
local a = {}
for i = 2, #arg, 2 do a[arg[i]:gsub("^%-%-", "")] = tonumber(arg[i + 1]) end
local passive = os.getenv("OMP_WAIT_POLICY") == "PASSIVE"
local huge = os.getenv("GLIBC_TUNABLES") == "glibc.malloc.hugetlb=1"
local train = 100 + (passive and 50 or 0) + (huge and 20 or 0)
local eval = (a.threads == 1 and a["blas-threads"] == 1) and 900 or 300
local n = a.batch * a.seq
print(string.format('{"torch": "fake", "openblas": {"corename": "FakeCore"}, "peak_rss_mib": 123,'
  .. ' "train": {"tokens_per_s": %d, "median_step_s": %.9g}, "eval": {"tokens_per_s": %d, "median_step_s": %.9g}}',
  train, n / train, eval, n / eval))
io.stderr:write("a summary line as reference.py prints one\n")
]])
  teardown(function() os.remove(fake) end)

  it("picks the reference's fastest setting per mode, and prints ratio, spread and the BLAS-alone fraction", function()
    local out, code = run(exe .. " scripts/bench.lua" .. tiny .. "--python lua5.4 --reference " .. fake
      .. " --blas-compare " .. blas_compare)
    assert.are.equal(0, code, out)
    local train_row = out:match("| V=64 B=2 train |[^\n]*")
    local eval_row = out:match("| V=64 B=2 eval |[^\n]*")
    assert.is_not_nil(train_row, out)
    assert.is_not_nil(eval_row, out)
    -- case | drlmem | PyTorch | setting | ratio | spread | GFLOP | limit ms | fraction | RSS
    local function cells(row)
      local t = {}
      for c in row:gmatch("|%s*([^|]-)%s*%f[|]") do t[#t + 1] = c end
      return t
    end
    local tr, ev = cells(train_row), cells(eval_row)
    assert.are.equal("170", tr[3])
    assert.are.equal("t2-passive+hugetlb", tr[4])
    assert.are.equal("900", ev[3])
    assert.are.equal("t1-b1", ev[4])
    -- one round: the ratio is drlmem's tokens/s over the stand-in's
    assert.is_true(math.abs(tonumber(tr[5]) - tonumber(tr[2]) / 170) < 0.01, train_row)
    assert.are.equal(tr[5] .. "-" .. tr[5], tr[6])
    local gflop = products.flops(products.step{V = 64, B = 2, T = 4, mode = "train"}) / 1e9
    assert.are.equal(string.format("%.3g", gflop), tr[7])
    local l_dm, l_ref = tr[8]:match("^([%d.]+) / ([%d.]+)$")
    assert.is_true(tonumber(l_dm) > 0 and tonumber(l_ref) > 0, train_row)
    local f_dm, f_ref = tr[9]:match("^([%d.e+-]+) / ([%d.e+-]+)$")
    assert.is_true(tonumber(f_dm) > 0 and tonumber(f_ref) > 0, train_row)
    assert.matches("^%d+ / 123$", tr[10])
    -- drlmem runs the faster of 1 and --threads threads, and says which
    assert.is_true(tr[11] == "1" or tr[11] == "2", train_row)
    assert.matches("drlmem calibration (tokens/s, 2 steps after 1 warm-up, one run per thread count):", out, 1, true)
    assert.matches("\n  V=64 B=2 train/eval: 1 thread %d+/%d+, 2 threads %d+/%d+\n", out)
    assert.matches("PyTorch fake OpenBLAS FakeCore", out, 1, true)
    local info = dm.blas_info()
    assert.matches("drlmem " .. info.gemm .. " " .. info.kernel .. " (OpenBLAS " .. info.corename .. ")", out, 1, true)
    assert.matches("V=64 B=2 train/eval: t1-b1 100/900, t1-b2 100/300, t2-passive 150/300, "
      .. "t1-b1+hugetlb 120/900, t1-b2+hugetlb 120/300, t2-passive+hugetlb 170/300", out, 1, true)
  end)

  it("runs one named setting without calibration, and says so when the reference is absent", function()
    local out, code = run(exe .. " scripts/bench.lua" .. tiny .. "--python lua5.4 --reference " .. fake
      .. " --ref-settings t1-b2 --no-limit")
    assert.are.equal(0, code, out)
    assert.matches("| V=64 B=2 train | %d+ | 100 | t1%-b2 |", out)
    assert.is_nil(out:find("Calibration", 1, true))
    out, code = run(exe .. " scripts/bench.lua" .. tiny .. "--reference /nonexistent/reference.py --no-limit")
    assert.are.equal(0, code, out)
    assert.matches("PyTorch reference skipped: /nonexistent/reference.py not found", out, 1, true)
    assert.matches("| V=64 B=2 eval | %d+ | %- | %- |", out)
  end)

  it("rejects bad options in one line", function()
    local out, code = run(exe .. " scripts/bench.lua --vocab 64,abc")
    assert.are.equal(2, code)
    assert.matches('bench.lua: --vocab expects a whole number >= 1, got "abc"', out, 1, true)
    out, code = run(exe .. " scripts/bench.lua --ref-settings t9-fast")
    assert.are.equal(2, code)
    assert.matches('--ref-settings: unknown setting "t9-fast" (with --threads 2: t1-b1, t1-b2, t2-passive,', out, 1, true)
    assert.is_nil(out:find("traceback", 1, true))
  end)

  it("counts the instructions of one warm step under callgrind, within 1e-3 in every run", function()
    if os.getenv("SAN") == "1" then
      pending("valgrind cannot run a sanitizer build (optional in CI)")
      return
    end
    if not os.execute("valgrind --version >/dev/null 2>&1") then
      pending("valgrind is not installed (.ci/install-deps installs it)")
      return
    end
    local cmd = exe .. " scripts/bench.lua --counts --vocab 64 --batch 2 --seq 2"
    local out1, code1 = run(cmd)
    assert.are.equal(0, code1, out1)
    local tr, ev = out1:match("| V=64 B=2 | (%d+) | (%d+) |")
    assert.is_not_nil(tr, out1)
    tr, ev = tonumber(tr), tonumber(ev)
    -- a training step does the forward and more; and a step of these
    -- shapes is millions of instructions, not the thousands of a toggle
    -- that caught only the coroutine's set-up
    assert.is_true(tr > ev and ev > 1e6, out1)
    -- Lua seeds its string hashes from the clock and addresses, so the
    -- tables' collisions, and with them the counts, vary by about 1e-4.
    local out2 = run(cmd .. " --count-modes eval")
    local ev2 = out2:match("| V=64 B=2 | %- | (%d+) |")
    assert.is_not_nil(ev2, out2)
    assert.is_true(math.abs(tonumber(ev2) / ev - 1) < 1e-3, out1 .. out2)
  end)
end)
