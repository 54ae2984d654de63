-- plot.lua: small SVG pictures with no dependency: line charts for the
-- training curves, bar charts and heat maps for exploring the memory.
--
-- An SVG is text, so the figure can be written from Lua, diffed, opened in
-- any browser and checked as XML in a test. The building blocks:
--
--   local svg = plot.SVG(800, 360)                 -- a canvas
--   plot.line_chart(svg, {x = 0, y = 0, w = 400, h = 360, title = "loss",
--     xlabel = "epoch", series = {{name = "train", xs = {1, 2}, ys = {3.1, 2.7}}}})
--   plot.bar_chart(svg, {..., values = {...}, labels = {...}})
--   plot.heatmap(svg, {..., rows = {{...}, ...}, row_labels = {...}})
--   svg:save("training.svg")                       -- atomic: tmp + rename
--
-- plot.training_figure(history, path) draws the seed's figure: train and
-- validation loss by epoch, and test accuracy and F1 by epoch, side by side.
-- plot.check_svg(text) is a small XML well-formedness check (balanced tags,
-- quoted attributes, known entities) used by the tests.
local dm = require "drlmem"

local plot = {}

plot.COLORS = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f" }

--- Text made safe for XML content and attribute values.
function plot.escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&apos;" }))
end
local esc = plot.escape

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

-- A number as a short coordinate ("12.5", never "1e+20" or "nan").
local function num(v)
  if not finite(v) then return "0" end
  local s = string.format("%.2f", v)
  s = s:gsub("0+$", ""):gsub("%.$", "")
  if s == "-0" then s = "0" end
  return s
end

