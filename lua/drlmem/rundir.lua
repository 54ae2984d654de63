-- rundir.lua: a training run's claim on its output folders (save_path and
-- the folder of log_file), before any training:
--
--   local claim = rundir.claim(cfg, {resume = path_or_nil, overwrite = bool})
--
-- 1. Each folder is created and locked (flock on `.drlmem-train.lock`, which
--    holds the pid): a second run on the same folder stops at once with one
--    line naming the folder and the other run's pid. The kernel drops the
--    lock when its process dies, also by kill -9, so a stale lock file never
--    blocks a new run.
-- 2. Each folder is written to once (a probe file), so an unwritable folder
--    is found now and not after the first epoch.
-- 3. Temporaries of killed writes (`NAME.tmp.PID`, fileio's pattern, for the
--    files a run writes) whose process is gone are removed.
-- 4. A folder that holds an earlier run's results is refused unless the
--    run resumes (--resume) or replaces them (--overwrite, which removes
--    that run's checkpoints, log, metrics and figure first), so no run
--    silently overwrites another.
local dm = require "drlmem"
local lfs = require "lfs"
local log = require "drlmem.log"

-- The entries of a folder (without . and ..).
local function entries(dir)
  local out = {}
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." then out[#out + 1] = name end
  end
  return out
end

local rundir = {}

rundir.LOCK = ".drlmem-train.lock"

-- The files a run writes in save_path (patterns) and beside log_file.
local MODEL_FILES = { "^last%.safetensors$", "^memory_model%.safetensors$", "^memory_model_epoch_%d+%.safetensors$" }
local LOG_FILES = { "^metrics%.jsonl$", "^training%.svg$" }

local function matches(name, patterns)
  for _, p in ipairs(patterns) do if name:match(p) then return true end end
  return false
end

local function norm(dir)
  dir = (dir:gsub("/+$", ""))
  return dir == "" and "." or dir
end

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

--- Claims the output folders of cfg (see the top of this file). opts:
-- resume (the checkpoint a resumed run starts from, or nil), overwrite.
-- Returns {locks = {...} (keep them referenced for the run's life), dirs,
-- removed = temporaries removed}. Raises one line on a refusal.
function rundir.claim(cfg, opts)
  opts = opts or {}
  local save_dir, log_dir = norm(cfg.save_path), norm(log.dirname(cfg.log_file))
  local log_name = cfg.log_file:match("([^/]*)$")
  local dirs = { save_dir }
  if log_dir ~= save_dir then dirs[2] = log_dir end
  local claim = { locks = {}, dirs = dirs, removed = {} }
  local me = dm.getpid()
  for _, dir in ipairs(dirs) do
    log.mkdir_p(dir)
    local probe = log.join(dir, ".drlmem-write-test")
    local ok, err = pcall(dm.write_file, probe, "")
    if not ok then
      error(string.format("cannot write in folder '%s': %s", dir, tostring(err):match(": ([^:]*)$") or tostring(err)), 0)
    end
    os.remove(probe)
    local lock, holder = dm.lock_file(log.join(dir, rundir.LOCK))
    if not lock then
      error(string.format("'%s' is in use by another training run (pid %s); wait for it to end, or give this "
        .. "run another save_path and log_file", dir, holder and holder > 0 and tostring(holder) or "unknown"), 0)
    end
    claim.locks[#claim.locks + 1] = lock
    local ours = dir == save_dir and MODEL_FILES or {}
    local function our_file(name)
      return matches(name, ours) or (dir == log_dir and (matches(name, LOG_FILES) or name == log_name))
    end
    for _, name in ipairs(entries(dir)) do
      local base, pid = name:match("^(.+)%.tmp%.(%d+)$")
      pid = pid and math.tointeger(tonumber(pid))
      if base and pid and our_file(base) and pid ~= me and not dm.pid_alive(pid) then
        if os.remove(log.join(dir, name)) then claim.removed[#claim.removed + 1] = log.join(dir, name) end
      end
    end
    if not opts.resume then
      local found = {}
      for _, name in ipairs(entries(dir)) do
        if our_file(name) and (size_of(log.join(dir, name)) or 0) > 0 then found[#found + 1] = name end
      end
      table.sort(found)
      if #found > 0 and not opts.overwrite then
        local last = log.join(save_dir, "last.safetensors")
        error(string.format("'%s' already holds the results of an earlier run (%s): continue it with --resume %s, "
          .. "replace it with --overwrite, or give this run another save_path and log_file", dir,
          table.concat(found, ", "), last), 0)
      end
      for _, name in ipairs(found) do os.remove(log.join(dir, name)) end
    end
  end
  return claim
end

--- Releases the locks of a claim (the end of the process does it too).
function rundir.release(claim)
  for _, l in ipairs(claim.locks) do l:release() end
end

return rundir
