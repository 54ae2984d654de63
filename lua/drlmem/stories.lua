-- stories.lua: drlmem's default training text, generated: short stories in
-- which later sentences can only be predicted by remembering earlier ones,
-- in the manner of the bAbI tasks. People move between places, take, drop
-- and hand over objects, and questions about where someone is, who has an
-- object, where an object is and what someone carries are answered from
-- those facts:
--
--   Mary went to the kitchen. John took the apple. Mary journeyed to the
--   garden. Where is Mary? Garden. Who has the apple? John.
--
-- A story stays within about 56-90 word tokens (the `word` tokenizer's
-- count), so a sample of max_seq_length 100 holds it whole; tiny stories
-- (for configs/tiny.yaml) stay under 24. Every story then goes through one
-- EDA operation or none (lua/drlmem/augment.lua). Every draw comes from
-- dm.Generator(seed), so the same seed gives the same bytes.
--
--   stories.generate{n = 4000, seed = 42, tiny = false}  -> list of lines
--   stories.write(path, opts)                             -> the file, atomically
--   stories.ensure(cfg)    makes cfg.data_path when it is missing and is one
--                          of the generated files (stories.GENERATED)
--
-- scripts/make_data.lua is the command line over this module, and the
-- training script calls stories.ensure, so both write the same bytes.
local dm = require "drlmem"

local stories = {}

local augment = require "drlmem.augment"

local NAMES = { "Mary", "John", "Sandra", "Daniel", "Emma", "Oliver", "Sophia", "Liam", "Ava", "Noah",
  "Mia", "Lucas", "Zoe", "Ethan", "Chloe", "Jack", "Lily", "Henry", "Grace", "Leo" }
local PLACES = { "kitchen", "garden", "bedroom", "bathroom", "hallway", "office", "cellar", "attic",
  "garage", "library", "park", "school" }
local OBJECTS = { "apple", "ball", "book", "key", "cup", "hat", "lamp", "box", "pen", "coin", "bag",
  "phone", "shoe", "map" }
local MOVE = { "went", "moved", "travelled", "journeyed", "walked" }
local TAKE = { "took", "grabbed", "got", "collected" }
local DROP = { "dropped", "discarded", "put down" }
local GIVE = { "gave", "handed", "passed" }
local THEN = { "Then", "Afterwards", "Later", "Next" }

local function cap(s) return (s:gsub("^%l", string.upper)) end

local word = dm.data.tokenizers.word
local function ntokens(s) return #word(s) end

