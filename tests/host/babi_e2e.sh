#!/usr/bin/env bash
# End to end for bAbI question answering (README "bAbI question
# answering"): scripts/make_data.lua --format babi writes a training and a
# test file, scripts/train.lua trains configs/tiny.yaml on them with
# sample_mode babi (the test file as given, validation the last stories of
# the training file) and logs the answer accuracy over the test questions,
# in the log and metrics.jsonl; evaluate.lua reports it too; a malformed
# bAbI file stops train.lua with one line naming the file and line.
# Prints TAP. Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"
train() {
  "$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set sample_mode=babi --set max_seq_length=48 \
    --set "save_path=$tmp/run/models" --set "log_file=$tmp/run/logs/training.log" --progress none "$@" \
    >"$tmp/out" 2>&1
  rc=$?
}

"$E" scripts/make_data.lua --format babi --stories 60 --seed 1 --out "$tmp/train.txt" >"$tmp/out" 2>&1; rc=$?
t "make_data.lua --format babi writes a training file" \
  '[ $rc -eq 0 ] && grep -q "wrote $tmp/train.txt: 60 bAbI stories" "$tmp/out" && head -n 1 "$tmp/train.txt" | grep -q "^1 "'
"$E" scripts/make_data.lua --format babi --stories 10 --seed 2 --out "$tmp/test.txt" >"$tmp/out" 2>&1; rc=$?
t "and a test file of other stories" '[ $rc -eq 0 ] && [ "$(grep -c "	" "$tmp/test.txt")" -eq 50 ]'
t "question lines are ID question<TAB>answer<TAB>ids" \
  'grep -qE "^[0-9]+ [A-Z][a-z ]+\? 	[A-Za-z,]+	[0-9]+( [0-9]+)*$" "$tmp/test.txt"'

train --set "data_path=$tmp/train.txt" --set "test_data=$tmp/test.txt" --set epochs=2
t "train.lua trains on bAbI files with sample_mode babi" '[ $rc -eq 0 ] && clean'
t "the log names the files: validation the last 6 of the 60 training stories" \
  'grep -q "split train/val/test 270/30/50 (files $tmp/train.txt / $tmp/train.txt (val: its last 6 of 60 stories, by position) / $tmp/test.txt)" "$tmp/run/logs/training.log"'
t "each epoch's log line has the answer accuracy" \
  '[ "$(grep -c "answer acc [01]\.[0-9]*" "$tmp/run/logs/training.log")" -eq 2 ]'
cat >"$tmp/check.lua" <<'LUA'
local recs = assert(dm.log.read_metrics(arg[1]))
local bad = #recs == 2 and 0 or 1
for i, r in ipairs(recs) do
  if type(r.test_answer_acc) ~= "number" or r.test_answer_acc < 0 or r.test_answer_acc > 1 then
    print("line " .. i .. ": test_answer_acc " .. tostring(r.test_answer_acc)); bad = bad + 1
  end
  if r.test_answers ~= 50 then print("line " .. i .. ": test_answers " .. tostring(r.test_answers)); bad = bad + 1 end
end
os.exit(bad == 0 and 0 or 1)
LUA
"$E" "$tmp/check.lua" "$tmp/run/logs/metrics.jsonl" >"$tmp/out" 2>&1; rc=$?
t "metrics.jsonl has the answer accuracy over the 50 test questions" '[ $rc -eq 0 ]'

"$E" scripts/evaluate.lua --checkpoint "$tmp/run/models/memory_model.safetensors" >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua reports the answer accuracy of the test file" \
  '[ $rc -eq 0 ] && grep -q "on $tmp/test.txt: 50 samples" "$tmp/out" && grep -q "answer accuracy [01]\.[0-9]* over 50 answers (babi)" "$tmp/out"'
"$E" scripts/evaluate.lua --checkpoint "$tmp/run/models/memory_model.safetensors" --data "$tmp/test.txt" >"$tmp/out" 2>&1; rc=$?
t "evaluate.lua --data reads a bAbI file with the checkpoint's vocabulary" \
  '[ $rc -eq 0 ] && grep -q "answer accuracy [01]\.[0-9]* over 50 answers (babi)" "$tmp/out"'

printf '1 Mary went to the kitchen.\n2 Where is Mary?\n' >"$tmp/bad.txt"
train --set "data_path=$tmp/train.txt" --set "test_data=$tmp/bad.txt" --set epochs=1 --overwrite
t "a malformed bAbI file stops train.lua with one line naming file and line" \
  '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && grep -q "error: $tmp/bad.txt:2: question .Where is Mary?. has no answer" "$tmp/out"'
echo "1..$n"
