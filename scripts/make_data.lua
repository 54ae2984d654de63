-- make_data.lua: writes drlmem's default training text.
--
--   drlmem scripts/make_data.lua [--out PATH] [--seed N] [--stories N] [--force] [--tiny] [--format text|babi]
--
-- Each line is one short story of people, places and objects whose closing
-- questions can only be answered by remembering earlier sentences
-- (lua/drlmem/stories.lua describes them; the training script makes the
-- same file through that module when it is missing). The default output is
-- cfg.data_path (data/augmented_text_data.txt, ~1.5 MB); an existing file
-- is left alone unless --force. --tiny writes data/tiny.txt: a few hundred
-- stories of under 24 tokens for configs/tiny.yaml.
-- --format babi writes stories in the bAbI format instead (dm.babi.write_stories).
local dm = require "drlmem"

local args, cfg = dm.cli.parse {
  name = "make_data.lua",
  description = "Writes the default training text: generated question-answer stories, EDA-augmented.",
  options = function(p)
    p:option("--out", "Output file (default: data_path of the config, or data/tiny.txt with --tiny).")
    p:option("--seed", "Seed of every draw (default: seed of the config)."):convert(math.tointeger)
    p:option("--stories", "Number of stories (default 4000, 400 with --tiny)."):convert(math.tointeger)
    p:flag("--force", "Rewrite the output file when it exists.")
    p:flag("--tiny", "Short stories for configs/tiny.yaml (default output data/tiny.txt).")
    p:option("--format", "text: a story a line; babi: the bAbI question-answering format, 5 questions a story "
      .. "with their supporting ids (lua/drlmem/babi.lua; default output data/babi.txt, 200 stories).", "text")
      :choices { "text", "babi" }
  end,
}

local tiny = args.tiny
local babi = args.format == "babi"
local out = args.out or (babi and "data/babi.txt") or (tiny and "data/tiny.txt" or cfg.data_path)
local seed = args.seed or cfg.seed
local n = args.stories or (babi and 200) or (tiny and 400 or 4000)
if n < 1 then dm.cli.die("--stories must be a positive integer") end

local exists = io.open(out, "rb")
if exists then
  exists:close()
  if not args.force then
    print(string.format("%s exists; nothing to do (--force rewrites it)", out))
    return
  end
end

if babi then
  if tiny then dm.cli.die("--tiny makes short text stories; --format babi takes --stories instead") end
  local ok_b, nb_or_err, bytes_b = pcall(dm.babi.write_stories, out, { stories = n, seed = seed })
  if not ok_b then dm.cli.die(nb_or_err) end
  print(string.format("wrote %s: %d bAbI stories, %d bytes, seed %d", out, n, bytes_b, seed))
  return
end

local t0 = dm.progress.now()
local ok, count, bytes = pcall(dm.stories.write, out, { n = n, seed = seed, tiny = tiny })
if not ok then dm.cli.die(count) end
print(string.format("wrote %s: %d stories, %d bytes, seed %d (%.1fs)", out, count, bytes, seed, dm.progress.now() - t0))
