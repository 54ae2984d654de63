-- babi.lua: the bAbI question-answering text format: its reader, the
-- samples it gives, and a generator of stories written in it.
--
-- The format (Weston et al. 2015, the facebook bAbI tasks): one line per
-- sentence, `ID text`, ids counting from 1 within a story; a question line
-- is `ID question<TAB>answer<TAB>supporting ids` (the answer may be a
-- comma-separated list, as in qa8 and qa19); an id of 1 starts a new story:
--
--   1 Mary moved to the bathroom.
--   2 John went to the hallway.
--   3 Where is Mary? 	bathroom	1
--
-- babi.parse turns such text into stories; babi.samples turns stories into
-- samples in MemN2N's way: one sample per question, whose context is the
-- statements of its story before it (questions are not context), at most
-- the last `context` of them (MemN2N keeps 50), and fewer when the sample
-- must fit max_seq_length: the oldest statements go first, so the question
-- and its answer are always whole. A sample's tokens are the context, the
-- question ending in the token `?` (added when the tokenizer drops it or
-- glues it to a word), then the answer's tokens; dm.tasks scores the
-- tokens after the last `?` (task babi). babi.generate makes stories of
-- people moving and handling objects, with the ids of the facts that
-- support each answer, deterministically from a seed; babi.format writes
-- them in the format, and babi.write_stories writes a file.
local dm = require "drlmem"

local babi = {}

babi.QUERY = "?"

---------------------------------------------------------------------------
-- Reading
---------------------------------------------------------------------------

local function strip(s) return (s:match("^%s*(.-)%s*$")) end

