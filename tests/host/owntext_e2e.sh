#!/usr/bin/env bash
# End to end: training on your own text (README "Train on your own text").
# A run with fixed split files (val_data, test_data) trains on the training
# file and evaluate.lua reports on the test file; bad data files stop
# train.lua with one line before any reading (a FIFO, /dev/zero, a folder, a
# file over max_data_bytes, a missing file), and so does a file that gives
# no token, while a CSV trains with a warning; a tokenizer registered by a
# module loaded with -l trains, is saved in the checkpoint's config and
# works again in evaluate.lua and generate.lua with the same -l, and without
# it they stop with one line naming the tokenizer and how to load it.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
echo "1..17"
# train ARGS...: a one-epoch tiny run writing into $tmp/run (replacing the
# previous one: --overwrite); fills $rc, output in $tmp/out.
train() {
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set epochs=1 --progress none --overwrite \
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

# --- bad data files -----------------------------------------------------------------
mkfifo "$tmp/fifo"
timeout 20 "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/fifo" \
  >"$tmp/out" 2>&1; rc=$?
t "a FIFO is refused at once, in one line" \
  '[ $rc -eq 1 ] && one_line && grep -q "data file .$tmp/fifo. (data_path) is a named pipe, not a regular file" "$tmp/out"'
timeout 20 "$E" "$root/scripts/train.lua" --set data_path=/dev/zero >"$tmp/out" 2>&1; rc=$?
t "/dev/zero is refused at once, in one line" \
  '[ $rc -eq 1 ] && one_line && grep -q "data file ./dev/zero. (data_path) is a char device, not a regular file" "$tmp/out"'
train --set "data_path=$tmp"
t "a folder is refused in one line" '[ $rc -eq 1 ] && one_line && grep -q "(data_path) is a directory, not a regular file" "$tmp/out"'
train --set "data_path=$tmp/train.txt" --set "val_data=$tmp/valid.txt" --set "test_data=$tmp/test.txt" \
  --set max_data_bytes=1000
t "a file over max_data_bytes is refused in one line" \
  '[ $rc -eq 1 ] && one_line && grep -q "data file .$tmp/train.txt. (data_path) is [0-9]* bytes, over max_data_bytes = 1000" "$tmp/out"'
train --set "data_path=$tmp/train.txt" --set "val_data=$tmp/nope.txt" --set "test_data=$tmp/test.txt"
t "a missing file is one line naming the file and the key" \
  '[ $rc -eq 1 ] && one_line && grep -q "data file .$tmp/nope.txt. (val_data): cannot open: No such file or directory" "$tmp/out"'
printf '%s\n' '#$%' '&*()' '---' '@@ ~~' >"$tmp/symbols.txt"
train --set "data_path=$tmp/symbols.txt"
t "a file that gives no token is one line naming the tokenizer and what it drops" \
  '[ $rc -eq 1 ] && one_line && grep -q "(data_path) gives no token with tokenizer .word. (it lower-cases" "$tmp/out"'
{ echo "id,text,label"; awk '{ gsub(",", ""); printf "%d,\"%s\",x\n", NR, $0 }' "$tmp/train.txt"; } >"$tmp/data.csv"
train --set "data_path=$tmp/data.csv"
t "a CSV trains, with a warning in the log and on stderr that it is read as plain text" \
  'w="warning: data file .$tmp/data.csv. (data_path) looks like CSV (its name ends in .csv): it is read as plain text"
   [ $rc -eq 0 ] && grep -q "$w" "$tmp/out" && grep -q "$w" "$tmp/run/logs/training.log"'

# --- a tokenizer registered from Lua --------------------------------------------------
# The README's example module: upper-cased whitespace tokens.
cat >"$tmp/mytok.lua" <<'LUA'
-- mytok.lua: registers the tokenizer "shout" (load it with drlmem -l mytok).
local dm = require "drlmem"
dm.data.register_tokenizer("shout", function(text)
  local tokens = {}
  for word in text:gmatch("%S+") do tokens[#tokens + 1] = word:upper() end
  return tokens
end, "it splits on whitespace and upper-cases")
return {}
LUA
ck="$tmp/run/models/memory_model.safetensors"
rm -rf "$tmp/run"
(cd "$tmp" && "$E" -l mytok "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set epochs=1 \
  --progress none --set data_path=train.txt --set tokenizer=shout --set save_path=run/models \
  --set log_file=run/logs/training.log) >"$tmp/out" 2>&1; rc=$?
t "train.lua -l mytok trains with the registered tokenizer" \
  '[ $rc -eq 0 ] && clean && grep -q "tokenizer shout)" "$tmp/run/logs/training.log"'
echo 'local ck = dm.checkpoint.load(arg[1]); print(ck.train_config.tokenizer, ck.vocab[5])' >"$tmp/show.lua"
"$E" "$tmp/show.lua" "$ck" >"$tmp/out" 2>&1; rc=$?
t "the checkpoint's config names it and its vocabulary is upper-case" '[ $rc -eq 0 ] && grep -qE "^shout	[A-Z]+$" "$tmp/out"'
(cd "$tmp" && "$E" -l mytok "$root/scripts/evaluate.lua" --checkpoint "$ck") >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua -l mytok evaluates the checkpoint" \
  '[ $rc -eq 0 ] && head -n 1 "$tmp/out" | grep -q "on train.txt (test split, seed 42): 15 samples"'
(cd "$tmp" && "$E" -l mytok "$root/scripts/generate.lua" --checkpoint "$ck" --prime "mary went to" --length 4 \
  --temperature 0) >"$tmp/out" 2>&1; rc=$?
t "generate.lua -l mytok generates from the checkpoint" '[ $rc -eq 0 ] && grep -q "^MARY WENT TO [A-Z]" "$tmp/out"'
# without_l SCRIPT ARGS...: the script run on the checkpoint without -l mytok.
without_l() { local s=$1; shift; (cd "$tmp" && "$E" "$root/scripts/$s.lua" --checkpoint "$ck" "$@") >"$tmp/out" 2>&1; rc=$?; }
says_how() {
  one_line && grep -q "error: the checkpoint.s tokenizer .shout. is not registered in this run (known: char, upstream, whitespace, word): load the Lua module that registers it, as in training: drlmem -l MODULE .*scripts/$1.lua" "$tmp/out"
}
without_l evaluate
t "evaluate.lua without -l: one line naming the tokenizer and how to load it" '[ $rc -eq 1 ] && says_how evaluate'
without_l generate --prime "mary"
t "generate.lua without -l: one line naming the tokenizer and how to load it" '[ $rc -eq 1 ] && says_how generate'
