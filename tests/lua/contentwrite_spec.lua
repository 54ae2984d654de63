-- contentwrite_spec.lua: write_policy = content, the learned memory's
-- write that goes where each token read (src/core/contentwrite.c). The
-- collapse test of seedcollapse_spec.lua turned around: trained the same
-- way, with a post-step write after every optimizer step, the blend
-- memory's slots become one row and the content memory's stay apart (min
-- pairwise distance and effective rank of the key and value rows). The mode is kept by a checkpoint and a
-- resumed run continues bit for bit.
local dm = require "drlmem"
local checkpoint = require "drlmem.checkpoint"

local CFG = { vocab_size = 12, embedding_dim = 8, memory_size = 16, hidden_size = 8, num_layers = 1,
              dropout = 0 }

local function with(t, k, v)
  local c = {}
  for a, b in pairs(t) do c[a] = b end
  c[k] = v
  return c
end

-- smallest distance between two rows, and the effective rank
-- exp(entropy of the normalised squared singular values), from the Gram
-- matrix's eigenvalues by Jacobi rotations (16 x 16)
local function min_distance(rows)
  local best = math.huge
  for i = 1, #rows do
    for j = i + 1, #rows do
      local s = 0
      for d = 1, #rows[1] do s = s + (rows[i][d] - rows[j][d]) ^ 2 end
      best = math.min(best, math.sqrt(s))
    end
  end
  return best
end

local function effective_rank(rows)
  local n, D = #rows, #rows[1]
  -- the D x D Gram matrix X^T X (D <= n here)
  local G = {}
  for a = 1, D do
    G[a] = {}
    for b = 1, D do
      local s = 0
      for i = 1, n do s = s + rows[i][a] * rows[i][b] end
      G[a][b] = s
    end
  end
  for _ = 1, 60 do
    for p = 1, D - 1 do
      for q = p + 1, D do
        if math.abs(G[p][q]) > 1e-15 then
          local th = 0.5 * math.atan(2 * G[p][q], G[q][q] - G[p][p])
          local c, s = math.cos(th), math.sin(th)
          for k = 1, D do
            local gp, gq = G[k][p], G[k][q]
            G[k][p], G[k][q] = c * gp - s * gq, s * gp + c * gq
          end
          for k = 1, D do
            local gp, gq = G[p][k], G[q][k]
            G[p][k], G[q][k] = c * gp - s * gq, s * gp + c * gq
          end
        end
      end
    end
  end
  local tot, h = 0, 0
  for a = 1, D do tot = tot + math.max(G[a][a], 0) end
  for a = 1, D do
    local p = math.max(G[a][a], 0) / tot
    if p > 0 then h = h - p * math.log(p) end
  end
  return math.exp(h)
end

local function batch(step)
  local rows = {}
  for b = 1, 8 do
    local r = { 2 }
    for t = 2, 6 do r[t] = 3 + (b * 7 + t * 5 + step) % 9 end
    rows[b] = r
  end
  return dm.tensor(rows):int()
end

local function train_step(net, opt, step)
  local x = batch(step)
  net:forward(x)
  net:loss(x)
  net:backward()
  opt:step()
  net:zero_grad()
  net:write_memory(0.1)
end

local function trained(policy, steps)
  local net = dm.Controller(with(CFG, "write_policy", policy), dm.Generator(5))
  local opt = dm.optim.Adam(net:parameters(), { lr = 0.01 })
  for step = 1, steps do train_step(net, opt, step) end
  return net, opt
end

describe("write_policy = content", function()
  it("keeps the slots apart under training where blend collapses them to one row", function()
    local blend, content = trained("blend", 300), trained("content", 300)
    assert.are.equal("content", content:config().write_policy)
    for _, name in ipairs { "memory.keys", "memory.values" } do
      local b, c = blend:state_dict()[name]:totable(), content:state_dict()[name]:totable()
      local db, dc = min_distance(b), min_distance(c)
      local rb, rc = effective_rank(b), effective_rank(c)
      -- measured: blend 4e-4 and rank 1.02-1.04; content 0.34-0.42 and rank 3.8-5.1 of 8
      assert.is_true(db < 1e-2, ("%s blend min distance %g"):format(name, db))
      assert.is_true(dc > 0.2, ("%s content min distance %g"):format(name, dc))
      assert.is_true(rb < 1.5, ("%s blend effective rank %g"):format(name, rb))
      assert.is_true(rc > 3, ("%s content effective rank %g"):format(name, rc))
    end
  end)

  it("writes only slots the last forward read: a memory bypassed by use_memory=false is untouched", function()
    local net = dm.Controller(with(with(CFG, "write_policy", "content"), "use_memory", false), dm.Generator(2))
    local before = net:state_dict()["memory.keys"]:totable()
    net:forward(batch(1))
    net:write_memory(1.0)
    assert.are.same(before, net:state_dict()["memory.keys"]:totable())
    local bad = dm.Controller(with(CFG, "write_policy", "content"), dm.Generator(2))
    bad:forward(batch(1))
    local ok, err = pcall(bad.write_memory, bad, 1.5)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("strength must be in [0, 1], got 1.5", 1, true))
  end)

  it("survives a checkpoint: 2 steps == 1 step, save, load, 1 more step (bit-identical)", function()
    local tmp = os.tmpname()
    local net, opt = trained("content", 1)
    checkpoint.save(tmp, net, { vocab = (function()
      local v = { "<pad>", "<unk>", "<sos>", "<eos>" }
      for i = 5, 12 do v[i] = "w" .. i end
      return v
    end)(), optimizer = opt })
    local ck = checkpoint.load(tmp)
    os.remove(tmp)
    assert.are.equal("content", ck.net:config().write_policy)
    local opt2 = dm.optim.Adam(ck.net:parameters(), { lr = 0.01 })
    checkpoint.restore_optimizer(opt2, ck)
    -- the blend model from the same weights, for the contrast
    local blend = dm.Controller(with(CFG, "write_policy", "blend"), dm.Generator(5))
    blend:load_state_dict(ck.net:state_dict())
    local opt3 = dm.optim.Adam(blend:parameters(), { lr = 0.01 })
    checkpoint.restore_optimizer(opt3, ck)
    train_step(net, opt, 2)
    train_step(ck.net, opt2, 2)
    train_step(blend, opt3, 2)
    local a, b, c = net:state_dict(), ck.net:state_dict(), blend:state_dict()
    for name, t in pairs(a) do assert.are.same(t:totable(), b[name]:totable(), name) end
    assert.are_not.same(a["memory.keys"]:totable(), c["memory.keys"]:totable())
  end)
end)
