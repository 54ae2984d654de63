-- data_spec.lua: tokenizers, vocabulary, samples, split, batches, file
-- errors (lua/drlmem/data.lua), EDA (augment.lua) and make_data.lua.
local dm = require "drlmem"
local write_tmp, err_of = require("helpers").write_tmp, require("helpers").err_of
local data = dm.data

local function cfg_for(path, sets)
  local s = { "data_path=" .. path }
  for _, x in ipairs(sets or {}) do s[#s + 1] = x end
  return dm.config.load(nil, s)
end

-- n lines "w<i> common" so each sample has a word of its own.
local function numbered_lines(n)
  local t = {}
  for i = 1, n do t[i] = "w" .. i .. " common" end
  return table.concat(t, "\n") .. "\n"
end

describe("tokenizers", function()
  local word, up, char = data.tokenizers.word, data.tokenizers.upstream, data.tokenizers.char

  it("word keeps . , ? ! as tokens", function()
    assert.same({ "hello", ",", "world", "!" }, word("Hello, world!"))
    assert.same({ "where", "is", "mary", "?", "kitchen", "." }, word("Where is Mary?  Kitchen."))
  end)

  it("upstream keeps only the runs of [a-z0-9]", function()
    assert.same({ "hello", "world" }, up("Hello, world!"))
    assert.same({ "a", "b" }, up("a...b"))
  end)

  it("deleted characters join their neighbours", function()
    assert.same({ "dont" }, word("don't"))
    assert.same({ "dont" }, up("don't"))
    assert.same({ "ber" }, up("über"))
    assert.same({ "abc" }, up("a-b_c"))
  end)

  it("splits on runs of whitespace, tabs and newlines", function()
    assert.same({ "a", "b", "c" }, word("  a   b\t\tc \n"))
    assert.same({ "a", "b" }, up("a\194\160b"))   -- NO-BREAK SPACE separates, as Python's \s
    assert.same({}, up("   "))
  end)

  it("keeps digits", function()
    assert.same({ "r2d2", "has", "3", ".", "14", "coins" }, word("R2D2 has 3.14 coins"))
    assert.same({ "r2d2", "has", "3", "14", "coins" }, up("R2D2 has 3.14 coins"))
  end)

  it("word keeps letters beyond ASCII, lower-cased, and deletes symbols beyond ASCII", function()
    assert.same({ "café", "über", "straße", "ñandú", "." }, word("Café ÜBER Straße Ñandú."))
    assert.same({ "αθήνα", "москва", "ёж", "žluťoučký", "ÿ" }, word("ΑΘΉΝΑ Москва Ёж ŽLUŤOUČKÝ Ÿ"))
    assert.same({ "東京", "日本語" }, word("東京 日本語"))           -- other scripts as written
    assert.same({ "dont", "stop", "ab", "wait", ".", ".", ".", "what" },
      word("Don’t “stop” a—b wait…what"))                          -- deleted like ' " - (and ... for …)
    assert.same({ "x", "y", "5", "z", "ok" }, word("x × y ÷ 5€ z → «ok» 😀"))
    assert.same({ "ª", "µm", "nº", "Ⅻ" }, word("ª µm nº Ⅻ"))        -- letters of Latin-1 stay, number forms too
    assert.same({ "a", "b" }, word("a\194\160b\226\128\131"))      -- Unicode spaces separate
  end)

  it("word reads <unk> <pad> <sos> <eos> in the text as the specials", function()
    assert.same({ "the", "<unk>", "sat", "." }, word("The <unk> sat."))
    assert.same({ "a", "<unk>", "b", "<eos>", "<pad>", "<sos>" }, word("a<UNK>b <eos><pad> <sos>"))
    assert.same({ "ab", "foo", "<unk>" }, word("<a>b <foo> <unk>"))  -- other <...>: < > are deleted
    local v = data.build_vocab({ word("the <unk> cat") })
    assert.same({ data.UNK }, v:encode(word("<unk>")))
    assert.is_nil(v.stoi.unk)
    -- upstream stays exact: the word unk
    assert.same({ "the", "unk", "sat" }, up("The <unk> sat."))
  end)

  it("whitespace keeps every token as written", function()
    local ws = data.tokenizers.whitespace
    assert.same({ "The", "cat's", "N", "$", "3.5", "<unk>", "don't", "café", "," },
      ws(" The  cat's\tN $ 3.5 <unk>\ndon't café , "))
    assert.same({ "@-@", "=", "Valkyria", "=" }, ws("@-@ = Valkyria =\194\160"))
    assert.same({}, ws(" \n\t "))
    -- PTB-style: <unk> in the text is the vocabulary's <unk>, not a word
    local path = write_tmp("the cat <unk> sat\nthe <unk> ran\nN years\na b\n")
    local d = data.load(cfg_for(path, { "tokenizer=whitespace", "vocab_from=all" }))
    assert.same({ "<pad>", "<unk>", "<sos>", "<eos>", "the", "cat", "sat", "ran", "N", "years", "a", "b" },
      d.vocab:list())
    assert.same({ data.SOS, d.vocab.stoi.the, d.vocab.stoi.cat, data.UNK, d.vocab.stoi.sat },
      table.move(d.X:totable()[1], 1, 5, 1, {}))
    os.remove(path)
  end)

  it("char gives one token per code point", function()
    assert.same({ "h", "é", "!", "\n" }, char("hé!\n"))
    assert.same({ "A", "€" }, char("A€"))
  end)

  it("is a registry users can extend", function()
    data.register_tokenizer("spec_words", function(text)
      local t = {}
      for w in text:gmatch("%S+") do t[#t + 1] = w end
      return t
    end)
    local path = write_tmp("A-b c\nD e\nf G\nh i\n")
    local d = data.load(cfg_for(path, { "tokenizer=spec_words", "vocab_from=all" }))
    assert.equal(4, d.vocab.stoi["A-b"])
    data.tokenizers.spec_words = nil
    os.remove(path)
    assert.matches("unknown tokenizer 'nope'", err_of(data.tokenizer, "nope"))
    assert.equal("the checkpoint's tokenizer 'nope' is not registered in this run (known: char, upstream, "
      .. "whitespace, word): load the Lua module that registers it, as in training: drlmem -l MODULE "
      .. "scripts/evaluate.lua ... (MODULE calls dm.data.register_tokenizer('nope', fn))",
      err_of(data.check_tokenizer, "nope", "the checkpoint's", "scripts/evaluate.lua"))
    assert.is_nil(data.check_tokenizer("word"))
  end)
end)

describe("vocabulary", function()
  it("puts the specials first, then tokens by first appearance", function()
    local v = data.build_vocab({ { "b", "a" }, { "c", "a", "b" } })
    assert.equal("<pad>", v.itos[0]); assert.equal("<unk>", v.itos[1])
    assert.equal("<sos>", v.itos[2]); assert.equal("<eos>", v.itos[3])
    assert.equal("b", v.itos[4]); assert.equal("a", v.itos[5]); assert.equal("c", v.itos[6])
    assert.equal(7, #v)
    assert.equal(5, v.stoi.a)
    assert.same({ 4, 1, 5 }, v:encode({ "b", "zzz", "a" }))
    assert.same({ "<sos>", "c" }, v:decode({ 2, 6 }))
    assert.equal(0, v.pad); assert.equal(1, v.unk); assert.equal(2, v.sos); assert.equal(3, v.eos)
  end)

  it("applies min_freq and max_size", function()
    local lists = { { "x", "y", "y", "z", "z", "z", "w", "w" } }
    local v = data.build_vocab(lists, { min_freq = 2 })
    assert.same({ "<pad>", "<unk>", "<sos>", "<eos>", "y", "z", "w" }, v:list())
    -- the two most frequent (z 3, then y 2 before w 2 by first appearance), in first-appearance order
    v = data.build_vocab(lists, { max_size = 6 })
    assert.same({ "<pad>", "<unk>", "<sos>", "<eos>", "y", "z" }, v:list())
  end)

  it("round-trips through its token list", function()
    local v = data.build_vocab({ { "p", "q" } })
    local w = data.Vocab(v:list())
    assert.equal(v.size, w.size)
    assert.equal("q", w.itos[5])
    assert.matches("index 0 must be <pad>", err_of(data.Vocab, { "x" }))
  end)
end)

describe("split", function()
  it("follows the upstream sizes", function()
    assert.same({ 8, 1, 1 }, data.split_sizes(10, 0.8, 0.1))
    assert.same({ 80, 10, 10 }, data.split_sizes(100, 0.8, 0.1))
    assert.same({ 1, 1, 1 }, data.split_sizes(3, 0.8, 0.1))
    assert.same({ 2, 1, 1 }, data.split_sizes(4, 0.8, 0.1))
    assert.same({ 0, 1, 1 }, data.split_sizes(2, 0.8, 0.1))
  end)

  local path
  setup(function() path = write_tmp(numbered_lines(50)) end)
  teardown(function() os.remove(path) end)

  it("is a partition of the samples, the same for the same seed", function()
    local a = data.load(cfg_for(path))
    local b = data.load(cfg_for(path))
    local c = data.load(cfg_for(path, { "seed=7" }))
    assert.equal(40, a.train:size()); assert.equal(5, a.val:size()); assert.equal(5, a.test:size())
    assert.same(a.train.index, b.train.index)
    assert.same(a.test.index, b.test.index)
    assert.are_not.same(a.train.index, c.train.index)
    local seen = {}
    for _, s in ipairs { a.train, a.val, a.test } do
      for _, i in ipairs(s.index) do
        assert.is_nil(seen[i], "sample in two splits")
        seen[i] = true
      end
    end
    for i = 1, 50 do assert.is_true(seen[i]) end
  end)

  it("builds the vocabulary from the training split only", function()
    local d = data.load(cfg_for(path))
    for _, i in ipairs(d.train.index) do assert.is_not_nil(d.vocab.stoi["w" .. i]) end
    for _, s in ipairs { d.val, d.test } do
      for _, i in ipairs(s.index) do assert.is_nil(d.vocab.stoi["w" .. i]) end
      -- their own word is <unk>, "common" is known
      local x, y = s:batches(100)()
      local rows = x:totable()
      for r = 1, #rows do
        assert.equal(data.SOS, rows[r][1])
        assert.equal(data.UNK, rows[r][2])
        assert.equal(d.vocab.stoi.common, rows[r][3])
      end
      assert.equal(data.UNK, y:totable()[1][1])
    end
    -- training vocabulary: in file order of the training samples
    local sorted = table.move(d.train.index, 1, #d.train.index, 1, {})
    table.sort(sorted)
    assert.equal("w" .. sorted[1], d.vocab.itos[4])
    assert.equal("common", d.vocab.itos[5])
    local all = data.load(cfg_for(path, { "vocab_from=all" }))
    assert.equal(4 + 51, all.vocab.size)
  end)
end)

describe("fixed splits", function()
  -- PTB-style files: each line a sentence; the validation and test files
  -- hold words the training file lacks.
  local dir, train_path, val_path, test_path
  setup(function()
    train_path = write_tmp("the cat sat\nthe dog ran\na cat ran\nthe end\n")
    val_path = write_tmp("the zebra sat\na dog\n")
    test_path = write_tmp("a yak ran\nthe cat\nthe <unk> end\n")
  end)
  teardown(function()
    for _, p in ipairs { train_path, val_path, test_path } do os.remove(p) end
  end)
  local function sets(extra)
    local t = { "val_data=" .. val_path, "test_data=" .. test_path, "tokenizer=upstream" }
    for _, x in ipairs(extra or {}) do t[#t + 1] = x end
    return t
  end

  it("val_data and test_data are the val and test parts as they are, in file order", function()
    local d = data.load(cfg_for(train_path, sets()))
    assert.same({ 4, 2, 3 }, d.stats.sizes)
    assert.equal("files", d.stats.split)
    -- training batches are reshuffled per epoch, but only within the training file
    local tr = table.move(d.train:order(1), 1, 4, 1, {})
    table.sort(tr)
    assert.same({ 1, 2, 3, 4 }, tr)
    assert.same({ 5, 6 }, d.val.index)
    assert.same({ 7, 8, 9 }, d.test.index)
    assert.equal(val_path, d.val.source)
    assert.equal(test_path, d.test.source)
    local s = d.vocab.stoi
    local vx = d.val:batches(10)()
    assert.same({ data.SOS, s.the, data.UNK, s.sat }, table.move(vx:totable()[1], 1, 4, 1, {}))
    local tx = d.test:batches(10)()
    assert.same({ data.SOS, s.a, data.UNK, s.ran }, table.move(tx:totable()[1], 1, 4, 1, {}))
    assert.matches("files " .. train_path:gsub("%p", "%%%0") .. " / ", data.describe(d))
  end)

  it("take the vocabulary from the training file only", function()
    local d = data.load(cfg_for(train_path, sets()))
    assert.same({ "<pad>", "<unk>", "<sos>", "<eos>", "the", "cat", "sat", "dog", "ran", "a", "end" },
      d.vocab:list())
    assert.is_nil(d.vocab.stoi.zebra)
    assert.is_nil(d.vocab.stoi.yak)
    assert.equal(3, d.stats.n_unk) -- zebra, yak and unk (upstream reads <unk> as the word unk)
  end)

  it("ignore the ratios and max_samples of data_path's split", function()
    local d = data.load(cfg_for(train_path, sets { "train_size_ratio=0.3", "val_size_ratio=0.6" }))
    assert.same({ 4, 2, 3 }, d.stats.sizes)
    d = data.load(cfg_for(train_path, sets { "max_samples=2" }))
    assert.same({ 2, 2, 3 }, d.stats.sizes)
  end)

  it("cut each file into its own windows in stream mode", function()
    local a, b, c = write_tmp("abcdefgh"), write_tmp("abcdx"), write_tmp("abcdyabcdz")
    local d = data.load(cfg_for(a, { "val_data=" .. b, "test_data=" .. c, "tokenizer=char",
      "sample_mode=stream", "max_seq_length=4" }))
    -- 8 chars: 1 window of 5 (h dropped); 5: 1 window; 10: 2 windows
    assert.same({ 1, 1, 2 }, d.stats.sizes)
    local s, X, Y = d.vocab.stoi, d.X:totable(), d.Y:totable()
    assert.same({ s.a, s.b, s.c, s.d }, X[2])
    assert.same({ s.b, s.c, s.d, data.UNK }, Y[2]) -- x: not in the training file
    assert.same({ s.a, s.b, s.c, s.d }, X[3]) -- the test file's windows: abcd|y, abcd|z
    assert.same({ s.b, s.c, s.d, data.UNK }, Y[3])
    assert.same({ s.a, s.b, s.c, s.d }, X[4])
    os.remove(a); os.remove(b); os.remove(c)
  end)

  it("come as a pair and replace split", function()
    assert.matches("^%-%-set val_data=.*: key 'val_data': val_data and test_data go together",
      err_of(cfg_for, train_path, { "val_data=" .. val_path }))
    assert.matches("^%-%-set test_data=.*: key 'test_data': val_data and test_data go together",
      err_of(cfg_for, train_path, { "test_data=" .. test_path }))
    assert.matches("key 'split': split: position cuts data_path into three parts, but with val_data",
      err_of(cfg_for, train_path, sets { "split=position" }))
  end)

  it("name the missing file and its key", function()
    assert.equal("data file '/nonexistent/v.txt' (val_data): cannot open: No such file or directory",
      err_of(data.load, cfg_for(train_path, { "val_data=/nonexistent/v.txt", "test_data=" .. test_path })))
    assert.equal("data file '/nonexistent/t.txt' (test_data): cannot open: No such file or directory",
      err_of(data.load, cfg_for(train_path, { "val_data=" .. val_path, "test_data=/nonexistent/t.txt" })))
  end)

  it("split: position takes the first samples for train, then val, then test", function()
    local path = write_tmp(numbered_lines(50))
    local d = data.load(cfg_for(path, { "split=position" }))
    local function range(a, b) local t = {} for i = a, b do t[#t + 1] = i end return t end
    assert.same(range(1, 40), d.train.index)
    assert.same(range(41, 45), d.val.index)
    assert.same(range(46, 50), d.test.index)
    assert.equal("position", d.stats.split)
    assert.equal(path .. " (test split: samples 46-50 of 50, by position)", d.test.source)
    -- the same for any seed; a 90/10-style split of a stream is its first and last windows
    assert.same(d.test.index, data.load(cfg_for(path, { "split=position", "seed=9" })).test.index)
    local s = data.load(cfg_for(path, { "split=position", "tokenizer=char", "sample_mode=stream",
      "max_seq_length=9", "train_size_ratio=0.8", "val_size_ratio=0.1" }))
    assert.same(range(s.stats.sizes[1] + s.stats.sizes[2] + 1, s.stats.n_samples), s.test.index)
    local rand = data.load(cfg_for(path))
    assert.are_not.same(d.test.index, rand.test.index)
    os.remove(path)
  end)
end)

describe("batches", function()
  it("encode input and target as the upstream sample, cut and padded", function()
    local path = write_tmp("a b\n\n   \na b c d e f\nc\n")
    local d = data.load(cfg_for(path, { "max_seq_length=5", "vocab_from=all", "tokenizer=upstream" }))
    local s = d.vocab.stoi
    assert.equal(3, d.stats.n_samples)
    assert.equal(1, d.stats.n_truncated)
    local X, Y = d.X:totable(), d.Y:totable()
    assert.same({ 2, s.a, s.b, 0, 0 }, X[1])
    assert.same({ s.a, s.b, 3, 0, 0 }, Y[1])
    assert.same({ 2, s.a, s.b, s.c, s.d }, X[2])
    assert.same({ s.a, s.b, s.c, s.d, s.e }, Y[2])
    assert.same({ 2, s.c, 0, 0, 0 }, X[3])
    assert.same({ s.c, 3, 0, 0, 0 }, Y[3])
    os.remove(path)
  end)

  it("come as int32 (n, T) tensors, the last one short", function()
    local path = write_tmp(numbered_lines(13))
    local d = data.load(cfg_for(path, { "max_seq_length=6" }))
    assert.equal(10, d.train:size())
    local sizes, total = {}, 0
    for x, y, n in d.train:batches(4, 1) do
      assert.equal("int32", x:dtype()); assert.equal("int32", y:dtype())
      assert.same({ n, 6 }, x:shape()); assert.same({ n, 6 }, y:shape())
      sizes[#sizes + 1] = n
      total = total + n
    end
    assert.same({ 4, 4, 2 }, sizes)
    assert.equal(3, d.train:nbatches(4))
    os.remove(path)
  end)

  it("reshuffle training every epoch, repeatably; keep val/test in split order", function()
    local path = write_tmp(numbered_lines(60))
    local d = data.load(cfg_for(path))
    local o1 = table.move(d.train:order(1), 1, 48, 1, {})
    local o2 = table.move(d.train:order(2), 1, 48, 1, {})
    assert.are_not.same(o1, o2)
    -- epoch 2 alone (a resumed run) gives epoch 2's order
    local fresh = data.load(cfg_for(path))
    assert.same(o2, fresh.train:order(2))
    assert.same(o1, fresh.train:order(1))
    -- the epoch's order is a permutation of the training split
    local a, b = table.move(o1, 1, 48, 1, {}), table.move(d.train.index, 1, 48, 1, {})
    table.sort(a); table.sort(b)
    assert.same(b, a)
    -- batches follow that order
    local first = d.train:batches(48, 2)()
    assert.same(d.X:totable()[o2[1]], first:totable()[1])
    local vx = d.val:batches(100, 3)()
    assert.same(d.X:totable()[d.val.index[1]], vx:totable()[1])
    os.remove(path)
  end)

  it("cut a stream into windows of T+1", function()
    local path = write_tmp("abcdefghijklmn\n")
    local d = data.load(cfg_for(path, { "tokenizer=char", "sample_mode=stream", "max_seq_length=3",
      "vocab_from=all" }))
    assert.equal(3, d.stats.n_samples) -- 15 characters, newline included: 3 windows of 4
    local s, X, Y = d.vocab.stoi, d.X:totable(), d.Y:totable()
    assert.same({ s.a, s.b, s.c }, X[1]); assert.same({ s.b, s.c, s.d }, Y[1])
    assert.same({ s.e, s.f, s.g }, X[2]); assert.same({ s.f, s.g, s.h }, Y[2])
    assert.same({ s.i, s.j, s.k }, X[3]); assert.same({ s.j, s.k, s.l }, Y[3])
    os.remove(path)
  end)

  it("end each line of a stream with <eos> when stream_line_end is eos", function()
    local path = write_tmp("a b\n\nc <unk> d\ne")
    local cfg = cfg_for(path, { "tokenizer=whitespace", "sample_mode=stream", "max_seq_length=2",
      "stream_line_end=eos", "vocab_from=all" })
    local d = data.load(cfg)
    -- a b <eos> | <eos> c <unk> | d <eos> e | <eos> (a short tail, left out)
    assert.equal(3, d.stats.n_samples)
    assert.equal(10, d.stats.n_tokens)
    local s, E = d.vocab.stoi, data.EOS
    assert.same({ "<pad>", "<unk>", "<sos>", "<eos>", "a", "b", "c", "d", "e" }, d.vocab:list())
    assert.same({ { s.a, s.b }, { E, s.c }, { s.d, E } }, d.X:totable())
    assert.same({ { s.b, E }, { s.c, data.UNK }, { E, s.e } }, d.Y:totable())
    assert.matches("%(stream with <eos> per line, T=2", data.describe(d))
    -- evaluate.lua --data reads a file the same way
    local split = dm.inference.file_split(path, d.vocab, cfg)
    assert.same(d.X:totable(), split.X:totable())
    -- without it the line ends are whitespace
    local plain = data.load(cfg_for(path, { "tokenizer=whitespace", "sample_mode=stream", "max_seq_length=1",
      "vocab_from=all" }))
    assert.equal(6, plain.stats.n_tokens)
    os.remove(path)
  end)

  it("honour max_samples", function()
    local path = write_tmp(numbered_lines(30))
    local d = data.load(cfg_for(path, { "max_samples=10" }))
    assert.equal(10, d.stats.n_samples)
    os.remove(path)
  end)
end)

describe("data file errors", function()
  it("name the file", function()
    assert.matches("^data file ./nonexistent/x%.txt. %(data_path%): cannot open: No such file or directory$",
      err_of(data.load, cfg_for("/nonexistent/x.txt")))
    local empty = write_tmp("")
    assert.matches("data file '.*' is empty", err_of(data.load, cfg_for(empty)))
    os.remove(empty)
    local blank = write_tmp("  \n\t\n")
    assert.matches("data file '.*' is empty %(only whitespace%)", err_of(data.load, cfg_for(blank)))
    os.remove(blank)
    local bad = write_tmp("good line\nbad \255 byte\n")
    assert.matches("data file '.*' is not UTF%-8: invalid byte 0xff at offset 14 %(line 2%)", err_of(data.load, cfg_for(bad)))
    os.remove(bad)
    local two = write_tmp("one\ntwo\n")
    assert.matches("data file '.*' gives only 2 samples: too few", err_of(data.load, cfg_for(two)))
    os.remove(two)
    local short = write_tmp("abc")
    assert.matches("data file '.*' gives no sample: 3 tokens, stream mode needs at least max_seq_length%+1 = 11",
      err_of(data.load, cfg_for(short, { "tokenizer=char", "sample_mode=stream", "max_seq_length=10" })))
    os.remove(short)
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir " .. dir)
    assert.matches("data file '.*'", err_of(data.load, cfg_for(dir)))
    os.execute("rmdir " .. dir)
  end)
end)

describe("data files that are not text", function()
  it("are refused before reading when they are not regular files", function()
    assert.equal("data file '/dev/zero' (data_path) is a char device, not a regular file",
      err_of(data.load, cfg_for("/dev/zero")))
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    assert.equal("data file '" .. dir .. "' (data_path) is a directory, not a regular file",
      err_of(data.load, cfg_for(dir)))
    -- a FIFO with no writer would block io.open for ever
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. fifo))
    assert.equal("data file '" .. fifo .. "' (--data) is a named pipe, not a regular file",
      err_of(data.read_text, fifo, "--data"))
    os.remove(fifo)
    os.execute("rmdir " .. dir)
  end)

  it("are refused above max_data_bytes, before reading", function()
    local path = write_tmp(numbered_lines(20))
    local size = #numbered_lines(20)
    assert.equal(string.format("data file '%s' (data_path) is %d bytes, over max_data_bytes = 100 (raise it: "
      .. "--set max_data_bytes=%d)", path, size, size), err_of(data.load, cfg_for(path, { "max_data_bytes=100" })))
    assert.equal(20, data.load(cfg_for(path, { "max_data_bytes=" .. size })).stats.n_samples)
    assert.equal(1 << 30, dm.config.defaults().max_data_bytes)
    os.remove(path)
  end)

  it("that give no token are an error naming the tokenizer and what it drops", function()
    local path = write_tmp("#$%\n&*()\n---\n@@ ~~\n")
    assert.equal("data file '" .. path .. "' (data_path) gives no token with tokenizer 'upstream' (it keeps the "
      .. "runs of a-z and 0-9, lower-cased, and deletes every other character)",
      err_of(data.load, cfg_for(path, { "tokenizer=upstream" })))
    assert.matches("gives no token with tokenizer 'word' %(it lower%-cases",
      err_of(data.load, cfg_for(path, { "sample_mode=stream" })))
    -- a user's tokenizer without a doc: no parenthesis
    data.register_tokenizer("spec_none", function() return {} end)
    assert.equal("data file '" .. path .. "' (data_path) gives no token with tokenizer 'spec_none'",
      err_of(data.load, cfg_for(path, { "tokenizer=spec_none" })))
    data.tokenizers.spec_none = nil
    os.remove(path)
  end)

  it("that look like CSV load with a warning", function()
    local text = "id,text,label\n"
    for i = 1, 30 do text = text .. i .. ",w" .. i .. " common,x\n" end
    local path = write_tmp(text)
    local d = data.load(cfg_for(path))
    assert.equal(1, #d.warnings)
    assert.equal("data file '" .. path .. "' (data_path) looks like CSV (each of its first 20 lines holds 2 commas): "
      .. "it is read as plain text, one sample per line, the header line too, with commas and quotes kept as text; "
      .. "to train on one column, write that column to a text file first", d.warnings[1])
    assert.equal("its name ends in .csv", data.csv_like("x/Data.CSV", "plain text\n"))
    assert.equal("each of its first 3 lines holds 1 tab", data.csv_like("x.txt", "a\tb\n\nc\td\ne\tf\n"))
    -- prose with commas here and there is not CSV
    assert.is_nil(data.csv_like("x.txt", "one, two\nthree\nfour, five, six\n"))
    assert.is_nil(data.csv_like("x.txt", "a, b\nc, d\n"))
    os.remove(path)
    path = write_tmp(numbered_lines(20))
    assert.same({}, data.load(cfg_for(path)).warnings)
    os.remove(path)
  end)
end)

describe("augment (EDA)", function()
  local aug = dm.augment
  local line = "Mary went to the kitchen. Then John took the apple. Where is Mary? Kitchen."

  it("is deterministic for a seed", function()
    assert.same(aug.eda(line, dm.Generator(3), { copies = 6 }), aug.eda(line, dm.Generator(3), { copies = 6 }))
    assert.are_not.same(aug.eda(line, dm.Generator(3), { copies = 6 }), aug.eda(line, dm.Generator(4), { copies = 6 }))
  end)

  local function words(s)
    local t = {}
    for _, it in ipairs(aug.split(s)) do if not it.punct then t[#t + 1] = it.text end end
    return t
  end
  local function puncts(s) return (s:gsub("[^%.,%?!]", "")) end

  it("keeps punctuation in place and words countable", function()
    local g = dm.Generator(11)
    for _ = 1, 20 do
      local sw = aug.apply(line, "rs", 0.2, g)
      assert.equal(puncts(line), puncts(sw))
      local a, b = words(line), words(sw)
      table.sort(a); table.sort(b)
      assert.same(a, b) -- a swap moves words, never adds or loses one
      local rd = aug.apply(line, "rd", 0.3, g)
      assert.equal(puncts(line), puncts(rd))
      assert.is_true(#words(rd) >= 1 and #words(rd) <= #words(line))
      -- an insertion needs a word with synonyms among 10 random picks, as in EDA
      local ri = aug.apply(line, "ri", 0.2, g)
      assert.is_true(#words(ri) >= #words(line))
      assert.is_true(#words(ri) <= #words(line) + math.max(1, math.floor(0.2 * #words(line))))
      assert.equal(puncts(line), puncts(ri))
      assert.equal(5, #words(aug.apply("went took then went", "ri", 0.25, g)))
    end
  end)

  it("replaces words with synonyms from the table", function()
    local g = dm.Generator(5)
    local out = aug.apply("John went to the park.", "sr", 0.1, g)
    local verb = out:match("^John (%a+) to the park%.$")
    assert.is_not_nil(verb, out)
    assert.is_truthy(({ moved = 1, travelled = 1, journeyed = 1, walked = 1 })[verb])
  end)
end)

describe("scripts/make_data.lua", function()
  local exe = os.getenv("DRLMEM_EXE")
  local function run(args)
    local cmd = (exe and exe or (os.getenv("LUA") or "lua5.4")) .. " scripts/make_data.lua " .. args .. " 2>&1"
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    return out
  end
  local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
  end

  it("writes the same bytes for the same seed, others for another", function()
    local a, b, c = os.tmpname(), os.tmpname(), os.tmpname()
    run("--out " .. a .. " --seed 5 --stories 40 --force")
    run("--out " .. b .. " --seed 5 --stories 40 --force")
    run("--out " .. c .. " --seed 6 --stories 40 --force")
    local ta = slurp(a)
    assert.is_true(#ta > 0)
    assert.equal(ta, slurp(b))
    assert.are_not.equal(ta, slurp(c))
    -- a story fits a sample of max_seq_length 100 whole, with questions and answers
    local n = 0
    for l in ta:gmatch("[^\n]+") do
      n = n + 1
      local k = #data.tokenizers.word(l)
      assert.is_true(k >= 30 and k <= 95, "story of " .. k .. " tokens")
    end
    assert.equal(40, n)
    assert.matches("%? %a+%.", ta)
    -- an existing file is left alone without --force
    local out = run("--out " .. a .. " --seed 9 --stories 3")
    assert.matches("exists", out)
    assert.equal(ta, slurp(a))
    os.remove(a); os.remove(b); os.remove(c)
  end)

  it("--tiny writes short stories", function()
    local a = os.tmpname()
    run("--tiny --out " .. a .. " --stories 30 --force")
    local n = 0
    for l in slurp(a):gmatch("[^\n]+") do
      n = n + 1
      assert.is_true(#data.tokenizers.word(l) <= 23)
    end
    assert.equal(30, n)
    os.remove(a)
  end)
end)

describe("scripts/augment.lua", function()
  it("writes each line and its copies, the same for the same seed", function()
    local exe = os.getenv("DRLMEM_EXE") or (os.getenv("LUA") or "lua5.4")
    local input = write_tmp("John went to the big house quickly.\n\nMary took the small apple, then she left.\n")
    local function run(seed)
      local p = io.popen(exe .. " scripts/augment.lua --in " .. input .. " --out - --copies 3 --seed " .. seed)
      local out = p:read("a")
      p:close()
      return out
    end
    local a = run(1)
    local lines = {}
    for l in a:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(8, #lines)
    assert.equal("John went to the big house quickly.", lines[1])
    assert.equal("Mary took the small apple, then she left.", lines[5])
    assert.equal(a, run(1))
    assert.are_not.equal(a, run(2))
    os.remove(input)
  end)
end)
