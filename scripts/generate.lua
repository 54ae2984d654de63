-- generate.lua: text from a trained checkpoint, one token at a time.
--
--   drlmem scripts/generate.lua --checkpoint models/memory_model.safetensors
--       --prime "Mary went to the kitchen." [--length 40] [--temperature 0.8]
--       [--top-k 10] [--seed 1] [--keep-going]
--
-- The prime is tokenised with the checkpoint's tokenizer and vocabulary
-- (unknown words become <unk>); in lines mode it starts with <sos>, as the
-- training samples do. Each step runs the model in eval mode over the last
-- max_seq_length tokens and samples the next token from
-- softmax(logits / temperature) restricted to the top-k (temperature 0:
-- always the most likely token). <pad> and <sos> are never drawn; <eos>
-- ends the text unless --keep-going. Draws come from dm.Generator(seed), so
-- the same seed gives the same text.
local dm = require "drlmem"
local inference = dm.inference

local args = dm.cli.parse {
  name = "generate.lua",
  description = "Generates text from a checkpoint, starting from a prime text.",
  options = function(p)
    p:option("--checkpoint", "Model checkpoint (memory_model.safetensors)."):argname("<path>")
    p:option("--prime", "Text to start from.", "")
    p:option("--length", "Tokens to generate.", "40"):convert(math.tointeger)
    p:option("--temperature", "Sampling temperature (0 = greedy).", "1.0"):convert(tonumber)
    p:option("--top-k", "Sample among the k most likely tokens (0 = all).", "0"):convert(math.tointeger)
    p:option("--seed", "Seed of the draws.", "1"):convert(math.tointeger)
    p:flag("--keep-going", "Do not stop at <eos>.")
  end,
}
if not args.checkpoint then dm.cli.die("--checkpoint is required (e.g. models/memory_model.safetensors)") end
if args.length < 0 then dm.cli.die("--length must be >= 0") end
if not (args.temperature >= 0) then dm.cli.die("--temperature must be >= 0") end
if args.top_k < 0 then dm.cli.die("--top-k must be >= 0") end

local ok, ck = pcall(dm.checkpoint.load, args.checkpoint)
if not ok then dm.cli.die(ck) end
local cfg_ok, cfg = pcall(inference.checkpoint_config, ck, args)
if not cfg_ok then dm.cli.die(cfg) end
local vocab, net, T = dm.data.Vocab(ck.vocab), ck.net, cfg.max_seq_length
net:eval()

local prime_tokens = dm.data.tokenizer(cfg.tokenizer)(args.prime)
local ids = cfg.sample_mode == "lines" and { vocab.sos } or {}
local unknown = 0
for _, id in ipairs(vocab:encode(prime_tokens)) do
  ids[#ids + 1] = id
  if id == vocab.unk then unknown = unknown + 1 end
end
-- The text still comes, but from <unk>s: say so rather than look broken.
if unknown > 0 then
  io.stderr:write(string.format("generate.lua: note: %d of the %d prime tokens are not in the checkpoint's "
    .. "vocabulary (read as <unk>)\n", unknown, #prime_tokens))
end
if #ids == 0 then dm.cli.die("--prime gives no token (stream-mode checkpoints need a prime text)") end

-- The next token after ids: sampled from the last position's logits.
local g = dm.Generator(args.seed)
local function next_token()
  local first = math.max(1, #ids - T + 1)
  local window = table.move(ids, first, #ids, 1, {})
  local logits = net:forward(dm.tensor({ window }, "int32"))
  local row = logits:select(1, 1):select(1, #window):totable() -- (V)
  local cand = {}
  for i, v in ipairs(row) do
    local id = i - 1
    if id ~= vocab.pad and id ~= vocab.sos then cand[#cand + 1] = { id = id, logit = v } end
  end
  table.sort(cand, function(a, b) return a.logit > b.logit or (a.logit == b.logit and a.id < b.id) end)
  if args.temperature == 0 then return cand[1].id end
  local k = args.top_k > 0 and math.min(args.top_k, #cand) or #cand
  local top, weights, total = cand[1].logit, {}, 0.0
  for i = 1, k do
    weights[i] = math.exp((cand[i].logit - top) / args.temperature)
    total = total + weights[i]
  end
  local u, acc = g:random() * total, 0.0
  for i = 1, k do
    acc = acc + weights[i]
    if u < acc then return cand[i].id end
  end
  return cand[k].id
end

local out = {}
for _ = 1, args.length do
  local id = next_token()
  if id == vocab.eos and not args.keep_going then break end
  ids[#ids + 1] = id
  out[#out + 1] = vocab.itos[id]
end

local shown_prime = {}
for _, t in ipairs(vocab:decode(vocab:encode(prime_tokens))) do shown_prime[#shown_prime + 1] = t end
local prime_text = inference.detokenize(shown_prime, cfg.tokenizer)
local gen_text = inference.detokenize(out, cfg.tokenizer)
local sep = (cfg.tokenizer ~= "char" and prime_text ~= "" and gen_text ~= "" and not gen_text:match("^[%.,%?!]")) and " " or ""
print(prime_text .. sep .. gen_text)
