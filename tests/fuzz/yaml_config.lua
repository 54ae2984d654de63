-- yaml_config.lua (fuzz target): the YAML loader and the config schema.
-- dm.yaml.load_string on any bytes refuses them with a message naming the
-- source or gives a value; dm.config.load on the same bytes as a file
-- refuses them naming the file (and, for a bad key, its line) or gives a
-- config that every size check of drlmem.budget can judge without error.
package.path = "tests/fuzz/?.lua;" .. package.path
local common = require "common"
local dm = require "drlmem"
local budget = require "drlmem.budget"

return function(bytes)
  local ok, v = pcall(dm.yaml.load_string, bytes, "fuzz.yaml")
  common.refused("yaml.load_string", ok, v, "fuzz.yaml")
  common.write(bytes)
  local okc, cfg = pcall(dm.config.load, common.path)
  if common.refused("config.load", okc, cfg, common.path) then return end
  local est = budget.estimate(cfg, 1000, 100, 100)
  if not (est.total >= 0) then error("budget.estimate gave " .. tostring(est.total), 0) end
end
