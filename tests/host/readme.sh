#!/usr/bin/env bash
# Every REPL session in README.md works as printed. A session is a fenced
# block whose info string is `repl`: lines starting with "> " (or ">> " for a
# continuation) are typed, every other line is the expected output. Each
# block runs in a fresh `drlmem -i` fed through a pipe with empty prompts, so
# the output is exactly what the values print. The session that explores a
# trained model reads models/tiny/memory_model.safetensors: it is trained
# first, into the scratch folder the sessions run in (configs/tiny.yaml, one
# thread, a few seconds). Prints TAP.
set -u
cd "$(dirname "$0")/../.."
exe=$(realpath "${DRLMEM_EXE:-./build/drlmem}")
n=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Split README.md into tmp/blockN.in (typed lines) and tmp/blockN.out.
awk -v dir="$tmp" '
  /^```repl[ \t]*$/ { inb = 1; k++; printf "" > (dir "/block" k ".in"); printf "" > (dir "/block" k ".out"); next }
  inb && /^```[ \t]*$/ { inb = 0; next }
  inb && /^>> / { print substr($0, 4) >> (dir "/block" k ".in"); next }
  inb && /^> / { print substr($0, 3) >> (dir "/block" k ".in"); next }
  inb { print >> (dir "/block" k ".out") }
' README.md
blocks=$(ls "$tmp"/block*.in 2>/dev/null | wc -l)
echo "1..$(( blocks > 0 ? blocks : 1 ))"
root=$PWD
if ! (cd "$tmp" && timeout 120 "$exe" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" \
      --set threads=1 --progress none) >"$tmp/train.log" 2>&1; then
  echo "not ok 1 - training the tiny checkpoint the README sessions use failed"
  sed 's/^/# /' "$tmp/train.log" | tail -20
fi
for f in "$tmp"/block*.in; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  b=${f%.in}
  # Run from a scratch folder so sessions that write files leave nothing.
  (cd "$tmp" && timeout 60 "$exe" -e '_PROMPT="" _PROMPT2=""' -i < "$f" 2>&1) \
    | tail -n +2 | sed -e 's/[ \t]*$//' > "$b.got"
  sed -e 's/[ \t]*$//' "$b.out" > "$b.want"
  # The REPL ends the session with a newline at end of input: drop it.
  sed -i -e '${/^$/d}' "$b.got"
  if cmp -s "$b.got" "$b.want"; then
    echo "ok $n - README REPL session $n works as printed"
  else
    echo "not ok $n - README REPL session $n differs from README.md"
    diff "$b.want" "$b.got" | sed 's/^/# /'
  fi
done
[ "$n" -gt 0 ] || echo "not ok 1 - README.md has no repl session"
