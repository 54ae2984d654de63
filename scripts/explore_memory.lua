-- explore_memory.lua: what the memory of a trained checkpoint does.
--
--   drlmem scripts/explore_memory.lua --checkpoint models/memory_model.safetensors
--       [--data FILE] [--sentence "Mary went to the kitchen."] [--top 8] [--svg memory.svg]
--
-- Prints, and draws as one SVG picture:
--   1. the usage histogram: memory.usage_counts as training left them (each
--      forward adds 1 to every distinct slot some query chose), and how the
--      counts spread over the slots;
--   2. for the run's test split (or every sample of --data): how often each
--      slot is the best match (argmax of query . keys) of a non-pad position,
--      and for the --top most used slots, the input tokens whose queries hit
--      them most often;
--   3. for --sentence: the attention over slots of every token (softmax of
--      query . keys), as the strongest slots per token and as a heat map of
--      tokens x the slots that matter most for this sentence.
--
-- With --trace N, for a checkpoint with the episodic memory (write_policy
-- reinforce), it shows instead sample N of the data (1-based) as the
-- memory saw it (net:write_trace): per step the token, the write
-- probability, the write, the slot written and the strongest slot read,
-- and as a picture of time x episodic slot, the read's attention shaded,
-- each write marked by a red frame on the slot it filled (readable from the
-- next step on), the tokens along the time axis and the write probability
-- below. This is the trace for seeing whether a policy writes the steps a
-- later read needs, and whether that read finds them.
local dm = require "drlmem"
local inference, plot = dm.inference, dm.plot

local args = dm.cli.parse {
  name = "explore_memory.lua",
  description = "Shows memory usage, the tokens behind the most used slots and a sentence's attention.",
  options = function(p)
    p:option("--checkpoint", "Model checkpoint (memory_model.safetensors)."):argname("<path>")
    p:option("--data", "Text file whose samples probe the memory (default: the run's test split).")
      :argname("<file>")
    p:option("--sentence", "A sentence whose attention over slots is shown.",
      "Mary went to the kitchen. Where is Mary?")
    p:option("--top", "Number of slots to detail.", "8"):convert(math.tointeger)
    p:option("--tokens", "Tokens shown per slot.", "6"):convert(math.tointeger)
    p:option("--svg", "Picture to write (default: memory.svg, or trace-N.svg with --trace, beside the "
      .. "checkpoint; '-' for none).")
      :argname("<path>")
    p:option("--trace", "Trace sample N of the data through the episodic memory instead (write_policy reinforce).")
      :argname("<N>"):convert(math.tointeger)
  end,
}
if not args.checkpoint then dm.cli.die("--checkpoint is required (e.g. models/memory_model.safetensors)") end
if args.top < 1 or args.tokens < 1 then dm.cli.die("--top and --tokens must be >= 1") end
if args.trace ~= nil and args.trace < 1 then dm.cli.die("--trace must be a sample number >= 1") end

local ok, ck = pcall(dm.checkpoint.load, args.checkpoint)
if not ok then dm.cli.die(ck) end
local cfg_ok, cfg = pcall(inference.checkpoint_config, ck, args)
if not cfg_ok then dm.cli.die(cfg) end
local vocab, net = dm.data.Vocab(ck.vocab), ck.net
local M = net:config().memory_size
net:eval()

-- The samples that probe the memory: --data, or the run's test split.
local function load_probe()
  local split, source
  local dok, derr = pcall(function()
    if args.data then
      split, source = inference.file_split(args.data, vocab, cfg), args.data
    else
      local d = dm.data.load(cfg)
      split, source = d.test, cfg.data_path .. " (test split)"
      for i, t in ipairs(d.vocab:list()) do
        if ck.vocab[i] ~= t then
          error(string.format("%s gives another vocabulary than the checkpoint's; pass --data FILE", cfg.data_path), 0)
        end
      end
    end
  end)
  if not dok then dm.cli.die(derr) end
  return split, source
end

