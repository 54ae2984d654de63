-- callgrind_step.lua: a fixed amount of controller work for instruction
-- counts (valgrind --tool=callgrind), where wall-clock time is too noisy.
--   lua5.4 tests/perf/callgrind_step.lua MODE STEPS
-- MODE is train (forward, loss, backward, AdamW step, memory write) or eval
-- (forward and loss, no gradient). Run it with STEPS = 1 and 3: the
-- difference of the two totals is the cost of two steps without the set-up.
local dm = require "drlmem"
local mode, steps = arg[1] or "train", tonumber(arg[2] or "1")
dm.manual_seed(1)
local V, B, T = 2000, 8, 32
local net = dm.Controller{vocab_size = V, embedding_dim = 128, memory_size = 512,
                          hidden_size = 256, num_layers = 2, dropout = 0.3}
local opt = dm.optim.AdamW(net:parameters(), {lr = 1e-3})
local x = dm.rand(B, T):mul(V - 1):int()
local y = dm.rand(B, T):mul(V - 1):int()
if mode == "eval" then net:eval() end
for _ = 1, steps do
  local logits = net:forward(x)
  if mode == "train" then
    local _, d = dm.nn.cross_entropy(logits, y, {ignore_index = 0})
    net:backward(d); opt:step(); net:zero_grad(); net:write_memory(0.1)
  else
    dm.nn.cross_entropy(logits, y, {ignore_index = 0, grad = false})
  end
end
