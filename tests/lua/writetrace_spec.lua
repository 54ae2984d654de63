-- writetrace_spec.lua: net:write_trace(i), the per-step record of what the
-- episodic memory wrote and read in the last forward: the token, the write
-- probability and weight, the slot written and the read's attention over
-- slots. Checked on tiny models whose write pattern is known in advance
-- (write_actions uniform, always), against the memory's own rules (empty
-- slot first, else the least recently used; reads see earlier writes
-- only), for causality, and for its one-line errors.
local dm = require "drlmem"

local BASE = {vocab_size = 12, embedding_dim = 8, memory_size = 4, hidden_size = 6, num_layers = 1,
              dropout = 0, write_policy = "reinforce"}

local function net_with(extra)
  local cfg = {}
  for k, v in pairs(BASE) do cfg[k] = v end
  for k, v in pairs(extra) do cfg[k] = v end
  dm.manual_seed(7)
  return dm.Controller(cfg)
end

local TOKENS = {{1, 2, 3, 4, 5, 6, 7, 8, 9}, {2, 4, 6, 8, 10, 1, 3, 5, 7}}

local function trace_of(net, rows, i)
  net:forward(dm.tensor(rows, "int32"))
  return net:write_trace(i)
end

-- The slot the memory's rule picks, replayed from the trace itself: the
-- lowest-index empty slot, else the least recently used one (used = written,
-- or the argmax of a read; ties to the lowest index).
local function replay_slots(tr)
  local K, filled, lu, want = tr.slots, {}, {}, {}
  for k = 1, K do lu[k] = -1 end
  for t, s in ipairs(tr.steps) do
    local best
    for k = 1, K do
      if filled[k] and (not best or s.attention[k] > s.attention[best]) then best = k end
    end
    if best then lu[best] = t end
    if s.write > 0 then
      local slot
      for k = 1, K do if not filled[k] then slot = k break end end
      if not slot then
        slot = 1
        for k = 2, K do if lu[k] < lu[slot] then slot = k end end
      end
      filled[slot], lu[slot], want[t] = true, t, slot
    end
  end
  return want
end

