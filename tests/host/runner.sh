#!/usr/bin/env bash
# tests/run guards itself: each case runs a copy of the runner over a tree
# that holds one made-up host suite (a hang, a skip, an early exit, a
# missing plan, a crash) and checks the closing line, the failure named and
# the status. Prints TAP.
source "$(dirname "$0")/tap.inc"
echo "1..12"

# runs tests/run over a tree whose only suite is the script on stdin;
# leaves its output in $tmp/out and its status in $rc
suite() { # name [env assignments...]
  local d="$tmp/tree-$1"; shift
  mkdir -p "$d/tests/host" "$d/b/tests"
  cp "$root/tests/run" "$d/tests/run"
  cat > "$d/tests/host/x.sh"
  env -u SUITES "$@" bash "$d/tests/run" b >"$tmp/out" 2>&1 </dev/null; rc=$?
}
last() { tail -1 "$tmp/out"; }

suite hang SUITE_TIMEOUT=2 < <(printf 'echo 1..2\necho "ok 1 - a"\nsleep 60\necho "ok 2 - b"\n')
t "a hanging suite is killed at SUITE_TIMEOUT and fails by name" \
  '[ $rc -ne 0 ] && grep -q "not ok - suite host/x.sh timed out after 2 s" "$tmp/out"'
t "after a hang the closing line is still printed" '[ "$(last)" = "1 passed, 1 failed, 0 skipped" ]'

suite skip CI= < <(printf 'echo 1..3\necho "ok 1 - a"\necho "ok 2 - b # SKIP no tool"\necho "ok 3 - # SKIP pending"\n')
t "skipped tests are counted as skipped, not passed" '[ $rc -eq 0 ] && [ "$(last)" = "1 passed, 0 failed, 2 skipped" ]'

suite ci CI=true < <(printf 'echo 1..2\necho "ok 1 - a"\necho "ok 2 - b # SKIP no tool"\n')
t "with CI=true a skip is a failure" \
  '[ $rc -ne 0 ] && [ "$(last)" = "1 passed, 1 failed, 0 skipped" ] && grep -q "skipped 1 test(s) that CI must run" "$tmp/out"'

suite ciok CI=true < <(printf 'echo 1..2\necho "ok 1 - a"\necho "ok 2 - b # SKIP needs a GPU (optional in CI)"\n')
t "with CI=true a skip marked (optional in CI) stays a skip" \
  '[ $rc -eq 0 ] && [ "$(last)" = "1 passed, 0 failed, 1 skipped" ]'

suite early < <(printf 'echo 1..3\necho "ok 1 - a"\nexit 0\necho "ok 2 - b"\n')
t "an early exit 0 is caught by the plan" \
  '[ $rc -ne 0 ] && grep -q "suite host/x.sh planned 3 tests but reported 1" "$tmp/out" && [ "$(last)" = "1 passed, 1 failed, 0 skipped" ]'

suite noplan < <(printf 'echo "ok 1 - a"\n')
t "a suite without a plan fails" '[ $rc -ne 0 ] && grep -q "suite host/x.sh printed no TAP plan" "$tmp/out"'

suite crash < <(printf 'echo 1..2\necho "ok 1 - a"\necho "ok 2 - b"\nkill -SEGV $$\n')
t "a suite that dies after its tests fails" '[ $rc -ne 0 ] && grep -q "exited with status 139" "$tmp/out"'

suite fail < <(printf 'echo 1..2\necho "ok 1 - a"\necho "not ok 2 - b"\n')
t "a failing test fails the run" '[ $rc -ne 0 ] && [ "$(last)" = "1 passed, 1 failed, 0 skipped" ]'

suite good < <(printf 'echo 1..2\necho "ok 1 - a"\necho "ok 2 - b"\n')
t "a clean suite passes" '[ $rc -eq 0 ] && [ "$(last)" = "2 passed, 0 failed, 0 skipped" ]'

suite only SUITES='x\.sh' < <(printf 'echo 1..1\necho "ok 1 - a"\n')
t "SUITES runs the suites whose name matches" '[ $rc -eq 0 ] && [ "$(last)" = "1 passed, 0 failed, 0 skipped" ]'

suite none SUITES='^c/' < <(printf 'echo 1..1\necho "ok 1 - a"\n')
t "SUITES that match no suite run nothing and fail" '[ $rc -ne 0 ] && [ "$(last)" = "0 passed, 0 failed, 0 skipped" ] && ! grep -q "suite: host/x.sh" "$tmp/out"'
