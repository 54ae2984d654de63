-- augment.lua: EDA text augmentation of any text file.
--
--   drlmem scripts/augment.lua --in corpus.txt --out augmented.txt [--seed N]
--                              [--alpha A] [--copies K] [--no-original]
--
-- Every non-empty line is written as is (unless --no-original), followed by
-- K augmented copies; the copies take the four EDA operations in turn
-- (synonym replacement, random insertion, random swap, random deletion; see
-- lua/drlmem/augment.lua), each changing about alpha of the line's words.
-- Blank lines are dropped. Draws come from dm.Generator(seed): the same
-- seed gives the same bytes.
local dm = require "drlmem"

local args, cfg = dm.cli.parse {
  name = "augment.lua",
  description = "Applies EDA augmentation (synonym replacement, insertion, swap, deletion) to a text file.",
  options = function(p)
    p:option("--in", "Text file to augment."):args(1):count(1):target("input")
    p:option("--out", "Output file (\"-\" for standard output)."):args(1):count(1)
    p:option("--seed", "Seed of every draw (default: seed of the config)."):convert(math.tointeger)
    p:option("--alpha", "Fraction of a line's words each operation changes.", "0.1"):convert(tonumber)
    p:option("--copies", "Augmented copies per line.", "4"):convert(math.tointeger)
    p:flag("--no-original", "Write only the augmented copies."):target("no_original")
  end,
}

if not args.alpha or args.alpha <= 0 or args.alpha > 1 then dm.cli.die("--alpha must be a number in (0, 1]") end
if not args.copies or args.copies < 0 then dm.cli.die("--copies must be an integer >= 0") end

local f, err = io.open(args.input, "rb")
if not f then dm.cli.die("cannot open " .. args.input .. ": " .. tostring(err)) end
local text = f:read("a")
f:close()
if not utf8.len(text) then dm.cli.die(args.input .. " is not UTF-8 text") end

local g = dm.Generator(args.seed or cfg.seed)
local out = {}
local n_in = 0
for line in (text:gsub("\r\n?", "\n")):gmatch("[^\n]+") do
  if line:match("%S") then
    n_in = n_in + 1
    if not args.no_original then out[#out + 1] = line end
    for _, a in ipairs(dm.augment.eda(line, g, { alpha = args.alpha, copies = args.copies })) do
      out[#out + 1] = a
    end
  end
end

local body = table.concat(out, "\n") .. "\n"
if args.out == "-" then
  io.write(body)
else
  local ok, werr = pcall(dm.log.write_file, args.out, body)
  if not ok then dm.cli.die(werr) end
  io.stderr:write(string.format("wrote %s: %d lines from %d (%d copies each, alpha %g)\n", args.out, #out, n_in,
    args.copies, args.alpha))
end
