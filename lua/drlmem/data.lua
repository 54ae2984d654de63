-- data.lua: from text files to batches of token ids.
--
-- data.load(cfg) reads cfg.data_path (and cfg.val_data, cfg.test_data when
-- given), cuts the text into samples with a tokenizer from the registry
-- (data.tokenizers: word, whitespace, upstream, char, and any a Lua module
-- registers), splits the samples into train / val / test, builds the
-- vocabulary from the training part only, and packs every sample into int32
-- rows of length cfg.max_seq_length. Each split then hands out batches:
--
--   local d = dm.data.load(cfg)          -- {vocab=, train=, val=, test=, stats=, warnings=}
--   for x, y, n in d.train:batches(cfg.batch_size, epoch) do ... end
--
-- x and y are int32 tensors (n, T); the last batch may be short. Training
-- batches come in a new order every epoch (a generator seeded with seed+1,
-- one permutation drawn per epoch, so epoch e's order is the same whether or
-- not epochs 1..e-1 ran in this process); val and test come in split order.
--
-- Vocabulary: <pad>=0, <unk>=1, <sos>=2, <eos>=3, then the tokens of the
-- training samples in order of first appearance (samples taken in file
-- order). min_freq drops rarer tokens; max_vocab_size (specials included)
-- keeps the most frequent ones (first appearance breaks ties) and leaves them
-- in first-appearance order. Tokens missing from it encode as <unk>; a token
-- spelled like a special (<unk> in a PTB file) is that special.
--
-- Samples (`lines` mode, the upstream "Sample"): each stripped non-empty line
-- with ids t1..tn gives input [<sos>, t1..tn] and target [t1..tn, <eos>],
-- both cut to T and right-padded with <pad>. `stream` mode: each file's text
-- is one token stream (with stream_line_end eos, each line's tokens and then
-- <eos>) cut into floor(n/(T+1)) windows w of T+1 tokens; input w[1..T],
-- target w[2..T+1]. With carry_state (truncated BPTT) each part is instead
-- one continuous run of the stream cut into batch_size parallel streams, and
-- batch k holds window k of each, so the recurrent state can go on from one
-- batch to the next (CarrySplit below).
--
-- Splits. With val_data and test_data the three files are the three parts,
-- in file order. Otherwise data_path is cut by the upstream sizes: train =
-- floor(r_train N), val = max(1, floor(r_val N)), test = N - train - val, and
-- a test size below 1 becomes 1, taken from train; split random takes the
-- order of dm.Generator(seed):randperm(N), split position the file's order.
--
-- A data file is checked before it is read (a regular file, at most
-- max_data_bytes) and after (UTF-8, some token); every error is one line
-- naming the file (and its key, when it is not a readable regular file or
-- gives no token). Doubts that do not stop a run (a file that
-- looks like CSV) come back in d.warnings, for the log.
local dm = require "drlmem"
local lfs = require "lfs" -- Debian's lua-filesystem: stat() for the file checks

local data = {}

local PAD, UNK, SOS, EOS = 0, 1, 2, 3
data.PAD, data.UNK, data.SOS, data.EOS = PAD, UNK, SOS, EOS
data.SPECIALS = { "<pad>", "<unk>", "<sos>", "<eos>" }

-- The size cap of a data file when the caller gives none (max_data_bytes).
data.MAX_BYTES = 1 << 30

local lower, gsub, gmatch, find = string.lower, string.gsub, string.gmatch, string.find
local floor = math.floor

---------------------------------------------------------------------------
-- Tokenizers: fn(text) -> array of token strings
---------------------------------------------------------------------------
data.tokenizers = {}
data.tokenizer_docs = {} -- name -> what it keeps and drops, in words (for messages)

--- Adds (or replaces) a tokenizer usable as cfg.tokenizer = name. doc
-- (optional): what it keeps and drops, shown when a file gives no token.
function data.register_tokenizer(name, fn, doc)
  assert(type(name) == "string" and name ~= "", "register_tokenizer: name must be a non-empty string")
  assert(type(fn) == "function", "register_tokenizer: fn must be a function(text) -> tokens")
  assert(doc == nil or type(doc) == "string", "register_tokenizer: doc must be a string")
  data.tokenizers[name], data.tokenizer_docs[name] = fn, doc
end

-- Python's lower() and \s see a few non-ASCII characters that Lua's byte-wise
-- patterns do not: Unicode spaces separate tokens, and two letters lower-case
-- to ASCII (KELVIN SIGN -> k, CAPITAL I WITH DOT -> i + a combining dot that
-- the tokenizer deletes anyway). Mapping them first keeps `upstream` exact.
local UNICODE_SPACES = {
  "\194\133", "\194\160", "\225\154\128", "\226\128[\128-\138]", "\226\128[\168\169]",
  "\226\128\175", "\226\129\159", "\227\128\128",
}
local function fold_spaces(text)
  if find(text, "[\28-\31\128-\255]") then
    text = gsub(text, "[\28-\31]", " ")
    for _, p in ipairs(UNICODE_SPACES) do text = gsub(text, p, " ") end
  end
  return text
end
local function python_fold(text)
  if find(text, "[\28-\31\128-\255]") then
    text = fold_spaces(text)
    text = gsub(text, "\226\132\170", "k")
    text = gsub(text, "\196\176", "i")
  end
  return lower(text)
