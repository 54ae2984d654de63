-- blas_compare.lua: GFLOP/s of OpenBLAS, BLIS and oneDNN's sgemm on the
-- matrix-product shapes of the seed model's training step, 1 and 2 threads,
-- to decide which library the core should call. `make blas-compare` runs it.
--
--   drlmem scripts/blas_compare.lua [--vocab 10000] [--batch 16,64] [--threads 1,2]
--       [--libs openblas,blis,dnnl] [--min-time 0.05] [--blas-compare build/blas_compare]
--
-- The shapes are those of scripts/bench_products.lua (every distinct product
-- of a training step, which includes the evaluation's), each timed alone by
-- build/blas_compare in a fresh process per library and thread count.
-- OpenBLAS runs twice when the environment sets OPENBLAS_CORETYPE: as set,
-- and with it unset for that command only (OpenBLAS's own choice of kernel).
-- Below the per-shape table, "step" is the time of all of a step's products
-- at each library's speed (count x time per shape), as GFLOP/s: what the
-- products of one training step would cost through that library.
local dm = require "drlmem"

local args = dm.cli.parse {
  name = "blas_compare.lua",
  description = "sgemm GFLOP/s of OpenBLAS, BLIS and oneDNN on the seed model's product shapes.",
  config = false,
  options = function(p)
    p:option("--vocab", "Vocabulary size of the step whose products are timed.", "10000")
    p:option("--batch", "Batch size(s), comma-separated.", "16,64")
    p:option("--threads", "Thread counts, comma-separated.", "1,2")
    p:option("--libs", "Libraries, comma-separated (openblas, blis, dnnl).", "openblas,blis,dnnl")
    p:option("--min-time", "Seconds of repetitions per shape (at least 3 repetitions).", "0.05")
    p:option("--blas-compare", "The blas_compare binary.", "build/blas_compare")
  end,
}

local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/"
local products = dofile(here .. "bench_products.lua")

local function fail(msg)
  io.stderr:write("blas_compare.lua: ", msg, "\n")
  os.exit(2)
end

local function list_of(name, s, numeric)
  local out = {}
  for item in tostring(s):gmatch("[^,]+") do
    if numeric then
      local n = math.tointeger(tonumber(item))
      if not n or n < 1 then fail(string.format("--%s expects whole numbers >= 1, got %q", name, item)) end
      item = n
    end
    out[#out + 1] = item
  end
  if #out == 0 then fail("--" .. name .. " is empty") end
  return out
end

local V = list_of("vocab", args.vocab, true)[1]
local batches = list_of("batch", args.batch, true)
local thread_counts = list_of("threads", args.threads, true)
local libs = list_of("libs", args.libs)
for _, l in ipairs(libs) do
  if l ~= "openblas" and l ~= "blis" and l ~= "dnnl" then
    fail(string.format("--libs: unknown library %q (expected openblas, blis or dnnl)", l))
  end
end
local min_time = tonumber(args.min_time)
if not min_time or min_time < 0 then fail("--min-time expects seconds >= 0, got " .. tostring(args.min_time)) end
do
  local f = io.open(args.blas_compare)
  if not f then fail(args.blas_compare .. " not found (make " .. args.blas_compare .. ")") end
  f:close()
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Steps, their products and the distinct shapes, with each shape's first name.
local steps, lists = {}, {}
for _, B in ipairs(batches) do
  local list = products.step{V = V, B = B, mode = "train"}
  steps[#steps + 1] = {B = B, list = list}
  lists[#lists + 1] = list
end
local shapes = products.distinct(lists)
local name_of = {}
for _, list in ipairs(lists) do
  for _, p in ipairs(list) do
    local k = products.shape_key(p)
    name_of[k] = name_of[k] or p.name
  end
end

-- The columns: library variants x thread counts.
local variants = {}
for _, l in ipairs(libs) do
  if l == "openblas" then
    local core = os.getenv("OPENBLAS_CORETYPE")
    variants[#variants + 1] = {label = "openblas" .. (core and ("(" .. core .. ")") or ""), lib = l, env = ""}
    if core then variants[#variants + 1] = {label = "openblas(own)", lib = l, env = "env -u OPENBLAS_CORETYPE "} end
  else
    variants[#variants + 1] = {label = l, lib = l, env = ""}
  end
end

local columns = {}
for _, v in ipairs(variants) do
  for _, n in ipairs(thread_counts) do
    local cmd = {v.env .. shell_quote(args.blas_compare) .. " --lib " .. v.lib .. " --threads " .. n
                 .. " --min-time " .. min_time}
    for _, k in ipairs(shapes) do cmd[#cmd + 1] = "--shape " .. k end
    io.stderr:write(string.format("blas_compare: %s, %d thread(s)\n", v.label, n))
    local f = io.popen(table.concat(cmd, " ") .. " 2>&1")
    local out = f:read("a")
    local col = {label = v.label, threads = n, t = {}, gflops = {}}
    if not f:close() then
      col.error = out:gsub("%s+$", "")
      io.stderr:write("blas_compare: ", v.label, " skipped: ", col.error, "\n")
    else
      for line in out:gmatch("[^\n]+") do
        local r = dm.json.decode(line)
        local k = string.format("%dx%dx%d:%s%s", r.m, r.n, r.k, r.ta, r.tb)
        col.t[k], col.gflops[k], col.kernel = r.median_s, r.gflops, r.kernel
        if r.max_rel_err > 1e-4 then
          fail(string.format("%s gave a wrong product for %s (relative error %g)", v.label, k, r.max_rel_err))
        end
      end
    end
    columns[#columns + 1] = col
  end
end

local head, rule = {"| shape (m x n x k, op) | product |"}, {"|---|---|"}
for _, c in ipairs(columns) do
  head[#head + 1] = string.format(" %s %s %dt |", c.label, c.kernel or "-", c.threads)
  rule[#rule + 1] = "---:|"
end
print(string.format("sgemm GFLOP/s (median of repetitions, at least %.2f s per shape), %s", min_time,
  os.date("!%Y-%m-%d %H:%M UTC")))
print("")
print(table.concat(head))
print(table.concat(rule))
for _, k in ipairs(shapes) do
  local cells = {string.format("| %s | %s |", k, name_of[k])}
  for _, c in ipairs(columns) do
    cells[#cells + 1] = c.gflops[k] and string.format(" %.1f |", c.gflops[k]) or " - |"
  end
  print(table.concat(cells))
end
for _, s in ipairs(steps) do
  local cells = {string.format("| **V=%d B=%d train step** | all products |", V, s.B)}
  local flops = products.flops(s.list)
  for _, c in ipairs(columns) do
    local t, ok = 0, not c.error
    for _, p in ipairs(s.list) do
      local x = c.t[products.shape_key(p)]
      if not x then ok = false break end
      t = t + p.count * x
    end
    cells[#cells + 1] = ok and string.format(" **%.1f** |", flops / t * 1e-9) or " - |"
  end
  print(table.concat(cells))
end
