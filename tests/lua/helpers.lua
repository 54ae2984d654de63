-- helpers.lua: small pieces the busted specs share (found on LUA_PATH
-- through tests/lua/?.lua, which the Makefile sets).
local helpers = {}

--- The whole file at path, as bytes.
function helpers.slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Writes s to path, replacing it.
function helpers.spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- What a training run holds, built as scripts/train.lua builds it
-- (dm.loop.setup): st = {net, opt, sched, stopper, vocab, cfg, run}, and the data.
function helpers.setup_run(cfg, data)
  local dm = require "drlmem"
  data = data or dm.data.load(cfg)
  return dm.loop.setup(cfg, data), data
end

--- A run's metrics records without their timings (seconds, tokens/s),
-- which differ between two runs of the same computation.
function helpers.untimed(history)
  local out = {}
  for i, r in ipairs(history) do
    local c = {}
    for k, v in pairs(r) do
      if k ~= "seconds" and k ~= "train_seconds" and k ~= "tokens_per_s" and k ~= "padded_tokens_per_s" then c[k] = v end
    end
    out[i] = c
  end
  return out
end

--- The numbers of a tensor, flattened in row-major order, as a Lua array.
function helpers.flat(t)
  local out = {}
  local function walk(x)
    if type(x) == "table" then for _, v in ipairs(x) do walk(v) end else out[#out + 1] = x end
  end
  walk(t:totable())
  return out
end

--- A raw little-endian float32 fixture file (tests/fixtures/*/*.bin) as a
-- tensor, reshaped to `shape` when given.
function helpers.readbin(path, shape)
  local dm = require "drlmem"
  local s = helpers.slurp(path)
  local vals = {}
  for i = 1, #s // 4 do vals[i] = string.unpack("<f", s, 4 * (i - 1) + 1) end
  local t = dm.tensor(vals)
  return shape and t:reshape(table.unpack(shape)) or t
end

--- A fresh temporary file holding text; returns its path.
function helpers.write_tmp(text)
  local path = os.tmpname()
  helpers.spit(path, text)
  return path
end

--- The message of the error fn(...) raises (and asserts that it raises).
function helpers.err_of(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

-- Runs the training loop on st until batch `batch` of epoch `epoch`, where
-- a hook on the running thread raises "interrupted!" as the host's SIGINT
-- does; returns the loop's status ("interrupted").
function helpers.run_until_interrupted(st, data, epoch, batch)
  local main = coroutine.running()
  return require("drlmem").loop.run(st, data, { on_step = function(pos)
    if pos.epoch == epoch and pos.batch == batch then
      debug.sethook(main, function()
        debug.sethook(main)
        error("interrupted!")
      end, "", 1)
    end
  end })
end

return helpers