--- Stories of bAbI text: a list of {line=, lines={{id=, text=, line=} or
-- {id=, text=, answer=, supports={ids}, line=}, ...}} (line: the line of
-- the file). where: the file's name in errors, which read
-- "where:LINE: what is wrong". Blank lines are skipped.
function babi.parse(text, where)
  where = where or "bAbI text"
  local stories, story, prev = {}, nil, 0
  local ln = 0
  local function bad(fmt, ...) error(string.format("%s:%d: " .. fmt, where, ln, ...), 0) end
  text = text:gsub("^\239\187\191", "") -- (a UTF-8 byte-order mark is no part of the first id)
  for raw in (text:gsub("\r\n?", "\n") .. "\n"):gmatch("([^\n]*)\n") do
    ln = ln + 1
    if raw:find("%S") then
      local id_text, rest = raw:match("^%s*(%S+)%s+(.-)%s*$")
      local id = id_text and math.tointeger(tonumber(id_text))
      if not id_text or not id or not id_text:match("^%d+$") or rest == "" then
        bad("expected 'ID text' (a line number, a space, the sentence), got '%s'", strip(raw):sub(1, 60))
      end
      if id == 1 then
        story = { line = ln, lines = {} }
        stories[#stories + 1] = story
      elseif not story then
        bad("a story starts at id 1, got %d", id)
      elseif id <= prev then
        bad("id %d does not follow id %d: ids increase within a story (1 starts a new one)", id, prev)
      end
      prev = id
      local entry = { id = id, line = ln }
      if rest:find("\t") then
        local q, answer, sup = rest:match("^([^\t]*)\t([^\t]*)\t?([^\t]*)$")
        if not q then bad("a question line is 'ID question<TAB>answer<TAB>supporting ids', got more tabs") end
        q, answer, sup = strip(q), strip(answer), strip(sup)
        if q == "" then bad("question line with an empty question") end
        if answer == "" then bad("question '%s' has an empty answer", q) end
        local supports = {}
        for s in sup:gmatch("%S+") do
          local n = s:match("^%d+$") and math.tointeger(tonumber(s))
          if not n then bad("supporting id '%s' is not a line number", s) end
          if n >= id then bad("supporting id %d is not an earlier line of the story (question id %d)", n, id) end
          supports[#supports + 1] = n
        end
        entry.text, entry.answer, entry.supports = q, answer, supports
      else
        if rest:sub(-1) == "?" then
          bad("question '%s' has no answer: a question line is 'ID question<TAB>answer<TAB>supporting ids'", rest)
        end
        entry.text = rest
      end
      story.lines[#story.lines + 1] = entry
    end
  end
  if #stories == 0 then error(string.format("%s: no story (an empty file)", where), 0) end
  return stories
end

--- The stories of a bAbI file (dm.data.read_text checks it first).
function babi.read(path, max_bytes)
  return babi.parse(dm.data.read_text(path, "bAbI file", max_bytes), path)
end

--- Samples of stories for max_seq_length T: a list of token lists, one per
-- question in file order, each with fields story (its story's number),
-- answer (the answer's tokens) and line (the question's line). opts:
-- context (the most recent statements kept, default 50; 0 keeps all),
-- where (the file, for errors). The second result counts the questions
-- whose context lost statements to T: {questions=, stories=, trimmed=}.
function babi.samples(stories, tokenize, T, opts)
  opts = opts or {}
  local cap, where = opts.context or 50, opts.where or "bAbI text"
  local samples, trimmed = {}, 0
  for si, story in ipairs(stories) do
    local ctx = {} -- token lists of the story's statements so far
    for _, e in ipairs(story.lines) do
      if not e.answer then
        -- (a trailing space: the char tokenizer keeps the gap between sentences)
        ctx[#ctx + 1] = tokenize(e.text .. " ")
      else
        local q = tokenize(e.text)
        if q[#q] ~= babi.QUERY then q[#q + 1] = babi.QUERY end
        local a = tokenize(e.answer)
        if #a == 0 then
          error(string.format("%s:%d: the answer '%s' gives no token with this tokenizer", where, e.line, e.answer), 0)
        end
        local room = T - 1 - #q - #a -- (target = tokens then <eos>: at most T)
        if room < 0 then
          error(string.format("%s:%d: the question and its answer are %d tokens, more than max_seq_length - 1 = %d "
            .. "(raise max_seq_length)", where, e.line, #q + #a, T - 1), 0)
        end
        local first = cap > 0 and math.max(1, #ctx - cap + 1) or 1
        local used, keep = 0, #ctx + 1
        for i = #ctx, first, -1 do
          if used + #ctx[i] > room then break end
          used, keep = used + #ctx[i], i
        end
        if keep > first then trimmed = trimmed + 1 end
        local toks = {}
        for i = keep, #ctx do table.move(ctx[i], 1, #ctx[i], #toks + 1, toks) end
        table.move(q, 1, #q, #toks + 1, toks)
        table.move(a, 1, #a, #toks + 1, toks)
        toks.story, toks.answer, toks.line = si, a, e.line
        samples[#samples + 1] = toks
      end
    end
  end
  if #samples == 0 then error(string.format("%s: no question line (ID question<TAB>answer<TAB>ids)", where), 0) end
  return samples, { questions = #samples, stories = #stories, trimmed = trimmed }
end

---------------------------------------------------------------------------
-- Writing
---------------------------------------------------------------------------

--- bAbI text of stories (as babi.parse returns them or babi.generate makes).
function babi.format(stories)
  local out = {}
  for _, story in ipairs(stories) do
    for _, e in ipairs(story.lines) do
      if e.answer then
        local sup = {}
        for i, s in ipairs(e.supports or {}) do sup[i] = tostring(s) end
        out[#out + 1] = string.format("%d %s \t%s\t%s", e.id, e.text, e.answer, table.concat(sup, " "))
      else
        out[#out + 1] = string.format("%d %s", e.id, e.text)
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- The cast and the verbs of the generated stories.
babi.WORDS = {
  names = { "Mary", "John", "Sandra", "Daniel", "Emma", "Oliver", "Sophia", "Liam", "Ava", "Noah" },
  places = { "kitchen", "garden", "bedroom", "bathroom", "hallway", "office", "cellar", "attic" },
  objects = { "apple", "ball", "book", "key", "cup", "hat", "lamp", "box" },
  move = { "went", "moved", "travelled", "journeyed" },
  take = { "took", "grabbed", "got", "picked up" },
  drop = { "dropped", "discarded", "left" },
  give = { "gave", "handed", "passed" },
}

local function check_int(v, name, lo)
  if math.type(v) ~= "integer" or v < lo then
    error(string.format("babi.generate: %s must be an integer >= %d, got %s", name, lo, tostring(v)), 3)
  end
end

-- One story from generator g: `questions` questions, each after 1 to
-- `events` statements. Every answer follows from the statements so far,
-- and its supports are the ids of the statements it follows from.
local function story(g, nq, nev)
  local W = babi.WORDS
  local function pick(t) return t[g:random(#t)] end
  local function sample(t, k)
    local p, out = g:randperm(#t), {}
    for i = 1, k do out[i] = t[p[i]] end
    return out
  end
  local people = sample(W.names, g:random(2, 3))
  local objects = sample(W.objects, g:random(1, 3))
  local where, where_id = {}, {}          -- person -> place, id of the move there
  local holder, hold_id = {}, {}          -- object -> person, id of the take or give
  local at, at_ids = {}, {}               -- object -> place on the floor, {drop id, dropper's move id}
  local handled, lost_id = {}, {}         -- person -> ever held an object, id of the last drop or give
  local lines, id = {}, 0
  local function say(text)
    id = id + 1
    lines[#lines + 1] = { id = id, text = text }
    return id
  end
  local function event()
    local p = pick(people)
    local r = g:random()
    if where[p] and r >= 0.4 then
      local mine, free, others = {}, {}, {}
      for _, o in ipairs(objects) do
        if holder[o] == p then
          mine[#mine + 1] = o
        elseif not holder[o] and (at[o] == nil or at[o] == where[p]) then
          free[#free + 1] = o
        end
      end
      for _, q in ipairs(people) do if q ~= p and where[q] == where[p] then others[#others + 1] = q end end
      if #mine > 0 and #others > 0 and r < 0.6 then
        local o, q = pick(mine), pick(others)
        local i = say(p .. " " .. pick(W.give) .. " the " .. o .. " to " .. q .. ".")
        holder[o], hold_id[o], handled[q], lost_id[p] = q, i, true, i
        return
      elseif #mine > 0 and r < 0.75 then
        local o = pick(mine)
        local i = say(p .. " " .. pick(W.drop) .. " the " .. o .. ".")
        holder[o], at[o], at_ids[o], lost_id[p] = nil, where[p], { where_id[p], i }, i
        return
      elseif #free > 0 then
        local o = pick(free)
        local i = say(p .. " " .. pick(W.take) .. " the " .. o .. " there.")
        holder[o], hold_id[o], at[o], handled[p] = p, i, nil, true
        return
      end
    end
    local place = pick(W.places)
    while place == where[p] do place = pick(W.places) end
    where[p], where_id[p] = place, say(p .. " " .. pick(W.move) .. " to the " .. place .. ".")
  end
  local function sorted(t) table.sort(t); return t end
  local function question()
    local located, placed, touched, carriers = {}, {}, {}, {}
    for _, p in ipairs(people) do
      if where[p] then located[#located + 1] = p end
      if handled[p] then carriers[#carriers + 1] = p end
    end
    for _, o in ipairs(objects) do
      if holder[o] or at[o] then touched[#touched + 1] = o end
      if at[o] or (holder[o] and where[holder[o]]) then placed[#placed + 1] = o end
    end
    local kinds = { "where_person" }
    if #placed > 0 then kinds[#kinds + 1] = "where_object" end
    if #touched > 0 then kinds[#kinds + 1] = "who_has" end
    if #carriers > 0 then kinds[#kinds + 1] = "carrying" end
    local k = pick(kinds)
    local q
    if k == "where_person" then
      local p = pick(located)
      q = { text = "Where is " .. p .. "?", answer = where[p], supports = { where_id[p] } }
    elseif k == "where_object" then
      local o = pick(placed)
      local h = holder[o]
      if h then
        q = { text = "Where is the " .. o .. "?", answer = where[h], supports = sorted { hold_id[o], where_id[h] } }
      else
        q = { text = "Where is the " .. o .. "?", answer = at[o], supports = sorted { at_ids[o][1], at_ids[o][2] } }
      end
    elseif k == "who_has" then
      local o = pick(touched)
      if holder[o] then
        q = { text = "Who has the " .. o .. "?", answer = holder[o], supports = { hold_id[o] } }
      else
        q = { text = "Who has the " .. o .. "?", answer = "nobody", supports = { at_ids[o][2] } }
      end
    else
      local p = pick(carriers)
      local list, sup = {}, {}
      for _, o in ipairs(objects) do
        if holder[o] == p then list[#list + 1] = o; sup[#sup + 1] = hold_id[o] end
      end
      if #list == 0 then list, sup = { "nothing" }, { lost_id[p] } end
      q = { text = "What is " .. p .. " carrying?", answer = table.concat(list, ","), supports = sorted(sup) }
    end
    id = id + 1
    q.id = id
    lines[#lines + 1] = q
  end
  event() -- (someone is somewhere before the first question)
  for i = 1, nq do
    for _ = 1, g:random(1, nev) do event() end
    question()
  end
  return { lines = lines }
end

--- Stories in the manner of bAbI tasks 1, 2, 5, 6 and 8, deterministic in
-- opts.seed: opts = {stories = 200, questions = 5 (per story), events = 3
-- (the most statements before a question), seed = 0}.
function babi.generate(opts)
  opts = opts or {}
  local n, nq, nev, seed = opts.stories or 200, opts.questions or 5, opts.events or 3, opts.seed or 0
  check_int(n, "stories", 1)
  check_int(nq, "questions", 1)
  check_int(nev, "events", 1)
  check_int(seed, "seed", 0)
  local g = dm.Generator(seed)
  local stories = {}
  for i = 1, n do stories[i] = story(g, nq, nev) end
  return stories
end

--- Writes babi.generate(opts) to path in the bAbI format (atomically);
-- returns the number of stories and of bytes.
function babi.write_stories(path, opts)
  local text = babi.format(babi.generate(opts))
  dm.log.write_file(path, text)
  return (opts and opts.stories) or 200, #text
end

return babi
