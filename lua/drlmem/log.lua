-- log.lua: the outputs of a training run beside cfg.log_file: the human log
-- (timestamped lines, also echoed to the terminal) and metrics.jsonl (one
-- JSON object per epoch, written with dm.json so any tool can read it).
--
--   local lg = dm.log.open(cfg.log_file)             -- creates the folder
--   lg:info("vocab %d tokens", n)                     -- log file + stdout
--   lg:metrics{epoch = 1, train_loss = 2.3, ...}      -- metrics.jsonl line
--   lg:close()
--
-- Every line is flushed at once, so a run stopped by Ctrl-C or a crash
-- leaves a complete log up to that point. A resumed run rewrites
-- metrics.jsonl with the epochs its checkpoint knows (lg:reset_metrics),
-- drops from the log the epoch lines of epochs the checkpoint does not know
-- (log.reconcile: a run killed after logging an epoch but before its
-- checkpoint was on disk trains that epoch again), then appends, so
-- neither file ever holds an epoch twice. log.record makes a record fit
-- for JSON and log.describe_epoch is an epoch's line.
local dm = require "drlmem"
local lfs = require "lfs"

local log = {}

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
log.shell_quote = shell_quote

--- The folder part of a path ("." when there is none).
function log.dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

--- Joins a folder and a file name with exactly one slash.
function log.join(dir, name)
  if dir == "" or dir == "." then return name end
  return (dir:gsub("/+$", "")) .. "/" .. name
end

--- Creates a folder and its parents (mkdir -p, through lua-filesystem: a
-- shell's `mkdir -p` would go through system(3), which ignores SIGINT
-- while its child runs, so a Ctrl-C then would be lost); raises
-- "cannot create folder 'DIR': REASON".
function log.mkdir_p(dir)
  if dir == "" or dir == "." or dir == "/" then return end
  local prefix = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    prefix = prefix .. part
    local mode = lfs.attributes(prefix, "mode")
    if mode == nil then
      local ok, err = lfs.mkdir(prefix)
      if not ok and lfs.attributes(prefix, "mode") ~= "directory" then
        error(string.format("cannot create folder '%s': %s", dir, tostring(err)), 0)
      end
    elseif mode ~= "directory" then
      error(string.format("cannot create folder '%s': %s is not a folder", dir, prefix), 0)
    end
    prefix = prefix .. "/"
  end
end

--- Writes text to path, creating its folder (mkdir -p): crash-safe (a
-- temporary, fsync, then a rename over path, through dm.write_file), so a
-- full disk or a kill leaves the previous file intact and raises
-- "write PATH: REASON" instead of leaving half a file under the final name.
function log.write_file(path, text)
  if type(path) ~= "string" or path == "" then error("write_file: path must be a non-empty string", 2) end
  if type(text) ~= "string" then error("write_file: text must be a string", 2) end
  log.mkdir_p(log.dirname(path))
  dm.write_file(path, text)
  return path
end

--- The metrics.jsonl path beside a log file.
function log.metrics_path(log_file) return log.join(log.dirname(log_file), "metrics.jsonl") end

