#!/usr/bin/env bash
# The training progress bar fits the terminal: in a 50-column pseudo-
# terminal (tests/host/pty.c with PTY_COLS) every redraw of the bar is
# shorter than 50 columns, so the terminal never wraps it into a trail of
# lines (the log lines between epochs are printed once and may wrap).
# Prints TAP.
. "$(dirname "$0")/tap.inc"
echo "1..4"
B=${DRLMEM_BUILD:-$(dirname "$E")}
PTY=$B/tests/host-pty
if [ ! -x "$PTY" ] || [ tests/host/pty.c -nt "$PTY" ]; then
  mkdir -p "$B/tests"
  cc -std=c11 -O1 -o "$PTY.tmp$$" tests/host/pty.c -lutil && mv "$PTY.tmp$$" "$PTY"
fi
mkdir -p "$tmp/w"
(cd "$tmp/w" && PTY_COLS=50 TERM=xterm timeout 120 "$PTY" 100 "$E" "$root/scripts/train.lua" \
  --config "$root/configs/tiny.yaml" --set epochs=3 --set patience=10) >"$tmp/out" 2>&1 <<'IN'
wait
IN
rc=$?
t "training on a 50-column terminal finishes" '[ $rc -eq 0 ] && grep -aq "pty: exit 0" "$tmp/out"'
# The pieces between \r and \n are what the terminal draws on one line.
tr '\r' '\n' <"$tmp/out" >"$tmp/lines"
bars=$(grep -ac '^epoch [0-9]*/3 \[[#.]*\] [0-9]*/40 loss [0-9.]*' "$tmp/lines")
long=$(grep -a '^epoch [0-9]*/3 \[' "$tmp/lines" | awk 'length($0) > 49' | head -3)
t "the bar is drawn, with its counts and loss" '[ "$bars" -ge 3 ]'
t "no redraw of the bar reaches the 50th column" '[ -z "$long" ] || { echo "# too long: $long"; false; }'
clean_out=$(grep -aE 'AddressSanitizer|runtime error:' "$tmp/out" | head -1)
t "no sanitizer report" '[ -z "$clean_out" ]'
