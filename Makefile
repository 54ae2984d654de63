# drlmem build. `make` builds ./drlmem and build/drlmem.so; `make test` runs
# every suite; `make train` makes the default data and trains on it.
#
# BUILD selects the build folder, so several builds (a plain one, the
# sanitizer one, a developer's scratch one) can live side by side:
#   make BUILD=build-asan SAN=1 test
# Sources are found by wildcard: a new src/core/*.c, src/bind/*.c,
# tests/c/test_*.c or tests/lua/*_spec.lua is picked up without editing this.

BUILD   ?= build
PREFIX  ?= /usr/local
SAN     ?=
CC      ?= cc
LUA     ?= lua5.4
BUSTED  ?= busted

PKG_CONFIG   ?= pkg-config
INSTALL_DEPS ?= bash .ci/install-deps
PKGS         := lua5.4 yaml-0.1 openblas jansson ompi-c

# The compiler and linker flags come from pkg-config, which knows them only
# once the Debian packages are installed. They are therefore not computed
# while this file is parsed but written to $(BUILD)/config.mk by a rule that
# first runs the dependency script; GNU make rebuilds an included makefile
# and then reads itself again, so the very first `make test` on a bare
# machine installs, then builds with the right flags. Goals that build
# nothing (clean) skip the step.
CONFIG_MK := $(BUILD)/config.mk
.DEFAULT_GOAL := all
NOBUILD_GOALS := clean
ifneq ($(filter-out $(NOBUILD_GOALS),$(or $(MAKECMDGOALS),all)),)
include $(CONFIG_MK)
endif

$(CONFIG_MK): .ci/install-deps
	@$(INSTALL_DEPS)
	@mkdir -p $(BUILD)
	@cflags=$$($(PKG_CONFIG) --cflags $(PKGS)) && libs=$$($(PKG_CONFIG) --libs $(PKGS)) \
	  && solibs=$$($(PKG_CONFIG) --libs yaml-0.1 openblas jansson ompi-c) \
	  || { echo "make: pkg-config does not know $(PKGS) even after .ci/install-deps" >&2; exit 1; }; \
	  printf 'PKG_CFLAGS := %s\nPKG_LIBS := %s\nSO_LIBS := %s\n' "$$cflags" "$$libs" "$$solibs" > $@.tmp \
	  && mv $@.tmp $@

CFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fPIC \
               -Wall -Wextra -Wno-unused-parameter -g
ifeq ($(SAN),1)
  OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else ifeq ($(SAN),fuzz)
  # the fuzz build (make fuzz): clang's libFuzzer coverage with ASan + UBSan
  OPT := -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
         -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else
  OPT := -O2 -march=x86-64-v2
  LDSAN :=
endif
CFLAGS ?=
CFLAGS += $(CFLAGS_BASE) $(OPT) -Isrc $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lm

