#!/usr/bin/env bash
# What a careless user meets: a config indented with a tab, an output file
# that no longer fits (a file-size limit stands in for a full disk, which
# needs root to simulate), a picture asked for in a folder that does not
# exist, a latin-1 data file, a method called with '.'. Each must end with
# one clear line (no Lua traceback, no position inside drlmem's own Lua
# files) and must never leave a torn file under the final name.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
set -u
cd "$(dirname "$0")/../.."
root=$PWD
E=$(realpath "${DRLMEM_EXE:-./build/drlmem}")
unset LD_PRELOAD # the exe carries its own sanitizer runtime; helpers must not get it
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
echo "1..12"
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
run() { "$E" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err"); }
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
clean() { ! grep -qE 'AddressSanitizer|runtime error:|stack traceback|lua/drlmem/[a-z_]+\.lua:[0-9]' "$tmp/err"; }
t() { if eval "$2"; then ok 0 "$1"; else ok 1 "$1"; echo "#   rc=$rc stdout: ${out:0:300}"; echo "#   stderr: ${err:0:600}"; fi; }

# 1. A tab in the YAML: the file's line, a hint, and no drlmem-internal position.
printf 'epochs: 2\n\tbatch_size: 4\n' >"$tmp/tab.yaml"
run "$root/scripts/train.lua" --config "$tmp/tab.yaml"
t "a tab-indented config names the file and line and says tabs are the problem" \
  '[ $rc -eq 2 ] && clean && has "$err" "Error: $tmp/tab.yaml:2:" && has "$err" "YAML indents with spaces only"'

printf 'epochs: 2\nepochs: 3\n' >"$tmp/dup.yaml"
run "$root/scripts/train.lua" --config "$tmp/dup.yaml"
t "a duplicate key starts with the file, not with config.lua" \
  '[ $rc -eq 2 ] && clean && has "$err" "Error: $tmp/dup.yaml:2: duplicate key '"'"'epochs'"'"'"'

# 2. An output that does not fit: the old file stays, the error is one line.
# (ulimit -f stands in for a full disk; SIGXFSZ is ignored so write fails
# with EFBIG instead of killing the process.)
for script in make_task augment; do
  echo "previous contents" >"$tmp/$script.txt"
  printf 'mary went to the kitchen\njohn took the apple\n%.0s' $(seq 200) >"$tmp/in.txt"
  if [ $script = make_task ]; then args=(--samples 3000 --out "$tmp/$script.txt")
  else args=(--in "$tmp/in.txt" --out "$tmp/$script.txt"); fi
  (trap '' XFSZ; ulimit -f 8; exec "$E" "$root/scripts/$script.lua" "${args[@]}") >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
  t "$script.lua: a write that does not fit fails clearly and keeps the previous file" \
    '[ $rc -eq 1 ] && clean && has "$err" "error: write $tmp/$script.txt: File too large" \
     && [ "$(cat "$tmp/$script.txt")" = "previous contents" ] && ! has "$out" wrote \
     && [ -z "$(ls "$tmp" | grep "\.tmp")" ]'
done

# 3. explore_memory --svg into folders that do not exist yet: made, as log_file's are.
printf 'mary went to the kitchen\njohn went home\n' >"$tmp/probe.txt"
run "$root/scripts/explore_memory.lua" --checkpoint tests/fixtures/export/tiny.safetensors \
  --data "$tmp/probe.txt" --top 2 --svg "$tmp/new/folder/memory.svg"
t "explore_memory --svg creates the picture's folder" \
  '[ $rc -eq 0 ] && clean && [ -s "$tmp/new/folder/memory.svg" ] && has "$out" "wrote $tmp/new/folder/memory.svg"'
run "$root/scripts/explore_memory.lua" --checkpoint tests/fixtures/export/tiny.safetensors \
  --data "$tmp/probe.txt" --top 2 --svg /proc/drlmem-no/memory.svg
t "explore_memory --svg where no folder can be made: one line, status 1" \
  '[ $rc -eq 1 ] && clean && has "$err" "error: plot: cannot create folder '"'"'/proc/drlmem-no'"'"'"'

# 4. A latin-1 data file: the message says how to convert it.
printf 'le caf\xe9 est bon\nun th\xe9 aussi\nencore\n' >"$tmp/latin1.txt"
run "$root/scripts/train.lua" --config configs/tiny.yaml --set data_path="$tmp/latin1.txt" \
  --set save_path="$tmp/m" --set log_file="$tmp/l/t.log" --progress none
t "a latin-1 data file: not UTF-8, and the iconv command that converts it" \
  '[ $rc -eq 1 ] && clean && has "$err" "is not UTF-8: invalid byte 0xe9" && has "$err" "iconv -f latin1 -t utf-8"'

# 5. generate.lua with a prime of unknown words: text, and a note saying why it is odd.
run "$root/scripts/generate.lua" --checkpoint tests/fixtures/export/tiny.safetensors --prime "zzzq qqqz" --length 3
t "generate.lua notes prime words missing from the vocabulary" \
  '[ $rc -eq 0 ] && clean && has "$err" "2 of the 2 prime tokens are not in the checkpoint" && [ -n "$out" ]'

# 6. A method called with '.': the message says how to call it.
run -e 't = dm.zeros(3); t.sum()'
t "t.sum() says to call t:sum()" '[ $rc -eq 1 ] && has "$err" "(call it as t:sum(...), not t.sum(...))"'

# 7. Outputs of a training run where nothing can be written: one line.
"$E" "$root/scripts/make_data.lua" --tiny --out "$tmp/tiny.txt" >/dev/null 2>&1 </dev/null
run "$root/scripts/train.lua" --config configs/tiny.yaml --set data_path="$tmp/tiny.txt" \
  --set save_path=/proc/drlmem-no/models --set log_file="$tmp/l7/t.log" --progress none
t "train.lua with a save_path that cannot be made: one line naming it" \
  '[ $rc -ne 0 ] && clean && has "$err" "/proc/drlmem-no"'
run "$root/scripts/train.lua" --config configs/tiny.yaml --set data_path="$tmp/tiny.txt" \
  --set save_path="$tmp/m7" --set log_file=/proc/drlmem-no/t.log --progress none
t "train.lua with a log_file that cannot be written: one line naming it" \
  '[ $rc -ne 0 ] && clean && has "$err" "/proc/drlmem-no"'

# 8. The disk fills during training: the checkpoint write fails, the run
# stops with one message saying what was kept, and no torn file is left.
(trap '' XFSZ; ulimit -f 24; exec "$E" "$root/scripts/train.lua" --config configs/tiny.yaml \
  --set data_path="$tmp/tiny.txt" --set save_path="$tmp/m8" --set log_file="$tmp/l8/t.log" \
  --set epochs=1 --progress none) >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?; out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
t "a full disk during training: status 1, the failed write named, no torn checkpoint" \
  '[ $rc -eq 1 ] && clean && has "$err" "stopped: checkpoint.save: " && has "$err" "File too large" \
   && has "$err" "no checkpoint was written by this run" \
   && [ -z "$(ls "$tmp/m8" 2>/dev/null | grep -v "^$")" ]'

