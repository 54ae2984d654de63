-- progress.lua: the per-epoch progress display of the training scripts, and
-- a wall clock.
--
-- On a terminal a bar is redrawn in place with \r (batch i/n, running loss,
-- tokens/s, elapsed and ETA), kept shorter than the terminal's width so it
-- never wraps; when stdout is a file or a pipe, plain lines
-- are printed at most every tenth of the epoch and every few seconds, and
-- always at its end, so a log stays readable. Mode "none" prints nothing.
--
--   local bar = progress.new{total = n, label = "epoch 3/50", mode = progress.default_mode()}
--   bar:update(i, {loss = running_loss, tokens = tokens_so_far})
--   bar:finish()
--
-- progress.now() is dm.clock() (a monotonic wall clock). Without it (an
-- older build), Lua has no wall clock finer than os.time()'s second and
-- os.clock() is CPU time (larger than wall time when OpenBLAS runs
-- threads), so it reads Linux's /proc/uptime (10 ms steps), else os.clock().
local dm = require "drlmem"

local progress = {}

local uptime_ok = true

--- Wall-clock seconds from an arbitrary origin (monotonic on Linux).
function progress.now()
  if dm.clock then return dm.clock() end
  if uptime_ok then
    local f = io.open("/proc/uptime", "r")
    if f then
      local t = f:read("n")
      f:close()
      if t then return t end
    end
    uptime_ok = false
  end
  return os.clock()
end

local is_tty_cache
--- Whether stdout is a terminal (dm.isatty, or test(1), which inherits
-- our stdout).
function progress.stdout_is_tty()
  if dm.isatty then return dm.isatty("stdout") end
  if is_tty_cache == nil then
    local ok = os.execute("test -t 1")
    is_tty_cache = ok == true or ok == 0
  end
  return is_tty_cache
end

--- "bar" on a terminal (and TERM not "dumb"), otherwise "plain".
function progress.default_mode()
  local term = os.getenv("TERM")
  if progress.stdout_is_tty() and term and term ~= "" and term ~= "dumb" then return "bar" end
  return "plain"
end

--- The width of the terminal on stdout (dm.term_width: the terminal, else
-- $COLUMNS), else 80.
function progress.columns()
  local w = dm.term_width and dm.term_width("stdout")
  if not w then w = tonumber(os.getenv("COLUMNS") or "") end
  if not w or w < 1 then w = 80 end
  return math.floor(w)
end

--- "1:02:03", "02:03" for a number of seconds; "--:--" when unknown.
function progress.hms(s)
  if not s or s ~= s or s == math.huge or s < 0 then return "--:--" end
  s = math.floor(s + 0.5)
  local h, m, sec = s // 3600, (s // 60) % 60, s % 60
  if h > 0 then return string.format("%d:%02d:%02d", h, m, sec) end
  return string.format("%02d:%02d", m, sec)
end

local function rate(tokens, dt)
  if not tokens or dt <= 0 then return "" end
  local r = tokens / dt
  if r >= 1e4 then return string.format(" %.1fk tok/s", r / 1000) end
  return string.format(" %.0f tok/s", r)
end

local Bar = {}
Bar.__index = Bar
Bar.__name = "drlmem.Progress"

-- The bar whose line is drawn but not finished (the one a signal's message
-- must not be glued to).
local open_bar

--- Finishes the line of a bar left half-drawn (a run stopped mid-epoch),
-- so that what is printed next starts on its own line; returns whether
-- there was one.
function progress.end_line()
  if not open_bar then return false end
  open_bar:finish()
  return true
end

