-- metrics.lua: accuracy, F1 and perplexity over token predictions.
--
-- Only the positions whose target is not <pad> count. For each label l in
-- the union of targets and predictions, F1_l = 2tp / (2tp + fp + fn) (never
-- 0/0, since every label in the union has tp + fp + fn >= 1; this equals
-- sklearn's f1_score with zero_division=1 for sklearn <= 1.2 and >= 1.4, see
-- the reference README's Metrics and quirk 8). Weighted F1 is
-- sum(support_l * F1_l) / sum(support_l) with support_l = tp_l + fn_l (l's
-- count among the targets), macro F1 the plain mean of F1_l. With no non-pad
-- target all three are 0, as upstream returns.
--
-- An accumulator keeps only per-label counts, so an evaluation over many
-- batches never holds its predictions:
--
--   local acc = dm.metrics.Accumulator{pad = 0}
--   for x, y in d.test:batches(B) do acc:add(net:forward(x), y) end
--   local m = acc:compute()   -- {accuracy=, f1_weighted=, f1_macro=, n=, labels=}
--
-- add() takes predicted ids (int32 tensor or Lua array) or float32 logits
-- (..., V) whose argmax it takes (first index on ties), and targets (int32
-- tensor or Lua array; nested arrays count as rows). mode = "tokens" (the
-- default) pools every position of every batch; mode = "batch" reproduces how
-- upstream reports: metrics per batch, averaged with weights equal to the
-- batch size in sequences.
local dm = require "drlmem"

local metrics = {}

--- F1 results from per-label counts (tables label -> count).
function metrics.from_counts(tp, fp, fn)
  local labels = {}
  for _, t in ipairs { tp, fp, fn } do
    for l, c in pairs(t) do if c > 0 then labels[l] = true end end
  end
  local correct, total, sum_w, sum_f1, nl = 0, 0, 0.0, 0.0, 0
  for l in pairs(labels) do
    local a, b, c = tp[l] or 0, fp[l] or 0, fn[l] or 0
    local f1 = 2 * a / (2 * a + b + c)
    local support = a + c
    correct, total = correct + a, total + support
    sum_w = sum_w + support * f1
    sum_f1 = sum_f1 + f1
    nl = nl + 1
  end
  if total == 0 then return { accuracy = 0.0, f1_weighted = 0.0, f1_macro = 0.0, n = 0, labels = nl } end
  return {
    accuracy = correct / total,
    f1_weighted = sum_w / total,
    f1_macro = sum_f1 / nl,
    n = total,
    labels = nl,
  }
end

-- Flattens a Lua array of ids or of rows of ids; returns the flat list and
-- the number of rows (1 for a flat list).
local function flatten(t, what)
  if type(t[1]) ~= "table" then return t, 1 end
  local flat, n = {}, 0
  for r = 1, #t do
    local row = t[r]
    if type(row) ~= "table" then error("metrics: " .. what .. " mixes rows and numbers", 3) end
    for j = 1, #row do
      n = n + 1
      flat[n] = row[j]
    end
  end
  return flat, #t
end

-- Adds the counts of one batch into (tp, fp, fn); returns rows.
local function count_into(tp, fp, fn, pred, target, pad)
  if type(pred) == "table" or type(target) == "table" then
    if type(pred) ~= "table" or type(target) ~= "table" then
      error("metrics: predictions and targets must both be tensors or both Lua arrays", 3)
    end
    local p = flatten(pred, "predictions")
    local g, rows = flatten(target, "targets")
    if #p ~= #g then
      error(string.format("metrics: %d predictions and %d targets", #p, #g), 3)
    end
    for i = 1, #g do
      local gi, pi = g[i], p[i]
      if gi ~= pad then
        if pi == gi then
          tp[gi] = (tp[gi] or 0) + 1
        else
          fp[pi] = (fp[pi] or 0) + 1
          fn[gi] = (fn[gi] or 0) + 1
        end
      end
    end
    return rows
  end
  local _, _, rows = dm.datautil.count(tp, fp, fn, pred, target, pad)
  return rows
end

local Accumulator = {}
Accumulator.__index = Accumulator
Accumulator.__name = "drlmem.MetricsAccumulator"

--- A streaming accumulator. opts: pad (0), mode ("tokens" | "batch").
function metrics.Accumulator(opts)
  opts = opts or {}
  local mode = opts.mode or "tokens"
  if mode ~= "tokens" and mode ~= "batch" then
    error("metrics.Accumulator: mode must be 'tokens' or 'batch', got '" .. tostring(mode) .. "'", 2)
  end
  local self = setmetatable({ pad = opts.pad or 0, mode = mode }, Accumulator)
  self:reset()
  return self
end

function Accumulator:reset()
  self.tp, self.fp, self.fn = {}, {}, {}
  self.rows, self.sum = 0, { accuracy = 0.0, f1_weighted = 0.0, f1_macro = 0.0 }
  self.n = 0
end

--- Adds one batch. rows overrides the batch's weight in "batch" mode
-- (default: the target's number of rows).
function Accumulator:add(pred, target, rows)
  if self.mode == "tokens" then
    self.rows = self.rows + count_into(self.tp, self.fp, self.fn, pred, target, self.pad)
    return
  end
  local tp, fp, fn = {}, {}, {}
  local r = count_into(tp, fp, fn, pred, target, self.pad)
  r = rows or r
  local m = metrics.from_counts(tp, fp, fn)
  for k in pairs(self.sum) do self.sum[k] = self.sum[k] + r * m[k] end
  self.rows = self.rows + r
  self.n = self.n + m.n
end

--- {accuracy=, f1_weighted=, f1_macro=, n= (counted positions), labels=}.
function Accumulator:compute()
  if self.mode == "tokens" then return metrics.from_counts(self.tp, self.fp, self.fn) end
  if self.rows == 0 then return { accuracy = 0.0, f1_weighted = 0.0, f1_macro = 0.0, n = 0 } end
  return {
    accuracy = self.sum.accuracy / self.rows,
    f1_weighted = self.sum.f1_weighted / self.rows,
    f1_macro = self.sum.f1_macro / self.rows,
    n = self.n,
  }
end

--- One-shot metrics of predictions against targets. opts as for Accumulator.
function metrics.compute(pred, target, opts)
  local acc = metrics.Accumulator(opts)
  acc:add(pred, target)
  return acc:compute()
end

--- exp(mean loss in nats); inf when it overflows.
function metrics.perplexity(loss)
  if loss ~= loss then return loss end
  if loss > 709 then return math.huge end
  return math.exp(loss)
end

return metrics
