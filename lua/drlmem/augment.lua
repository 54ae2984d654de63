-- augment.lua: EDA text augmentation (Wei and Zou, 2019, "EDA: Easy Data
-- Augmentation Techniques for Boosting Performance on Text Classification").
--
-- Four operations on the words of a line, each drawing from a dm.Generator so
-- that a seed fixes the output byte for byte:
--   sr  synonym replacement: n distinct words that have synonyms (stop words
--       excluded) are replaced, every occurrence, by a random synonym;
--   ri  random insertion: n times, a random synonym of a random word is
--       inserted before a random word;
--   rs  random swap: n times, two random words trade places;
--   rd  random deletion: each word is deleted with probability alpha (one
--       random word survives when all would go).
-- n = max(1, floor(alpha * number of words)), as in EDA. Punctuation marks
-- (. , ? ! ; :) are kept out of the operations and stay attached to the word
-- before them, so sentence boundaries survive. The synonym table is small
-- and built in; augment.add_synonyms{...} extends it with a group of words
-- that may replace one another.
local dm = require "drlmem"

local augment = {}

augment.synonyms = {} -- word -> array of synonyms (deterministic order)

--- Adds a group of interchangeable words (or short phrases).
function augment.add_synonyms(group)
  for _, w in ipairs(group) do
    local list = augment.synonyms[w] or {}
    for _, s in ipairs(group) do
      if s ~= w then
        local dup = false
        for _, e in ipairs(list) do if e == s then dup = true end end
        if not dup then list[#list + 1] = s end
      end
    end
    augment.synonyms[w] = list
  end
end

-- Verbs and connectives of the generated stories (names, places and objects
-- have no synonyms, so the answers stay true), then common English words for
-- text a user brings.
for _, g in ipairs {
  { "went", "moved", "travelled", "journeyed", "walked" },
  { "took", "grabbed", "got", "collected" },
  { "dropped", "discarded", "put down" },
  { "gave", "handed", "passed" },
  { "then", "afterwards", "later", "next" },
  { "carrying", "holding" },
  { "quickly", "swiftly", "rapidly" },
  { "slowly", "leisurely" },
  { "big", "large", "huge" },
  { "small", "little", "tiny" },
  { "happy", "glad", "cheerful" },
  { "sad", "unhappy", "gloomy" },
  { "said", "stated", "remarked" },
  { "asked", "inquired", "wondered" },
  { "good", "fine", "nice" },
  { "bad", "poor", "awful" },
  { "begin", "start" },
  { "end", "finish" },
  { "look", "see", "watch" },
  { "old", "aged", "ancient" },
  { "new", "fresh", "recent" },
  { "help", "aid", "assist" },
  { "answer", "reply", "response" },
  { "shout", "yell", "cry" },
  { "road", "street", "path" },
  { "child", "kid" },
  { "fast", "quick", "speedy" },
  { "often", "frequently" },
  { "very", "really", "truly" },
} do augment.add_synonyms(g) end

augment.stopwords = {}
for w in ([[a an the is are was were be been to of in on at by for with and or but
  he she it they we you i his her its their our your this that these those who what
  where when which how not no yes do does did has have had]]):gmatch("%S+") do
  augment.stopwords[w] = true
end

local PUNCT = "[%.,%?!;:]"

--- Splits a line into items {text=, punct=bool}: whitespace-separated words
-- with trailing punctuation split off.
function augment.split(line)
  local items = {}
  for w in line:gmatch("%S+") do
    local core, tail = w:match("^(.-)(" .. PUNCT .. "*)$")
    if core ~= "" then items[#items + 1] = { text = core, punct = false } end
    for p in tail:gmatch(".") do items[#items + 1] = { text = p, punct = true } end
  end
  return items
end

--- Joins items back into a line (punctuation attached to the word before).
function augment.join(items)
  local out = {}
  for _, it in ipairs(items) do
    if it.punct and #out > 0 then
      out[#out] = out[#out] .. it.text
    else
      out[#out + 1] = it.text
    end
  end
  return table.concat(out, " ")
end

local function word_positions(items)
  local pos = {}
  for i, it in ipairs(items) do if not it.punct then pos[#pos + 1] = i end end
  return pos
end

-- The synonyms of a word, matched lower-case.
local function synonyms_of(text)
  return augment.synonyms[text:lower()]
end

-- A synonym with the capital of the word it replaces.
local function cased(syn, like)
  if like:match("^%u") then return (syn:gsub("^%l", string.upper)) end
  return syn
end

--- Synonym replacement of n distinct words.
function augment.sr(items, n, g)
  local cand, seen = {}, {}
  for _, i in ipairs(word_positions(items)) do
    local w = items[i].text:lower()
    if not seen[w] and not augment.stopwords[w] and augment.synonyms[w] then
      seen[w] = true
      cand[#cand + 1] = w
    end
  end
  local done = 0
  if #cand > 0 then
    local order = g:randperm(#cand)
    for k = 1, #cand do
      if done >= n then break end
      local w = cand[order[k]]
      local syns = augment.synonyms[w]
      local s = syns[g:random(#syns)]
      for _, it in ipairs(items) do
        if not it.punct and it.text:lower() == w then it.text = cased(s, it.text) end
      end
      done = done + 1
    end
  end
  return items
end

--- Random insertion, n times.
function augment.ri(items, n, g)
  for _ = 1, n do
    local pos = word_positions(items)
    if #pos == 0 then break end
    local syns
    for _ = 1, 10 do
      syns = synonyms_of(items[pos[g:random(#pos)]].text)
      if syns then break end
    end
    if syns then
      local s = syns[g:random(#syns)]
      local at = pos[g:random(#pos)]
      table.insert(items, at, { text = s, punct = false })
    end
  end
  return items
end

--- Random swap, n times.
function augment.rs(items, n, g)
  local pos = word_positions(items)
  if #pos < 2 then return items end
  for _ = 1, n do
    local a = pos[g:random(#pos)]
    local b = a
    for _ = 1, 3 do
      if b ~= a then break end
      b = pos[g:random(#pos)]
    end
    items[a].text, items[b].text = items[b].text, items[a].text
  end
  return items
end

--- Random deletion with probability p per word.
function augment.rd(items, p, g)
  local pos = word_positions(items)
  if #pos <= 1 then return items end
  local out, kept = {}, 0
  for _, it in ipairs(items) do
    if it.punct or g:random() > p then
      out[#out + 1] = it
      if not it.punct then kept = kept + 1 end
    end
  end
  if kept == 0 then
    local keep = pos[g:random(#pos)]
    out = {}
    for i, it in ipairs(items) do if it.punct or i == keep then out[#out + 1] = it end end
  end
  return out
end

augment.ops = { "sr", "ri", "rs", "rd" }

--- Applies one operation ("sr", "ri", "rs", "rd" or "none") to line.
function augment.apply(line, op, alpha, g)
  if op == "none" then return line end
  local items = augment.split(line)
  local nwords = #word_positions(items)
  local n = math.max(1, math.floor(alpha * nwords))
  if op == "rd" then
    items = augment.rd(items, alpha, g)
  elseif op == "sr" or op == "ri" or op == "rs" then
    items = augment[op](items, n, g)
  else
    error("augment: unknown operation '" .. tostring(op) .. "' (sr|ri|rs|rd|none)", 2)
  end
  return augment.join(items)
end

--- EDA of one line: `copies` augmented lines, the operations taking turns
-- (sr, ri, rs, rd, sr, ...) from a random start, as EDA spreads num_aug over
-- its four techniques. g: a dm.Generator.
function augment.eda(line, g, opts)
  opts = opts or {}
  local alpha, copies = opts.alpha or 0.1, opts.copies or 4
  local out = {}
  local start = g:random(4)
  for c = 1, copies do
    local op = augment.ops[(start + c - 2) % 4 + 1]
    out[c] = augment.apply(line, op, alpha, g)
  end
  return out
end

--- A generator from a seed (or the generator itself).
function augment.generator(seed_or_gen)
  if type(seed_or_gen) == "number" then return dm.Generator(seed_or_gen) end
  return seed_or_gen
end

return augment
