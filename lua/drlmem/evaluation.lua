-- evaluation.lua: a model's numbers on a split, in eval mode: the loss the
-- training criterion gives, and with opts.metrics perplexity, accuracy and
-- F1 over the non-pad targets (the training loop's validation and test
-- passes, and scripts/evaluate.lua, all call evaluation.run).
local dm = require "drlmem"
local train = require "drlmem.train"

local evaluation = {}

--- Evaluates net on a split in eval mode (no dropout; usage counts still
-- count, as upstream). Returns {loss = mean batch criterion (the training
-- loss of cfg), batches=}, and with opts.metrics also ppl (exp of the mean
-- NLL over all non-pad targets), accuracy, f1_weighted, f1_macro (pooled
-- over non-pad targets), acc_upstream, f1_upstream (per batch, weighted by
-- rows, as upstream) and n (non-pad targets). opts.task ("recall" | "copy")
-- with opts.vocab adds answer_acc and answers (dm.tasks.Accumulator); with
-- write_policy reinforce, write_rate and slot_usage are the means over the
-- batches of the evaluation forwards (thresholded actions unless
-- sample_eval). A split with .carry (data.lua's CarrySplit) carries the
-- recurrent state from batch to batch, from zeros. Leaves net in training
-- mode, its state cleared.
function evaluation.run(net, split, cfg, opts)
  opts = opts or {}
  local ignore = cfg.loss_ignore_pad and 0 or -1
  local with_metrics = opts.metrics
  local pooled = with_metrics and dm.metrics.Accumulator { pad = 0 }
  local per_batch = with_metrics and dm.metrics.Accumulator { pad = 0, mode = "batch" }
  local loss_sum, nb, nll_sum, n_tok = 0.0, 0, 0.0, 0
  local answers = opts.task and opts.task ~= "none" and dm.tasks.Accumulator(opts.task, opts.vocab)
  local wr_sum, su_sum, nw = 0.0, 0.0, 0
  net:eval()
  -- A stream split of parallel rows (carry_state) is read as training reads
  -- it: each batch starts from the state the one before left.
  local carry = split.carry
  if carry then net:set_state(nil) end
  local ok, err = pcall(function()
    for x, y in split:batches(opts.batch_size or cfg.batch_size) do
      -- The loss is computed where the logits live; metrics and answers
      -- read them through a view, no copy.
      net:forward(x, false)
      if carry then net:set_state(net:final_state()) end
      local loss, count = net:loss(y, { ignore_index = ignore, grad = false })
      local logits = (answers or with_metrics) and net:logits()
      if count > 0 then loss_sum, nb = loss_sum + loss, nb + 1 end
      local ws = net:write_stats()
      if ws then wr_sum, su_sum, nw = wr_sum + ws.write_rate, su_sum + ws.slot_usage, nw + 1 end
      if answers then answers:add(logits, y) end
      if with_metrics then
        local nll, cnt = loss, count
        if not cfg.loss_ignore_pad then
          nll, cnt = net:loss(y, { ignore_index = 0, grad = false })
        end
        if cnt > 0 then nll_sum, n_tok = nll_sum + nll * cnt, n_tok + cnt end
        pooled:add(logits, y)
        per_batch:add(logits, y)
      end
    end
  end)
  net:train()
  if carry then net:set_state(nil) end
  if not ok then error(err, 0) end
  local r = { loss = nb > 0 and loss_sum / nb or 0 / 0, batches = nb }
  if nw > 0 then r.write_rate, r.slot_usage = wr_sum / nw, su_sum / nw end
  if answers then
    local a = answers:result()
    r.answer_acc, r.answers = a.accuracy, a.total
  end
  if with_metrics then
    local m, u = pooled:compute(), per_batch:compute()
    r.ppl = n_tok > 0 and dm.metrics.perplexity(nll_sum / n_tok) or 0 / 0
    r.nll = n_tok > 0 and nll_sum / n_tok or 0 / 0
    r.accuracy, r.f1_weighted, r.f1_macro, r.n = m.accuracy, m.f1_weighted, m.f1_macro, n_tok
    r.acc_upstream, r.f1_upstream = u.accuracy, u.f1_weighted
  end
  return r
end

--- The loss over every position of one token stream, as a language model
-- reads running text: ids (token ids) in windows of T (the last one
-- shorter), each window's input ids[i..] and targets ids[i+1..], one row,
-- the recurrent state carried from each window into the next, in eval
-- mode. ids[1] is context only; every later id is a target once. Returns
-- {nll = mean negative log-likelihood in nats, n = targets, ppl = exp(nll),
-- bits = nll / ln 2, windows=}. Leaves net in training mode, its state
-- cleared.
function evaluation.stream(net, ids, T)
  assert(#ids >= 2, "evaluation.stream: at least two tokens")
  local nll_sum, n, windows = 0.0, 0, 0
  net:eval()
  net:set_state(nil)
  local ok, err = pcall(function()
    local i = 1
    while i < #ids do
      local len = math.min(T, #ids - i)
      local x, y = dm.tensor({ table.move(ids, i, i + len - 1, 1, {}) }, "int32"),
        dm.tensor({ table.move(ids, i + 1, i + len, 1, {}) }, "int32")
      net:forward(x, false)
      net:set_state(net:final_state())
      local loss, count = net:loss(y, { ignore_index = -1, grad = false })
      nll_sum, n, windows = nll_sum + loss * count, n + count, windows + 1
      i = i + len
    end
  end)
  net:set_state(nil)
  net:train()
  if not ok then error(err, 0) end
  local nll = nll_sum / n
  return { nll = nll, n = n, ppl = dm.metrics.perplexity(nll), bits = nll / math.log(2), windows = windows }
end

return evaluation
