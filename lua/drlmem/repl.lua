-- repl.lua: what the drlmem REPL (src/host/main.c) asks of Lua: how a
-- result prints, and which names complete a word on Tab.
--
-- repl.show(v) is the text of one value: nested tables as Lua literals
-- through Debian's lua-inspect (large tables cut to their first entries,
-- deep ones to a few levels, long strings to their start), objects through their __tostring, a config as
-- its "key = value" lines, the dm module as a summary of what it offers.
-- repl.print(...) prints values as print does, tab-separated, but shown.
-- repl.complete(word) lists the completions of a word such as "dm.ten",
-- "net:for" or "pri": globals, fields of a table (and of its __index
-- table), and the methods of a userdata through its metatable.
local dm = require "drlmem"
local help = require "drlmem.help"

local repl = {}

repl.help = help

-- Cuts of the printed form: entries per table, levels of nesting, lines,
-- characters of a string inside a table.
repl.max_items, repl.max_depth, repl.max_lines, repl.max_string = 20, 4, 40, 100

-- lua-inspect: Debian 12 packages it for Lua 5.1 to 5.3 only, but the file
-- is plain Lua that runs unchanged on 5.4, so the 5.3 copy is the fallback.
local function load_inspect()
  local ok, m = pcall(require, "inspect")
  if ok and type(m) == "table" then return m end
  for _, v in ipairs { "5.3", "5.2", "5.1" } do
    local path = package.searchpath("inspect", "/usr/share/lua/" .. v .. "/?.lua")
    local chunk = path and loadfile(path)
    local ok2, m2 = false, nil
    if chunk then ok2, m2 = pcall(chunk) end
    if ok2 and type(m2) == "table" then
      package.loaded.inspect = m2
      return m2
    end
  end
  return nil
end
repl.inspect = load_inspect()