end

-- Lower case beyond ASCII for `word`, whose tokens keep non-ASCII letters:
-- the capitals of Latin-1, Latin Extended-A, Greek and Cyrillic (all two
-- bytes in UTF-8) map to their small letters, so "Über" and "über" are one
-- token. (Other scripts are kept as written.)
local LOWER2 = {}
do
  local function pair(upper, small) LOWER2[utf8.char(upper)] = utf8.char(small) end
  for cp = 0xC0, 0xDE do if cp ~= 0xD7 then pair(cp, cp + 0x20) end end        -- À..Þ
  for cp = 0x100, 0x137, 2 do if cp ~= 0x130 then pair(cp, cp + 1) end end      -- Ā..ķ (İ: python_fold)
  for cp = 0x139, 0x147, 2 do pair(cp, cp + 1) end                              -- Ĺ..ň
  for cp = 0x14A, 0x176, 2 do pair(cp, cp + 1) end                              -- Ŋ..ŷ
  pair(0x178, 0xFF)                                                             -- Ÿ
  for cp = 0x179, 0x17D, 2 do pair(cp, cp + 1) end                              -- Ź..ž
  pair(0x386, 0x3AC); pair(0x388, 0x3AD); pair(0x389, 0x3AE); pair(0x38A, 0x3AF) -- Greek with tonos
  pair(0x38C, 0x3CC); pair(0x38E, 0x3CD); pair(0x38F, 0x3CE)
  for cp = 0x391, 0x3AB do if cp ~= 0x3A2 then pair(cp, cp + 0x20) end end      -- Α..Ϋ
  for cp = 0x400, 0x40F do pair(cp, cp + 0x50) end                              -- Ѐ..Џ
  for cp = 0x410, 0x42F do pair(cp, cp + 0x20) end                              -- А..Я
end

-- Non-ASCII code points `word` deletes like ASCII punctuation (every other
-- non-ASCII code point is a letter to it): Latin-1 signs (U+00A1-U+00BF
-- but the letters ª µ º), × and ÷, General Punctuation (U+2000-U+206F:
-- dashes, curly quotes, bullets), currency signs (U+20A0-U+20CF), arrows,
-- mathematical and technical symbols (U+2190-U+23FF), box drawing to
-- dingbats (U+2500-U+27BF), CJK punctuation (U+3000-U+303F) and emoji
-- (U+1F300-U+1FAFF). The ellipsis … first becomes "...".
local WORD_SYMBOLS = {
  "\194[\128-\169\171-\180\182-\185\187-\191]", "\195[\151\183]", "\226\128[\128-\191]", "\226\129[\128-\175]",
  "\226\130[\160-\191]", "\226\131[\128-\143]", "\226\134[\144-\191]", "\226[\135-\143][\128-\191]",
  "\226[\148-\158][\128-\191]", "\227\128[\128-\191]", "\240\159[\140-\171][\128-\191]",
}
data.WORD_SPECIALS = { ["<pad>"] = true, ["<unk>"] = true, ["<sos>"] = true, ["<eos>"] = true }

-- The word tokens of a folded piece of text with no special in it.
local function word_tokens(text, out)
  if find(text, "[\128-\255]") then
    text = gsub(text, "[\195-\211][\128-\191]", LOWER2)
    text = gsub(text, "\226\128\166", "...")
    for _, p in ipairs(WORD_SYMBOLS) do text = gsub(text, p, "") end
  end
  text = gsub(text, "[^a-z0-9%s%.,%?!\128-\255]", "")
  text = gsub(text, "[%.,%?!]", " %0 ")
  local n = #out
  for tok in gmatch(text, "%S+") do
    n = n + 1
    out[n] = tok
  end
  return out
end

