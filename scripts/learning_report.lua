-- learning_report.lua: the tables and figures of scripts/learning.sh.
--
--   drlmem scripts/learning_report.lua [--dir logs/learning] [--epochs 4]
--
-- Reads DIR/<corpus>-<config>-<program>/metrics.jsonl and wall_seconds
-- (corpus kjv | tinyshakespeare, config default | improved, program drlmem |
-- reference; missing runs are left out) and writes DIR/summary.md (one
-- Markdown table per corpus: validation loss per epoch, the last epoch's test
-- loss, perplexity, accuracy and F1, wall time) and DIR/<corpus>.svg
-- (validation and training loss by epoch; drlmem solid, reference dashed,
-- one colour per configuration).
local dm = require "drlmem"
local plot = dm.plot or require "drlmem.plot"

local dir, epochs = "logs/learning", 4
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--dir" then dir, i = arg[i + 1], i + 1
  elseif a == "--epochs" then epochs, i = math.tointeger(tonumber(arg[i + 1])), i + 1
  elseif a == "--help" or a == "-h" then
    print("usage: drlmem scripts/learning_report.lua [--dir DIR] [--epochs N]")
    os.exit(0)
  else
    io.stderr:write("learning_report.lua: unknown argument '", a, "'\n")
    os.exit(2)
  end
  i = i + 1
end
assert(dir and epochs, "learning_report.lua: --dir needs a folder and --epochs an integer")

local CORPORA = {
  { id = "kjv", title = "kjv.txt (word level, lines)" },
  { id = "tinyshakespeare", title = "tinyshakespeare.txt (char level, stream)" },
}
local CONFIGS = { "default", "improved" }
local PROGRAMS = { "drlmem", "reference" }

local function read_runs(name)
  local path = dir .. "/" .. name .. "/metrics.jsonl"
  local f = io.open(path, "r")
  if not f then return nil end
  local recs = {}
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then recs[#recs + 1] = dm.json.decode(line, path .. ":" .. n) end
  end
  f:close()
  local w = io.open(dir .. "/" .. name .. "/wall_seconds", "r")
  local wall = w and tonumber(w:read("l")) or nil
  if w then w:close() end
  return recs, wall
end

local function num(v, fmt)
  if type(v) ~= "number" or v ~= v then return "–" end
  return string.format(fmt or "%.3f", v)
end

local md = { "# Learning: drlmem vs the PyTorch reference", "" }
local sf = io.open(dir .. "/settings.txt", "r")
if sf then
  md[#md + 1] = "Settings: " .. sf:read("a"):gsub("\n$", ""):gsub("\n", "; ")
  md[#md + 1] = ""
  sf:close()
end

for _, corpus in ipairs(CORPORA) do
  local rows, val_series, train_series = {}, {}, {}
  for ci, config in ipairs(CONFIGS) do
    for _, prog in ipairs(PROGRAMS) do
      local name = corpus.id .. "-" .. config .. "-" .. prog
      local recs, wall = read_runs(name)
      if recs and #recs > 0 then
        local xs, vs, ts = {}, {}, {}
        for k, r in ipairs(recs) do xs[k], vs[k], ts[k] = r.epoch, r.val_loss, r.train_loss end
        local label = (prog == "reference" and "ref " or "drlmem ") .. config
        local color = plot.COLORS[ci == 1 and 1 or 2]
        val_series[#val_series + 1] = { name = label, xs = xs, ys = vs, color = color, dash = prog == "reference" }
        train_series[#train_series + 1] = { name = label, xs = xs, ys = ts, color = color, dash = prog == "reference" }
        local last = recs[#recs]
        local cells = { config, prog }
        for e = 1, epochs do cells[#cells + 1] = num(recs[e] and recs[e].val_loss) end
        cells[#cells + 1] = num(last.train_loss)
        cells[#cells + 1] = num(last.test_loss)
        cells[#cells + 1] = num(last.test_ppl, "%.2f")
        cells[#cells + 1] = num(last.test_acc)
        cells[#cells + 1] = num(last.test_f1_weighted)
        cells[#cells + 1] = num(last.test_f1_macro, "%.4f")
        cells[#cells + 1] = num(wall, "%.0f")
        rows[#rows + 1] = "| " .. table.concat(cells, " | ") .. " |"
      end
    end
  end
  if #rows > 0 then
    local head = { "config", "program" }
    for e = 1, epochs do head[#head + 1] = "val e" .. e end
    for _, h in ipairs { "train (last)", "test loss", "test ppl", "test acc", "F1 w", "F1 macro", "wall s" } do
      head[#head + 1] = h
    end
    local sep = {}
    for k = 1, #head do sep[k] = k <= 2 and "---" or "---:" end
    md[#md + 1] = "## " .. corpus.title
    md[#md + 1] = ""
    md[#md + 1] = "| " .. table.concat(head, " | ") .. " |"
    md[#md + 1] = "|" .. table.concat(sep, "|") .. "|"
    for _, r in ipairs(rows) do md[#md + 1] = r end
    md[#md + 1] = ""
    local svg = plot.SVG(900, 400)
    svg:text(450, 16, corpus.title .. ": drlmem (solid) vs PyTorch reference (dashed)",
      { size = 13, anchor = "middle", fill = "#333" })
    plot.line_chart(svg, { id = "panel-val", x = 0, y = 24, w = 450, h = 376, title = "Validation loss",
      xlabel = "epoch", ylabel = "loss (nats/token)", series = val_series })
    plot.line_chart(svg, { id = "panel-train", x = 450, y = 24, w = 450, h = 376, title = "Training loss",
      xlabel = "epoch", ylabel = "loss (nats/token)", series = train_series })
    local path = svg:save(dir .. "/" .. corpus.id .. ".svg")
    md[#md + 1] = "Figure: " .. path
    md[#md + 1] = ""
  end
end

local text = table.concat(md, "\n")
local out = assert(io.open(dir .. "/summary.md", "w"))
assert(out:write(text, "\n"))
assert(out:close())
io.write(text)
print("\nwrote " .. dir .. "/summary.md")
