-- train.lua: the model and optimizer side of a training run: the
-- dm.Controller config of a run, the optimizer, the learning-rate
-- schedule, the loss, the gradient-clipping groups and the write policy's
-- epoch options, and reusable logits buffers. The loop that uses them is
-- drlmem.loop; evaluation, checkpoints/resume and the helpers of the
-- inference scripts live in drlmem.evaluation, drlmem.resume and
-- drlmem.inference.
--
--   train.model_config(cfg, V)        the dm.Controller config of a run
--   train.optimizer(net, cfg)         AdamW / Adam / SGD from cfg
--   train.scheduler(opt, cfg)         cosine / plateau / step / none, and
--   train.scheduler_step(s, cfg, v)   its once-per-epoch step
--   train.criterion(cfg)              the loss: loss, dlogits, count
--   train.clip_groups(net, cfg)       parameter groups clipped apart
--   train.write_options(cfg, epoch)   the write policy's options of an epoch
--   train.buffers()                   reusable (B,T,V) float32 buffers
local dm = require "drlmem"

local train = {}

---------------------------------------------------------------------------
-- Model, optimizer, scheduler, loss
---------------------------------------------------------------------------

--- The dm.Controller config of cfg for a vocabulary of V tokens: the
-- model keys the schema declares (config.fields[k].model, which come from
-- dm.controller_fields) that change the model: the write policy's only
-- with reinforce, the optional ones (cell, use_memory, write_policy) only
-- when not their default, so a seed config's model is exactly the
-- upstream's.
function train.model_config(cfg, V)
  local m = { vocab_size = V }
  local reinforce = train.reinforce(cfg)
  for name, spec in pairs(require("drlmem.config").fields) do
    if spec.model then
      local v = rawget(cfg, name)
      if (reinforce or not spec.policy) and not (spec.if_changed and v == spec.default) then m[name] = v end
    end
  end
  return m
end

--- The parameter groups gradient clipping treats separately: the model's,
-- and those the controller marks as a group of their own (p.group: the
-- write policy's policy and baseline, detached from the loss). The
-- baseline regresses discounted returns of log-probabilities (tens of
-- nats), so its gradient is orders of magnitude larger than the language
-- model's: one global norm would shrink every model gradient to nothing.
-- The episodic read parameters learn from the cross-entropy and stay with
-- the model.
function train.clip_groups(net, cfg)
  local model, own = {}, {}
  for _, p in ipairs(net:parameters()) do
    local g = p.group and own or model
    g[#g + 1] = p
  end
  if #own == 0 then return { model } end
  return { model, own }
end

--- Whether cfg trains the reinforce write policy.
function train.reinforce(cfg) return cfg.write_policy == "reinforce" end

--- The write options of an epoch (1-based): soft writes during the
-- curriculum's first curriculum_epochs epochs, then sampled hard writes;
-- the entropy weight decays as entropy_eta * entropy_decay^epoch.
function train.write_options(cfg, epoch)
  return { soft = epoch <= cfg.curriculum_epochs, eta = cfg.entropy_eta * cfg.entropy_decay ^ epoch }
end

-- The six per-epoch statistics of the write policy (means over the
-- epoch's batches of net:reinforce's results).
train.WRITE_STATS = { "write_rate", "entropy", "mean_reward", "mean_advantage", "baseline_loss", "slot_usage" }

--- The optimizer of cfg.optimizer over net's parameters.
function train.optimizer(net, cfg)
  local opts = { lr = cfg.learning_rate, weight_decay = cfg.weight_decay }
  if cfg.optimizer == "adamw" then return dm.optim.AdamW(net:parameters(), opts) end
  if cfg.optimizer == "adam" then return dm.optim.Adam(net:parameters(), opts) end
  if cfg.optimizer == "sgd" then return dm.optim.SGD(net:parameters(), opts) end
  error("unknown optimizer '" .. tostring(cfg.optimizer) .. "'", 2)
end

--- The scheduler of cfg.scheduler (nil for "none").
function train.scheduler(opt, cfg)
  local s = cfg.scheduler
  if s == "cosine" then return dm.optim.CosineAnnealingLR(opt, { T_max = cfg.t_max, eta_min = cfg.eta_min }) end
  if s == "step" then return dm.optim.StepLR(opt, { step_size = cfg.step_size, gamma = cfg.gamma }) end
  if s == "plateau" then return dm.optim.ReduceLROnPlateau(opt, { factor = cfg.gamma, patience = cfg.plateau_patience }) end
  if s == "none" then return nil end
  error("unknown scheduler '" .. tostring(s) .. "'", 2)
end

--- The once-per-epoch scheduler step (after validation; plateau watches
-- the validation loss).
function train.scheduler_step(sched, cfg, val_loss)
  if not sched then return end
  if cfg.scheduler == "plateau" then
    sched:step(val_loss)
  else
    sched:step()
  end
end

--- The training loss of cfg: fn(logits, targets, scale [, out]) -> loss,
-- dlogits, count. With loss_ignore_pad the mean runs over non-pad targets;
-- without, over every position as upstream. scale multiplies dlogits only.
-- out: a float32 tensor of the logits' shape that receives dlogits (and is
-- returned as it), or false for no dlogits at all (evaluation).
function train.criterion(cfg)
  local ignore = cfg.loss_ignore_pad and 0 or nil
  local ce = dm.nn.cross_entropy
  return function(logits, y, scale, out)
    return ce(logits, y, { ignore_index = ignore, scale = scale or 1.0, out = out or nil,
      grad = out ~= false })
  end
end

--- A source of reusable float32 (B,T,V) buffers, one per name: the logits
-- and dlogits of a batch are 4*B*T*V bytes each (64 MB at the seed's batch
-- and V=10000), and allocating them every batch costs page faults and lets
-- garbage pile up that Lua's collector cannot see the size of. A buffer is
-- reallocated only when the batch shape changes (the last, smaller batch).
function train.buffers()
  local cache = {}
  return function(name, x, V)
    local B, T = x:size(1), x:size(2)
    local t = cache[name]
    if not t or t:size(1) ~= B or t:size(2) ~= T or t:size(3) ~= V then
      t = dm.zeros({ B, T, V }, "float32")
      cache[name] = t
    end
    return t
  end
end

return train
