-- dist.lua: the data-parallel helpers of dm.dist, written over its C
-- collectives (src/bind/dist.c), in the pattern of Horovod and PyTorch DDP:
-- every rank holds the same model, computes gradients on its own shard of
-- the global batch, and the gradients are averaged in place after backward
-- and before clipping and the optimizer step.
--
--   dm.dist.broadcast_parameters(net [, root])   every rank starts from
--       root's weights (every value of net:parameters())
--   dm.dist.average_gradients(net [, {bucket_bytes =, count =}]) -> count
--       the gradients of net:parameters() become their mean over the ranks,
--       one in-place allreduce per bucket (default 4 MiB). With count (the
--       number of targets this rank's loss averaged over, e.g. the
--       non-pad tokens cross_entropy returns), each rank's gradient is
--       weighted by count / (sum of counts), so the result is the gradient
--       of the mean loss over all the global batch's targets, as one
--       process on the whole batch computes it, even when pads make the
--       ranks' counts differ. Returns the global count (nil without count).
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
    if k ~= "bucket_bytes" and k ~= "count" then
      error(("dist.average_gradients: unknown option '%s' (known: bucket_bytes, count)"):format(k), 2)
    end
  end
  local ropts = {bucket_bytes = opts.bucket_bytes}
  if opts.count == nil then
    dist.allreduce(grads(net), "mean", ropts)
    return nil
  end
  local count = opts.count
  if type(count) ~= "number" or count < 0 then
    error(("dist.average_gradients: option count: expected a number >= 0, got %s"):format(tostring(count)), 2)
  end
  local total = dist.allreduce(count, "sum")
  -- No target anywhere: every rank's gradient is zero already.
  ropts.scale = total > 0 and count / total or 0
  dist.allreduce(grads(net), "sum", ropts)
  return total
end

return M
