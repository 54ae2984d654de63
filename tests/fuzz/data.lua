-- data.lua (fuzz target): the data reader. The input is a data file, read
-- by dm.data.load in lines mode and in stream mode (word tokenizer, the
-- input's first byte picks char or upstream instead); it either gives
-- splits whose batches hold ids inside the vocabulary, or refuses the file
-- with a clean message.
package.path = "tests/fuzz/?.lua;" .. package.path
local common = require "common"
local dm = require "drlmem"

local TOKENIZERS = {"word", "char", "upstream"}

return function(bytes)
  common.write(bytes)
  local tok = TOKENIZERS[(bytes:byte(1) or 0) % 3 + 1]
  for _, mode in ipairs {"lines", "stream"} do
    local cfg = dm.config.load(nil, {data_path = common.path, max_seq_length = 8, sample_mode = mode,
                                     tokenizer = tok, seed = 1})
    local ok, d = pcall(dm.data.load, cfg)
    if not common.refused("data.load", ok, d) then
      local V = d.vocab.size
      for _, split in ipairs {d.train, d.val, d.test} do
        for x, y in split:batches(4) do
          for _, t in ipairs {x, y} do
            for _, row in ipairs(t:totable()) do
              for _, id in ipairs(row) do
                if id < 0 or id >= V then
                  error("data.load: a batch holds id " .. id .. ", outside the vocabulary of " .. V, 0)
                end
              end
            end
          end
        end
      end
    end
  end
end
