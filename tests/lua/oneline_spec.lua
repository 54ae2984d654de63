-- oneline_spec.lua: error messages that quote the input stay on one line,
-- whatever control characters the input holds (cases the fuzz harnesses of
-- tests/fuzz found: a JSON string with a raw newline near a bad escape, a
-- YAML document whose top level is a multi-line scalar).
local dm = require "drlmem"
local write_tmp = require("helpers").write_tmp

local function errmsg(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("messages quoting the input", function()
  it("json.decode escapes control bytes of the text it quotes", function()
    local msg = errmsg(dm.json.decode, '{"a": "d\\\n\0"}', "x.json")
    assert.is_nil(msg:find("\n", 1, true), msg)
    assert.truthy(msg:find("x.json: line", 1, true), msg)
    assert.truthy(msg:find("\\x0a", 1, true), msg)
  end)

  it("config.load escapes control characters of a quoted value", function()
    local path = write_tmp("eg_dim [1e-4, -7]\n\nopt\nopt izer\n")
    local msg = errmsg(dm.config.load, path)
    assert.is_nil(msg:find("\n", 1, true), msg)
    assert.truthy(msg:find(path .. ":1: expected a mapping of key: value at the top level", 1, true), msg)
    assert.are.equal("'a\\nb\\tc\\x01'", dm.config.repr("a\nb\tc\1"))
  end)
end)
