-- drlmem-scm-1.rockspec: drlmem as a rock. Build from the repository root:
--   luarocks make lua/drlmem-scm-1.rockspec [--tree DIR]
-- The build is the project's own Makefile (`make all`, then `make install`
-- into the folders luarocks gives), so the C module links against the
-- system's libyaml, OpenBLAS and jansson exactly as `make` does, with the
-- flags pkg-config reports. luarocks deploys drlmem.so, the Lua half
-- (drlmem.config, drlmem.data, ...) and the drlmem executable; the scripts,
-- configs and man page stay in the rock's folder, where drlmem finds them.
rockspec_format = "3.0"
package = "drlmem"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Train and explore DRLMemNet, a language model with a differentiable memory",
  detailed = [[
    A C11 core (tensors, layers, a differentiable key-value memory, the
    controller, optimizers, safetensors) exposed to Lua 5.4 as userdata,
    the Lua library that trains and evaluates it, and the drlmem
    executable with a REPL.
  ]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  YAML = { header = "yaml.h", library = "yaml" },
  JANSSON = { header = "jansson.h", library = "jansson" },
  OPENBLAS = { library = "openblas" },
}
build = {
  type = "make",
  build_target = "all",
  install_target = "install",
  -- CFLAGS is left to the Makefile: it adds -Isrc and pkg-config's flags,
  -- which a CFLAGS on make's command line would replace.
  build_variables = {},
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUA_LMOD = "$(LUADIR)",
    LUA_CMOD = "$(LIBDIR)",
    DATADIR = "$(PREFIX)/share/drlmem",
    MANDIR = "$(PREFIX)/share/man/man1",
  },
}
