-- tasks_spec.lua: the synthetic memory tasks (lua/drlmem/tasks.lua and
-- scripts/make_task.lua): determinism, format, answer positions and the
-- answer-token accuracy.
local dm = require "drlmem"
local tasks = dm.tasks
local data = dm.data
local word = data.tokenizers.word

local function split(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

-- y (n,T) int32 of the lines format for some lines, and the vocabulary.
local function encode(lines, T, tokenizer)
  local tok = data.tokenizer(tokenizer or "word")
  local lists = {}
  for i, l in ipairs(lines) do lists[i] = tok(l) end
  local vocab = data.build_vocab(lists)
  local ys = {}
  for i, l in ipairs(lines) do
    local _, y = data.encode_line(l, vocab, T, tokenizer)
    ys[i] = y
  end
  return dm.tensor(ys):int(), vocab
end

describe("tasks.generate", function()
  it("is deterministic in the seed", function()
    for _, task in ipairs { "recall", "copy" } do
      local a = tasks.generate(task, { n = 5, samples = 30, seed = 9 })
      local b = tasks.generate(task, { n = 5, samples = 30, seed = 9 })
      local c = tasks.generate(task, { n = 5, samples = 30, seed = 10 })
      assert.are.same(a, b)
      assert.are_not.same(a, c)
      assert.equal(30, #a)
    end
  end)

  it("writes recall lines k1 v1 ... kn vn ? kq vq with the paired value as answer", function()
    local lines = tasks.generate("recall", { n = 6, samples = 200, seed = 1, keys = 8, values = 5 })
    local queried = {}
    for _, l in ipairs(lines) do
      local t = split(l)
      assert.equal(2 * 6 + 3, #t)
      assert.are.same(t, word(l)) -- the word tokenizer keeps every token
      local pairs_, seen = {}, {}
      for i = 1, 6 do
        local k, v = t[2 * i - 1], t[2 * i]
        assert.truthy(k:match("^k%d+$"), l)
        assert.truthy(v:match("^v%d+$"), l)
        assert.truthy(tonumber(k:sub(2)) <= 8 and tonumber(v:sub(2)) <= 5, l)
        assert.is_nil(seen[k], "keys are distinct: " .. l)
        seen[k] = true
        pairs_[k] = v
      end
      assert.equal("?", t[13])
      assert.is_not_nil(pairs_[t[14]], "the query is one of the keys: " .. l)
      assert.equal(pairs_[t[14]], t[15])
      queried[t[14]] = true
    end
    local nq = 0
    for _ in pairs(queried) do nq = nq + 1 end
    assert.equal(8, nq) -- every key gets asked
  end)

  it("writes copy lines x1 .. xn ? x1 .. xn", function()
    local lines = tasks.generate("copy", { n = 4, samples = 50, seed = 2, symbols = 3 })
    for _, l in ipairs(lines) do
      local t = split(l)
      assert.equal(9, #t)
      assert.equal("?", t[5])
      for i = 1, 4 do
        assert.truthy(t[i]:match("^x[1-3]$"), l)
        assert.equal(t[i], t[5 + i])
      end
    end
  end)

  it("rejects bad options with a clear message", function()
    assert.has_error(function() tasks.generate("sort", {}) end,
      'tasks.generate: task must be "recall" or "copy", got sort')
    local ok, msg = pcall(tasks.generate, "recall", { n = 9, keys = 4 })
    assert.is_false(ok)
    assert.truthy(msg:find("keys must be an integer >= 9, got 4", 1, true))
    ok, msg = pcall(tasks.generate, "copy", { n = 0 })
    assert.is_false(ok)
    assert.truthy(msg:find("n must be an integer >= 1, got 0", 1, true))
  end)
end)

describe("tasks answer positions", function()
  it("is the last token for recall and the tokens after ? for copy", function()
    assert.are.same({ 7 }, tasks.answer_positions("recall", split("k1 v1 k2 v2 ? k2 v2")))
    assert.are.same({ 5, 6, 7 }, tasks.answer_positions("copy", split("x1 x2 x3 ? x1 x2 x3")))
    -- a tokenizer that drops `?`: copy falls back to the second half
    assert.are.same({ 4, 5, 6 }, tasks.answer_positions("copy", split("x1 x2 x3 x1 x2 x3")))
    assert.are.same({}, tasks.answer_positions("recall", {}))
  end)

  it("maps to target columns of the lines format (token p is column p)", function()
    local lines = { "k1 v3 k2 v4 ? k2 v4", "x1 x2 ? x1 x2" }
    local y, vocab = encode({ lines[1] }, 10)
    assert.are.same({ { 7 } }, tasks.answer_columns("recall", y, vocab))
    local row = y:totable()[1]
    assert.equal(vocab.stoi["v4"], row[7])   -- the answer
    assert.equal(vocab.eos, row[8])
    -- the input at that column is the query key: x[7] = token 6
    local x = data.encode_line(lines[1], vocab, 10)
    assert.equal(vocab.stoi["k2"], x[7])

    local yc, vc = encode({ lines[2] }, 10)
    assert.are.same({ { 4, 5 } }, tasks.answer_columns("copy", yc, vc))
  end)

  it("gives a cut recall sample no answer and a cut copy sample the columns it kept", function()
    local y, vocab = encode({ "k1 v3 k2 v4 ? k2 v4" }, 6) -- cut before the answer
    assert.are.same({ {} }, tasks.answer_columns("recall", y, vocab))
    local yc, vc = encode({ "x1 x2 x3 ? x1 x2 x3" }, 6)
    assert.are.same({ { 5, 6 } }, tasks.answer_columns("copy", yc, vc))
  end)

  it("works when the tokenizer dropped `?`", function()
    local y, vocab = encode({ "x1 x2 ? x1 x2" }, 8, "upstream")
    assert.is_nil(vocab.stoi["?"])
    assert.are.same({ { 3, 4 } }, tasks.answer_columns("copy", y, vocab))
    assert.are.same({ { 4 } }, tasks.answer_columns("recall", y, vocab))
  end)
end)

describe("tasks accuracy", function()
  it("counts argmax hits at answer positions only", function()
    local lines = { "k1 v3 k2 v4 ? k2 v4", "k2 v1 k1 v3 ? k1 v3" }
    local y, vocab = encode(lines, 9)
    local V, T = vocab.size, 9
    local yt = y:totable()
    -- logits: right everywhere in row 1, right everywhere but the answer in row 2
    local l = {}
    for r = 1, 2 do
      l[r] = {}
      for c = 1, T do
        l[r][c] = {}
        for v = 1, V do l[r][c][v] = 0 end
        local want = yt[r][c]
        if r == 2 and c == 7 then want = vocab.stoi["v1"] end
        l[r][c][want + 1] = 1
      end
    end
    local logits = dm.tensor(l)
    local correct, total = tasks.count("recall", logits, y, vocab)
    assert.equal(1, correct)
    assert.equal(2, total)
    local acc = tasks.Accumulator("recall", vocab)
    acc:add(logits, y)
    acc:add(logits, y)
    local res = acc:result()
    assert.equal(2, res.correct)
    assert.equal(4, res.total)
    assert.equal(0.5, res.accuracy)
    assert.is_true(tasks.Accumulator("copy", vocab):result().accuracy ~= tasks.Accumulator("copy", vocab):result().accuracy) -- NaN when empty
  end)
end)

describe("scripts/make_task.lua", function()
  local exe = os.getenv("DRLMEM_EXE")
  local function run(args)
    local cmd = (exe and exe or (os.getenv("LUA") or "lua5.4")) .. " scripts/make_task.lua " .. args .. " 2>&1"
    local p = io.popen(cmd)
    local out = p:read("a")
    local ok = p:close()
    return out, ok
  end
  local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
  end

  it("writes tasks.generate's lines, the same bytes for the same seed", function()
    local a, b = os.tmpname(), os.tmpname()
    local out, ok = run("--task recall --n 3 --samples 7 --seed 4 --out " .. a)
    assert.is_true(ok, out)
    run("--task recall --n 3 --samples 7 --seed 4 --out " .. b)
    local ta = slurp(a)
    assert.equal(ta, slurp(b))
    local want = tasks.generate("recall", { n = 3, samples = 7, seed = 4, keys = 16 })
    assert.equal(table.concat(want, "\n") .. "\n", ta)
    run("--task copy --n 2 --samples 3 --seed 4 --out " .. b)
    assert.equal(table.concat(tasks.generate("copy", { n = 2, samples = 3, seed = 4 }), "\n") .. "\n", slurp(b))
    os.remove(a)
    os.remove(b)
  end)

  it("rejects an unknown task", function()
    local out, ok = run("--task sort --out /dev/null")
    assert.is_not_true(ok)
    assert.truthy(out:find("--task", 1, true) and out:find("recall", 1, true), out)
  end)
end)