local function attrs(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "number" then v = num(v) end
    out[#out + 1] = string.format('%s="%s"', k:gsub("_", "-"), esc(v))
  end
  return table.concat(out, " ")
end

---------------------------------------------------------------------------
-- The canvas
---------------------------------------------------------------------------
local SVG = {}
SVG.__index = SVG
SVG.__name = "drlmem.SVG"

--- A canvas of w x h pixels with a white background.
function plot.SVG(w, h)
  local self = setmetatable({ w = w, h = h, parts = {} }, SVG)
  self:add(string.format('<rect x="0" y="0" width="%s" height="%s" fill="white"/>', num(w), num(h)))
  return self
end

--- Appends raw SVG markup (already escaped).
function SVG:add(markup) self.parts[#self.parts + 1] = markup end

function SVG:line(x1, y1, x2, y2, style)
  local a = { x1 = x1, y1 = y1, x2 = x2, y2 = y2, stroke = "#000", stroke_width = 1 }
  for k, v in pairs(style or {}) do a[k] = v end
  self:add("<line " .. attrs(a) .. "/>")
end

function SVG:rect(x, y, w, h, style)
  local a = { x = x, y = y, width = math.max(0, w), height = math.max(0, h), fill = "#888" }
  for k, v in pairs(style or {}) do a[k] = v end
  self:add("<rect " .. attrs(a) .. "/>")
end

function SVG:circle(x, y, r, style)
  local a = { cx = x, cy = y, r = r, fill = "#000" }
  for k, v in pairs(style or {}) do a[k] = v end
  self:add("<circle " .. attrs(a) .. "/>")
end

--- A polyline through points {{x, y}, ...}.
function SVG:polyline(points, style)
  local p = {}
  for i, xy in ipairs(points) do p[i] = num(xy[1]) .. "," .. num(xy[2]) end
  local a = { points = table.concat(p, " "), fill = "none", stroke = "#000", stroke_width = 2 }
  for k, v in pairs(style or {}) do a[k] = v end
  self:add("<polyline " .. attrs(a) .. "/>")
end

--- Text at (x, y). opts: size (12), anchor ("start"|"middle"|"end"),
-- rotate (degrees, around the point), weight, fill.
function SVG:text(x, y, s, opts)
  opts = opts or {}
  local a = { x = x, y = y, font_size = opts.size or 12, font_family = "sans-serif",
    text_anchor = opts.anchor or "start", fill = opts.fill or "#000" }
  if opts.weight then a.font_weight = opts.weight end
  if opts.rotate then a.transform = string.format("rotate(%s %s %s)", num(opts.rotate), num(x), num(y)) end
  self:add("<text " .. attrs(a) .. ">" .. esc(s) .. "</text>")
end

--- Opens a group (<g>) with an id, e.g. one per panel; close with :close_group().
function SVG:group(id) self:add('<g id="' .. esc(id) .. '">') end
function SVG:close_group() self:add("</g>") end

function SVG:tostring()
  return table.concat({
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s">',
      num(self.w), num(self.h), num(self.w), num(self.h)),
    table.concat(self.parts, "\n"),
    "</svg>", "" }, "\n")
end
SVG.__tostring = SVG.tostring

--- Writes the SVG to path (creating its folder) through a temporary file
-- and a rename, so a reader never sees half a picture and a full disk
-- leaves the previous picture. Raises "plot: write PATH: REASON".
function SVG:save(path)
  local ok, err = pcall(dm.log.write_file, path, self:tostring())
  if not ok then error("plot: " .. tostring(err), 0) end
  return path
end

---------------------------------------------------------------------------
-- Axes
---------------------------------------------------------------------------

--- About n "nice" tick values covering [lo, hi] (steps of 1, 2 or 5 x 10^k).
function plot.ticks(lo, hi, n)
  n = n or 5
  if not (finite(lo) and finite(hi)) then return {} end
  if hi < lo then lo, hi = hi, lo end
  if hi == lo then return { lo } end
  local raw = (hi - lo) / n
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, m in ipairs { 1, 2, 5, 10 } do
    step = m * mag
    if step >= raw then break end
  end
  local out = {}
  local first = math.ceil(lo / step - 1e-9) * step
  for i = 0, 1000 do
    local v = first + i * step
    if v > hi + step * 1e-9 then break end
    if math.abs(v) < step * 1e-9 then v = 0 end
    out[#out + 1] = tonumber(string.format("%.12g", v)) -- 0.6, not 0.6000000000000001
  end
  return out
end

local function fmt_tick(v)
  if v == math.floor(v) and math.abs(v) < 1e6 then return string.format("%d", v) end
  local s = string.format("%.4g", v)
  return s
end

-- The finite range of the ys of all series, widened a little; nil if none.
local function y_range(series, lo, hi)
  local mn, mx = math.huge, -math.huge
  for _, s in ipairs(series) do
    for _, y in ipairs(s.ys or {}) do
      if finite(y) then mn, mx = math.min(mn, y), math.max(mx, y) end
    end
  end
  if lo then mn = lo end
  if hi then mx = hi end
  if mn > mx then return nil end
  if mn == mx then
    local d = math.abs(mn) * 0.1 + 1e-3
    return mn - d, mx + d
  end
  local pad = (mx - mn) * 0.05
  return lo or (mn - pad), hi or (mx + pad)
end

--- Draws a line chart in the box (x, y, w, h) of svg. spec: title, xlabel,
-- ylabel, series = {{name=, xs=, ys=, color=, dash=}}, ymin, ymax (fixed
-- limits), id (the group id). Non-finite values are left out of the line.
-- Each series is one <polyline> with a marker per point, and a legend
-- entry unless its legend is false (many lines, a few named).
function plot.line_chart(svg, spec)
  local x0, y0, w, h = spec.x or 0, spec.y or 0, spec.w or svg.w, spec.h or svg.h
  local ml, mr, mt, mb = 62, 16, 34, 46
  local px, py, pw, ph = x0 + ml, y0 + mt, w - ml - mr, h - mt - mb
  local series = spec.series or {}
  svg:group(spec.id or "chart")
  if spec.title then svg:text(x0 + w / 2, y0 + 20, spec.title, { size = 14, anchor = "middle", weight = "bold" }) end
  svg:rect(px, py, pw, ph, { fill = "#fafafa", stroke = "#444", stroke_width = 1 })
  -- x range over all series
  local xmin, xmax = math.huge, -math.huge
  for _, s in ipairs(series) do
    for _, xv in ipairs(s.xs or {}) do
      if finite(xv) then xmin, xmax = math.min(xmin, xv), math.max(xmax, xv) end
    end
  end
  if xmin > xmax then xmin, xmax = 0, 1 end
  if xmin == xmax then xmin, xmax = xmin - 1, xmax + 1 end
  local ylo, yhi = y_range(series, spec.ymin, spec.ymax)
  if not ylo then ylo, yhi = 0, 1 end
  local function sx(v) return px + (v - xmin) / (xmax - xmin) * pw end
  local function sy(v) return py + ph - (v - ylo) / (yhi - ylo) * ph end
  for _, t in ipairs(plot.ticks(ylo, yhi, 5)) do
    local yy = sy(t)
    svg:line(px, yy, px + pw, yy, { stroke = "#ddd" })
    svg:text(px - 6, yy + 4, fmt_tick(t), { size = 10, anchor = "end" })
  end
  local xt = plot.ticks(xmin, xmax, math.min(8, math.max(1, math.floor(xmax - xmin))))
  for _, t in ipairs(xt) do
    local xx = sx(t)
    svg:line(xx, py + ph, xx, py + ph + 4, { stroke = "#444" })
    svg:text(xx, py + ph + 16, fmt_tick(t), { size = 10, anchor = "middle" })
  end
  if spec.xlabel then svg:text(px + pw / 2, y0 + h - 8, spec.xlabel, { size = 12, anchor = "middle" }) end
  if spec.ylabel then
    svg:text(x0 + 14, py + ph / 2, spec.ylabel, { size = 12, anchor = "middle", rotate = -90 })
  end
  local nlegend = 0
  for i, s in ipairs(series) do
    local color = s.color or plot.COLORS[(i - 1) % #plot.COLORS + 1]
    local pts = {}
    for j, xv in ipairs(s.xs or {}) do
      local yv = s.ys[j]
      if finite(xv) and finite(yv) then pts[#pts + 1] = { sx(xv), sy(yv) } end
    end
    local style = { stroke = color, class = "series" }
    if s.dash then style.stroke_dasharray = "6,4" end
    svg:polyline(pts, style)
    for _, p in ipairs(pts) do svg:circle(p[1], p[2], 2.5, { fill = color }) end
    -- legend, top right inside the plot, wide enough for the longest name
    -- (about 6.5 px a character at size 11); dashed like its line
    if s.legend ~= false then
      local lw = 110
      for _, t in ipairs(series) do
        if t.legend ~= false then lw = math.max(lw, #(t.name or "series 10") * 6.5 + 34) end
      end
      local ly = py + 14 + nlegend * 16
      nlegend = nlegend + 1
      local lstyle = { stroke = color, stroke_width = 2 }
      if s.dash then lstyle.stroke_dasharray = "6,4" end
      svg:line(px + pw - lw, ly - 4, px + pw - lw + 20, ly - 4, lstyle)
      svg:text(px + pw - lw + 26, ly, s.name or ("series " .. i), { size = 11 })
    end
  end
  svg:close_group()
end

--- Vertical bars in the box (x, y, w, h). spec: title, xlabel, ylabel,
-- values (list), labels (optional list, shown when few), color, id, vmax
-- (the top of the axis; default the largest value).
function plot.bar_chart(svg, spec)
  local x0, y0, w, h = spec.x or 0, spec.y or 0, spec.w or svg.w, spec.h or svg.h
  local ml, mr, mt, mb = 62, 16, 34, 46
  local px, py, pw, ph = x0 + ml, y0 + mt, w - ml - mr, h - mt - mb
  local values = spec.values or {}
  svg:group(spec.id or "bars")
  if spec.title then svg:text(x0 + w / 2, y0 + 20, spec.title, { size = 14, anchor = "middle", weight = "bold" }) end
  svg:rect(px, py, pw, ph, { fill = "#fafafa", stroke = "#444", stroke_width = 1 })
  local vmax = spec.vmax or 0
  if not spec.vmax then for _, v in ipairs(values) do if finite(v) and v > vmax then vmax = v end end end
  if vmax <= 0 then vmax = 1 end
  for _, t in ipairs(plot.ticks(0, vmax, 5)) do
    local yy = py + ph - t / vmax * ph
    svg:line(px, yy, px + pw, yy, { stroke = "#ddd" })
    svg:text(px - 6, yy + 4, fmt_tick(t), { size = 10, anchor = "end" })
  end
  local n = #values
  local bw = n > 0 and pw / n or pw
  for i, v in ipairs(values) do
    local bh = finite(v) and math.max(0, v) / vmax * ph or 0
    svg:rect(px + (i - 1) * bw + bw * 0.1, py + ph - bh, bw * 0.8, bh, { fill = spec.color or plot.COLORS[1] })
    if spec.labels and n <= 40 then
      svg:text(px + (i - 0.5) * bw, py + ph + 14, spec.labels[i] or "", { size = 9, anchor = "middle" })
    end
  end
  if spec.xlabel then svg:text(px + pw / 2, y0 + h - 8, spec.xlabel, { size = 12, anchor = "middle" }) end
  if spec.ylabel then
    svg:text(x0 + 14, py + ph / 2, spec.ylabel, { size = 12, anchor = "middle", rotate = -90 })
  end
  svg:close_group()
end

--- A heat map in the box (x, y, w, h): rows = {{v...}, ...} in [0, vmax];
-- row_labels, col_labels (optional; shown up to max_labels rows / columns,
-- default 60 and 40), title, id. Darker is larger. Returns
-- the cell grid {x, y, cw, ch} (top-left corner, cell width and height),
-- so that a caller can mark cells on top of it.
function plot.heatmap(svg, spec)
  local x0, y0, w, h = spec.x or 0, spec.y or 0, spec.w or svg.w, spec.h or svg.h
  local ml, mr, mt, mb = 90, 16, 34, 40
  local px, py, pw, ph = x0 + ml, y0 + mt, w - ml - mr, h - mt - mb
  local rows = spec.rows or {}
  svg:group(spec.id or "heatmap")
  if spec.title then svg:text(x0 + w / 2, y0 + 20, spec.title, { size = 14, anchor = "middle", weight = "bold" }) end
  local nr, nc = #rows, 0
  local vmax = spec.vmax or 0
  for _, r in ipairs(rows) do
    nc = math.max(nc, #r)
    if not spec.vmax then for _, v in ipairs(r) do if finite(v) and v > vmax then vmax = v end end end
  end
  if vmax <= 0 then vmax = 1 end
  local cw, ch = nc > 0 and pw / nc or pw, nr > 0 and ph / nr or ph
  for i, r in ipairs(rows) do
    for j, v in ipairs(r) do
      local a = finite(v) and math.max(0, math.min(1, v / vmax)) or 0
      local shade = math.floor(255 * (1 - a) + 0.5)
      svg:rect(px + (j - 1) * cw, py + (i - 1) * ch, cw, ch,
        { fill = string.format("#%02x%02x%02x", shade, shade, 255) })
    end
    if spec.row_labels and nr <= (spec.max_labels or 60) then
      svg:text(px - 4, py + (i - 0.5) * ch + 4, spec.row_labels[i] or "", { size = 10, anchor = "end" })
    end
  end
  if spec.col_labels and nc <= (spec.max_labels or 40) then
    for j = 1, nc do
      svg:text(px + (j - 0.5) * cw, py + ph + 14, spec.col_labels[j] or "", { size = 9, anchor = "middle" })
    end
  end
  svg:rect(px, py, pw, ph, { fill = "none", stroke = "#444", stroke_width = 1 })
  if spec.xlabel then svg:text(px + pw / 2, y0 + h - 6, spec.xlabel, { size = 12, anchor = "middle" }) end
  svg:close_group()
  return { x = px, y = py, cw = cw, ch = ch }
end

---------------------------------------------------------------------------
-- The training figure
---------------------------------------------------------------------------

--- The seed's figure from a list of metrics records (as in metrics.jsonl):
-- left, train and validation loss by epoch; right, test accuracy and F1
-- (weighted and macro) by epoch. Returns the SVG; writes it when path is
-- given.
function plot.training_figure(history, path, opts)
  opts = opts or {}
  local xs, tr, va, acc, f1w, f1m = {}, {}, {}, {}, {}, {}
  for i, r in ipairs(history) do
    xs[i] = r.epoch
    tr[i], va[i] = r.train_loss, r.val_loss
    acc[i], f1w[i], f1m[i] = r.test_acc, r.test_f1_weighted, r.test_f1_macro
  end
  local svg = plot.SVG(900, 380)
  if opts.title then svg:text(450, 14, opts.title, { size = 12, anchor = "middle", fill = "#555" }) end
  plot.line_chart(svg, { id = "panel-loss", x = 0, y = 10, w = 450, h = 370, title = "Loss",
    xlabel = "epoch", ylabel = "loss",
    series = { { name = "train", xs = xs, ys = tr }, { name = "validation", xs = xs, ys = va } } })
  plot.line_chart(svg, { id = "panel-test", x = 450, y = 10, w = 450, h = 370, title = "Test metrics",
    xlabel = "epoch", ylabel = "score", ymin = 0, ymax = 1,
    series = { { name = "accuracy", xs = xs, ys = acc, color = plot.COLORS[3] },
      { name = "F1 weighted", xs = xs, ys = f1w, color = plot.COLORS[4] },
      { name = "F1 macro", xs = xs, ys = f1m, color = plot.COLORS[5], dash = true } } })
  if path then svg:save(path) end
  return svg
end

---------------------------------------------------------------------------
-- Checking
---------------------------------------------------------------------------

--- Checks that text is well-formed XML with an <svg> root: tags balanced
-- and properly nested, attributes quoted and unique, only the five XML
-- entities or character references. Returns true, or nil and a message
-- naming the line. Also returns counts of elements by name.
function plot.check_svg(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local stack, counts, root = {}, {}, nil
  local pos, len = 1, #text
  local function line_of(p)
    local n = 1
    for _ in text:sub(1, p):gmatch("\n") do n = n + 1 end
    return n
  end
  local function fail(p, msg) return nil, string.format("line %d: %s", line_of(p), msg) end
  local function check_text(s, p)
    local i = 1
    while true do
      local a = s:find("&", i, true)
      if not a then break end
      local ent = s:match("^&([#%w]+);", a)
      if not (ent == "amp" or ent == "lt" or ent == "gt" or ent == "quot" or ent == "apos"
          or (ent and (ent:match("^#%d+$") or ent:match("^#x%x+$")))) then
        return fail(p, "bad entity near '" .. s:sub(a, a + 8) .. "'")
      end
      i = a + 1
    end
    if s:find("<", 1, true) then return fail(p, "stray '<'") end
    return true
  end
  while pos <= len do
    local lt = text:find("<", pos, true)
    local chunk = text:sub(pos, (lt or len + 1) - 1)
    if #stack == 0 and chunk:find("%S") then return fail(pos, "text outside the root element") end
    local ok, err = check_text(chunk, pos)
    if not ok then return nil, err end
    if not lt then break end
    if text:sub(lt, lt + 3) == "<!--" then
      local e = text:find("-->", lt + 4, true)
      if not e then return fail(lt, "unterminated comment") end
      pos = e + 3
    elseif text:sub(lt, lt + 1) == "<?" then
      local e = text:find("?>", lt + 2, true)
      if not e then return fail(lt, "unterminated processing instruction") end
      pos = e + 2
    else
      local gt = text:find(">", lt + 1, true)
      if not gt then return fail(lt, "unterminated tag") end
      local tag = text:sub(lt + 1, gt - 1)
      if tag:sub(1, 1) == "/" then
        local name = tag:match("^/([%a_][%w_%-%.:]*)%s*$")
        if not name then return fail(lt, "bad closing tag '<" .. tag .. ">'") end
        local open = table.remove(stack)
        if open ~= name then
          return fail(lt, string.format("closing tag </%s> does not match <%s>", name, tostring(open)))
        end
      else
        local self_closing = tag:sub(-1) == "/"
        if self_closing then tag = tag:sub(1, -2) end
        local name, rest = tag:match("^([%a_][%w_%-%.:]*)(.*)$")
        if not name then return fail(lt, "bad tag '<" .. tag .. ">'") end
        -- attributes: name="value" or name='value', separated by spaces
        local seen = {}
        rest = rest:gsub("^%s+", "")
        while rest ~= "" do
          local an, q, after = rest:match("^([%a_][%w_%-%.:]*)%s*=%s*([\"'])(.*)$")
          if not an then return fail(lt, "bad attribute syntax in <" .. name .. "> near '" .. rest:sub(1, 20) .. "'") end
          local close = after:find(q, 1, true)
          if not close then return fail(lt, "unterminated attribute value in <" .. name .. ">") end
          local value = after:sub(1, close - 1)
          local vok, verr = check_text(value, lt)
          if not vok then return nil, verr end
          if seen[an] then return fail(lt, "duplicate attribute '" .. an .. "' in <" .. name .. ">") end
          seen[an] = true
          rest = after:sub(close + 1)
          if rest ~= "" and not rest:find("^%s") then
            return fail(lt, "attributes must be separated by spaces in <" .. name .. ">")
          end
          rest = rest:gsub("^%s+", "")
        end
        if not root then
          root = name
        elseif #stack == 0 then
          return fail(lt, "a second root element <" .. name .. ">")
        end
        counts[name] = (counts[name] or 0) + 1
        if not self_closing then stack[#stack + 1] = name end
      end
      pos = gt + 1
    end
  end
  if #stack > 0 then return nil, "unclosed <" .. stack[#stack] .. ">" end
  if root ~= "svg" then return nil, "the root element is <" .. tostring(root) .. ">, not <svg>" end
  return true, counts
end

return plot
