#!/usr/bin/env bash
# The README's commands on a machine where the packages are not installed
# yet: pkg-config knows nothing until the dependency script has run. A copy
# of the tree gets a stub .ci/install-deps that "installs" by creating a
# marker, and PATH gets a pkg-config that answers nothing before the marker
# exists. The first make must run the stub before it computes any flag, so
# the Lua headers are found on the first try.
source "$(dirname "$0")/tap.inc"
echo "1..5"
real_pc=$(command -v pkg-config)
copy=$tmp/tree; mkdir -p "$copy" "$tmp/bin"
git ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$copy")
cat > "$copy/.ci/install-deps" <<STUB
#!/usr/bin/env bash
echo "stub install-deps ran" >&2
touch "$tmp/installed"
STUB
cat > "$tmp/bin/pkg-config" <<PC
#!/usr/bin/env bash
[ -e "$tmp/installed" ] || exit 1
exec "$real_pc" "\$@"
PC
chmod +x "$tmp/bin/pkg-config"
cd "$copy"
PATH="$tmp/bin:$PATH" make BUILD=b b/host/main.o b/bind/module.o >"$tmp/out" 2>&1; rc=$?
t "first make on a bare machine compiles the Lua-using sources" '[ $rc -eq 0 ]'
t "the dependency step ran before any flag was computed" '[ -e "$tmp/installed" ] && grep -q "stub install-deps ran" "$tmp/out"'
t "the build got the Lua include path" 'grep -q -- "-I/usr/include/lua5.4" b/config.mk && grep -q "lua5.4" "$tmp/out"'
PATH="$tmp/bin:$PATH" make -n BUILD=b >"$tmp/out" 2>&1; rc=$?
t "a plain make builds the executable (all is the default goal)" '[ $rc -eq 0 ] && grep -q -- "-o b/drlmem " "$tmp/out"'
PATH="$tmp/bin:$PATH" make BUILD=b clean >"$tmp/out" 2>&1; rc=$?
rm -f "$tmp/installed"
PATH="$tmp/bin:$PATH" make clean >"$tmp/out" 2>&1; rc=$?
t "make clean installs nothing" '[ $rc -eq 0 ] && [ ! -e "$tmp/installed" ]'
