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

--- What a training run holds, built as scripts/train.lua builds it:
-- st = {net, opt, sched, stopper, vocab, cfg, run}, and the data.
function helpers.setup_run(cfg, data)
  local dm = require "drlmem"
  local train = dm.train
  data = data or dm.data.load(cfg)
  dm.manual_seed(cfg.seed)
  local net = dm.Controller(train.model_config(cfg, data.vocab.size))
  local opt = train.optimizer(net, cfg)
  local st = { net = net, opt = opt, sched = train.scheduler(opt, cfg), stopper = train.EarlyStopping(cfg.patience),
    vocab = data.vocab, cfg = cfg, run = { epoch = 1, batch = 0, history = {} } }
  return st, data
end

return helpers
