#!/usr/bin/env bash
# End to end: a recurrent language model trained with truncated BPTT over a
# stream (carry_state) and the regularisation keys, then evaluate.lua
# --file: the perplexity over every token of a file as given, read in
# windows with the state carried, equals one forward over the whole file;
# bits per character for a char model; a word model with <eos> line ends
# predicts every token; a missing, an empty and a one-token file each stop
# it with one line. Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
echo "1..7"
"$E" scripts/make_data.lua --tiny --out "$tmp/all.txt" --stories 120 >"$tmp/out" 2>&1
head -n 40 "$tmp/all.txt" >"$tmp/eval.txt"
# train NAME ARGS...: a one-epoch tiny stream run into $tmp/NAME; $rc, output in $tmp/out.
train() {
  local name=$1; shift
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/all.txt" \
    --set epochs=1 --set sample_mode=stream --set split=position --set carry_state=true --set num_layers=2 \
    --set max_seq_length=16 --set "save_path=$tmp/$name" --set "log_file=$tmp/$name/logs/training.log" \
    --progress none "$@" >"$tmp/out" 2>&1
  rc=$?
}
one_line() { [ "$(wc -l <"$tmp/out")" -eq 1 ]; }
has() { grep -q -- "$1" "$tmp/out"; }

train char --set tokenizer=char --set input_dropout=0.1 --set layer_dropout=0.1 --set output_dropout=0.1 \
  --set variational_dropout=true --set embedding_dropout=0.05 --set tie_weights=true
t "a char model trains with carry_state, every dropout and tied weights" '[ $rc -eq 0 ] && has "epoch 1/1"'
ck="$tmp/char/memory_model.safetensors"
"$E" scripts/evaluate.lua --checkpoint "$ck" --file "$tmp/eval.txt" --json >"$tmp/out" 2>&1; rc=$?
cp "$tmp/out" "$tmp/char.json"
# the same numbers from one forward over the whole file, from zeros
"$E" -e "
local ck = dm.checkpoint.load('$ck')
local r = dm.json.decode(io.open('$tmp/char.json'):read('a'))
local text = dm.data.read_text('$tmp/eval.txt')
local toks = dm.data.tokenizers.char(text)
local ids = dm.data.Vocab(ck.vocab):encode(toks)
local x = dm.tensor({ table.move(ids, 1, #ids - 1, 1, {}) }, 'int32')
local y = dm.tensor({ table.move(ids, 2, #ids, 1, {}) }, 'int32')
ck.net:eval(); ck.net:forward(x, false)
local nll, n = ck.net:loss(y, { ignore_index = -1, grad = false })
assert(n == r.targets and n == utf8.len(text) - 1, 'targets ' .. r.targets .. ' vs ' .. n)
assert(r.windows == math.ceil(n / 16), 'windows ' .. r.windows)
assert(math.abs(nll - r.nll) < 1e-4, 'nll ' .. r.nll .. ' vs one forward ' .. nll)
assert(math.abs(r.bits_per_char - nll / math.log(2)) < 2e-4, 'bits ' .. r.bits_per_char)
print('same')" >"$tmp/out" 2>&1; rc=$?
t "--file: every character after the first, windows of 16 with the state carried = one forward over the file" \
  '[ $rc -eq 0 ] && has same'

train word --set tokenizer=word --set stream_line_end=eos
"$E" scripts/evaluate.lua --checkpoint "$tmp/word/memory_model.safetensors" --file "$tmp/eval.txt" >"$tmp/out" 2>&1; rc=$?
words=$("$E" -e "local n = 0; for l in io.lines('$tmp/eval.txt') do n = n + #dm.data.tokenizers.word(l) + 1 end; print(n)")
t "--file on a word model with <eos> line ends predicts every token of the file and each line's <eos>" \
  '[ $rc -eq 0 ] && has "$words tokens predicted (word tokenizer" && has "perplexity" && ! has "bits per character"'

"$E" scripts/evaluate.lua --checkpoint "$ck" --file "$tmp/none.txt" >"$tmp/out" 2>&1; rc=$?
t "--file of a missing file: one line" '[ $rc -eq 1 ] && one_line && has "data file .*none.txt.* (--file): cannot open"'
: >"$tmp/empty.txt"
"$E" scripts/evaluate.lua --checkpoint "$ck" --file "$tmp/empty.txt" >"$tmp/out" 2>&1; rc=$?
t "--file of an empty file: one line" '[ $rc -eq 1 ] && one_line && has "empty.txt.* is empty"'
printf 'x' >"$tmp/one.txt"
"$E" scripts/evaluate.lua --checkpoint "$ck" --file "$tmp/one.txt" >"$tmp/out" 2>&1; rc=$?
t "--file of a one-token file: one line" '[ $rc -eq 1 ] && one_line && has "gives 1 token with tokenizer char: nothing to predict"'
"$E" scripts/evaluate.lua --checkpoint "$ck" --file "$tmp/eval.txt" --data "$tmp/eval.txt" >"$tmp/out" 2>&1; rc=$?
t "--file with --data: one line" '[ $rc -eq 1 ] && one_line && has "give one"'
