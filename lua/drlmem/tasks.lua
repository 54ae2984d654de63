-- tasks.lua: synthetic memory tasks and their answer-token accuracy.
--
-- Two tasks whose answers can only be produced by remembering earlier
-- tokens, written as text in the `lines` format (one sample a line) by
-- scripts/make_task.lua, deterministically from a seed (dm.Generator):
--
--   recall  k3 v7 k1 v2 k5 v7 ? k1 v2     n key-value pairs (distinct keys),
--           then `?`, a key drawn from the pairs, and its value: the answer.
--   copy    x4 x1 x4 x9 ? x4 x1 x4 x9      n symbols, `?`, the same n again:
--           every symbol after `?` is an answer.
--
-- Keys are k1..k<keys>, values v1..v<values>, symbols x1..x<symbols>; all
-- survive the `word` tokenizer unchanged ("?" is a token of its own).
--
-- Answer positions. With the lines format a sample with tokens t1..tn has
-- target [t1..tn, <eos>], so token index p is target column p: the model
-- predicts the answer t_p from the inputs <sos>, t1..t_{p-1}. The answer
-- positions are, in token (= target column) indices:
--   recall  the last token (the value after `? key`), only when the sample
--           is whole (its <eos> is in the row); a cut sample has none;
--   copy    every token after the last `?` (up to the cut, if cut).
-- When the tokenizer drops `?` (tokenizer `upstream`), copy falls back to
-- the second half of the tokens.
--
-- babi (samples of sample_mode babi, lua/drlmem/babi.lua): a sample is a
-- story's statements, a question ending in `?`, then the answer's tokens;
-- the answer positions are the tokens after the last `?`, in whole samples
-- only (the reader keeps every sample whole). A question counts as answered
-- when every one of its answer tokens is predicted (MemN2N's answer
-- accuracy: one answer per question, a list answer as a whole), so
-- accuracy is over questions; tokens_accuracy is over answer tokens.
--
--   local acc = dm.tasks.Accumulator("recall", vocab)
--   acc:add(logits, y)                  -- logits (n,T,V) float, y (n,T) int32
--   acc:result()                        --> {correct=, total=, accuracy=}
local dm = require "drlmem"

local tasks = {}

tasks.names = { "recall", "copy" }
tasks.QUERY = "?"

-- The tasks whose answers are scored (babi has no generator here).
local SCORED = { recall = true, copy = true, babi = true }
local function check_scored(task, fn)
  if not SCORED[task] then
    error(string.format("%s: task must be \"recall\", \"copy\" or \"babi\", got %s", fn, tostring(task)), 3)
  end
end

local function check_task(task, fn)
  if task ~= "recall" and task ~= "copy" then
    error(string.format("%s: task must be \"recall\" or \"copy\", got %s", fn, tostring(task)), 3)
  end
end

local function check_int(v, name, lo, fn)
  if math.type(v) ~= "integer" or v < lo then
    error(string.format("%s: %s must be an integer >= %d, got %s", fn, name, lo, tostring(v)), 3)
  end
end

--- Defaults of the generator options (n = pairs or symbols).
function tasks.defaults(task)
  check_task(task, "tasks.defaults")
  if task == "recall" then return { n = 8, keys = 16, values = 16 } end
  return { n = 8, symbols = 16 }
end

