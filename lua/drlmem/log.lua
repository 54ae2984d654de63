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
-- leaves a complete log up to that point. A resumed run opens the log in
-- append mode and rewrites metrics.jsonl with the epochs its checkpoint
-- knows (lg:reset_metrics), so the file never holds an epoch twice.
local dm = require "drlmem"

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

--- Creates a folder and its parents (mkdir -p); raises naming it on failure.
function log.mkdir_p(dir)
  if dir == "" or dir == "." or dir == "/" then return end
  local ok = os.execute("mkdir -p " .. shell_quote(dir) .. " 2>/dev/null")
  if not (ok == true or ok == 0) then error(string.format("cannot create folder '%s'", dir), 0) end
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
