-- callgrind_step.lua: a fixed amount of controller work for instruction
-- counts (valgrind --tool=callgrind), where wall-clock time is too noisy.
--   lua5.4 tests/perf/callgrind_step.lua MODE STEPS
-- MODE is train (forward, loss, backward, AdamW step, memory write), eval
-- (forward and loss, no gradient), or train_inplace / eval_inplace: the same
-- with the loss computed where the logits live (net:loss, net:backward()),
-- no logits copied out. Run it with STEPS = 1 and 3: the
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
if mode:find("^eval") then net:eval() end
local inplace = mode:find("_inplace$") ~= nil
for _ = 1, steps do
  if inplace then
    net:forward(x)
    net:loss(y, {ignore_index = 0, grad = mode == "train_inplace"})
    if mode == "train_inplace" then
      net:backward(); opt:step(); net:zero_grad(); net:write_memory(0.1)
    end
    goto continue
  end
  local logits = net:forward(x)
  if mode == "train" then
    local _, d = dm.nn.cross_entropy(logits, y, {ignore_index = 0})
    net:backward(d); opt:step(); net:zero_grad(); net:write_memory(0.1)
  else
    dm.nn.cross_entropy(logits, y, {ignore_index = 0, grad = false})
  end
  ::continue::
end
