-- checkpoint.lua (fuzz target): the checkpoint loader, file -> controller.
-- checkpoint.load on any bytes refuses them with "checkpoint.load: ..." or
-- gives a controller that runs a forward pass. `make fuzz` runs this
-- target with -malloc_limit_mb, so a small file that makes the loader
-- allocate more than the limit (a config claiming sizes its tensors do not
-- have) is reported as a crash.
package.path = "tests/fuzz/?.lua;" .. package.path
local common = require "common"
local dm = require "drlmem"
local checkpoint = require "drlmem.checkpoint"

return function(bytes)
  common.write(bytes)
  local ok, ck = pcall(checkpoint.load, common.path)
  if common.refused("checkpoint.load", ok, ck, "checkpoint.load: ") then return end
  local V = ck.config.vocab_size
  local x = dm.tensor({{0, V - 1, 1 % V}}, "int32")
  ck.net:eval()
  local logits = ck.net:forward(x)
  local s = logits:shape()
  if s[1] ~= 1 or s[2] ~= 3 or s[3] ~= V then error("checkpoint: forward gave the wrong shape", 0) end
end
