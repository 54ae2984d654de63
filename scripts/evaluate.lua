-- evaluate.lua: loss, perplexity, accuracy and F1 of a trained checkpoint.
--
--   drlmem scripts/evaluate.lua --checkpoint models/memory_model.safetensors
--       [--data FILE] [--split test|val|train] [--json] [--config FILE] [--set key=value ...]
--   drlmem scripts/evaluate.lua --checkpoint CKPT --file FILE [--json]
--
-- --file evaluates a language model on FILE as given, the way published
-- perplexities are measured: the whole file is one token stream (the
-- checkpoint's tokenizer and vocabulary, <eos> after each line with
-- stream_line_end eos), read in windows of max_seq_length with the
-- recurrent state carried from each window into the next, and the
-- perplexity counts every token after the first (with <eos> line ends the
-- stream starts with an <eos>, so the first token counts too). Char
-- tokenizers also get bits per character.
--
-- Without --data it rebuilds the run's own split from the checkpoint's
-- training config (data_path, seed, ratios, tokenizer: the same split and
-- vocabulary as in training) and evaluates one part of it, the test split
-- by default: with val_data/test_data in that config, the test file. With
-- --data it evaluates every sample of FILE, encoded with the checkpoint's
-- vocabulary. --set changes a setting of the checkpoint's config (e.g. --set
-- batch_size=64); --config replaces it.
--
-- The numbers are those of training's test evaluation: the loss (mean over
-- batches, as the config's loss_ignore_pad says), the perplexity over all
-- non-pad targets, accuracy and weighted (zero_division=1) and macro F1
-- pooled over the non-pad targets, and upstream's per-batch accuracy/F1.
-- With task recall|copy in the config (a scripts/make_task.lua file), the
-- answer-token accuracy too; with write_policy reinforce, the write rate
-- and slot usage of the evaluation, whose write actions are thresholded at
-- 0.5 unless --sample-writes draws them from the policy.
local dm = require "drlmem"
local inference, evaluation = dm.inference, dm.evaluation

local args = dm.cli.parse {
  name = "evaluate.lua",
  description = "Evaluates a checkpoint: loss, perplexity, accuracy, weighted and macro F1.",
  options = function(p)
    p:option("--checkpoint", "Model checkpoint (memory_model.safetensors or any drlmem checkpoint).")
      :argname("<path>"):args(1)
    p:option("--data", "Text file to evaluate (default: the run's own split, see --split).")
      :argname("<file>")
    p:option("--file", "Language-model perplexity over every token of this file as given, state carried.")
      :argname("<file>")
    p:option("--split", "Part of the run's split to evaluate (without --data).", "test")
      :choices { "test", "val", "train" }
    p:flag("--json", "Print one JSON object instead of text.")
    p:flag("--sample-writes", "write_policy reinforce: sample the write actions instead of thresholding.")
  end,
}
if not args.checkpoint then dm.cli.die("--checkpoint is required (e.g. models/memory_model.safetensors)") end

local ok, ck = pcall(dm.checkpoint.load, args.checkpoint)
if not ok then dm.cli.die(ck) end
local cfg_ok, cfg = pcall(inference.checkpoint_config, ck, args)
if not cfg_ok then dm.cli.die(cfg) end
if cfg.threads > 0 and dm.set_num_threads then dm.set_num_threads(cfg.threads) end
local vocab = dm.data.Vocab(ck.vocab)

