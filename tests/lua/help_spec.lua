-- help_spec.lua: the one table of docs (lua/drlmem/help.lua) covers every
-- public name of dm: the C functions, the Lua submodules (one per file of
-- lua/drlmem, loaded on first use) and the names inside the C sub-tables
-- (dm.nn, dm.optim, ...). A new function without a doc fails here.
local dm = require "drlmem"

local function lua_submodules()
  local names = {}
  local p = assert(io.popen("ls lua/drlmem"))
  for f in p:lines() do
    local n = f:match("^([%w_]+)%.lua$")
    if n then names[#names + 1] = n end
  end
  p:close()
  assert(#names > 5, "lua/drlmem not found from " .. (os.getenv("PWD") or "?"))
  return names
end

describe("dm.help", function()
  local help = dm.help
  local subs = lua_submodules()
  local is_sub = {}
  for _, n in ipairs(subs) do is_sub[n] = true end

  it("documents every Lua submodule and every name of dm", function()
    local missing = {}
    for _, n in ipairs(subs) do
      if dm[n] == nil then missing[#missing + 1] = "dm." .. n .. " (does not load)" end
    end
    for k, v in pairs(dm) do
      if not help.docs["dm." .. k] then missing[#missing + 1] = "dm." .. k end
      -- the C sub-tables: every name inside
      if type(v) == "table" and not is_sub[k] and v ~= dm.Tensor then
        for k2 in pairs(v) do
          if not help.docs["dm." .. k .. "." .. k2] then missing[#missing + 1] = "dm." .. k .. "." .. k2 end
        end
      end
    end
    table.sort(missing)
    assert.same({}, missing)
  end)

  it("has no entry for a name dm does not have", function()
    local stale = {}
    for name in pairs(help.docs) do
      if name:match("^dm%.") and help.resolve(name) == nil then stale[#stale + 1] = name end
    end
    table.sort(stale)
    assert.same({}, stale)
  end)

  it("help() lists every top-level name with its sentence, within the width", function()
    local columns = help.columns
    help.columns = function() return 60 end
    local text = help.text()
    help.columns = columns
    assert.matches("^drlmem " .. dm.version:gsub("%.", "%%."), text)
    for k in pairs(dm) do
      local sentence = help.docs["dm." .. k][2]
      assert.truthy(text:find("\n  dm%." .. k .. " +" .. sentence:sub(1, 10):gsub("%p", "%%%0")),
        "help() lacks dm." .. k)
    end
    for line in text:gmatch("[^\n]+") do assert.truthy(#line <= 59, line) end
  end)

  it("explains a class, an object, a method and a function by value or by name", function()
    local cls = help.text(dm.Memory)
    assert.matches("^dm%.Memory%(slots, width%) %-> Memory\n  The differentiable", cls)
    assert.matches("m:read%(query%) %-> out, weights", cls)
    assert.matches("m:topk%(query, k%)", cls)
    assert.matches("reset_usage", cls) -- undocumented methods are still listed
    local m = dm.Memory(4, 2)
    assert.equal(cls, help.text(m))
    assert.matches("^m:read%(query%)", help.text(m.read))
    assert.matches("^dm%.zeros%(d1, %.%.%., %[dtype%]%) %-> Tensor\n  A tensor of zeros", help.text(dm.zeros))
    assert.equal(help.text(dm.zeros), help.text("dm.zeros"))
    assert.equal(help.text(dm.zeros), help.text("zeros"))
    assert.matches("Linear%s+y = x W", help.text(dm.nn))
    assert.matches("^dm%.Tensor", help.text(dm.ones(2)))
    assert.matches("sum", help.text(dm.ones(2)))
    local net = dm.Controller { vocab_size = 5, embedding_dim = 2, memory_size = 2, hidden_size = 2 }
    assert.matches("^net:forward", help.text(net.forward))
    assert.matches("^dm%.Controller%(cfg%)", help.text(net))
  end)

  it("says so for what it does not know", function()
    assert.equal("no help for 'nope'; help() lists what dm offers", help.text("nope"))
    assert.matches("^no help for ", help.text(42))
  end)
end)
