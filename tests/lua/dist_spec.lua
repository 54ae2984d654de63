-- dist_spec.lua: dm.dist in one process without mpirun, the way every
-- plain run and busted see it: a world of one (rank 0, size 1) whose
-- collectives and data-parallel helpers (lua/drlmem/dist.lua) leave the
-- numbers as they are, and the error texts of bad arguments. The
-- collectives across ranks are tests/host/dist.sh, under mpirun. No
-- finalize here: specs share one process, and MPI cannot restart.
local dm = require "drlmem"
local err_of, flat = require("helpers").err_of, require("helpers").flat

local CFG = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12, dropout = 0}

local function has(s, sub)
  assert(s:find(sub, 1, true), ("expected %q to contain %q"):format(s, sub))
end

describe("dm.dist without mpirun", function()
  it("is a world of one that calls no MPI", function()
    assert.is_false(dm.dist.available())
    local r, n = dm.dist.init()
    assert.are.same({0, 1}, {r, n})
    assert.are.same({0, 1}, {dm.dist.rank(), dm.dist.size()})
    assert.is_true(dm.dist.initialized())
  end)

  it("returns the data of its one rank from every collective", function()
    local t = dm.tensor{1.5, -2}
    assert.are.equal(t, dm.dist.allreduce(t, "mean"))
    assert.are.same({1.5, -2}, flat(t))
    dm.dist.allreduce({t}, "sum", {scale = 2})
    assert.are.same({3, -4}, flat(t))
    assert.are.equal(7, dm.dist.allreduce(7, "max"))
    assert.are.same({1, 2}, dm.dist.allreduce({1, 2}, "min"))
    assert.are.equal("s", dm.dist.broadcast("s"))
    assert.are.equal(t, dm.dist.broadcast(t))
    dm.dist.barrier()
  end)

  it("leaves gradients and weights as they are in the helpers", function()
    dm.manual_seed(3)
    local net = dm.Controller(CFG)
    local x = dm.tensor({{2, 5, 7}, {3, 4, 0}}, "int32")
    local loss, dl, count = dm.nn.cross_entropy(net:forward(x), x, {ignore_index = 0})
    net:backward(dl)
    local before = {}
    for i, p in ipairs(net:parameters()) do before[i] = {p.value:clone(), p.grad and p.grad:clone()} end
    assert.are.same({1, 5, loss}, {dm.dist.target_weight(count, loss)})
    assert.are.same({0, 0}, {dm.dist.target_weight(0)})
    dm.dist.average_gradients(net, {bucket_bytes = 64})
    dm.dist.broadcast_parameters(net)
    for i, p in ipairs(net:parameters()) do
      assert.are.same(flat(before[i][1]), flat(p.value), p.name)
      if p.grad then assert.are.same(flat(before[i][2]), flat(p.grad), p.name) end
    end
    local xs, ys = dm.dist.shard(x, x)
    assert.are.equal(x, xs)
    assert.are.equal(x, ys)
    assert.is_true(dm.dist.any(true))
    assert.is_false(dm.dist.any(false))
    dm.dist.assert_same("the vocabulary", "a b")
    assert.are.equal(0.25, dm.dist.row_mean(0.25, 4))
    assert.are.equal(0, dm.dist.row_mean(0 / 0, 0)) -- an empty shard's mean is ignored
    assert.are.same({"s"}, dm.dist.allgather("s"))
  end)

  it("writes the memory and steps the reinforce policy with the ranks' sums as one process does", function()
    -- net:set_reduce(true) in a world of one: the sums over the ranks are
    -- this process's, so the write and the policy's step are the bytes of
    -- the plain path
    local cfg = {vocab_size = 20, embedding_dim = 8, memory_size = 6, hidden_size = 12, dropout = 0,
                 write_policy = "reinforce"}
    local x = dm.tensor({{2, 5, 7}, {3, 4, 0}}, "int32")
    local function step(reduce)
      dm.manual_seed(3)
      local net = dm.Controller(cfg)
      net:set_reduce(reduce)
      net:forward(x, false)
      local ws = net:reinforce(x, 0)
      net:write_memory(0.3)
      local out = {ws.count, ws.policy_loss, ws.adv_scale, net:write_state().second_moment}
      for _, p in ipairs(net:parameters()) do
        out[#out + 1] = flat(p.value)
        if p.grad then out[#out + 1] = flat(p.grad) end
      end
      return out
    end
    assert.are.same(step(false), step(true))
    -- an empty shard needs the reduce; with it, it adds nothing
    dm.manual_seed(3)
    local net = dm.Controller(cfg)
    has(err_of(net.write_memory, net, 0.3, {empty = true}), "an empty shard needs a reduce across processes")
    has(err_of(net.reinforce, net, nil), "an empty shard needs a reduce across processes")
    has(err_of(net.write_memory, net, 0.3, {emtpy = true}), "unknown option 'emtpy'")
    net:set_reduce(true)
    local keys = net:param("memory.keys"):clone()
    net:write_memory(0.3, {empty = true}) -- no rows anywhere: nothing to blend
    assert.are.same(flat(keys), flat(net:param("memory.keys")))
    assert.are.equal(0, net:reinforce(nil).count)
  end)

  it("says what is wrong with its arguments", function()
    has(err_of(dm.dist.allreduce, dm.ones(2), "avg"),
        'dist.allreduce: argument 2: op must be "sum", "mean", "max" or "min", got avg')
    has(err_of(dm.dist.allreduce, "x"),
        "dist.allreduce: argument 1: expected a Tensor, a list of Tensors, a number or a list of numbers, got string")
    has(err_of(dm.dist.allreduce, {dm.ones(2), 3}), "element 2 of the list: expected Tensor, got number")
    has(err_of(dm.dist.allreduce, {w = dm.ones(2)}),
        "dist.allreduce: argument 1: expected a list of Tensors {t1, t2, ...}, got a table with key w")
    has(err_of(dm.dist.broadcast, {w = dm.ones(2)}), "dist.broadcast: argument 1: expected a list of Tensors")
    assert.are.same({}, dm.dist.allreduce({}))
    has(err_of(dm.dist.allreduce, {1, "x"}), "element 2 of the list: expected number, got string")
    has(err_of(dm.dist.allreduce, dm.ones(2), "sum", {bucket = 4}),
        "dist.allreduce: unknown option 'bucket' (known: bucket_bytes, scale)")
    has(err_of(dm.dist.allreduce, dm.ones(2), "sum", {bucket_bytes = 0}),
        "option bucket_bytes: expected a positive integer, got 0")
    has(err_of(dm.dist.allreduce, dm.ones(2), "max", {scale = 2}),
        "scale applies to float32 sum and mean only (tensor 1 is float32, op max)")
    has(err_of(dm.dist.broadcast, dm.ones(2), 1), "dist.broadcast: root 1 is not a rank (0..0)")
    has(err_of(dm.dist.broadcast, {}, 0, {scale = 1}), "unknown option 'scale' (known: bucket_bytes)")
    has(err_of(dm.dist.broadcast, print), "expected a Tensor, a list of Tensors, a number, a string, a boolean or nil, got function")
    has(err_of(dm.dist.init, {timout = 3}), "dist.init: unknown option 'timout' (known: timeout)")
    has(err_of(dm.dist.init, {timeout = -1}), "option timeout: expected seconds >= 0")
    has(err_of(dm.dist.average_gradients, {}), "dist.average_gradients: argument 1: expected a model with :parameters()")
    local net = dm.nn.Linear(2, 2)
    has(err_of(dm.dist.average_gradients, net, {bucket = 1}), "unknown option 'bucket' (known: bucket_bytes)")
    has(err_of(dm.dist.target_weight, -1), "dist.target_weight: argument 1: expected a count >= 0, got -1")
    has(err_of(dm.dist.target_weight, 2, "x"), "argument 2: expected a loss (number) or nil, got string")
    has(err_of(dm.dist.assert_same, "vocab", 3), "dist.assert_same: argument 2: expected a string, got number")
    has(err_of(dm.dist.row_mean, 0.5, -1), "dist.row_mean: argument 2: expected a row count >= 0, got -1")
    has(err_of(dm.dist.allgather, 3), "dist.allgather: argument 1: expected a string, got number")
  end)
end)