--- Reads a metrics.jsonl file: a list of records, or nil and a message
-- naming the file and line of the first line that does not parse.
function log.read_metrics(path)
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local out, n = {}, 0
  for line in f:lines() do
    n = n + 1
    if line:find("%S") then
      local ok, rec = pcall(dm.json.decode, line, path .. ":" .. n)
      if not ok then
        f:close()
        return nil, string.format("%s:%d: %s", path, n, tostring(rec))
      end
      out[#out + 1] = rec
    end
  end
  f:close()
  return out
end

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

--- A metrics record fit for JSON: non-finite numbers become null.
function log.record(t)
  local out = {}
  for k, v in pairs(t) do
    if type(v) == "number" and not finite(v) then v = dm.json.null end
    out[k] = v
  end
  return out
end

local function f4(v) return type(v) == "number" and string.format("%.4f", v) or "nan" end

--- One log line for a metrics record (tok/s: non-pad target tokens).
function log.describe_epoch(r, epochs)
  return string.format("epoch %d/%d: train %s  val %s  test %s  ppl %s  acc %s  f1w %s  f1m %s  lr %.6g  "
    .. "%.1fs (train %.1fs, %.0f tok/s)%s%s", r.epoch, epochs, f4(r.train_loss), f4(r.val_loss),
    f4(r.test_loss), type(r.test_ppl) == "number" and string.format("%.2f", r.test_ppl) or "nan",
    f4(r.test_acc), f4(r.test_f1_weighted), f4(r.test_f1_macro), r.lr, r.seconds, r.train_seconds,
    type(r.tokens_per_s) == "number" and r.tokens_per_s or 0, r.improved and "  *best*" or "",
    r.early_stop and "  (early stop)" or "") .. log.describe_extras(r)
end

--- The optional parts of an epoch's log line: answer accuracy (task
-- data) and the write policy's statistics (reinforce).
function log.describe_extras(r)
  local parts = {}
  if r.test_answer_acc ~= nil then parts[#parts + 1] = "answer acc " .. f4(r.test_answer_acc) end
  if r.write_rate ~= nil then
    parts[#parts + 1] = string.format("writes: rate %s entropy %s reward %s advantage %s baseline %s "
      .. "slots %s eval rate %s", f4(r.write_rate), f4(r.policy_entropy), f4(r.mean_reward),
      f4(r.mean_advantage), f4(r.baseline_loss), f4(r.slot_usage), f4(r.test_write_rate))
  end
  if #parts == 0 then return "" end
  return "  " .. table.concat(parts, "; ")
end

-- The epoch of a log file's epoch line ("<stamp> epoch K/N: ..."), or nil.
local function epoch_of_line(line)
  return tonumber(line:match("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d epoch (%d+)/%d+: "))
end

--- Makes the log at path agree with a checkpoint that knows the epochs of
-- history (a resume): epoch lines of later epochs and repeated epoch lines
-- are dropped, and the lines of known epochs the log lacks (a run killed
-- between its checkpoint and its log line) are added at the end, from the
-- records. The rewrite is atomic; a missing log is left missing. Returns
-- the numbers of lines dropped and added.
function log.reconcile(path, history, epochs)
  local f = io.open(path, "r")
  if not f then return 0, 0 end
  local text = f:read("a")
  f:close()
  local keep, seen, dropped = {}, {}, 0
  for line in text:gmatch("[^\n]*") do
    if line ~= "" then
      local e = epoch_of_line(line)
      if e and (e > #history or seen[e]) then
        dropped = dropped + 1
      else
        if e then seen[e] = true end
        keep[#keep + 1] = line
      end
    end
  end
  local added = 0
  for e, r in ipairs(history) do
    if not seen[e] then
      keep[#keep + 1] = os.date("%Y-%m-%d %H:%M:%S") .. " " .. log.describe_epoch(r, epochs)
      added = added + 1
    end
  end
  if dropped > 0 or added > 0 then log.write_file(path, table.concat(keep, "\n") .. "\n") end
  return dropped, added
end

local Logger = {}
Logger.__index = Logger
Logger.__name = "drlmem.Log"

--- Opens the log. opts: append (false: start a new file), echo (a file to
-- echo messages to, default io.stdout; false for none), metrics (path of
-- metrics.jsonl, default beside the log).
function log.open(path, opts)
  opts = opts or {}
  log.mkdir_p(log.dirname(path))
  local f, err = io.open(path, opts.append and "a" or "w")
  if not f then error(string.format("cannot open log file '%s': %s", path, tostring(err)), 0) end
  local self = setmetatable({
    path = path,
    file = f,
    echo = opts.echo == nil and io.stdout or opts.echo,
    metrics_file = opts.metrics or log.metrics_path(path),
  }, Logger)
  if not opts.append then self:reset_metrics({}) end
  return self
end

--- Writes one message (string.format arguments) to the log with a
-- timestamp, and to the echo file without one. Multi-line messages keep
-- the timestamp on every line.
function Logger:info(fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  local stamp = os.date("%Y-%m-%d %H:%M:%S")
  for line in (msg .. "\n"):gmatch("(.-)\n") do
    self.file:write(stamp, " ", line, "\n")
  end
  self.file:flush()
  if self.echo then
    self.echo:write(msg, "\n")
    self.echo:flush()
  end
end

--- Writes to the log and to stderr (for what stops a run).
function Logger:warn(fmt, ...)
  local echo = self.echo
  self.echo = io.stderr
  self:info(fmt, ...)
  self.echo = echo
end

--- Writes to the log only (not echoed).
function Logger:quiet(fmt, ...)
  local echo = self.echo
  self.echo = false
  self:info(fmt, ...)
  self.echo = echo
end

--- Appends one record to metrics.jsonl (a line of compact JSON).
-- A full disk shows at write or at close (buffered): both are checked.
function Logger:metrics(record)
  local f, err = io.open(self.metrics_file, "a")
  if not f then error(string.format("cannot write '%s': %s", self.metrics_file, tostring(err)), 0) end
  local ok, werr = f:write(dm.json.encode(record), "\n")
  local closed, cerr = f:close()
  if not (ok and closed) then
    error(string.format("cannot write '%s': %s", self.metrics_file, tostring(werr or cerr)), 0)
  end
end

--- Rewrites metrics.jsonl with exactly these records (atomically: a failed
-- rewrite leaves the old file).
function Logger:reset_metrics(records)
  local lines = {}
  for i, r in ipairs(records) do lines[i] = dm.json.encode(r) .. "\n" end
  log.write_file(self.metrics_file, table.concat(lines))
end

function Logger:close()
  if self.file then
    self.file:close()
    self.file = nil
  end
end
Logger.__close = Logger.close
Logger.__gc = Logger.close

return log