local function has_tostring(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__tostring") ~= nil
end

-- The one-line stand-in of an object inside a table: the last line of its
-- __tostring (a tensor prints its values, then "[Tensor float32 2x3]").
local function short(v)
  local s = tostring(v)
  return s:match("([^\n]*)$")
end

-- A copy of t for inspect: at most max_items entries a table (the rest
-- counted under the key "..."), no metatables, objects as their short text,
-- long strings cut.
local function cut(t, depth, seen)
  if seen[t] then return seen[t] end
  local out = {}
  seen[t] = out
  local n, total = 0, 0
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  -- the array part first, in order, then the other keys sorted as inspect does
  local len = #t
  table.sort(keys, function(a, b)
    local ai = math.type(a) == "integer" and a >= 1 and a <= len
    local bi = math.type(b) == "integer" and b >= 1 and b <= len
    if ai ~= bi then return ai end
    if ai then return a < b end
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    total = total + 1
    if n < repl.max_items then
      n = n + 1
      local v = t[k]
      if type(v) == "table" and not has_tostring(v) then
        v = depth > 1 and cut(v, depth - 1, seen) or {}
      elseif type(v) == "userdata" or type(v) == "table" then
        v = short(v)
      elseif type(v) == "string" and #v > repl.max_string then
        v = string.format("%s... (%d bytes)", v:sub(1, repl.max_string), #v)
      end
      out[k] = v
    end
  end
  if total > n then out["..."] = string.format("%d more", total - n) end
  return out
end

-- "  label: a b c", wrapped under itself at 78 columns.
local function wrap(label, names)
  local lines, line = {}, label
  for _, n in ipairs(names) do
    if #line + 1 + #n > 78 and line ~= label then
      lines[#lines + 1] = line
      line = string.rep(" ", #label)
    end
    line = line .. " " .. n
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\n")
end

-- The summary the dm module prints as: its names by kind.
local function show_module()
  local fns, classes, tables = {}, {}, {}
  for k, v in pairs(dm) do
    if k:match("^%u") then classes[#classes + 1] = k
    elseif type(v) == "function" then fns[#fns + 1] = k
    elseif type(v) == "table" then tables[#tables + 1] = k end
  end
  -- the Lua half loads on first use: its names come from the docs
  for name in pairs(help.docs) do
    local k = name:match("^dm%.([%w_]+)$")
    if k and rawget(dm, k) == nil then tables[#tables + 1] = k end
  end
  table.sort(fns); table.sort(classes); table.sort(tables)
  return string.format("drlmem %s, help() explains each name\n%s\n%s\n%s", tostring(dm.version),
    wrap("  classes:  ", classes), wrap("  functions:", fns), wrap("  modules:  ", tables))
end

--- The text of one REPL result.
function repl.show(v)
  if v == dm then return show_module() end
  local t = type(v)
  if t ~= "table" then
    if t == "function" then
      local key = help.key(v)
      if key and help.docs[key] then return string.format("function: %s", help.docs[key][1]) end
    end
    return tostring(v)
  end
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__name") == "drlmem.Config" then
    return table.concat(dm.config.describe(v), "\n")
  end
  if has_tostring(v) or not repl.inspect then return tostring(v) end
  local s = repl.inspect(cut(v, repl.max_depth, {}), { depth = repl.max_depth })
  local lines, n = {}, 0
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n <= repl.max_lines then lines[n] = line end
  end
  if n > repl.max_lines then lines[#lines + 1] = string.format("... (%d more lines)", n - repl.max_lines) end
  return table.concat(lines, "\n")
end

--- Prints its arguments as print does, each through repl.show.
function repl.print(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = repl.show((select(i, ...))) end
  io.write(table.concat(parts, "\t"), "\n")
end

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- v[k] without running an __index that raises (a config's does).
local function get(v, k)
  local ok, x = pcall(function() return v[k] end)
  return ok and x or nil
end

-- The names after v's "." (or ":" when methods_only): its own string keys,
-- those of its __index tables, the methods of a userdata, and for dm the
-- Lua submodules not loaded yet.
local function fields(v, methods_only)
  local names, seen = {}, {}
  local function add(k, val)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") and not seen[k]
      and (not methods_only or type(val) == "function" or val == nil) then
      seen[k] = true
      names[#names + 1] = k
    end
  end
  local t, hops = v, 0
  while t ~= nil and hops < 4 do
    if type(t) == "table" then
      for k, val in pairs(t) do add(k, val) end
    end
    local mt = getmetatable(t)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(t) == "userdata" or type(idx) ~= "table" then
      local methods = type(t) == "userdata" and help.methods_of(t) or nil
      if methods then for k, val in pairs(methods) do add(k, val) end end
      break
    end
    t, hops = idx, hops + 1
  end
  if type(v) == "string" then for k, val in pairs(string) do add(k, val) end end
  if v == dm then
    for name in pairs(help.docs) do
      local k = name:match("^dm%.([%w_]+)$")
      if k then add(k, nil) end
    end
  end
  return names
end

--- The completions of word, sorted: full words ("dm.tensor" for "dm.ten").
function repl.complete(word)
  local out = {}
  local path, sep, partial = word:match("^([%a_][%w_.]*)([.:])([%w_]*)$")
  local candidates
  if path then
    local v = _G
    for part in path:gmatch("[^.]+") do
      if part == "" then return out end
      v = get(v, part)
      if v == nil then return out end
    end
    candidates = fields(v, sep == ":")
  else
    partial = word:match("^[%a_][%w_]*$") or (word == "" and "")
    if not partial then return out end
    path, sep = "", ""
    candidates = fields(_G)
    for _, k in ipairs(KEYWORDS) do candidates[#candidates + 1] = k end
  end
  local seen = {}
  for _, k in ipairs(candidates) do
    if k:sub(1, #partial) == partial and not seen[k] then
      seen[k] = true
      out[#out + 1] = path .. sep .. k
    end
  end
  table.sort(out)
  return out
end

return repl
