-- dist.lua: the data-parallel helpers of dm.dist, written over its C
-- collectives (src/bind/dist.c), in the pattern of Horovod and PyTorch DDP:
-- every rank holds the same model, computes gradients on its own shard of
-- the global batch, and the gradients are averaged in place after backward
-- and before clipping and the optimizer step. One training step on N ranks:
--
--   local xs, ys = dm.dist.shard(x, y)            -- this rank's rows
--   local loss, dlogits, count = 0, nil, 0
--   if xs then loss, dlogits, count = criterion(net:forward(xs), ys, 1 / acc) end
--   local w, total, mean_loss = dm.dist.target_weight(count, loss)
--   if count > 0 then dlogits:mul_(w); net:backward(dlogits) end
--   ... every acc batches:
--   dm.dist.average_gradients(net)                -- then clip, step, zero_grad
--
-- Every rank calls every collective (target_weight, average_gradients),
-- also when its shard is empty or all pads.
--
--   dm.dist.shard(x, y) -> x_r, y_r   rank r's rows of the global batch
--       (B rows): consecutive blocks of ceil(B / size) rows in rank order
--       (views; nil, nil when the last, smaller batch leaves none)
--   dm.dist.target_weight(count [, loss]) -> weight, total, mean_loss
--       count: the targets this rank's loss is a mean over (cross_entropy's
--       count); total: their sum over the ranks; weight = size * count /
--       total (0 when total is 0) turns this rank's mean-loss gradient into
--       its share, so that after average_gradients the gradient is that of
--       the mean loss over all the global batch's targets, as one process
--       on the whole batch computes it, even when pads make the counts
--       differ; mean_loss: that global mean (nil without loss). One
--       allreduce of two numbers.
--   dm.dist.average_gradients(net [, {bucket_bytes =}])
--       the gradients of net:parameters() become their mean over the
--       ranks, one in-place allreduce per bucket (default 4 MiB)
--   dm.dist.broadcast_parameters(net [, root])   every rank takes root's
--       weights (every value of net:parameters())
--   dm.dist.row_mean(m, rows) -> mean   m: a mean over this rank's rows
--       (rows of them, 0 for an empty shard, whose m is ignored); the mean
--       over all the global batch's rows, on every rank (0 when none)
--   dm.dist.allgather(s) -> {s_0, ..., s_N-1}   every rank's string, on
--       every rank (a checkpoint gathers the ranks' generator states)
--   dm.dist.any(flag) -> boolean   true on every rank when it is true on
--       one (a stop request seen by one rank stops all at the same step)
--   dm.dist.assert_same(what, s)   raises on every rank, naming what and
--       the first rank that differs, unless every rank's string s equals
--       rank 0's (vocabulary, split order, config derived on each rank)
--
-- These keys are found through dm.dist (whose __index loads this file), so
-- scripts write dm.dist.average_gradients(net).
local dm = require "drlmem"
local dist = dm.dist

local M = {}

-- net -> list of gradient tensors / of value tensors, made once per net
-- (net:parameters() builds fresh views at every call).
local grads_of = setmetatable({}, {__mode = "k"})
local values_of = setmetatable({}, {__mode = "k"})

local function grads(net)
  local g = grads_of[net]
  if not g then
    g = {}
    for _, p in ipairs(net:parameters()) do if p.grad then g[#g + 1] = p.grad end end
    grads_of[net] = g
  end
  return g
end

local function values(net)
  local v = values_of[net]
  if not v then
    v = {}
    for _, p in ipairs(net:parameters()) do v[#v + 1] = p.value end
    values_of[net] = v
  end
  return v
end

local function check_net(fn, net)
  if type(net) ~= "userdata" or type(net.parameters) ~= "function" then
    error(("%s: argument 1: expected a model with :parameters() (a dm.Controller or dm.nn module), got %s")
          :format(fn, type(net)), 3)
  end
end

function M.broadcast_parameters(net, root)
  check_net("dist.broadcast_parameters", net)
  dist.broadcast(values(net), root or 0)
end

function M.average_gradients(net, opts)
  check_net("dist.average_gradients", net)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "bucket_bytes" then
      error(("dist.average_gradients: unknown option '%s' (known: bucket_bytes)"):format(tostring(k)), 2)
    end
  end
  dist.allreduce(grads(net), "mean", {bucket_bytes = opts.bucket_bytes})
end

function M.target_weight(count, loss)
  if type(count) ~= "number" or count < 0 then
    error(("dist.target_weight: argument 1: expected a count >= 0, got %s"):format(tostring(count)), 2)
  end
  if loss ~= nil and type(loss) ~= "number" then
    error(("dist.target_weight: argument 2: expected a loss (number) or nil, got %s"):format(type(loss)), 2)
  end
  -- A shard without targets has a NaN loss: it adds nothing to the sum.
  local sums = dist.allreduce({count, count > 0 and (loss or 0) * count or 0}, "sum")
  local total = sums[1]
  local weight = total > 0 and dist.size() * count / total or 0
  local mean_loss = loss ~= nil and (total > 0 and sums[2] / total or 0 / 0) or nil
  return weight, total, mean_loss
end

function M.shard(x, y)
  local B = x:size(1)
  local size, rank = dist.size(), dist.rank()
  if size == 1 then return x, y end
  local per = (B + size - 1) // size
  local first = rank * per
  local len = math.min(per, B - first)
  if len <= 0 then return nil, nil end
  return x:narrow(1, first + 1, len), y and y:narrow(1, first + 1, len)
end

function M.row_mean(m, rows)
  if math.type(rows) ~= "integer" or rows < 0 then
    error(("dist.row_mean: argument 2: expected a row count >= 0, got %s"):format(tostring(rows)), 2)
  end
  local s = dist.allreduce({ rows > 0 and m * rows or 0, rows }, "sum")
  return s[2] > 0 and s[1] / s[2] or 0
end

function M.allgather(s)
  if type(s) ~= "string" then
    error(("dist.allgather: argument 1: expected a string, got %s"):format(type(s)), 2)
  end
  local out, me = {}, dist.rank()
  for r = 0, dist.size() - 1 do out[r + 1] = dist.broadcast(r == me and s or nil, r) end
  return out
end

function M.any(flag)
  return dist.allreduce(flag and 1 or 0, "max") > 0
end

function M.assert_same(what, s)
  if type(s) ~= "string" then
    error(("dist.assert_same: argument 2: expected a string, got %s"):format(type(s)), 2)
  end
  local ref = dist.broadcast(s, 0)
  -- the lowest differing rank, or size when all agree; known to every rank
  local first = dist.allreduce(ref == s and dist.size() or dist.rank(), "min")
  if first < dist.size() then
    error(("dist: the ranks disagree on %s (rank %d's differs from rank 0's)"):format(what, first), 2)
  end
end

return M