--- A progress display. opts: total (batches), label, mode ("bar" | "plain"
-- | "none", default progress.default_mode()), out (io.stdout), width (bar
-- cells at most, 24), columns (the terminal's width, a number or a function
-- returning one, default progress.columns, asked at each redraw), lines (plain mode: at most this many lines per epoch, 10),
-- min_interval (plain mode: seconds between two lines, 5; the last batch
-- always prints), clock (a function returning seconds, progress.now).
function progress.new(opts)
  local self = setmetatable({
    total = opts.total or 0,
    label = opts.label or "",
    mode = opts.mode or progress.default_mode(),
    out = opts.out or io.stdout,
    width = opts.width or 24,
    columns = opts.columns or progress.columns,
    clock = opts.clock or progress.now,
    last_draw = -math.huge,
    last_len = 0,
    done = 0,
    -- batches already done when the bar starts (a resumed epoch): the ETA
    -- is timed on the batches of this run only
    first = opts.first or 0,
    min_interval = opts.min_interval or 5,
  }, Bar)
  assert(self.mode == "bar" or self.mode == "plain" or self.mode == "none",
    "progress: mode must be bar, plain or none, got " .. tostring(self.mode))
  self.every = math.max(1, (self.total + (opts.lines or 10) - 1) // (opts.lines or 10))
  self.start = self.clock()
  return self
end

--- The columns a bar line may take: the terminal's width less one.
function Bar:room()
  local cols = type(self.columns) == "function" and self.columns() or self.columns
  return math.max(1, math.floor(tonumber(cols) or 80) - 1)
end

--- The status text for i of total batches done (no \r, no newline).
function Bar:text(i, info)
  info = info or {}
  local elapsed = self.clock() - self.start
  local eta = i > self.first and elapsed / (i - self.first) * (self.total - i) or nil
  local loss = info.loss and string.format(" loss %.4f", info.loss) or ""
  local head = self.label ~= "" and (self.label .. " ") or ""
  if self.mode == "bar" then
    -- The line must stay shorter than the terminal: one that reaches the
    -- last column wraps, and every \r redraw then leaves a line behind. In a
    -- narrow terminal the rate goes first, then the times, then the loss,
    -- while the bar keeps at least 8 cells; then the bar goes, and what
    -- still does not fit is cut.
    local room = self:room()
    local count = string.format(" %d/%d", i, self.total)
    local tok, el, left = rate(info.tokens, elapsed), progress.hms(elapsed), progress.hms(eta)
    local tails = {
      count .. loss .. tok .. " " .. el .. "<" .. left,
      count .. loss .. " " .. el .. "<" .. left,
      count .. loss,
      count,
    }
    local frac = self.total > 0 and i / self.total or 0
    for _, tail in ipairs(tails) do
      local cells = math.min(self.width, room - #head - #tail - 2)
      if cells >= math.min(8, self.width) then
        local full = math.floor(frac * cells + 1e-9)
        return string.format("%s[%s]%s", head, string.rep("#", full) .. string.rep(".", cells - full), tail)
      end
    end
    for _, tail in ipairs(tails) do
      if #head + #tail - 1 <= room then return head .. tail:sub(2) end
    end
    return (head .. count:sub(2)):sub(1, room)
  end
  return string.format("%sbatch %d/%d%s%s elapsed %s eta %s", head, i, self.total, loss,
    rate(info.tokens, elapsed), progress.hms(elapsed), progress.hms(eta))
end

--- Records that i batches are done; redraws (bar, at most every 0.1 s and
-- on the last batch) or prints a line (plain, every total/lines batches).
function Bar:update(i, info)
  self.done = i
  if self.mode == "none" then return end
  if self.mode == "bar" then
    local t = self.clock()
    if t - self.last_draw < 0.1 and i < self.total then return end
    self.last_draw = t
    local s = self:text(i, info)
    -- blanks over the rest of a longer previous line, within the width
    local pad = math.max(0, math.min(self.last_len, self:room()) - #s)
    self.out:write("\r", s, string.rep(" ", pad))
    self.last_len = #s
    open_bar = self
    self.out:flush()
  elseif i == self.total or (i % self.every == 0 and self.clock() - self.last_draw >= self.min_interval) then
    self.last_draw = self.clock()
    self.out:write(self:text(i, info), "\n")
    self.out:flush()
  end
end

--- Ends the display: the bar's line is finished with a newline (or cleared
-- when clear is true).
function Bar:finish(clear)
  if open_bar == self then open_bar = nil end
  if self.mode == "bar" and self.last_len > 0 then
    if clear then
      self.out:write("\r", string.rep(" ", self.last_len), "\r")
    else
      self.out:write("\n")
    end
    self.out:flush()
    self.last_len = 0
  end
end

return progress
