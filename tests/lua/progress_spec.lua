-- progress_spec.lua: the progress bar fits the terminal's width (every
-- redraw shorter than the width, so it never wraps into a trail of lines),
-- and the width comes from the terminal or $COLUMNS (dm.term_width).
local dm = require "drlmem"

local function sink()
  local buf = {}
  return buf, { write = function(_, ...) for _, s in ipairs { ... } do buf[#buf + 1] = s end end, flush = function() end }
end

-- The redraws of a bar: the pieces between \r, each one line.
local function redraws(buf)
  local out = {}
  for piece in table.concat(buf):gmatch("[^\r]+") do out[#out + 1] = piece end
  return out
end

describe("dm.progress width", function()
  local function run(columns, label, total)
    local t = 0
    local buf, out = sink()
    local bar = dm.progress.new { total = total or 400, label = label, mode = "bar", out = out,
      clock = function() return t end, columns = columns }
    for i = 1, total or 400, 37 do
      t = t + 1
      bar:update(i, { loss = 3.14159, tokens = i * 1000 })
    end
    t = t + 1
    bar:update(total or 400, { loss = 2.5, tokens = 500000 })
    bar:finish()
    return buf
  end

  it("keeps every redraw shorter than a 50-column terminal, on one line", function()
    local buf = run(50, "epoch 10/50")
    local pieces = redraws(buf)
    assert.truthy(#pieces > 5)
    for k, p in ipairs(pieces) do
      local line = k == #pieces and p:gsub("\n$", "") or p
      assert.is_nil(line:find("\n"), "a redraw holds a newline: " .. line)
      assert.truthy(#line <= 49, string.format("%d columns: '%s'", #line, line))
    end
    -- the bar shrank to fit, but is still there with the counts
    assert.truthy(pieces[#pieces]:find("^epoch 10/50 %[#+%] 400/400 loss 2%.5000"), pieces[#pieces])
  end)

  it("uses the full bar when there is room, and drops it when there is none", function()
    local wide = redraws(run(120, "epoch 1/3"))
    assert.truthy(wide[#wide]:find("[" .. string.rep("#", 24) .. "]", 1, true), wide[#wide])
    local narrow = redraws(run(20, "epoch 1/3"))
    for _, p in ipairs(narrow) do
      p = p:gsub("\n$", "")
      assert.truthy(#p <= 19, p)
      assert.is_nil(p:find("[", 1, true), p)
    end
    assert.truthy(narrow[#narrow]:find("^epoch 1/3 400/400"), narrow[#narrow])
  end)

  it("asks a columns function at each redraw (a resized terminal)", function()
    local cols = 100
    local t = 0
    local buf, out = sink()
    local bar = dm.progress.new { total = 10, mode = "bar", out = out, clock = function() return t end,
      columns = function() return cols end }
    t = 1; bar:update(5, { loss = 1 })
    cols = 40
    t = 2; bar:update(10, { loss = 1 })
    local pieces = redraws(buf)
    assert.truthy(#pieces[1] > 40)
    assert.truthy(#pieces[2] <= 39, pieces[2])
  end)

  it("reads the width from $COLUMNS when stdout is not a terminal", function()
    local lua = os.getenv("LUA") or "lua5.4"
    local p = io.popen("COLUMNS=57 " .. lua .. " -e 'local dm = require \"drlmem\"; "
      .. "print(dm.term_width(), dm.progress.columns())' </dev/null 2>&1 | cat")
    local text = p:read("a")
    p:close()
    assert.equal("57\t57\n", text)
    p = io.popen("COLUMNS=junk " .. lua .. " -e 'local dm = require \"drlmem\"; "
      .. "print(dm.term_width(), dm.progress.columns())' </dev/null 2>&1 | cat")
    text = p:read("a")
    p:close()
    assert.equal("nil\t80\n", text)
  end)
end)