CORE_SRC := $(wildcard src/core/*.c)
BIND_SRC := $(wildcard src/bind/*.c)
HOST_SRC := $(wildcard src/host/*.c)
CORE_OBJ := $(CORE_SRC:src/%.c=$(BUILD)/%.o)
BIND_OBJ := $(BIND_SRC:src/%.c=$(BUILD)/%.o)
HOST_OBJ := $(HOST_SRC:src/%.c=$(BUILD)/%.o)
CTEST_SRC := $(wildcard tests/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

EXE := $(BUILD)/drlmem
SO  := $(BUILD)/drlmem.so

.PHONY: all deps test test-c test-lua test-host test-asan train train-mpi bench bench-mpi bench-counts blas-compare install clean fixtures fuzz fuzz-build

all: $(EXE) $(SO) drlmem

# The dependency script runs once per build folder (with config.mk); it
# does nothing when the packages are already there.
deps: $(CONFIG_MK)

$(BUILD)/%.o: src/%.c $(CONFIG_MK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdmcore.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(EXE): $(HOST_OBJ) $(BIND_OBJ) $(BUILD)/libdmcore.a
	$(CC) $(LDSAN) -o $@ $(HOST_OBJ) $(BIND_OBJ) $(BUILD)/libdmcore.a $(LDLIBS) -ledit -Wl,-E

# The Lua C module leaves lua_* symbols to the interpreter that loads it.
$(SO): $(BIND_OBJ) $(BUILD)/libdmcore.a
	$(CC) $(LDSAN) -shared -o $@ $(BIND_OBJ) $(BUILD)/libdmcore.a \
	  $(SO_LIBS) -lm

# ./drlmem is what the README runs; it points at the default build.
drlmem: $(BUILD)/drlmem
	@if [ "$(BUILD)" = "build" ]; then ln -sf build/drlmem drlmem; fi

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libdmcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $< $(BUILD)/libdmcore.a $(LDSAN) $(LDLIBS) -lcmocka

-include $(CORE_OBJ:.o=.d) $(BIND_OBJ:.o=.d) $(HOST_OBJ:.o=.d)

# --- tests ------------------------------------------------------------------
# tests/run collects TAP from every suite and prints `N passed, M failed, K skipped`.
LUA_ENV := LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/tests/lua/?.lua;;" \
           LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" DRLMEM_EXE="$(CURDIR)/$(EXE)" \
           DRLMEM_BUILD="$(CURDIR)/$(BUILD)"
ifeq ($(SAN),1)
  # Stock lua5.4 is not instrumented: preload the sanitizer runtime into it.
  LUA_ENV += LD_PRELOAD="$(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)" \
             ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
endif

test: all $(CTEST_BIN)
	@$(LUA_ENV) SAN=$(SAN) bash tests/run $(BUILD)

test-asan:
	$(MAKE) BUILD=build-asan SAN=1 test

# --- fuzzing ----------------------------------------------------------------
# `make fuzz FUZZ_SECONDS=N` builds the libFuzzer harnesses of tests/fuzz
# with clang (into build-fuzz, SAN=fuzz) and runs each for N seconds on a
# copy of its seed corpus (tests/fuzz/run); any crash, leak or sanitizer
# report fails the target.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := safetensors json yaml_config data checkpoint
FUZZ_LUA_TARGETS := json yaml_config data checkpoint

fuzz:
	$(MAKE) BUILD=build-fuzz SAN=fuzz CC=clang fuzz-build
	bash tests/fuzz/run build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

$(BUILD)/fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c $(BUILD)/libdmcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libdmcore.a $(LDLIBS)

$(FUZZ_LUA_TARGETS:%=$(BUILD)/fuzz/fuzz_%): $(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_lua.c \
    tests/fuzz/%.lua $(BIND_OBJ) $(BUILD)/libdmcore.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -DFUZZ_TARGET='"tests/fuzz/$*.lua"' -o $@ $< \
	  $(BIND_OBJ) $(BUILD)/libdmcore.a $(LDLIBS)

# --- user commands ----------------------------------------------------------
# ARGS reach train.lua: `make train ARGS=--overwrite` replaces an earlier
# run's results, `make train ARGS="--resume models/last.safetensors"` goes on.
ARGS ?=
train: all
	./drlmem scripts/make_data.lua
	./drlmem scripts/train.lua $(ARGS)

# The same training on NP processes of this machine over MPI (shared memory
# and loopback only); each takes its shard of global batches of
# batch_size x NP. ARGS reach train.lua as for train. mpirun turns Ctrl-C
# into SIGTERM and SIGKILL after odls_base_sigkill_timeout seconds: 30
# leaves the ranks time to finish the step and save.
NP   ?= 2
train-mpi: all
	./drlmem scripts/make_data.lua
	OMPI_MCA_odls_base_sigkill_timeout=30 mpirun --allow-run-as-root --oversubscribe -np $(NP) \
	  --mca btl self,vader --mca oob_tcp_if_include lo --mca btl_tcp_if_include lo \
	  ./drlmem scripts/train.lua $(ARGS)

# The scaling figure of training across processes (README): 2 ranks x 1
# thread against 1 process x 2 and x 1 threads, on this machine.
bench-mpi: all
	scripts/bench_mpi.sh $(BENCH_ARGS)

# The benchmarks' sgemm timer loads each BLAS with dlopen (see its header),
# so it links against none of them and builds wherever the core does.
BLAS_COMPARE := $(BUILD)/blas_compare
$(BLAS_COMPARE): scripts/blas_compare.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -g -o $@ $< -ldl -lm
test: $(BLAS_COMPARE)

# BENCH_ARGS narrows or points it, e.g. BENCH_ARGS="--vocab 64 --batch 16".
bench: all $(BLAS_COMPARE)
	./drlmem scripts/bench.lua --blas-compare $(BLAS_COMPARE) $(BENCH_ARGS)

# Instruction counts (callgrind) of one warm training and one eval step.
bench-counts: all
	./drlmem scripts/bench.lua --counts --batch 16 $(BENCH_ARGS)

# sgemm of OpenBLAS, BLIS and oneDNN on the training step's product shapes.
blas-compare: all $(BLAS_COMPARE)
	./drlmem scripts/blas_compare.lua --blas-compare $(BLAS_COMPARE)

# Regenerates tests/fixtures from ../shared/reference/golden.py (needs torch).
fixtures:
	bash tests/fixtures/make-fixtures

# The layout of a Lua tool: the executable and its man page, the C module
# and the Lua half where stock lua5.4 looks for PREFIX=/usr/local
# (LUA_CMOD/LUA_LMOD; for another PREFIX, LUA_CPATH/LUA_PATH point there),
# and the scripts and configs under share/drlmem, where `drlmem NAME` finds
# a script by name. Luarocks sets all five folders itself.
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man/man1
LUA_CMOD ?= $(PREFIX)/lib/lua/5.4
LUA_LMOD ?= $(PREFIX)/share/lua/5.4
DATADIR  ?= $(PREFIX)/share/drlmem
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(LUA_CMOD) \
	  $(DESTDIR)$(LUA_LMOD)/drlmem $(DESTDIR)$(DATADIR)/scripts $(DESTDIR)$(DATADIR)/configs
	install -m 755 $(EXE) $(DESTDIR)$(BINDIR)/drlmem
	install -m 644 src/host/drlmem.1 $(DESTDIR)$(MANDIR)/drlmem.1
	install -m 644 $(SO) $(DESTDIR)$(LUA_CMOD)/drlmem.so
	install -m 644 lua/drlmem/*.lua $(DESTDIR)$(LUA_LMOD)/drlmem/
	install -m 644 scripts/*.lua $(DESTDIR)$(DATADIR)/scripts/
	install -m 755 scripts/*.sh $(DESTDIR)$(DATADIR)/scripts/
	install -m 644 configs/*.yaml $(DESTDIR)$(DATADIR)/configs/

clean:
	rm -rf build build-asan build-fuzz drlmem