--- word: lower-case (ASCII, and the letters of Latin-1, Latin Extended-A,
-- Greek and Cyrillic); . , ? ! are tokens of their own; <pad> <unk> <sos>
-- <eos> written in the text are those specials; letters, digits and every
-- non-ASCII code point but the symbol blocks of WORD_SYMBOLS are kept
-- ("café" stays "café"); every other character is deleted, joining its
-- neighbours ("don't" gives "dont").
data.register_tokenizer("word", function(text)
  text = python_fold(text)
  local out = {}
  if not find(text, "<%l%l%l>") then return word_tokens(text, out) end
  local pos = 1
  while true do
    local a, b = find(text, "<%l%l%l>", pos)
    while a and not data.WORD_SPECIALS[text:sub(a, b)] do a, b = find(text, "<%l%l%l>", b) end
    if not a then break end
    word_tokens(text:sub(pos, a - 1), out)
    out[#out + 1] = text:sub(a, b)
    pos = b + 1
  end
  return word_tokens(text:sub(pos), out)
end, "it lower-cases, keeps letters (any non-ASCII letter too), digits, . , ? ! and <unk>-style specials, and "
  .. "deletes every other character")

--- whitespace: the text split on whitespace, every token as written (no
-- case folding, nothing deleted): the convention of pre-tokenized corpora
-- such as Penn Treebank and WikiText, whose <unk> is the vocabulary's own.
data.register_tokenizer("whitespace", function(text)
  local out, n = {}, 0
  for tok in gmatch(fold_spaces(text), "%S+") do
    n = n + 1
    out[n] = tok
  end
  return out
end, "it splits on whitespace and keeps every other character")

--- upstream: the reference tokenizer exactly: tokens are the maximal runs of
-- [a-z0-9]; . , ? ! only separate tokens; other characters are deleted, so
-- "don't" gives "dont" and "über" gives "ber".
data.register_tokenizer("upstream", function(text)
  text = gsub(python_fold(text), "[%.,%?!]", " ")
  text = gsub(text, "[^a-z0-9%s]", "")
  local out, n = {}, 0
  for tok in gmatch(text, "[a-z0-9]+") do
    n = n + 1
    out[n] = tok
  end
  return out
end, "it keeps the runs of a-z and 0-9, lower-cased, and deletes every other character")

--- char: every Unicode code point is a token (no case folding).
data.register_tokenizer("char", function(text)
  local out, n = {}, 0
  for ch in gmatch(text, utf8.charpattern) do
    n = n + 1
    out[n] = ch
  end
  return out
end, "every character is a token")

--- The tokenizer called name, or an error listing the known ones.
function data.tokenizer(name)
  local fn = data.tokenizers[name]
  if not fn then
    local names = {}
    for k in pairs(data.tokenizers) do names[#names + 1] = k end
    table.sort(names)
    error(string.format("unknown tokenizer '%s' (known: %s)", tostring(name), table.concat(names, ", ")), 2)
  end
  return fn
end

--- Raises, in one line, unless a tokenizer called name is registered: the
-- name, the known ones, and how to load a tokenizer that a module
-- registers. whose: says where the name came from ("the checkpoint's").
-- script: the script to show in the example command (default arg[0]).
function data.check_tokenizer(name, whose, script)
  if data.tokenizers[name] then return end
  local names = {}
  for k in pairs(data.tokenizers) do names[#names + 1] = k end
  table.sort(names)
  error(string.format("%s tokenizer '%s' is not registered in this run (known: %s): load the Lua module that "
    .. "registers it, as in training: drlmem -l MODULE %s ... (MODULE calls dm.data.register_tokenizer('%s', fn))",
    whose or "the", name, table.concat(names, ", "), script or (arg and arg[0]) or "SCRIPT", name), 0)
end

---------------------------------------------------------------------------
-- Vocabulary
---------------------------------------------------------------------------
local Vocab = {}
Vocab.__index = Vocab
Vocab.__name = "drlmem.Vocab"
function Vocab.__len(v) return v.size end
function Vocab.__tostring(v) return string.format("Vocab(%d tokens)", v.size) end

--- A vocabulary from its tokens in index order: a 0-based table ({[0]="<pad>",
-- ...}) or a 1-based list whose first entry is "<pad>".
function data.Vocab(tokens)
  local itos, stoi = {}, {}
  local first = tokens[0] ~= nil and 0 or 1
  local n = 0
  for i = first, first + #tokens - (first == 0 and 0 or 1) do
    local t = tokens[i]
    if t == nil then break end
    itos[n] = t
    if stoi[t] == nil then stoi[t] = n end
    n = n + 1
  end
  for i = 1, 4 do
    if itos[i - 1] ~= data.SPECIALS[i] then
      error(string.format("Vocab: index %d must be %s, got %s", i - 1, data.SPECIALS[i], tostring(itos[i - 1])), 2)
    end
  end
  return setmetatable({ itos = itos, stoi = stoi, size = n, pad = PAD, unk = UNK, sos = SOS, eos = EOS }, Vocab)
end

--- The tokens as a 1-based list (for a checkpoint's metadata).
function Vocab:list()
  local t = {}
  for i = 0, self.size - 1 do t[i + 1] = self.itos[i] end
  return t
end

--- Ids of a list of tokens (unknown -> <unk>).
function Vocab:encode(tokens)
  local stoi, ids = self.stoi, {}
  for i = 1, #tokens do ids[i] = stoi[tokens[i]] or UNK end
  return ids
end

--- Tokens of a list (or int32 tensor) of ids.
function Vocab:decode(ids)
  if type(ids) ~= "table" then ids = ids:totable() end
  local out = {}
  for i = 1, #ids do out[i] = self.itos[ids[i]] or "<unk>" end
  return out
end

--- Builds a vocabulary from lists of tokens (in order). opts: min_freq (1),
-- max_size (0 = unlimited; counts the 4 specials).
function data.build_vocab(token_lists, opts)
  opts = opts or {}
  local min_freq, max_size = opts.min_freq or 1, opts.max_size or 0
  local freq, order, n = {}, {}, 0
  for _, toks in ipairs(token_lists) do
    for i = 1, #toks do
      local t = toks[i]
      local f = freq[t]
      if f then
        freq[t] = f + 1
      else
        freq[t] = 1
        n = n + 1
        order[n] = t
      end
    end
  end
  local kept, rank = {}, {}
  for i = 1, n do
    local t = order[i]
    -- a token spelled like a special is the special itself
    if freq[t] >= min_freq and t ~= "<pad>" and t ~= "<unk>" and t ~= "<sos>" and t ~= "<eos>" then
      kept[#kept + 1] = t
      rank[t] = i
    end
  end
  if max_size > 0 and #kept + 4 > max_size then
    table.sort(kept, function(a, b)
      if freq[a] ~= freq[b] then return freq[a] > freq[b] end
      return rank[a] < rank[b]
    end)
    for i = #kept, max_size - 4 + 1, -1 do kept[i] = nil end
    table.sort(kept, function(a, b) return rank[a] < rank[b] end)
  end
  local list = { "<pad>", "<unk>", "<sos>", "<eos>" }
  for i = 1, #kept do list[#list + 1] = kept[i] end
  return data.Vocab(list)
end

---------------------------------------------------------------------------
-- Reading and cutting the file
---------------------------------------------------------------------------

--- The text of path with \r\n and \r turned into \n, or an error naming the
-- file when it is missing, not a regular file, larger than max_bytes,
-- unreadable, empty or not UTF-8. The type and the size are checked before
-- anything is read (a FIFO would block the open, /dev/zero never ends).
-- key: where the path came from (a config key such as "data_path", or
-- "--data"), named in the messages. max_bytes: default 1 GiB.
function data.read_text(path, key, max_bytes)
  key, max_bytes = key or "data_path", max_bytes or data.MAX_BYTES
  local attr, aerr = lfs.attributes(path)
  if not attr then
    error(string.format("data file '%s' (%s): cannot open: %s", path, key, tostring(aerr):match("[^:]*$"):sub(2)), 0)
  end
  if attr.mode ~= "file" then
    error(string.format("data file '%s' (%s) is a %s, not a regular file", path, key, attr.mode), 0)
  end
  if attr.size > max_bytes then
    error(string.format("data file '%s' (%s) is %d bytes, over max_data_bytes = %d (raise it: --set "
      .. "max_data_bytes=%d)", path, key, attr.size, max_bytes, attr.size), 0)
  end
  local f, err = io.open(path, "rb")
  if not f then
    error(string.format("data file '%s' (%s): cannot open: %s", path, key, err:gsub("^[^:]*: ", "")), 0)
  end
  local text, rerr = f:read("a")
  f:close()
  if not text then
    error(string.format("data file '%s': cannot read: %s", path, tostring(rerr):gsub("^[^:]*: ", "")), 0)
  end
  if text == "" then error(string.format("data file '%s' is empty", path), 0) end
  local ok, bad = utf8.len(text)
  if not ok then
    local line = 1
    for _ in gmatch(text:sub(1, bad - 1), "\n") do line = line + 1 end
    -- A NUL or a byte in 0x80-0xff among mostly text is a legacy 8-bit file
    -- (latin-1, cp1252), which iconv converts; a NUL early is a binary file.
    local hint = find(text:sub(1, 4096), "%z") and " (a binary file?)"
      or string.format(" (if it is latin-1: iconv -f latin1 -t utf-8 %s > %s.utf8)", path, path)
    error(string.format("data file '%s' is not UTF-8: invalid byte 0x%02x at offset %d (line %d)%s", path,
      text:byte(bad), bad - 1, line, hint), 0)
  end
  if not find(text, "%S") then error(string.format("data file '%s' is empty (only whitespace)", path), 0) end
  return (gsub(text, "\r\n?", "\n"))
end

local function strip(line)
  -- Python's strip() also removes Unicode spaces; fold them only when present
  if find(line, "[\28-\31\128-\255]") then
    line = gsub(line, "[\28-\31]", " ")
    for _, p in ipairs(UNICODE_SPACES) do
      line = gsub(line, "^" .. p, " ")
      line = gsub(line, p .. "$", " ")
    end
  end
  return line:match("^%s*(.-)%s*$")
end

--- Upstream split sizes {train, val, test} of n samples.
function data.split_sizes(n, r_train, r_val)
  local train = floor(r_train * n)
  local val = math.max(1, floor(r_val * n))
  local test = n - train - val
  if test < 1 then
    test, train = 1, train - 1
  end
  return { train, val, test }
end

---------------------------------------------------------------------------
-- Splits and batches
---------------------------------------------------------------------------
local Split = {}
Split.__index = Split
Split.__name = "drlmem.Split"
function Split.__tostring(s) return string.format("Split(%s, %d samples)", s.name, #s.index) end

--- Number of samples.
function Split:size() return #self.index end

--- Number of batches of batch_size.
function Split:nbatches(batch_size) return (#self.index + batch_size - 1) // batch_size end

--- The sample numbers of this split in the order of epoch (1-based): the
-- split order for val/test, a fresh permutation per epoch for train.
function Split:order(epoch)
  if not self.shuffle_seed then return self.index end
  epoch = epoch or 1
  assert(math.type(epoch) == "integer" and epoch >= 1, "batches: epoch must be an integer >= 1")
  if self._epoch ~= epoch then
    if not self._gen or self._epoch == nil or epoch < self._epoch + 1 then
      self._gen, self._epoch = dm.Generator(self.shuffle_seed), 0
    end
    local perm
    while self._epoch < epoch do
      perm = self._gen:randperm(#self.index)
      self._epoch = self._epoch + 1
    end
    local order = {}
    for i = 1, #perm do order[i] = self.index[perm[i]] end
    self._order = order
  end
  return self._order
end

--- Iterator over (x, y, n_rows): x and y int32 tensors (n_rows, T).
function Split:batches(batch_size, epoch)
  assert(math.type(batch_size) == "integer" and batch_size >= 1, "batches: batch_size must be an integer >= 1")
  local order = self:order(epoch)
  local X, Y, gather = self.X, self.Y, dm.datautil.gather
  local i, n = 0, #order
  return function()
    if i >= n then return nil end
    local cnt = math.min(batch_size, n - i)
    local x, y = gather(X, Y, order, i + 1, cnt)
    i = i + cnt
    return x, y, cnt
  end
end

-- A split of one continuous token stream for truncated BPTT (carry_state):
-- the part's ids cut into B parallel streams, and batch k holds window k of
-- each (dm.datautil.stride_windows), so row b of a batch continues row b of
-- the batch before and the recurrent state can be carried from one to the
-- next. The order is the stream's, the same every epoch; :size() counts the
-- part's windows of the plain stream layout. The layout of a batch size is
-- made on first use.
local CarrySplit = {}
CarrySplit.__index = CarrySplit
CarrySplit.__name = "drlmem.CarrySplit"
CarrySplit.carry = true
function CarrySplit.__tostring(s)
  return string.format("CarrySplit(%s, %d tokens)", s.name, s.last - s.first + 1)
end
function CarrySplit:size() return #self.index end

function CarrySplit:layout(batch_size)
  assert(math.type(batch_size) == "integer" and batch_size >= 1, "batches: batch_size must be an integer >= 1")
  if self._B ~= batch_size then
    self._X, self._Y, self._nb = dm.datautil.stride_windows(self.ids, self.first, self.last, batch_size, self.T)
    self._B = batch_size
    if self._nb < 1 then
      error(string.format("carry_state: the %s part (%s) has %d tokens, too few for %d parallel streams of "
        .. "max_seq_length+1 = %d tokens each (lower batch_size or max_seq_length)", self.name, self.source,
        self.last - self.first + 1, batch_size, self.T + 1), 0)
    end
  end
  return self._X, self._Y, self._nb
end

--- Number of batches of batch_size: the windows of each of the parallel streams.
function CarrySplit:nbatches(batch_size)
  local _, _, nb = self:layout(batch_size)
  return nb
end

--- Iterator over (x, y, batch_size): the batches in stream order (epoch is
-- accepted and changes nothing: the carried state needs that order).
function CarrySplit:batches(batch_size, epoch)
  local X, Y, nb = self:layout(batch_size)
  local rows, gather, k = {}, dm.datautil.gather, 0
  for i = 1, nb * batch_size do rows[i] = i end
  return function()
    if k >= nb then return nil end
    local x, y = gather(X, Y, rows, k * batch_size + 1, batch_size)
    k = k + 1
    return x, y, batch_size
  end
end

local function new_carry_split(name, index, ids, first, last, T, source)
  return setmetatable({ name = name, index = index, ids = ids, first = first, last = last, T = T, source = source },
    CarrySplit)
end
data.new_carry_split = new_carry_split

-- source: what the split is, in words (a file, or a part of one).
local function new_split(name, index, X, Y, shuffle_seed, source)
  return setmetatable({ name = name, index = index, X = X, Y = Y, shuffle_seed = shuffle_seed, source = source },
    Split)
end

---------------------------------------------------------------------------
-- data.load
---------------------------------------------------------------------------

--- Cuts text into samples: a list of token lists (lines) or, for stream mode,
-- the token stream and its windows. Returns samples, stream. line_end (stream
-- mode): "eos" ends each line's tokens with <eos>; otherwise the whole text
-- goes to the tokenizer, line ends and all.
-- mode babi (lua/drlmem/babi.lua): one sample per question of a bAbI file,
-- its story's statements before it as context; opts.where names the file in
-- errors, opts.context caps the statements (babi_context); the third result
-- is {questions=, stories=, trimmed=}.
function data.samples(text, tokenize, mode, T, line_end, opts)
  if mode == "babi" then
    opts = opts or {}
    local samples, info = dm.babi.samples(dm.babi.parse(text, opts.where), tokenize, T,
      { context = opts.context, where = opts.where })
    return samples, nil, info
  elseif mode == "lines" then
    local samples, n = {}, 0
    for line in gmatch(text, "[^\n]+") do
      line = strip(line)
      if line ~= "" then
        n = n + 1
        samples[n] = tokenize(line)
      end
    end
    return samples
  elseif mode == "stream" then
    local stream
    if line_end == "eos" then
      -- every line, blank ones too, then <eos>: word_language_model's PTB/WikiText stream
      stream = {}
      if text:sub(-1) ~= "\n" then text = text .. "\n" end
      for line in gmatch(text, "([^\n]*)\n") do
        local toks = tokenize(line)
        table.move(toks, 1, #toks, #stream + 1, stream)
        stream[#stream + 1] = "<eos>"
      end
    else
      stream = tokenize(text)
    end
    local samples = {}
    local W = T + 1
    for i = 1, #stream // W do
      -- a window is a view (first, last) into the stream, not a copy
      samples[i] = { first = (i - 1) * W + 1, last = i * W }
    end
    return samples, stream
  end
  error("unknown sample_mode '" .. tostring(mode) .. "' (lines|stream)", 2)
end

--- Why the file at path (with this text) looks like CSV or TSV, or nil: its
-- name ends in .csv or .tsv, or each of its first lines (3 to 20 of them)
-- holds the same number of commas, or of tabs, and at least one.
function data.csv_like(path, text)
  local ext = path:lower():match("%.([ct]sv)$")
  if ext then return "its name ends in ." .. ext end
  for _, sep in ipairs { { ",", "comma" }, { "\t", "tab" } } do
    local count, n = nil, 0
    for line in gmatch(text:sub(1, 65536), "[^\n]+") do
      if find(line, "%S") then
        local _, c = gsub(line, sep[1], "")
        if c == 0 or (count and c ~= count) then count = nil break end
        count, n = c, n + 1
        if n == 20 then break end
      end
    end
    if count and n >= 3 then
      return string.format("each of its first %d lines holds %d %s%s", n, count, sep[2], count == 1 and "" or "s")
    end
  end
  return nil
end

-- The samples of one data file: {path=, key=, samples=, stream=, n_tokens=}.
-- In stream mode samples are windows (first, last) into the file's own token
-- stream, so a window never spans two files; in lines mode they are token
-- lists. cap > 0 keeps only the first cap samples.
local function read_samples(path, key, cfg, cap, warnings)
  local T, mode, max_bytes = cfg.max_seq_length, cfg.sample_mode, rawget(cfg, "max_data_bytes")
  local text = data.read_text(path, key, max_bytes)
  local csv = data.csv_like(path, text)
  if csv then
    warnings[#warnings + 1] = string.format("data file '%s' (%s) looks like CSV (%s): it is read as plain text, "
      .. "one sample per line, the header line too, with commas and quotes kept as text; to train on one column, "
      .. "write that column to a text file first", path, key, csv)
  end
  local samples, stream, babi = data.samples(text, data.tokenizer(cfg.tokenizer), mode, T,
    rawget(cfg, "stream_line_end"), { where = path, context = rawget(cfg, "babi_context") })
  text = nil -- luacheck: ignore (lets the collector have it)
  if babi and babi.trimmed > 0 then
    warnings[#warnings + 1] = string.format("data file '%s' (%s): %d of %d questions keep fewer statements of "
      .. "their story than babi_context = %d, so that the question and its answer fit max_seq_length = %d",
      path, key, babi.trimmed, babi.questions, rawget(cfg, "babi_context") or 50, T)
  end
  if cap and cap > 0 then
    for i = #samples, cap + 1, -1 do samples[i] = nil end
  end
  local n_tokens = 0
  if stream then
    n_tokens = #stream
  else
    for i = 1, #samples do n_tokens = n_tokens + #samples[i] end
  end
  if n_tokens == 0 then
    -- (a file of symbols the tokenizer deletes would train on <sos> <eos> alone)
    local doc = data.tokenizer_docs[cfg.tokenizer]
    error(string.format("data file '%s' (%s) gives no token with tokenizer '%s'%s", path, key, cfg.tokenizer,
      doc and " (" .. doc .. ")" or ""), 0)
  end
  if #samples == 0 then
    if mode == "stream" then
      error(string.format("data file '%s' gives no sample: %d tokens, stream mode needs at least "
        .. "max_seq_length+1 = %d", path, #stream, T + 1), 0)
    end
    error(string.format("data file '%s' gives no sample (no non-empty line)", path), 0)
  end
  return { path = path, key = key, samples = samples, stream = stream, n_tokens = n_tokens }
end

-- The index lists {train, val, test} of samples 1..N cut into parts of the
-- given sizes: in file order, or in the order of a permutation drawn from
-- seed when seed is given (split: random).
local function cut_parts(N, sizes, seed)
  local perm = seed and dm.Generator(seed):randperm(N)
  local parts, k = { {}, {}, {} }, 0
  for p = 1, 3 do
    local part = parts[p]
    for i = 1, sizes[p] do
      k = k + 1
      part[i] = perm and perm[k] or k
    end
  end
  return parts
end

-- The first and last sample of each story of bAbI samples (samples[i].story).
local function story_ranges(samples)
  local first, last = {}, {}
  for i, s in ipairs(samples) do
    first[s.story] = first[s.story] or i
    last[s.story] = i
  end
  return first, last
end

--- sample_mode babi, data_path and test_data without val_data: the file
-- record f of data_path cut into train and validation records, the
-- validation part being the last max(1, floor(val_ratio * stories)) stories
-- of the file (by position, as MemN2N held out a part of train).
function data.babi_hold_out(f, val_ratio)
  local first = story_ranges(f.samples)
  local n = #first
  local k = math.max(1, floor(val_ratio * n))
  if n - k < 1 then
    error(string.format("data file '%s' holds %d bAbI stor%s: too few to hold out the validation stories "
      .. "(val_size_ratio %g of them, at least one) and train on the rest; give val_data too", f.path, n,
      n == 1 and "y" or "ies", val_ratio), 0)
  end
  local cut = first[n - k + 1]
  local tr, va = {}, {}
  table.move(f.samples, 1, cut - 1, 1, tr)
  table.move(f.samples, cut, #f.samples, 1, va)
  local function ntok(list)
    local c = 0
    for i = 1, #list do c = c + #list[i] end
    return c
  end
  local desc = string.format("%s (val: its last %d of %d stories, by position)", f.path, k, n)
  return { path = f.path, key = f.key, samples = tr, n_tokens = ntok(tr) },
    { path = desc, key = f.key, samples = va, n_tokens = ntok(va) }
end

--- sample_mode babi without split files: the index lists {train, val, test}
-- and their sizes, cutting data_path's stories (not its questions, which
-- share their story's statements) by the ratios, in the order of a
-- permutation of the stories drawn from seed, or by position without seed.
function data.babi_parts(samples, path, cfg, seed)
  local first, last = story_ranges(samples)
  local n = #first
  local st = data.split_sizes(n, cfg.train_size_ratio, cfg.val_size_ratio)
  if st[1] < 1 or st[2] < 1 or st[3] < 1 then
    local m = math.max
    error(string.format("data file '%s' holds only %d bAbI stor%s: too few for a train/val/test split of "
      .. "stories (train_size_ratio %g and val_size_ratio %g give %d/%d/%d); give test_data too", path, n,
      n == 1 and "y" or "ies", cfg.train_size_ratio, cfg.val_size_ratio, m(0, st[1]), m(0, st[2]), m(0, st[3])), 0)
  end
  local sparts = cut_parts(n, st, seed)
  local parts, sizes = {}, {}
  for p = 1, 3 do
    local part = {}
    for _, s in ipairs(sparts[p]) do
      for i = first[s], last[s] do part[#part + 1] = i end
    end
    parts[p], sizes[p] = part, #part
  end
  return parts, sizes
end

--- Reads the data files and returns {vocab=, train=, val=, test=, stats=,
-- warnings=}.
-- Without val_data/test_data, cfg.data_path is cut into train / val / test
-- by train_size_ratio and val_size_ratio, as cfg.split says: `random` (a
-- permutation drawn from seed) or `position` (the first samples train, then
-- val, then test, in file order). With val_data and test_data the three
-- files are the three parts as they are: nothing is re-split or moved
-- between files. cfg fields used: data_path, val_data, test_data, split,
-- tokenizer, sample_mode, max_seq_length, train_size_ratio,
-- val_size_ratio, seed, min_freq, max_vocab_size, max_samples (of
-- data_path only), vocab_from.
function data.load(cfg)
  local clock = os.clock()
  local path, T, mode = cfg.data_path, cfg.max_seq_length, cfg.sample_mode
  data.tokenizer(cfg.tokenizer) -- (an unknown name fails before any reading)
  local warnings = {}
  local files = { read_samples(path, "data_path", cfg, cfg.max_samples, warnings) }
  -- (rawget: an unset nullable key is absent from cfg, and reading it raises)
  local val_path, test_path = rawget(cfg, "val_data"), rawget(cfg, "test_data")
  local fixed = val_path ~= nil
  if fixed then
    files[2] = read_samples(val_path, "val_data", cfg, nil, warnings)
    files[3] = read_samples(test_path, "test_data", cfg, nil, warnings)
  elseif mode == "babi" and test_path ~= nil then
    -- bAbI ships train and test files: validation is held out of train
    files[1], files[2] = data.babi_hold_out(files[1], cfg.val_size_ratio)
    files[3] = read_samples(test_path, "test_data", cfg, nil, warnings)
    fixed, val_path = true, files[2].path
  end

  -- All samples in one list, file after file, and in stream mode their
  -- windowed tokens in one stream, so that one encode covers every part.
  local samples, stream, n_tokens, counts = {}, nil, 0, {}
  if mode == "stream" then stream = {} end
  for p, f in ipairs(files) do
    counts[p] = #f.samples
    n_tokens = n_tokens + f.n_tokens
    if stream then
      local W, base = T + 1, #stream
      table.move(f.stream, 1, #f.samples * W, base + 1, stream)
      for i = 1, #f.samples do
        samples[#samples + 1] = { first = base + (i - 1) * W + 1, last = base + i * W }
      end
    else
      table.move(f.samples, 1, #f.samples, #samples + 1, samples)
    end
    f.samples, f.stream = nil, nil
  end
  local N = #samples

  local split_kind, sizes = fixed and "files" or (rawget(cfg, "split") or "random"), counts
  local parts
  if not fixed and mode == "babi" then
    parts, sizes = data.babi_parts(samples, path, cfg, split_kind == "random" and cfg.seed or nil)
  elseif not fixed then
    sizes = data.split_sizes(N, cfg.train_size_ratio, cfg.val_size_ratio)
    if sizes[1] < 1 or sizes[2] < 1 or sizes[3] < 1 then
      -- (split_sizes may lend test a sample train has not got: show no negative count)
      local m = math.max
      error(string.format("data file '%s' gives only %d sample%s: too few for a train/val/test split, which "
        .. "needs at least one sample in each part (train_size_ratio %g and val_size_ratio %g give %d/%d/%d)",
        path, N, N == 1 and "" or "s", cfg.train_size_ratio, cfg.val_size_ratio, m(0, sizes[1]), m(0, sizes[2]),
        m(0, sizes[3])), 0)
    end
  end
  parts = parts or cut_parts(N, sizes, split_kind == "random" and cfg.seed or nil)

  -- Tokens of a sample, as a list (lines) or a slice of the stream.
  local function tokens_of(i)
    local s = samples[i]
    if stream then return table.move(stream, s.first, s.last, 1, {}) end
    return s
  end
  local vocab_src = {}
  if (cfg.vocab_from or "train") == "all" then
    for i = 1, N do vocab_src[i] = tokens_of(i) end
  else
    local train_sorted = table.move(parts[1], 1, #parts[1], 1, {})
    table.sort(train_sorted)
    for j, i in ipairs(train_sorted) do vocab_src[j] = tokens_of(i) end
  end
  local vocab = data.build_vocab(vocab_src, { min_freq = cfg.min_freq, max_size = cfg.max_vocab_size })
  vocab_src = nil -- luacheck: ignore

  local stoi, n_unk, n_cut = vocab.stoi, 0, 0
  local X, Y, ids
  if stream then
    ids = {}
    for i = 1, #stream do
      local id = stoi[stream[i]]
      if not id then
        id = UNK
        n_unk = n_unk + 1
      end
      ids[i] = id
    end
    X, Y = dm.datautil.encode_windows(ids, T)
  else
    local enc = {}
    for i = 1, N do
      local toks, ids = samples[i], {}
      for j = 1, #toks do
        local id = stoi[toks[j]]
        if not id then
          id = UNK
          n_unk = n_unk + 1
        end
        ids[j] = id
      end
      enc[i] = ids
      if #toks >= T then n_cut = n_cut + 1 end
    end
    X, Y = dm.datautil.encode_lines(enc, T)
  end
  -- carry_state: each part is one run of the stream (its windows in order)
  local carry
  if stream and rawget(cfg, "carry_state") then
    carry = {}
    for p = 1, 3 do
      local idx = parts[p]
      for k = 2, #idx do
        assert(idx[k] == idx[k - 1] + 1, "carry_state: the parts of the stream must be in file order")
      end
      carry[p] = { first = samples[idx[1]].first, last = samples[idx[#idx]].last }
    end
  end
  samples, stream = nil, nil -- luacheck: ignore

  -- What each part is, for the log and evaluate.lua's report.
  local names = { "train", "val", "test" }
  local sources = {}
  for p = 1, 3 do
    if fixed then
      sources[p] = files[p].path
    elseif split_kind == "position" then
      local first = p == 1 and 1 or (p == 2 and sizes[1] + 1 or sizes[1] + sizes[2] + 1)
      sources[p] = string.format("%s (%s split: samples %d-%d of %d, by position)", path, names[p], first,
        first + sizes[p] - 1, N)
    else
      sources[p] = string.format("%s (%s split, seed %d)", path, names[p], cfg.seed)
    end
  end
  if carry then
    for p = 1, 3 do
      carry[p] = new_carry_split(names[p], parts[p], ids, carry[p].first, carry[p].last, T, sources[p])
      carry[p]:layout(cfg.batch_size) -- (a part too short for batch_size streams fails here, in one line)
    end
  end
  local d = {
    vocab = vocab,
    warnings = warnings,       -- lines for the log: what in the files may not be what the user meant
    X = X,
    Y = Y,
    train = carry and carry[1] or new_split("train", parts[1], X, Y, cfg.seed + 1, sources[1]),
    val = carry and carry[2] or new_split("val", parts[2], X, Y, nil, sources[2]),
    test = carry and carry[3] or new_split("test", parts[3], X, Y, nil, sources[3]),
    stats = {
      path = path,
      val_path = val_path,
      test_path = test_path,
      split = split_kind,      -- files | random | position
      tokenizer = cfg.tokenizer,
      sample_mode = mode,
      line_end = mode == "stream" and rawget(cfg, "stream_line_end") == "eos" and "eos" or nil,
      max_seq_length = T,
      n_samples = N,
      n_tokens = n_tokens,
      n_unk = n_unk,           -- tokens encoded as <unk> (outside the training vocabulary)
      n_truncated = n_cut,     -- lines mode: samples whose target lost <eos> to the cut
      sizes = sizes,
      vocab_size = vocab.size,
      seconds = os.clock() - clock,
    },
  }
  return d
end

--- One line for the log.
function data.describe(d)
  local s = d.stats
  local split = s.split == "files" and string.format("files %s / %s / %s", s.path, s.val_path, s.test_path)
    or s.split
  return string.format("data %s: %d tokens, %d samples (%s%s, T=%d, tokenizer %s), vocab %d, "
    .. "split train/val/test %d/%d/%d (%s), %d <unk>, %d cut, %.2fs", s.path, s.n_tokens, s.n_samples,
    s.sample_mode, s.line_end and " with <eos> per line" or "", s.max_seq_length, s.tokenizer, s.vocab_size, s.sizes[1], s.sizes[2], s.sizes[3], split,
    s.n_unk, s.n_truncated, s.seconds)
end

--- Encodes one text line as (input, target) id lists of length T (the
-- upstream sample), e.g. for evaluating or priming with a saved vocabulary.
function data.encode_line(line, vocab, T, tokenizer)
  local ids = vocab:encode(data.tokenizer(tokenizer or "word")(strip(line)))
  local x, y = { SOS }, {}
  for i = 1, #ids do x[i + 1] = ids[i]; y[i] = ids[i] end
  y[#ids + 1] = EOS
  for i = 1, T do
    x[i] = i <= #x and x[i] or PAD
    y[i] = i <= #y and y[i] or PAD
  end
  for i = #x, T + 1, -1 do x[i] = nil end
  for i = #y, T + 1, -1 do y[i] = nil end
  return x, y
end

return data