--- One recall line from generator g. opts: n, keys (>= n), values.
function tasks.recall_line(g, opts)
  local n, nk, nv = opts.n, opts.keys, opts.values
  local perm = g:randperm(nk)
  local out, vals = {}, {}
  for i = 1, n do
    local v = g:random(nv)
    vals[i] = v
    out[#out + 1] = "k" .. perm[i]
    out[#out + 1] = "v" .. v
  end
  local q = g:random(n)
  out[#out + 1] = tasks.QUERY
  out[#out + 1] = "k" .. perm[q]
  out[#out + 1] = "v" .. vals[q]
  return table.concat(out, " ")
end

--- One copy line from generator g. opts: n, symbols.
function tasks.copy_line(g, opts)
  local n, ns = opts.n, opts.symbols
  local seq = {}
  for i = 1, n do seq[i] = "x" .. g:random(ns) end
  local s = table.concat(seq, " ")
  return s .. " " .. tasks.QUERY .. " " .. s
end

--- The lines of a task: opts = {n=, samples=, seed=, keys=, values=,
-- symbols=} (missing ones take tasks.defaults). Same opts, same lines.
function tasks.generate(task, opts)
  check_task(task, "tasks.generate")
  opts = opts or {}
  local o = tasks.defaults(task)
  for k, v in pairs(opts) do o[k] = v end
  o.samples = o.samples or 1000
  o.seed = o.seed or 0
  check_int(o.n, "n", 1, "tasks.generate")
  check_int(o.samples, "samples", 1, "tasks.generate")
  check_int(o.seed, "seed", 0, "tasks.generate")
  if task == "recall" then
    check_int(o.keys, "keys", o.n, "tasks.generate")
    check_int(o.values, "values", 1, "tasks.generate")
  else
    check_int(o.symbols, "symbols", 1, "tasks.generate")
  end
  local g = dm.Generator(o.seed)
  local make = task == "recall" and tasks.recall_line or tasks.copy_line
  local lines = {}
  for i = 1, o.samples do lines[i] = make(g, o) end
  return lines
end

--- Answer positions (1-based token indices) of one sample's tokens, for a
-- whole sample. query is the `?` token (string or id); default "?".
function tasks.answer_positions(task, tokens, query)
  check_task(task, "tasks.answer_positions")
  query = query == nil and tasks.QUERY or query
  local n = #tokens
  if n == 0 then return {} end
  if task == "recall" then return { n } end
  local q
  for i = n, 1, -1 do
    if tokens[i] == query then q = i; break end
  end
  local first = q and q + 1 or n // 2 + 1
  local out = {}
  for p = first, n do out[#out + 1] = p end
  return out
end

--- Answer columns (1-based) of every row of a target tensor y (n,T) of
-- the lines format: a list of lists. vocab gives the ids of <eos>, <pad>
-- and `?`.
function tasks.answer_columns(task, y, vocab)
  check_scored(task, "tasks.answer_columns")
  local rows = y:totable()
  local eos, pad, qid = vocab.eos, vocab.pad, vocab.stoi[tasks.QUERY]
  local out = {}
  for r, row in ipairs(rows) do
    local toks, whole = {}, false
    for c = 1, #row do
      local id = row[c]
      if id == eos then whole = true; break end
      if id == pad then break end
      toks[c] = id
    end
    local cols = {}
    if task == "babi" then
      -- (a row without `?` or cut before its <eos> has nothing to score)
      local q
      for c = #toks, 1, -1 do
        if toks[c] == qid then q = c; break end
      end
      if whole and q then
        for c = q + 1, #toks do cols[#cols + 1] = c end
      end
    elseif task == "copy" or whole then
      if task == "copy" and qid == nil then
        -- `?` not in the vocabulary: the tokenizer dropped it
        cols = tasks.answer_positions(task, toks, -1)
      else
        cols = tasks.answer_positions(task, toks, qid)
      end
    end
    out[r] = cols
  end
  return out
end

--- Answer-token accuracy counts of one batch: correct, total. logits
-- (n,T,V) float32, y (n,T) int32. For babi, the counts are of questions
-- (a question is correct when all its answer tokens are), and the third and
-- fourth results count the answer tokens.
function tasks.count(task, logits, y, vocab)
  local pred = logits:argmax(3):totable() -- 1-based class indices
  local ys = y:totable()
  local cols = tasks.answer_columns(task, y, vocab)
  local correct, total, qc, qt = 0, 0, 0, 0
  for r, cs in ipairs(cols) do
    local all = true
    for _, c in ipairs(cs) do
      total = total + 1
      if pred[r][c] - 1 == ys[r][c] then correct = correct + 1 else all = false end
    end
    if #cs > 0 then
      qt = qt + 1
      if all then qc = qc + 1 end
    end
  end
  if task == "babi" then return qc, qt, correct, total end
  return correct, total
end

--- The targets y (n,T) int32 with every column that is not an answer of
-- its row set to ignore (the loss's ignore_index): training on these puts
-- the whole loss on the answers (config loss_positions: answers). A new
-- tensor; y is unchanged.
function tasks.answer_targets(task, y, vocab, ignore)
  check_scored(task, "tasks.answer_targets")
  if math.type(ignore) ~= "integer" then
    error("tasks.answer_targets: ignore must be an integer, got " .. tostring(ignore), 2)
  end
  local rows, cols = y:totable(), tasks.answer_columns(task, y, vocab)
  for r, row in ipairs(rows) do
    local keep = {}
    for _, c in ipairs(cols[r]) do keep[c] = true end
    for c = 1, #row do
      if not keep[c] then row[c] = ignore end
    end
  end
  return dm.tensor(rows, "int32")
end

local Accumulator = {}
Accumulator.__index = Accumulator

--- Sums answer accuracy over batches (babi: over questions, and over
-- answer tokens in tokens_correct, tokens_total, tokens_accuracy).
function tasks.Accumulator(task, vocab)
  check_scored(task, "tasks.Accumulator")
  return setmetatable({ task = task, vocab = vocab, correct = 0, total = 0, tokens_correct = 0, tokens_total = 0 },
    Accumulator)
end

function Accumulator:add(logits, y)
  local c, t, tc, tt = tasks.count(self.task, logits, y, self.vocab)
  self.correct, self.total = self.correct + c, self.total + t
  if tc then self.tokens_correct, self.tokens_total = self.tokens_correct + tc, self.tokens_total + tt end
  return c, t
end

function Accumulator:result()
  local r = { correct = self.correct, total = self.total,
              accuracy = self.total > 0 and self.correct / self.total or 0 / 0 }
  if self.task == "babi" then
    r.tokens_correct, r.tokens_total = self.tokens_correct, self.tokens_total
    r.tokens_accuracy = self.tokens_total > 0 and self.tokens_correct / self.tokens_total or 0 / 0
  end
  return r
end

return tasks
