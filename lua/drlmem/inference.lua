-- inference.lua: what the scripts that use a trained model share
-- (scripts/evaluate.lua, generate.lua, explore_memory.lua): the config a
-- checkpoint was trained with, a text file encoded with a checkpoint's
-- vocabulary, and tokens turned back into text.
--
--   inference.checkpoint_config(ck, args)   the run's config (--config/--set aware)
--   inference.file_split(path, vocab, cfg)  every sample of a file, as a split
--   inference.detokenize(tokens, tokenizer) text of a list of tokens
local dm = require "drlmem"

local inference = {}

local function value_text(v)
  if math.type(v) == "float" then return string.format("%.17g", v) end
  return tostring(v)
end

--- The config of a run that uses checkpoint ck: with --config, that file
-- and the --set items; otherwise the checkpoint's training config (as it
-- was trained) with the --set items on top. args: the parsed command line.
function inference.checkpoint_config(ck, args)
  local sets = args.set or {}
  if args.config or not ck.train_config then return dm.config.load(args.config, sets) end
  local overridden = {} -- keys a --set item gives: the checkpoint's value is not checked
  for _, item in ipairs(sets) do
    local k = tostring(item):match("^%s*([^=]-)%s*=")
    if k then overridden[k] = true end
  end
  -- A tokenizer a module registered in training must be registered again:
  -- say so, rather than reject a --set the user never typed.
  local tok = ck.train_config.tokenizer
  if type(tok) == "string" and not overridden.tokenizer then dm.data.check_tokenizer(tok, "the checkpoint's") end
  local list, keys = {}, {}
  for k in pairs(ck.train_config) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = ck.train_config[k]
    if dm.config.fields[k] and v ~= dm.json.null and type(v) ~= "table" and not overridden[k] then
      list[#list + 1] = k .. "=" .. value_text(v)
    end
  end
  for _, item in ipairs(sets) do list[#list + 1] = item end
  return dm.config.load(nil, list)
end

--- Every sample of a text file, encoded with a given vocabulary (words
-- outside it become <unk>), as a split with :batches(B), :size(),
-- :nbatches(B). cfg gives tokenizer, sample_mode and max_seq_length.
function inference.file_split(path, vocab, cfg)
  local T = cfg.max_seq_length
  local text = dm.data.read_text(path, "--data", cfg.max_data_bytes)
  local samples, stream = dm.data.samples(text, dm.data.tokenizer(cfg.tokenizer), cfg.sample_mode, T,
    cfg.stream_line_end, { where = path, context = cfg.babi_context })
  local X, Y
  if stream then
    local ids = vocab:encode(table.move(stream, 1, #samples * (T + 1), 1, {}))
    if #samples == 0 then error(string.format("data file '%s' has fewer than %d tokens", path, T + 1), 0) end
    X, Y = dm.datautil.encode_windows(ids, T)
  else
    if #samples == 0 then error(string.format("data file '%s' gives no sample", path), 0) end
    local enc = {}
    for i = 1, #samples do enc[i] = vocab:encode(samples[i]) end
    X, Y = dm.datautil.encode_lines(enc, T)
  end
  local order = {}
  for i = 1, #samples do order[i] = i end
  local split = { name = path, X = X, Y = Y }
  function split:size() return #order end
  function split:nbatches(B) return (#order + B - 1) // B end
  function split:batches(B)
    local i = 0
    return function()
      if i >= #order then return nil end
      local cnt = math.min(B, #order - i)
      local x, y = dm.datautil.gather(X, Y, order, i + 1, cnt)
      i = i + cnt
      return x, y, cnt
    end
  end
  return split
end

--- Text of a list of tokens: words joined by spaces with . , ? ! attached
-- to the word before them; characters (tokenizer char) joined as they are;
-- whitespace tokens joined by one space (the text was pre-tokenized).
function inference.detokenize(tokens, tokenizer)
  if tokenizer == "char" then return table.concat(tokens) end
  if tokenizer == "whitespace" then return table.concat(tokens, " ") end
  return (table.concat(tokens, " "):gsub(" ([%.,%?!])", "%1"))
end

return inference
