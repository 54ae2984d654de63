-- json.lua (fuzz target): dm.json.decode on any bytes either refuses them
-- with a clean message or gives a value whose encoding decodes back to a
-- value with the same encoding (encode is canonical: sorted keys,
-- shortest round-trip floats).
package.path = "tests/fuzz/?.lua;" .. package.path
local common = require "common"
local dm = require "drlmem"

return function(bytes)
  local ok, v = pcall(dm.json.decode, bytes, "fuzz.json")
  if common.refused("json.decode", ok, v) then return end
  local ok1, s1 = pcall(dm.json.encode, v)
  -- a decoded value that cannot be encoded: only non-finite numbers, which
  -- JSON cannot hold (decode gives them for 1e999)
  if common.refused("json.encode", ok1, s1) then return end
  local v2 = dm.json.decode(s1, "re-encoded")
  local s2 = dm.json.encode(v2)
  if s1 ~= s2 then error("json: encode(decode(encode(v))) differs from encode(v):\n" .. s1 .. "\n" .. s2, 0) end
end
