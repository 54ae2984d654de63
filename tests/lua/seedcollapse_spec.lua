-- seedcollapse_spec.lua: why scripts/ablation.lua runs its episodic arms
-- with use_memory=false. In the seed's architecture the GRU's only input is
-- the learned memory's read, and the seed's post-step write blends the same
-- batch mean into every slot (write_strength 0.1): after a few dozen steps
-- all M value rows are one row, so the read, and everything after it, no
-- longer depends on the input token (measured: after 10 epochs of recall
-- the 64 rows agree to 2e-4 and every seed-memory arm sits at chance).
local dm = require "drlmem"

local function spread(t)
  local rows = t:totable()
  local worst = 0
  for i = 2, #rows do
    for d = 1, #rows[1] do worst = math.max(worst, math.abs(rows[i][d] - rows[1][d])) end
  end
  return worst
end

describe("the seed memory under its post-step write", function()
  it("collapses to one row, and the logits stop depending on the tokens", function()
    local net = dm.Controller({ vocab_size = 12, embedding_dim = 8, memory_size = 16, hidden_size = 8,
                                num_layers = 1, dropout = 0 }, dm.Generator(5))
    net:eval()
    local x = dm.tensor({ { 2, 5, 6, 7 }, { 2, 9, 10, 11 } }):int()
    assert.is_true(spread(net:state_dict()["memory.values"]) > 0.5)
    for _ = 1, 60 do
      net:forward(x)
      net:write_memory(0.1)
    end
    assert.is_true(spread(net:state_dict()["memory.values"]) < 1e-2)
    -- two different first tokens: the same logits at step 1 (up to the
    -- residue of the read), while without the memory they differ a lot
    local function first_step_gap(n)
      local l = n:forward(dm.tensor({ { 4 }, { 11 } }):int()):totable()
      local gap = 0
      for v = 1, #l[1][1] do gap = math.max(gap, math.abs(l[1][1][v] - l[2][1][v])) end
      return gap
    end
    local nomem = dm.Controller({ vocab_size = 12, embedding_dim = 8, memory_size = 16, hidden_size = 8,
                                  num_layers = 1, dropout = 0, use_memory = false }, dm.Generator(5))
    nomem:eval()
    local g_seed, g_nomem = first_step_gap(net), first_step_gap(nomem)
    assert.is_true(g_seed < 0.05 * g_nomem, ("gap %g vs %g"):format(g_seed, g_nomem))
  end)
end)
