-- common.lua: what the Lua fuzz targets share (tests/fuzz/fuzz_lua.c runs
-- them). A target calls a drlmem API on the input and uses refused() to
-- tell a clean refusal (a one-line string message with the expected
-- prefix, no traceback, no Lua position of drlmem's own code) from a bug,
-- which it raises so that the harness aborts.
local common = {}

-- The scratch file a target writes its input to (one per process).
common.path = os.tmpname()

function common.write(bytes)
  local f = assert(io.open(common.path, "wb"))
  f:write(bytes)
  f:close()
end

-- ok, err from a pcall: raises unless ok or err is a clean message
-- starting with prefix.
function common.refused(what, ok, err, prefix)
  if ok then return false end
  if type(err) ~= "string" then
    error(what .. ": refused with a " .. type(err) .. " instead of a message", 0)
  end
  if prefix and err:sub(1, #prefix) ~= prefix then
    error(what .. ": message does not start with '" .. prefix .. "': " .. err, 0)
  end
  -- The markers of a traceback or an internal position are looked for
  -- outside the quoted input: a message may quote bytes that happen to spell
  -- them (the fuzzer finds such inputs by following these very comparisons).
  local bare = err:gsub("'.*'", "''")
  if err:find("\n", 1, true) or bare:find("stack traceback", 1, true) then
    error(what .. ": message of more than one line: " .. err, 0)
  end
  if bare:find("lua/drlmem/[%w_]+%.lua:%d+:") then
    error(what .. ": message carries an internal Lua position: " .. err, 0)
  end
  return true
end

return common
