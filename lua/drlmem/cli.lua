-- cli.lua: the command line every drlmem script shares.
--
-- A thin layer over lua-argparse (Debian's lua-argparse, `require "argparse"`):
-- each script gets --config PATH, --set key=value (repeatable, typed by the
-- config schema) and --help, adds its own options, and receives the parsed
-- arguments and the loaded config:
--
--   local args, cfg = dm.cli.parse{
--     name = "train.lua", description = "Trains DRLMemNet.",
--     options = function(p) p:option("--resume", "Checkpoint to resume from.") end,
--   }
--
-- Without --config the schema's defaults apply (they are configs/default.yaml).
-- A bad option or config is printed to stderr with the usage line, and the
-- script exits with status 2. cli.try_parse does the same work but returns
-- nil, message, usage instead of exiting (for tests and embedding).
local dm = require "drlmem"
local argparse = require "argparse"

local cli = {}

--- The argparse parser with the shared options. spec: name, description,
-- epilog, options = function(parser), config = false to leave out --config
-- and --set (a script that needs no config).
function cli.parser(spec)
  local p = argparse(spec.name or (arg and arg[0]) or "drlmem", spec.description)
  if spec.epilog then p:epilog(spec.epilog) end
  if spec.config ~= false then
    p:option("--config", "YAML configuration file (default: the built-in defaults, as configs/default.yaml).")
      :argname("<path>")
    p:option("--set", "Override one config key, e.g. --set batch_size=8 (repeatable).")
      :argname("<key=value>"):count("*")
  end
  if spec.options then spec.options(p) end
  return p
end

-- argparse reads any word that starts with "-" as an option, so in
-- `--temperature -1` the value would be "unknown option '-1'" and the
-- script's own range check, with its clear message, would never run. Rewrites
-- "--opt NUMBER" as "--opt=NUMBER" when --opt takes a value and NUMBER is a
-- negative number (which can never be an option name); words after "--" are
-- left alone. The option table is argparse's own (_options, _aliases,
-- _maxargs): a parser without them is passed through unchanged.
local function attach_negative_values(p, argv)
  local takes_value = {}
  for _, o in ipairs(p._options or {}) do
    for _, alias in ipairs(o._aliases or {}) do
      if (o._maxargs or 0) >= 1 then takes_value[alias] = true end
    end
  end
  local out, i = {}, 1
  while argv[i] ~= nil do
    local a, nxt = argv[i], argv[i + 1]
    if a == "--" then
      table.move(argv, i, #argv, #out + 1, out)
      break
    end
    if takes_value[a] and type(nxt) == "string" and nxt:match("^%-[%d.]") and tonumber(nxt) then
      out[#out + 1] = a .. "=" .. nxt
      i = i + 2
    else
      out[#out + 1] = a
      i = i + 1
    end
  end
  return out
end

--- Parses argv (default: the script's arg) and loads the config.
-- Returns args, cfg, or nil, message, usage on an error (usage is nil for
-- a config error: only a command-line mistake shows the usage).
function cli.try_parse(spec)
  local p = cli.parser(spec)
  local argv = spec.argv
  if not argv then
    argv = {}
    for i = 1, #(arg or {}) do argv[i] = arg[i] end
  end
  local ok, args = p:pparse(attach_negative_values(p, argv))
  if not ok then return nil, args, p:get_usage() end
  if spec.config == false then return args, nil end
  local loaded, cfg = pcall(dm.config.load, args.config, args.set or {})
  -- A bad config value is not a misuse of the command line: no usage text,
  -- so the one line naming file, line and key is all the user reads.
  if not loaded then return nil, tostring(cfg), nil end
  return args, cfg
end

--- As try_parse, but on an error writes usage and message to stderr and
-- exits with status 2.
function cli.parse(spec)
  local args, cfg, usage = cli.try_parse(spec)
  if not args then
    if usage then io.stderr:write(usage, "\n\n") end
    io.stderr:write("Error: ", cfg, "\n")
    io.stderr:flush()
    os.exit(2)
  end
  return args, cfg
end

--- Reports a fatal error of a script (not a usage error): message to stderr,
-- exit status 1.
function cli.die(msg)
  io.stderr:write((arg and arg[0]) or "drlmem", ": error: ", tostring(msg), "\n")
  os.exit(1)
end

return cli