if args.trace then
  if (cfg.write_policy or "blend") ~= "reinforce" then
    dm.cli.die(string.format("--trace: %s has no episodic memory (write_policy is %s; the trace needs reinforce)",
      args.checkpoint, tostring(cfg.write_policy or "blend")))
  end
  local split, source = load_probe()
  if args.trace > split:size() then
    dm.cli.die(string.format("--trace %d: %s has %d samples", args.trace, source, split:size()))
  end
  local x, k = nil, 0
  for xb in split:batches(1) do
    k = k + 1
    if k == args.trace then x = xb break end
  end
  net:forward(x)
  local tr = net:write_trace(1)
  -- trailing pads are not part of the sample
  local steps = {}
  for _, st in ipairs(tr.steps) do
    if st.token == vocab.pad then break end
    steps[#steps + 1] = st
  end
  local K = tr.slots
  local function word(id) return vocab.itos[id] or ("#" .. id) end
  print(string.format("write trace of sample %d of %s: %d steps, %d episodic slots", args.trace, source, #steps, K))
  print(string.format("  %4s  %-12s %7s %6s %5s  %s", "t", "token", "p_write", "write", "slot", "read (strongest slot)"))
  local writes = 0
  for _, st in ipairs(steps) do
    local best, sum = nil, 0
    for s = 1, K do
      sum = sum + st.attention[s]
      if st.attention[s] > 0 and (not best or st.attention[s] > st.attention[best]) then best = s end
    end
    if st.slot then writes = writes + 1 end
    print(string.format("  %4d  %-12s %7.3f %6.3g %5s  %s", st.t, word(st.token), st.p_write, st.write,
      st.slot and tostring(st.slot) or "-", best and string.format("slot %d %.3f", best, st.attention[best]) or "-"))
  end
  print(string.format("  %d writes in %d steps", writes, #steps))
  -- On recall (`k1 v1 ... kn vn ? kq vq`), whether the read at the question's
  -- key (the step whose output answers) lands on the slot written at the
  -- queried pair's value, over every sample of the probe data.
  if cfg.task == "recall" then
    local hits, mass, counted, unwritten = 0, 0, 0, 0
    for xb, _, nrows in split:batches(cfg.batch_size) do
      net:forward(xb)
      local xt = xb:totable()
      for b = 1, nrows do
        local row, q = xt[b], nil
        for t, id in ipairs(row) do if vocab.itos[id] == "?" then q = t end end
        if q and row[q + 1] then
          local key, vt = row[q + 1], nil
          for t = 1, q - 2 do if row[t] == key then vt = t + 1 end end
          if vt then
            local st = net:write_trace(b).steps
            local slot = st[vt].slot
            counted = counted + 1
            if not slot then
              unwritten = unwritten + 1
            else
              local a, best = st[q + 1].attention, 1
              for k = 2, #a do if a[k] > a[best] then best = k end end
              if best == slot then hits = hits + 1 end
              mass = mass + a[slot]
            end
          end
        end
      end
    end
    if counted > 0 then
      print(string.format("recall, %d samples of %s: the queried value was written in %d; the answer step's read "
        .. "put most weight on its slot in %d (%.4f), mean weight there %.4f", counted, source, counted - unwritten,
        hits, hits / counted, mass / counted))
    end
  end
  local svg_path = args.svg or dm.log.join(dm.log.dirname(args.checkpoint), string.format("trace-%d.svg", args.trace))
  if svg_path ~= "-" then
    local n = math.max(1, #steps)
    -- a column wide enough for the longest token: every step keeps its label
    local longest = 1
    for _, st in ipairs(steps) do longest = math.max(longest, utf8.len(word(st.token)) or #word(st.token)) end
    local cell = math.max(28, 6 * longest)
    local W = math.max(500, 90 + 16 + n * cell)
    local HM = 34 + 40 + K * math.max(12, math.min(24, 400 // K))
    local svg = plot.SVG(W, HM + 260)
    local rows, row_labels, col_labels = {}, {}, {}
    for s = 1, K do
      rows[s], row_labels[s] = {}, "slot " .. s
      for t, st in ipairs(steps) do rows[s][t] = st.attention[s] end
    end
    for t, st in ipairs(steps) do col_labels[t] = word(st.token) end
    local grid = plot.heatmap(svg, { id = "attention", x = 0, y = 0, w = W, h = HM, rows = rows,
      row_labels = row_labels, col_labels = col_labels, vmax = 1, max_labels = math.huge,
      title = string.format("Episodic read over slots, sample %d (red: the step's write)", args.trace),
      xlabel = "step (input token)" })
    svg:group("writes")
    for t, st in ipairs(steps) do
      if st.slot then
        svg:rect(grid.x + (t - 1) * grid.cw + 1, grid.y + (st.slot - 1) * grid.ch + 1, grid.cw - 2, grid.ch - 2,
          { fill = "none", stroke = "#d62728", stroke_width = 2, class = "write" })
      end
    end
    svg:close_group()
    local pw, labels = {}, {}
    for t, st in ipairs(steps) do pw[t], labels[t] = st.p_write, tostring(st.t) end
    plot.bar_chart(svg, { id = "p_write", x = 0, y = HM, w = W, h = 260, values = pw, labels = labels,
      title = "Write probability by step", xlabel = "step", ylabel = "p_write", color = plot.COLORS[2], vmax = 1 })
    local saved, serr = pcall(svg.save, svg, svg_path)
    if not saved then dm.cli.die(serr) end
    print("\nwrote " .. svg_path)
  end
  os.exit(0)
end

-- 1. Usage as saved (read before any forward here adds to it).
local usage = net:memory_usage():totable()
local total_usage, used = 0, 0
for _, c in ipairs(usage) do
  total_usage = total_usage + c
  if c > 1 then used = used + 1 end -- counts start at 1
end
local by_usage = {}
for s = 1, M do by_usage[s] = s end
table.sort(by_usage, function(a, b) return usage[a] > usage[b] or (usage[a] == usage[b] and a < b) end)
print(string.format("memory: %d slots, width %d; usage counts sum %d, %d slots chosen at least once in training",
  M, net:config().memory_embedding_dim, total_usage, used))
io.write("  most used slots:")
for i = 1, math.min(args.top, M) do io.write(string.format("  #%d %d", by_usage[i], usage[by_usage[i]])) end
print()
-- a coarse histogram of the counts: how many slots fall in each band
local hi = usage[by_usage[1]]
local bands = 8
local hist = {}
for b = 1, bands do hist[b] = 0 end
for _, c in ipairs(usage) do
  local b = hi > 1 and math.min(bands, 1 + math.floor((c - 1) / (hi - 1 + 1e-9) * bands)) or 1
  hist[b] = hist[b] + 1
end
print("  slots by usage count:")
for b = 1, bands do
  local lo_c = 1 + (hi - 1) * (b - 1) / bands
  local hi_c = 1 + (hi - 1) * b / bands
  print(string.format("    %9.0f-%-9.0f %5d %s", lo_c, hi_c, hist[b], string.rep("#", math.ceil(hist[b] / M * 50))))
end

-- 2. Which tokens' queries hit which slots, over a data set.
local split, source = load_probe()

local hits, token_hits, positions = {}, {}, 0
for s = 1, M do hits[s], token_hits[s] = 0, {} end
for x, y in split:batches(cfg.batch_size) do
  net:forward(x)
  local slots, xt, yt = net:last_slots():totable(), x:totable(), y:totable()
  for b = 1, #slots do
    for t = 1, #slots[b] do
      if yt[b][t] ~= vocab.pad then
        local s, tok = slots[b][t], xt[b][t]
        hits[s] = hits[s] + 1
        token_hits[s][tok] = (token_hits[s][tok] or 0) + 1
        positions = positions + 1
      end
    end
  end
end
local by_hits = {}
for s = 1, M do by_hits[s] = s end
table.sort(by_hits, function(a, b) return hits[a] > hits[b] or (hits[a] == hits[b] and a < b) end)
local distinct = 0
for s = 1, M do if hits[s] > 0 then distinct = distinct + 1 end end
print(string.format("\nbest-matching slot of %d non-pad positions of %s: %d distinct slots", positions, source, distinct))
for i = 1, math.min(args.top, M) do
  local s = by_hits[i]
  if hits[s] == 0 then break end
  local toks = {}
  for tok, c in pairs(token_hits[s]) do toks[#toks + 1] = { tok = tok, c = c } end
  table.sort(toks, function(a, b) return a.c > b.c or (a.c == b.c and a.tok < b.tok) end)
  local parts = {}
  for j = 1, math.min(args.tokens, #toks) do
    parts[j] = string.format("%s (%d)", vocab.itos[toks[j].tok], toks[j].c)
  end
  print(string.format("  slot %-4d %6d hits %5.1f%%  %s", s, hits[s], 100 * hits[s] / math.max(1, positions),
    table.concat(parts, ", ")))
end

-- 3. The attention of one sentence.
local ids = cfg.sample_mode == "lines" and { vocab.sos } or {}
for _, id in ipairs(vocab:encode(dm.data.tokenizer(cfg.tokenizer)(args.sentence))) do ids[#ids + 1] = id end
while #ids > cfg.max_seq_length do table.remove(ids) end
local rows, labels, strongest = {}, {}, {}
if #ids > 0 then
  net:forward(dm.tensor({ ids }, "int32"))
  local att = net:last_attention():totable()[1] -- (n, M)
  print(string.format("\nattention of %q over the %d slots (strongest 3 per token):", args.sentence, M))
  local weight_of = {}
  for t, id in ipairs(ids) do
    local w = att[t]
    local order = {}
    for s = 1, M do order[s] = s end
    table.sort(order, function(a, b) return w[a] > w[b] or (w[a] == w[b] and a < b) end)
    labels[t] = vocab.itos[id]
    print(string.format("  %-12s slot %d %.3f   slot %d %.3f   slot %d %.3f", labels[t], order[1], w[order[1]],
      order[2] or 0, w[order[2]] or 0, order[3] or 0, w[order[3]] or 0))
    for s = 1, M do weight_of[s] = math.max(weight_of[s] or 0, w[s]) end
  end
  -- the heat map shows the slots with the largest weight anywhere in the sentence
  local cols = {}
  for s = 1, M do cols[s] = s end
  table.sort(cols, function(a, b) return weight_of[a] > weight_of[b] or (weight_of[a] == weight_of[b] and a < b) end)
  for i = #cols, math.min(24, M) + 1, -1 do cols[i] = nil end
  table.sort(cols)
  for t = 1, #ids do
    rows[t] = {}
    for j, s in ipairs(cols) do rows[t][j] = att[t][s] end
  end
  for j, s in ipairs(cols) do strongest[j] = tostring(s) end
end

-- The picture.
local svg_path = args.svg or dm.log.join(dm.log.dirname(args.checkpoint), "memory.svg")
if svg_path ~= "-" then
  local svg = plot.SVG(900, 1000)
  local counts = {}
  for s = 1, M do counts[s] = usage[s] end
  plot.bar_chart(svg, { id = "usage", x = 0, y = 0, w = 900, h = 300, values = counts,
    title = "Usage counts by slot (training)", xlabel = "slot", ylabel = "count" })
  local top_vals, top_labels = {}, {}
  for i = 1, math.min(math.max(args.top, 16), M) do
    top_vals[i], top_labels[i] = hits[by_hits[i]], tostring(by_hits[i])
  end
  plot.bar_chart(svg, { id = "hits", x = 0, y = 300, w = 900, h = 300, values = top_vals, labels = top_labels,
    title = "Best-matching slot of the probe positions (most hit slots)", xlabel = "slot", ylabel = "positions",
    color = plot.COLORS[2] })
  plot.heatmap(svg, { id = "attention", x = 0, y = 600, w = 900, h = 400, rows = rows, row_labels = labels,
    col_labels = strongest, vmax = 1, title = "Attention over slots: " .. args.sentence, xlabel = "slot" })
  local saved, serr = pcall(svg.save, svg, svg_path)
  if not saved then dm.cli.die(serr) end
  print("\nwrote " .. svg_path)
end
