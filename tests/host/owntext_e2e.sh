#!/usr/bin/env bash
# End to end: training on your own text (README "Train on your own text").
# A run with fixed split files (val_data, test_data) trains on the training
# file and evaluate.lua reports on the test file.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
# train ARGS...: a one-epoch tiny run writing into $tmp/run; fills $rc, output in $tmp/out.
train() {
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set epochs=1 --progress none \
    --set "save_path=$tmp/run/models" --set "log_file=$tmp/run/logs/training.log" "$@" >"$tmp/out" 2>&1
  rc=$?
}
# one_line: the output is exactly one line.
one_line() { [ "$(wc -l <"$tmp/out")" -eq 1 ]; }

"$E" scripts/make_data.lua --tiny --out "$tmp/all.txt" --stories 200 >"$tmp/out" 2>&1
head -n 150 "$tmp/all.txt" >"$tmp/train.txt"
sed -n '151,170p' "$tmp/all.txt" >"$tmp/valid.txt"
sed -n '171,200p' "$tmp/all.txt" >"$tmp/test.txt"

# --- fixed split files ----------------------------------------------------------
train --set "data_path=$tmp/train.txt" --set "val_data=$tmp/valid.txt" --set "test_data=$tmp/test.txt"
t "train.lua trains with val_data and test_data" '[ $rc -eq 0 ] && clean'
t "the log names the three files and their sizes" \
  'grep -q "split train/val/test 150/20/30 (files $tmp/train.txt / $tmp/valid.txt / $tmp/test.txt)" "$tmp/run/logs/training.log"'
"$E" scripts/evaluate.lua --checkpoint "$tmp/run/models/memory_model.safetensors" >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua reports on the test file, all of it" \
  '[ $rc -eq 0 ] && head -n 1 "$tmp/out" | grep -q "on $tmp/test.txt: 30 samples"'
"$E" scripts/evaluate.lua --checkpoint "$tmp/run/models/memory_model.safetensors" --split val >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua --split val reports on the validation file" \
  '[ $rc -eq 0 ] && head -n 1 "$tmp/out" | grep -q "on $tmp/valid.txt: 20 samples"'
