-- babi_spec.lua: the bAbI format (lua/drlmem/babi.lua): the reader on a
-- hand-written snippet, its errors (file:line), the samples of sample_mode
-- babi, the generator read back, the split of data.load and the answer
-- accuracy of task babi (lua/drlmem/tasks.lua).
local dm = require "drlmem"
local helpers = require "helpers"
local babi, data, tasks = dm.babi, dm.data, dm.tasks
local word = data.tokenizers.word

-- Two stories (the second restarts at 1), a list answer, two supporting ids.
local SNIPPET = table.concat({
  "1 Mary moved to the bathroom.",
  "2 John went to the hallway.",
  "3 Where is Mary? \tbathroom\t1",
  "4 Daniel went back to the hallway.",
  "5 Where is Daniel? \thallway\t4",
  "1 Sandra got the milk there.",
  "2 Sandra picked up the football.",
  "3 What is Sandra carrying? \tmilk,football\t1 2",
}, "\n") .. "\n"

describe("babi.parse", function()
  it("reads statements, questions, answers and supporting ids, a new story at id 1", function()
    local s = babi.parse(SNIPPET, "snippet.txt")
    assert.equal(2, #s)
    assert.equal(5, #s[1].lines)
    assert.equal(3, #s[2].lines)
    assert.same({ id = 1, text = "Mary moved to the bathroom.", line = 1 }, s[1].lines[1])
    assert.same({ id = 3, text = "Where is Mary?", answer = "bathroom", supports = { 1 }, line = 3 }, s[1].lines[3])
    assert.same({ id = 3, text = "What is Sandra carrying?", answer = "milk,football", supports = { 1, 2 }, line = 8 },
      s[2].lines[3])
    assert.equal(6, s[2].line)
    assert.equal(2, #babi.parse("\239\187\191" .. SNIPPET, "bom.txt")) -- (a byte-order mark is skipped)
  end)

  it("names the file and line of a malformed line", function()
    local cases = {
      { "1 Mary moved.\n2 Where is Mary?\n", "f.txt:2: question 'Where is Mary?' has no answer" },
      { "1 Mary moved.\nx Where is Mary?\tkitchen\t1\n", "f.txt:2: expected 'ID text'" },
      { "1 Mary moved.\n2.5 John moved.\n", "f.txt:2: expected 'ID text'" },
      { "1 Mary moved.\n2 John moved.\n2 Where is John?\tkitchen\t2\n", "f.txt:3: id 2 does not follow id 2" },
      { "1 Mary moved.\n3 John moved.\n2 Where is John?\tkitchen\t3\n", "f.txt:3: id 2 does not follow id 3" },
      { "2 Mary moved.\n", "f.txt:1: a story starts at id 1, got 2" },
      { "1 Mary moved.\n2 Where is Mary?\t\t1\n", "f.txt:2: question 'Where is Mary?' has an empty answer" },
      { "1 Mary moved.\n2 Where is Mary?\tkitchen\tone\n", "f.txt:2: supporting id 'one' is not a line number" },
      { "1 Mary moved.\n2 Where is Mary?\tkitchen\t2\n", "f.txt:2: supporting id 2 is not an earlier line" },
      { "1 Mary moved.\n2 Where is Mary?\tkitchen\t1\tx\n", "f.txt:2: a question line is" },
      { "\n  \n", "f.txt: no story (an empty file)" },
    }
    for _, c in ipairs(cases) do
      local msg = helpers.err_of(babi.parse, c[1], "f.txt")
      assert.truthy(msg:find(c[2], 1, true), msg .. " (wanted: " .. c[2] .. ")")
      assert.is_nil(msg:find("\n"), "one line: " .. msg)
    end
  end)

  it("reads a file through data.read_text, whose errors name the file", function()
    local path = helpers.write_tmp(SNIPPET)
    assert.equal(2, #babi.read(path))
    local empty = helpers.write_tmp("")
    assert.truthy(helpers.err_of(babi.read, empty):find("is empty", 1, true))
    os.remove(path); os.remove(empty)
  end)
end)

describe("babi.samples", function()
  it("makes one sample per question: earlier statements, the question, the answer", function()
    local s, info = babi.samples(babi.parse(SNIPPET, "s"), word, 100)
    assert.equal(3, #s)
    assert.same({ questions = 3, stories = 2, trimmed = 0 }, info)
    assert.equal("mary moved to the bathroom . john went to the hallway . where is mary ? bathroom",
      table.concat(s[1], " "))
    -- the first question is not context of the second
    assert.equal("mary moved to the bathroom . john went to the hallway . daniel went back to the hallway . "
      .. "where is daniel ? hallway", table.concat(s[2], " "))
    -- a new story: nothing of the first one; a list answer kept whole, tokenised
    assert.equal("sandra got the milk there . sandra picked up the football . what is sandra carrying ? "
      .. "milk , football", table.concat(s[3], " "))
    assert.same({ "milk", ",", "football" }, s[3].answer)
    assert.same({ 1, 1, 2 }, { s[1].story, s[2].story, s[3].story })
    assert.equal(8, s[3].line)
  end)

  it("keeps the last `context` statements, and fewer when T needs it, the question always whole", function()
    local st = babi.parse(SNIPPET, "s")
    local s = babi.samples(st, word, 100, { context = 1 })
    assert.equal("daniel went back to the hallway . where is daniel ? hallway", table.concat(s[2], " "))
    -- T = 14: 13 tokens fit; "where is daniel ? hallway" is 5, so one 7-token statement, not two
    local s2, info = babi.samples(st, word, 14)
    assert.equal("daniel went back to the hallway . where is daniel ? hallway", table.concat(s2[2], " "))
    assert.is_true(#s2[2] <= 13)
    assert.equal(3, info.trimmed)
    local msg = helpers.err_of(babi.samples, st, word, 5, { where = "s.txt" })
    assert.truthy(msg:find("s.txt:3: the question and its answer are 5 tokens, more than max_seq_length - 1 = 4",
      1, true), msg)
  end)

  it("ends the question with the token ? when the tokenizer drops it", function()
    local s = babi.samples(babi.parse(SNIPPET, "s"), data.tokenizers.upstream, 100)
    assert.equal("where is mary ? bathroom", table.concat(s[1], " ", #s[1] - 4))
    local w = babi.samples(babi.parse(SNIPPET, "s"), data.tokenizers.whitespace, 100)
    assert.equal("Mary? ? bathroom", table.concat(w[1], " ", #w[1] - 2))
  end)

  it("refuses text without a question", function()
    local msg = helpers.err_of(babi.samples, babi.parse("1 Mary moved.\n", "q.txt"), word, 20, { where = "q.txt" })
    assert.truthy(msg:find("q.txt: no question line", 1, true), msg)
  end)
end)

describe("babi.generate and babi.format", function()
  it("is deterministic in the seed", function()
    local a = babi.format(babi.generate { stories = 20, seed = 4 })
    assert.equal(a, babi.format(babi.generate { stories = 20, seed = 4 }))
    assert.are_not.equal(a, babi.format(babi.generate { stories = 20, seed = 5 }))
  end)

  it("writes what the reader reads back: the same stories, questions, answers and supports", function()
    local gen = babi.generate { stories = 30, questions = 4, seed = 7 }
    local back = babi.parse(babi.format(gen), "gen")
    assert.equal(30, #back)
    local nq = 0
    for i, story in ipairs(gen) do
      assert.equal(#story.lines, #back[i].lines)
      for j, e in ipairs(story.lines) do
        local b = back[i].lines[j]
        assert.equal(j, e.id)
        assert.equal(e.id, b.id)
        assert.equal(e.text, b.text)
        assert.equal(e.answer, b.answer)
        assert.same(e.supports, b.supports)
        if e.answer then nq = nq + 1 end
      end
    end
    assert.equal(30 * 4, nq)
  end)

  it("answers follow from the statements its supporting ids name", function()
    -- "Where is P?": the last move of P is the support, and names the answer
    local gen = babi.generate { stories = 50, seed = 2 }
    local checked = 0
    for _, story in ipairs(gen) do
      local by_id = {}
      for _, e in ipairs(story.lines) do
        by_id[e.id] = e
        local p = e.answer and e.text:match("^Where is (%u%l+)%?$")
        if p then
          assert.equal(1, #e.supports)
          local fact = by_id[e.supports[1]].text
          assert.truthy(fact:find("^" .. p .. " %l+ to the " .. e.answer .. "%.$"), fact .. " / " .. e.answer)
          for id = e.supports[1] + 1, e.id - 1 do
            assert.is_nil(by_id[id].text:find("^" .. p .. " %l+ to the "), "a later move of " .. p)
          end
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 20)
  end)

  it("checks its options", function()
    assert.truthy(helpers.err_of(babi.generate, { stories = 0 }):find("stories must be an integer >= 1", 1, true))
  end)
end)

describe("data.load with sample_mode babi", function()
  local function cfg_for(sets)
    return dm.config.load(nil, sets)
  end

  it("keeps train and test files as given, validation the last stories of train by position", function()
    local tr = helpers.write_tmp(babi.format(babi.generate { stories = 20, seed = 1 }))
    local te = helpers.write_tmp(babi.format(babi.generate { stories = 5, seed = 2 }))
    local cfg = cfg_for { data_path = tr, test_data = te, sample_mode = "babi", max_seq_length = 60 }
    assert.equal("babi", cfg.task) -- derived from sample_mode
    local d = data.load(cfg)
    assert.equal("files", d.stats.split)
    -- 5 questions a story: 18 stories train, the last 2 val, 5 test
    assert.same({ 90, 10, 25 }, d.stats.sizes)
    for i = 1, 90 do assert.equal(i, d.train.index[i]) end
    assert.equal(91, d.val.index[1])
    assert.truthy(d.val.source:find("last 2 of 20 stories", 1, true), d.val.source)
    assert.equal(te, d.test.source)
    os.remove(tr); os.remove(te)
  end)

  it("babi_context caps the statements; a cut for max_seq_length is a warning", function()
    local path = helpers.write_tmp(SNIPPET)
    local function second(sets)
      local d = data.load(cfg_for(sets))
      local x = d.X:totable()[2]
      local toks = {}
      for i = 2, #x do if x[i] ~= 0 then toks[#toks + 1] = d.vocab.itos[x[i]] end end
      return table.concat(toks, " "), d.warnings
    end
    local base = { data_path = path, val_data = path, test_data = path, sample_mode = "babi" }
    local full, w = second(base)
    assert.equal("mary moved to the bathroom . john went to the hallway . daniel went back to the hallway . where "
      .. "is daniel ? hallway", full)
    assert.same({}, w)
    base.babi_context = 1
    assert.equal("daniel went back to the hallway . where is daniel ? hallway", (second(base)))
    base.babi_context, base.max_seq_length = 50, 14
    local _, w2 = second(base)
    assert.equal(3, #w2) -- (one per file)
    assert.truthy(w2[1]:find("(data_path): 3 of 3 questions keep fewer statements of their story than babi_context = "
      .. "50, so that the question and its answer fit max_seq_length = 14", 1, true), w2[1])
    os.remove(path)
  end)

  it("cuts a lone file between stories, never inside one", function()
    local path = helpers.write_tmp(babi.format(babi.generate { stories = 40, seed = 3 }))
    local d = data.load(cfg_for { data_path = path, sample_mode = "babi", max_seq_length = 60 })
    -- 40 stories: 32/4/4, 5 questions each
    assert.same({ 160, 20, 20 }, d.stats.sizes)
    local samples = babi.samples(babi.read(path), word, 60)
    local part_of = {}
    for p, name in ipairs { "train", "val", "test" } do
      for _, i in ipairs(d[name].index) do
        local st = samples[i].story
        assert.is_true(part_of[st] == nil or part_of[st] == p, "story " .. st .. " in two parts")
        part_of[st] = p
      end
    end
    os.remove(path)
  end)

  it("errors in a bAbI file name the file and line; a config refuses task babi without it", function()
    local bad = helpers.write_tmp("1 Mary moved.\n2 Where is Mary?\n")
    local msg = helpers.err_of(data.load, cfg_for { data_path = bad, sample_mode = "babi" })
    assert.equal(bad .. ":2: question 'Where is Mary?' has no answer: a question line is 'ID question<TAB>answer<TAB>"
      .. "supporting ids'", msg)
    os.remove(bad)
    local cmsg = helpers.err_of(dm.config.load, nil, { "task=babi" })
    assert.truthy(cmsg:find("task babi scores the samples of sample_mode babi", 1, true), cmsg)
    local r = helpers.err_of(dm.config.load, nil, { "sample_mode=babi", "task=recall" })
    assert.equal("--set task=recall: key 'task': sample_mode babi is scored as task babi (the answer after each "
      .. "question), not recall: leave task out", r)
    local t = helpers.err_of(dm.config.load, nil, { "test_data=x" })
    assert.truthy(t:find("val_data and test_data go together", 1, true), t)
  end)
end)

describe("task babi accuracy", function()
  it("scores the tokens after the last ? of whole rows: a question right when all its answer tokens are", function()
    local st = babi.parse(SNIPPET, "s")
    local s = babi.samples(st, word, 30)
    local vocab = data.build_vocab(s)
    local enc = {}
    for i, toks in ipairs(s) do enc[i] = vocab:encode(toks) end
    local T = 30
    local _, y = dm.datautil.encode_lines(enc, T)
    local cols = tasks.answer_columns("babi", y, vocab)
    assert.same({ { #s[1] } }, { cols[1] })
    assert.same({ #s[3] - 2, #s[3] - 1, #s[3] }, cols[3])
    local yt, V = y:totable(), vocab.size
    -- right everywhere, but row 3's last answer token ("football") is wrong
    local l = {}
    for r = 1, 3 do
      l[r] = {}
      for c = 1, T do
        l[r][c] = {}
        for v = 1, V do l[r][c][v] = 0 end
        local want = yt[r][c]
        if r == 3 and c == #s[3] then want = vocab.stoi["milk"] end
        l[r][c][want + 1] = 1
      end
    end
    local logits = dm.tensor(l)
    local qc, qt, tc, tt = tasks.count("babi", logits, y, vocab)
    assert.same({ 2, 3, 4, 5 }, { qc, qt, tc, tt })
    local acc = tasks.Accumulator("babi", vocab)
    acc:add(logits, y)
    local r = acc:result()
    assert.equal(3, r.total)
    assert.equal(2 / 3, r.accuracy)
    assert.equal(0.8, r.tokens_accuracy)
    -- a row cut before its <eos> has no answer to score
    local _, ycut = dm.datautil.encode_lines(enc, #s[3] - 1)
    assert.same({}, tasks.answer_columns("babi", ycut, vocab)[3])
  end)
end)

describe("scripts/make_data.lua --format babi", function()
  it("writes the generator's stories, which the reader reads", function()
    local exe = os.getenv("DRLMEM_EXE")
    if not exe then pending("needs DRLMEM_EXE") return end
    local out = os.tmpname()
    local p = io.popen(exe .. " scripts/make_data.lua --format babi --stories 12 --seed 3 --force --out " .. out .. " 2>&1")
    local text = p:read("a")
    assert.is_true(p:close(), text)
    assert.truthy(text:find("12 bAbI stories", 1, true), text)
    assert.equal(babi.format(babi.generate { stories = 12, seed = 3 }), helpers.slurp(out))
    os.remove(out)
  end)
end)
