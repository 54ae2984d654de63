-- learning_spec.lua: the pieces of scripts/learning.sh that run without the
-- corpora: a line chart's legend shows a dashed series dashed and keeps long
-- names inside the plot, and scripts/learning_report.lua turns run folders
-- (metrics.jsonl + wall_seconds) into the Markdown tables and SVG figures.
local dm = require "drlmem"
local slurp, spit = require("helpers").slurp, require("helpers").spit
local plot = dm.plot

-- The legend <line> elements of a chart: the short ones (20 px wide).
local function legend_lines(text)
  local out = {}
  for tag in text:gmatch("<line [^>]*/>") do
    local x1, x2 = tonumber(tag:match('x1="([%d.%-]+)"')), tonumber(tag:match('x2="([%d.%-]+)"'))
    if x1 and x2 and math.abs(x2 - x1 - 20) < 1e-6 then out[#out + 1] = tag end
  end
  return out
end

describe("plot.line_chart legend", function()
  it("draws a dashed series' legend entry dashed, a solid one solid", function()
    local svg = plot.SVG(450, 300)
    plot.line_chart(svg, { w = 450, h = 300, series = {
      { name = "drlmem", xs = { 1, 2 }, ys = { 3, 2 } },
      { name = "reference", xs = { 1, 2 }, ys = { 3.1, 2.1 }, dash = true } } })
    local lines = legend_lines(svg:tostring())
    assert.equal(2, #lines)
    assert.is_nil(lines[1]:find("stroke-dasharray", 1, true))
    assert.truthy(lines[2]:find('stroke-dasharray="6,4"', 1, true))
  end)

  it("moves the legend left for long names so the text ends inside the plot", function()
    local name = "a rather long series name"
    local svg = plot.SVG(450, 300)
    plot.line_chart(svg, { w = 450, h = 300, series = { { name = name, xs = { 1, 2 }, ys = { 1, 2 } } } })
    local text = svg:tostring()
    local x = tonumber(text:match('<text [^>]*x="([%d.]+)"[^>]*>' .. name .. "<"))
    assert.is_number(x)
    local right = 450 - 16 -- plot area's right edge (margin 16)
    assert.is_true(x + #name * 6.5 <= right + 1e-6, "legend text overflows: starts at " .. x)
  end)
end)

describe("scripts/learning_report.lua", function()
  it("writes one table per corpus and a valid two-panel figure from run folders", function()
    local exe = os.getenv("DRLMEM_EXE")
    if not exe or not io.open(exe, "rb") then
      pending("DRLMEM_EXE is not set")
      return
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(os.execute("mkdir -p '" .. dir .. "'") == true)
    local function run(name, vals, wall)
      assert.is_true(os.execute("mkdir -p '" .. dir .. "/" .. name .. "'") == true)
      local lines = {}
      for e, v in ipairs(vals) do
        lines[e] = dm.json.encode { epoch = e, train_loss = v + 0.5, val_loss = v, test_loss = v + 0.01,
          test_ppl = math.exp(v), test_acc = 0.25, test_f1_weighted = 0.125, test_f1_macro = 0.0625 }
      end
      spit(dir .. "/" .. name .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
      if wall then spit(dir .. "/" .. name .. "/wall_seconds", wall .. "\n") end
    end
    run("kjv-default-drlmem", { 5.5, 5.0, 4.75 }, 300.4)
    run("kjv-default-reference", { 5.6, 5.1, 4.8 }, 280)
    run("kjv-improved-drlmem", { 5.0, 4.5 }) -- stopped early, no wall time
    local ok = os.execute(("'%s' scripts/learning_report.lua --dir '%s' --epochs 3 >/dev/null"):format(exe, dir))
    assert.is_true(ok == true, "learning_report.lua failed")
    local md = slurp(dir .. "/summary.md")
    assert.truthy(md:find("| default | drlmem | 5.500 | 5.000 | 4.750 | 5.250 | 4.760 | 115.58 | 0.250 | 0.125 | 0.0625 | 300 |",
      1, true), md)
    assert.truthy(md:find("| default | reference | 5.600 | 5.100 | 4.800 |", 1, true), md)
    assert.truthy(md:find("| improved | drlmem | 5.000 | 4.500 | – | 5.000 | 4.510 |", 1, true), md)
    assert.is_nil(md:find("tinyshakespeare", 1, true)) -- no run, no table
    local svg = slurp(dir .. "/kjv.svg")
    local good, counts = plot.check_svg(svg)
    assert.is_true(good, counts)
    assert.equal(6, counts.polyline) -- 3 runs x (validation, training)
    assert.truthy(svg:find('id="panel-val"', 1, true))
    assert.truthy(svg:find('id="panel-train"', 1, true))
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