describe("net:write_trace", function()
  it("records the write pattern of write_every = 2: steps 3, 5, 7, 9 write, into slots 1, 2, 3, then the LRU one", function()
    local net = net_with {write_actions = "uniform", write_every = 2, episodic_slots = 3}
    net:eval()
    for i = 1, 2 do
      local tr = trace_of(net, TOKENS, i)
      assert.equal(3, tr.slots)
      assert.equal(9, #tr.steps)
      assert.is_false(tr.training)
      local replay = replay_slots(tr)
      for t, s in ipairs(tr.steps) do
        assert.equal(t, s.t)
        assert.equal(TOKENS[i][t], s.token)
        assert.equal(3, #s.attention)
        assert.truthy(s.p_write > 0 and s.p_write < 1, "p_write is a probability")
        local writes = t > 1 and (t - 1) % 2 == 0
        assert.equal(writes and 1 or 0, s.write, "write at step " .. t)
        assert.equal(replay[t], s.slot, "slot at step " .. t)
      end
      assert.same({1, 2, 3}, {tr.steps[3].slot, tr.steps[5].slot, tr.steps[7].slot})
      -- the fourth write finds the memory full: it must not evict the slot
      -- its own step read most (that one was just used)
      local s9 = tr.steps[9]
      local best = 1
      for k = 2, 3 do if s9.attention[k] > s9.attention[best] then best = k end end
      assert.are_not.equal(best, s9.slot)
    end
  end)

  it("attention covers exactly the slots written before the step, and sums to 1 over them", function()
    local net = net_with {write_actions = "always", episodic_slots = 4}
    net:eval()
    local tr = trace_of(net, TOKENS, 2)
    local filled = {}
    for t, s in ipairs(tr.steps) do
      assert.equal(1, s.write)
      assert.truthy(s.slot >= 1 and s.slot <= 4, "slot in range")
      local sum, nfilled = 0, 0
      for k = 1, 4 do
        local a = s.attention[k]
        assert.truthy(a >= 0 and a <= 1)
        if filled[k] then nfilled = nfilled + 1 else assert.equal(0, a, "empty slot " .. k .. " at " .. t) end
        sum = sum + a
      end
      if nfilled == 0 then
        assert.equal(0, sum, "no read before the first write")
      else
        assert.near(1, sum, 1e-5)
      end
      filled[s.slot] = true
    end
    assert.same({1, 2, 3, 4}, {tr.steps[1].slot, tr.steps[2].slot, tr.steps[3].slot, tr.steps[4].slot})
    assert.same(replay_slots(tr), (function()
      local got = {}
      for t, s in ipairs(tr.steps) do got[t] = s.slot end
      return got
    end)())
  end)

  it("agrees with write_stats: the mean write weight is the write rate", function()
    local net = net_with {write_actions = "random", random_write_rate = 0.5, episodic_slots = 3}
    net:train()
    net:forward(dm.tensor(TOKENS, "int32"))
    local sum, n = 0, 0
    for i = 1, 2 do
      local tr = net:write_trace(i)
      assert.is_true(tr.training)
      for _, s in ipairs(tr.steps) do
        assert.truthy(s.write == 0 or s.write == 1)
        assert.equal(s.write == 1, s.slot ~= nil)
        sum, n = sum + s.write, n + 1
      end
    end
    assert.near(net:write_stats().write_rate, sum / n, 1e-9)
  end)

  it("shows the soft weight in soft mode: write = p_write at every step", function()
    local net = net_with {episodic_slots = 3}
    net:train()
    net:set_write_options {soft = true}
    local tr = trace_of(net, TOKENS, 1)
    for _, s in ipairs(tr.steps) do
      assert.equal(s.p_write, s.write)
      assert.truthy(s.slot >= 1 and s.slot <= 3)
    end
  end)

  it("is causal: a changed later token leaves every earlier step's trace unchanged", function()
    for _, extra in ipairs {{episodic_slots = 3}, {write_actions = "uniform", write_every = 2, episodic_slots = 2}} do
      local net = net_with(extra)
      net:eval()
      local a = trace_of(net, TOKENS, 1)
      local changed = {{1, 2, 3, 4, 5, 11, 7, 8, 9}, TOKENS[2]}
      local b = trace_of(net, changed, 1)
      for t = 1, 5 do assert.same(a.steps[t], b.steps[t], "step " .. t) end
      assert.are_not.same(a.steps[6], b.steps[6])
    end
  end)

  it("refuses, in one line: no forward yet, an index out of range, a model without the episodic memory", function()
    local function msg(f, ...)
      local ok, err = pcall(f, ...)
      assert.is_false(ok)
      err = tostring(err)
      assert.falsy(err:find("\n"), "one line: " .. err)
      return err
    end
    local net = net_with {episodic_slots = 3}
    assert.matches("no forward yet", msg(net.write_trace, net, 1))
    net:forward(dm.tensor(TOKENS, "int32"))
    assert.matches("sequence 3 out of range: the last forward had 2", msg(net.write_trace, net, 3))
    assert.matches("sequence 0 out of range", msg(net.write_trace, net, 0))
    assert.matches("expected a sequence index", msg(net.write_trace, net, "x"))
    local blend = dm.Controller {vocab_size = 12, embedding_dim = 8, memory_size = 4, hidden_size = 6}
    blend:forward(dm.tensor(TOKENS, "int32"))
    assert.matches("write_policy is blend", msg(blend.write_trace, blend, 1))
  end)

  it("is in dm.help", function()
    assert.truthy(dm.help.docs["Controller:write_trace"])
    assert.matches("write_trace", dm.help.text(net_with {episodic_slots = 3}))
  end)
end)
