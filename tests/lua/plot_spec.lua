-- plot_spec.lua: drlmem.plot writes well-formed SVG (checked by its own
-- XML checker, and by xmllint when the machine has it), the training figure
-- has its two panels, and the checker catches broken markup.
local dm = require "drlmem"
local plot = dm.plot

local function have_xmllint()
  local ok = os.execute("command -v xmllint >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function xmllint_ok(path)
  local ok = os.execute("xmllint --noout '" .. path .. "' 2>/dev/null")
  return ok == true or ok == 0
end

local function count(text, pat)
  local n = 0
  for _ in text:gmatch(pat) do n = n + 1 end
  return n
end

local history = {
  { epoch = 1, train_loss = 3.4, val_loss = 2.9, test_acc = 0.25, test_f1_weighted = 0.14, test_f1_macro = 0.03 },
  { epoch = 2, train_loss = 2.3, val_loss = 1.9, test_acc = 0.55, test_f1_weighted = 0.46, test_f1_macro = 0.13 },
  { epoch = 3, train_loss = 1.8, val_loss = 1.7, test_acc = 0.60, test_f1_weighted = 0.55, test_f1_macro = 0.17 },
}

describe("plot.training_figure", function()
  it("draws two panels with the seed's curves as valid SVG", function()
    local path = os.tmpname()
    local svg = plot.training_figure(history, path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("a")
    f:close()
    assert.equal(svg:tostring(), text)
    local ok, counts = plot.check_svg(text)
    assert.is_true(ok, counts)
    assert.equal(1, counts.svg)
    -- loss panel: train + validation; test panel: accuracy, F1 weighted, F1 macro
    assert.equal(5, counts.polyline)
    assert.truthy(text:find('<g id="panel-loss">', 1, true))
    assert.truthy(text:find('<g id="panel-test">', 1, true))
    assert.truthy(text:find(">Loss<", 1, true))
    assert.truthy(text:find(">Test metrics<", 1, true))
    for _, name in ipairs { "train", "validation", "accuracy", "F1 weighted", "F1 macro" } do
      assert.truthy(text:find(">" .. name .. "<", 1, true), name)
    end
    -- one marker per point of every series
    assert.equal(15, counts.circle)
    if have_xmllint() then assert.is_true(xmllint_ok(path)) end
    os.remove(path)
  end)

  it("renders as a picture (rsvg-convert, from librsvg2-bin, draws it to PNG)", function()
    local svg_path = os.tmpname()
    local png_path = svg_path .. ".png"
    plot.training_figure(history, svg_path)
    local ok = os.execute("rsvg-convert -f png -o '" .. png_path .. "' '" .. svg_path .. "' 2>/dev/null")
    assert.is_true(ok == true or ok == 0, "rsvg-convert could not render the figure")
    local f = assert(io.open(png_path, "rb"))
    local png = f:read("a")
    f:close()
    os.remove(svg_path)
    os.remove(png_path)
    assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    -- IHDR: width and height as big-endian 32-bit integers at bytes 17..24
    local w, h = string.unpack(">I4I4", png, 17)
    local sw = tonumber(plot.training_figure(history):tostring():match('<svg[^>]-width="(%d+)"'))
    assert.equal(sw, w)
    assert.is_true(h > 100)
    -- Curves, axes and text compress far worse than a blank canvas (< 3 KB).
    assert.is_true(#png > 8000, "PNG of " .. #png .. " bytes looks blank")
  end)

  it("maps the first epoch to the left edge and a lower loss lower down", function()
    local text = plot.training_figure(history):tostring()
    local pts = text:match('<polyline[^>]-points="([^"]+)"[^>]-stroke="#1f77b4"')
    assert.truthy(pts)
    local xs, ys = {}, {}
    for x, y in pts:gmatch("([%d%.%-]+),([%d%.%-]+)") do xs[#xs + 1], ys[#ys + 1] = tonumber(x), tonumber(y) end
    assert.equal(3, #xs)
    assert.is_true(xs[1] < xs[2] and xs[2] < xs[3])
    -- SVG y grows downwards: a falling loss climbs down the page
    assert.is_true(ys[1] < ys[2] and ys[2] < ys[3])
  end)

  it("leaves non-finite values out and still writes valid SVG", function()
    local h = {
      { epoch = 1, train_loss = 0 / 0, val_loss = math.huge, test_acc = 0.1, test_f1_weighted = 0.1, test_f1_macro = 0.1 },
      { epoch = 2, train_loss = 2.0, val_loss = 2.1, test_acc = 0.2, test_f1_weighted = 0.2, test_f1_macro = 0.2 },
    }
    local text = plot.training_figure(h):tostring()
    assert.is_true((plot.check_svg(text)))
    assert.falsy(text:find("nan", 1, true))
    assert.falsy(text:find("inf", 1, true))
  end)

  it("draws an empty history (no epoch yet) as valid SVG", function()
    local ok, counts = plot.check_svg(plot.training_figure({}):tostring())
    assert.is_true(ok, counts)
    assert.equal(5, counts.polyline)
  end)
end)

describe("plot building blocks", function()
  it("escapes text and attribute values", function()
    local svg = plot.SVG(100, 50)
    svg:text(1, 2, 'a < b & "c" > \'d\'')
    svg:group('x"y')
    svg:close_group()
    local text = svg:tostring()
    assert.truthy(text:find("a &lt; b &amp; &quot;c&quot; &gt; &apos;d&apos;", 1, true))
    assert.is_true((plot.check_svg(text)))
  end)

  it("draws bar charts and heat maps as valid SVG", function()
    local svg = plot.SVG(600, 600)
    plot.bar_chart(svg, { x = 0, y = 0, w = 600, h = 300, title = "usage", values = { 3, 0, 7, 1 },
      labels = { "1", "2", "3", "4" } })
    plot.heatmap(svg, { x = 0, y = 300, w = 600, h = 300, rows = { { 0.1, 0.9 }, { 0.5, 0.5 } },
      row_labels = { "<sos>", "mary" }, col_labels = { "s1", "s2" } })
    local ok, counts = plot.check_svg(svg:tostring())
    assert.is_true(ok, counts)
    -- background + 2 plot frames + 4 bars + 4 cells + heat map frame
    assert.equal(1 + 1 + 4 + 4 + 1, counts.rect)
    assert.truthy(svg:tostring():find("&lt;sos&gt;", 1, true))
  end)

  it("draws a line for every series but a legend entry only for those whose legend is not false", function()
    local svg = plot.SVG(400, 300)
    plot.line_chart(svg, { series = {
      { name = "grey one", legend = false, xs = { 1, 2 }, ys = { 3, 2 } },
      { name = "named", xs = { 1, 2 }, ys = { 2, 1 } },
      { name = "grey two", legend = false, xs = { 1, 2 }, ys = { 4, 3 } } } })
    local text = svg:tostring()
    local ok, counts = plot.check_svg(text)
    assert.is_true(ok, counts)
    assert.equal(3, counts.polyline)
    assert.truthy(text:find(">named<", 1, true))
    assert.falsy(text:find("grey", 1, true))
    -- the one legend entry takes the first legend row
    assert.truthy(text:find('y="48">named<', 1, true))
  end)

  it("picks round tick values", function()
    assert.same({ 0, 0.2, 0.4, 0.6, 0.8, 1 }, plot.ticks(0, 1, 5))
    assert.same({ 2, 2.5, 3, 3.5 }, plot.ticks(1.9, 3.6, 4))
    assert.same({ 5 }, plot.ticks(5, 5))
    assert.same({}, plot.ticks(0 / 0, 1))
  end)
end)

describe("plot.check_svg", function()
  local good = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><g id="a"><rect x="1"/></g></svg>\n'
  it("accepts well-formed SVG and counts elements", function()
    local ok, counts = plot.check_svg(good)
    assert.is_true(ok)
    assert.same({ svg = 1, g = 1, rect = 1 }, counts)
  end)

  local bad = {
    { "<svg><g></svg>", "does not match" },
    { "<svg><g>", "unclosed <g>" },
    { "<svg><rect x=1/></svg>", "bad attribute syntax" },
    { '<svg><rect x="1" x="2"/></svg>', "duplicate attribute" },
    { '<svg><text>a & b</text></svg>', "bad entity" },
    { '<svg><text>&nbsp;</text></svg>', "bad entity" },
    { '<svg></svg><svg></svg>', "second root" },
    { 'junk<svg></svg>', "outside the root" },
    { '<html></html>', "not <svg>" },
    { '<svg><rect x="1"</svg>', "attribute" },
    { '<svg><!-- open </svg>', "unterminated comment" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[1], function()
      local ok, msg = plot.check_svg(case[1])
      assert.is_nil(ok)
      assert.truthy(msg:find(case[2], 1, true), msg)
    end)
  end
end)