if args.file then
  if args.data then dm.cli.die("--file and --data are two ways of evaluating: give one") end
  local r, n_unk
  local fok, ferr = pcall(function()
    local text = dm.data.read_text(args.file, "--file", cfg.max_data_bytes)
    local eos = rawget(cfg, "stream_line_end") == "eos"
    local _, tokens = dm.data.samples(text, dm.data.tokenizer(cfg.tokenizer), "stream", cfg.max_seq_length,
      cfg.stream_line_end, { where = args.file })
    if eos then table.insert(tokens, 1, "<eos>") end
    if #tokens < 2 then
      error(string.format("data file '%s' (--file) gives %d token%s with tokenizer %s: nothing to predict "
        .. "(a token is predicted from the ones before it)", args.file, #tokens, #tokens == 1 and "" or "s",
        cfg.tokenizer), 0)
    end
    local ids = vocab:encode(tokens)
    n_unk = 0
    for i = 2, #ids do if ids[i] == 1 then n_unk = n_unk + 1 end end
    r = evaluation.stream(ck.net, ids, cfg.max_seq_length)
  end)
  if not fok then dm.cli.die(ferr) end
  local char = cfg.tokenizer == "char"
  local result = dm.log.record {
    checkpoint = args.checkpoint, file = args.file, tokenizer = cfg.tokenizer, targets = r.n, unk = n_unk,
    windows = r.windows, nll = r.nll, perplexity = r.ppl, bits_per_char = char and r.bits or nil,
  }
  if args.json then
    print(dm.json.encode(result))
  else
    print(string.format("%s on %s: %d tokens predicted (%s tokenizer; %d of them <unk>), %d windows of %d, "
      .. "state carried", args.checkpoint, args.file, r.n, cfg.tokenizer, n_unk, r.windows, cfg.max_seq_length))
    print(string.format("  loss         %.4f nats per token", r.nll))
    print(string.format("  perplexity   %.4f per token", r.ppl))
    if char then print(string.format("  bits per character %.4f", r.bits)) end
  end
  os.exit(0)
end

local split, source
local run_ok, err = pcall(function()
  if args.data then
    split, source = inference.file_split(args.data, vocab, cfg), args.data
  else
    local data = dm.data.load(cfg)
    local mine = data.vocab:list()
    local first
    for i = 1, math.max(#mine, #ck.vocab) do
      if mine[i] ~= ck.vocab[i] then first = i break end
    end
    if first then
      error(string.format("%s with this config gives another vocabulary than the checkpoint's (%d vs %d "
        .. "tokens, first difference at index %d): not the split the model was trained on; pass --data %s "
        .. "to evaluate the file with the checkpoint's vocabulary", cfg.data_path, #mine, #ck.vocab, first - 1,
        cfg.data_path), 0)
    end
    split = data[args.split]
    source = split.source -- the test file itself with val_data/test_data
  end
end)
if not run_ok then dm.cli.die(err) end

local t0 = dm.progress.now()
if args.sample_writes then
  if ck.net:config().write_policy ~= "reinforce" then
    dm.cli.die("--sample-writes needs a write_policy reinforce checkpoint")
  end
  ck.net:set_write_options { sample_eval = true }
end
local r = evaluation.run(ck.net, split, cfg, { metrics = true, task = cfg.task, vocab = vocab })
local result = dm.log.record {
  checkpoint = args.checkpoint, data = source, samples = split:size(), targets = r.n,
  loss = r.loss, perplexity = r.ppl, accuracy = r.accuracy, f1_weighted = r.f1_weighted,
  f1_macro = r.f1_macro, accuracy_upstream = r.acc_upstream, f1_upstream = r.f1_upstream,
  loss_ignore_pad = cfg.loss_ignore_pad, seconds = dm.progress.now() - t0,
  answer_accuracy = r.answer_acc, answers = r.answers, write_rate = r.write_rate, slot_usage = r.slot_usage,
  sampled_writes = r.write_rate ~= nil and args.sample_writes or nil,
}
if args.json then
  print(dm.json.encode(result))
else
  print(string.format("%s on %s: %d samples, %d non-pad targets", args.checkpoint, source, split:size(), r.n))
  print(string.format("  loss         %.4f  (%s)", r.loss, cfg.loss_ignore_pad and "non-pad targets" or "all positions, as upstream"))
  print(string.format("  perplexity   %.4f", r.ppl))
  print(string.format("  accuracy     %.4f", r.accuracy))
  print(string.format("  f1_weighted  %.4f", r.f1_weighted))
  print(string.format("  f1_macro     %.4f", r.f1_macro))
  print(string.format("  upstream per-batch accuracy %.4f, weighted F1 %.4f", r.acc_upstream, r.f1_upstream))
  if r.answer_acc then print(string.format("  answer accuracy %.4f over %d answers (%s)", r.answer_acc, r.answers, cfg.task)) end
  if r.write_rate then
    print(string.format("  write rate %.4f, episodic slot usage %.4f (%s actions)", r.write_rate, r.slot_usage,
      args.sample_writes and "sampled" or "thresholded"))
  end
end
