-- make_task.lua: writes a synthetic memory task as text in the lines format.
--
--   drlmem scripts/make_task.lua --task recall|copy [--n N] [--samples N]
--          [--seed N] [--out PATH] [--keys N] [--values N] [--symbols N]
--
-- recall: `k1 v1 k2 v2 ... kn vn ? kq vq`, the answer is the value paired
-- with kq; copy: `x1 ... xn ? x1 ... xn`. Every draw comes from
-- dm.Generator(seed), so the same options write the same bytes
-- (lua/drlmem/tasks.lua holds the generators and the answer positions that
-- evaluation uses for answer-token accuracy). Train on it with, e.g.:
--   drlmem scripts/make_task.lua --task recall --n 8 --out data/recall8.txt
--   drlmem scripts/train.lua --config configs/tiny.yaml --set data_path=data/recall8.txt
local dm = require "drlmem"

local args, cfg = dm.cli.parse {
  name = "make_task.lua",
  description = "Writes a synthetic memory task (associative recall or copy), one sample a line.",
  options = function(p)
    p:option("--task", "Task: recall or copy."):choices({ "recall", "copy" }):default("recall")
    p:option("--n", "Pairs (recall) or symbols (copy) per sample (default 8)."):convert(math.tointeger)
    p:option("--samples", "Number of samples (default 2000)."):convert(math.tointeger)
    p:option("--seed", "Seed of every draw (default: seed of the config)."):convert(math.tointeger)
    p:option("--out", "Output file (default data/<task><n>.txt).")
    p:option("--keys", "recall: number of distinct keys (default max(16, n))."):convert(math.tointeger)
    p:option("--values", "recall: number of distinct values (default 16)."):convert(math.tointeger)
    p:option("--symbols", "copy: alphabet size (default 16)."):convert(math.tointeger)
  end,
}

local task = args.task
local n = args.n or 8
local opts = {
  n = n, samples = args.samples or 2000, seed = args.seed or cfg.seed,
  keys = args.keys or math.max(16, n), values = args.values, symbols = args.symbols,
}
local ok, lines = pcall(dm.tasks.generate, task, opts)
if not ok then dm.cli.die(lines) end

local out = args.out or string.format("data/%s%d.txt", task, n)
local ok_w, werr = pcall(dm.log.write_file, out, table.concat(lines, "\n") .. "\n")
if not ok_w then dm.cli.die(werr) end
print(string.format("wrote %s: %d %s samples (n=%d), seed %d", out, #lines, task, n, opts.seed))