-- One story as a list of sentences; lo..hi is its token budget.
local function story(g, lo, hi)
  local function pick(t) return t[g:random(#t)] end
  local function sample(t, k) -- k distinct entries
    local p, out = g:randperm(#t), {}
    for i = 1, k do out[i] = t[p[i]] end
    return out
  end
  local people = sample(NAMES, g:random(2, 3))
  local objects = sample(OBJECTS, g:random(1, 3))
  local where, holder, at = {}, {}, {} -- person -> place; object -> person; object -> place
  local sentences, budget, used = {}, g:random(lo, hi), 0
  local events, questions = 0, 0
  local function add(s)
    local n = ntokens(s)
    if used + n > budget then return false end
    sentences[#sentences + 1] = s
    used = used + n
    return true
  end
  -- Who carries what (in the order of the object list).
  local function carried(p)
    local list = {}
    for _, o in ipairs(objects) do if holder[o] == p then list[#list + 1] = "the " .. o end end
    return list
  end
  local function event()
    local p = pick(people)
    local r = g:random()
    if not where[p] or r < 0.45 then
      local place = pick(PLACES)
      local prefix = (events > 0 and g:random() < 0.25) and (pick(THEN) .. " ") or ""
      local s = prefix .. p .. " " .. pick(MOVE) .. " to the " .. place .. "."
      if add(s) then
        where[p] = place
        for _, o in ipairs(objects) do if holder[o] == p then at[o] = place end end
        return true
      end
      return false
    end
    -- object events happen where p is
    local free, mine = {}, {}
    for _, o in ipairs(objects) do
      if holder[o] == p then
        mine[#mine + 1] = o
      elseif not holder[o] and (at[o] == nil or at[o] == where[p]) then
        free[#free + 1] = o
      end
    end
    local others = {}
    for _, q in ipairs(people) do if q ~= p and where[q] == where[p] then others[#others + 1] = q end end
    if #mine > 0 and #others > 0 and r < 0.6 then
      local o, q = pick(mine), pick(others)
      if add(p .. " " .. pick(GIVE) .. " the " .. o .. " to " .. q .. ".") then holder[o] = q; return true end
    elseif #mine > 0 and r < 0.75 then
      local o = pick(mine)
      if add(p .. " " .. pick(DROP) .. " the " .. o .. ".") then
        holder[o] = nil
        at[o] = where[p]
        return true
      end
    elseif #free > 0 then
      local o = pick(free)
      if add(p .. " " .. pick(TAKE) .. " the " .. o .. " there.") then
        holder[o] = p
        at[o] = where[p]
        return true
      end
    end
    return false
  end
  local function question()
    local kinds = {}
    local known = {}
    for _, p in ipairs(people) do if where[p] then known[#known + 1] = p end end
    if #known > 0 then kinds[#kinds + 1] = "where_person"; kinds[#kinds + 1] = "carrying" end
    local placed = {}
    for _, o in ipairs(objects) do if at[o] then placed[#placed + 1] = o end end
    if #placed > 0 then kinds[#kinds + 1] = "who_has"; kinds[#kinds + 1] = "where_object" end
    if #kinds == 0 then return false end
    local k = pick(kinds)
    if k == "where_person" then
      local p = pick(known)
      return add("Where is " .. p .. "? " .. cap(where[p]) .. ".")
    elseif k == "carrying" then
      local p = pick(known)
      local list = carried(p)
      local ans = #list == 0 and "Nothing" or cap(table.concat(list, " and "))
      return add("What is " .. p .. " carrying? " .. ans .. ".")
    elseif k == "who_has" then
      local o = pick(placed)
      return add("Who has the " .. o .. "? " .. (holder[o] or "Nobody") .. ".")
    else
      local o = pick(placed)
      return add("Where is the " .. o .. "? " .. cap(at[o]) .. ".")
    end
  end
  -- everyone starts somewhere
  for _, p in ipairs(people) do
    local place = pick(PLACES)
    if add(p .. " " .. pick(MOVE) .. " to the " .. place .. ".") then where[p] = place; events = events + 1 end
  end
  local fails = 0
  while fails < 8 do
    local ok
    if events >= 2 and g:random() < 0.35 then
      ok = question()
      if ok then questions = questions + 1 end
    else
      ok = event()
      if ok then events = events + 1 end
    end
    fails = ok and 0 or fails + 1
  end
  if questions == 0 then
    -- every story asks at least one question: it may use a little more room
    budget = budget + 8
    question()
  end
  return table.concat(sentences, " ")
end

-- Weights of the EDA operation given to a story (none, sr, ri, rs, rd).
local OPS = { { "none", 40 }, { "sr", 25 }, { "ri", 15 }, { "rs", 10 }, { "rd", 10 } }
local ALPHA = 0.05

local function pick_op(g)
  local r, acc = g:random(100), 0
  for _, o in ipairs(OPS) do
    acc = acc + o[2]
    if r <= acc then return o[1] end
  end
  return "none"
end

--- The lines of n stories (opts: n, default 4000 or 400 with tiny; seed,
-- default 42; tiny: short stories for configs/tiny.yaml).
function stories.generate(opts)
  opts = opts or {}
  local tiny = opts.tiny
  local n = opts.n or (tiny and 400 or 4000)
  local seed = opts.seed or 42
  if math.type(n) ~= "integer" or n < 1 then error("stories: the number of stories must be a positive integer", 2) end
  if math.type(seed) ~= "integer" or seed < 0 then error("stories: the seed must be an integer >= 0", 2) end
  local g = dm.Generator(seed)
  -- Budgets leave room for the closing question (+8) and for EDA insertions.
  local lo, hi, limit = 56, 80, 95
  if tiny then lo, hi, limit = 12, 14, 23 end
  local lines = {}
  for i = 1, n do
    local s = story(g, lo, hi)
    local a = augment.apply(s, pick_op(g), ALPHA, g)
    if ntokens(a) > limit then a = s end
    lines[i] = a
  end
  return lines
end

--- Writes stories.generate(opts) to path (crash-safe, creating its folder);
-- returns the number of stories and of bytes.
function stories.write(path, opts)
  local lines = stories.generate(opts)
  local text = table.concat(lines, "\n") .. "\n"
  dm.log.write_file(path, text)
  return #lines, #text
end

-- Data files the training script makes on first use, with their options.
stories.GENERATED = { ["data/augmented_text_data.txt"] = {}, ["data/tiny.txt"] = { tiny = true } }

--- Makes cfg.data_path with stories.write when it is missing and is one of
-- stories.GENERATED (seed 42, as scripts/make_data.lua makes it by default);
-- returns the number of stories and bytes written, or nil when nothing was
-- made. A failed write raises "making PATH failed: REASON".
function stories.ensure(cfg)
  local path = cfg.data_path
  -- (a stat, not an open: opening a FIFO to see whether it exists blocks)
  if require("lfs").attributes(path) then return nil end
  local opts = stories.GENERATED[path]
  if not opts then return nil end
  local ok, n, bytes = pcall(stories.write, path, { tiny = opts.tiny, seed = 42 })
  if not ok then error(string.format("making %s failed: %s", path, tostring(n)), 0) end
  return n, bytes
end

return stories
