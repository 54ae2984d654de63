#!/usr/bin/env bash
# End to end: what keeps a training run's results safe. SIGTERM and SIGHUP
# stop like Ctrl-C (resumable checkpoint, resume command, status 143/129;
# in any script unhandled they end it with 143/129);
# timeout -s INT (two SIGINTs at once) and a second Ctrl-C during the save
# do not lose the save, a third Ctrl-C stops at once; the best model and
# the figure exist after an interrupted run; a used folder is refused unless
# --resume/--overwrite, a folder in use by another run is refused naming its
# pid, and a kill -9 leaves no lock behind; temporaries of killed writes
# are removed; an unwritable folder is found before training; and a tiny
# run killed with SIGKILL at several moments (one inside a checkpoint
# write) and resumed each time ends bit for bit where an uninterrupted run
# ends, with every epoch logged once. Prints TAP.
# Uses $DRLMEM_EXE (default ./build/drlmem).
. "$(dirname "$0")/tap.inc"

"$E" scripts/make_data.lua --tiny --out "$tmp/tiny.txt" >"$tmp/out" 2>&1
"$E" scripts/make_data.lua --tiny --stories 12000 --out "$tmp/long.txt" >>"$tmp/out" 2>&1

# targs DIR DATA: the arguments of a tiny run writing into DIR.
targs() {
  echo "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$2" \
    --set "save_path=$1/models" --set "log_file=$1/logs/training.log" --progress none
}
# train DIR DATA ARGS...: a run in the foreground; fills $rc, output in $tmp/out.
train() {
  local d=$1 data=$2; shift 2
  # shellcheck disable=SC2046
  "$E" $(targs "$d" "$data") "$@" >"$tmp/out" 2>&1 </dev/null
  rc=$?
}
# start DIR DATA ARGS...: the same in the background; $pid, output in
# $tmp/out (or $bg_out, for a run that goes on while another writes $tmp/out).
start() {
  local d=$1 data=$2; shift 2
  # shellcheck disable=SC2046
  "$E" $(targs "$d" "$data") "$@" >"${bg_out:-$tmp/out}" 2>&1 </dev/null &
  pid=$!
}
# until_true SECONDS EXPR: polls EXPR every 0.05 s; false on timeout or when $pid died.
until_true() {
  local i
  for i in $(seq 1 $(( $1 * 20 ))); do
    eval "$2" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
epoch_done() { [ -s "$1/logs/metrics.jsonl" ]; }
# field CKPT EXPR: a Lua expression over the checkpoint's training state s.
field() { "$E" -e "local s = dm.checkpoint.load('$1').state; print($2)" 2>&1; }
has() { grep -q -- "$1" "$tmp/out"; }


# --- SIGTERM and SIGHUP --------------------------------------------------------------
for s in TERM:143 HUP:129; do
  sig=${s%:*} want=${s#*:} d="$tmp/sig$sig"
  start "$d" "$tmp/tiny.txt" --set epochs=2000 --set patience=5000
  until_true 60 "epoch_done '$d'"
  sleep 0.2
  kill -"$sig" "$pid"; wait "$pid"; rc=$?
  t "SIG$sig mid-training: exit $want, saying where it stopped and how to resume" \
    '[ $rc -eq $want ] && clean && has "stopped by SIG$sig at epoch" && has "resume with: .*--resume $d/models/last.safetensors"'
  t "... leaving a resumable last.safetensors" '[ "$(field "$d/models/last.safetensors" "s.epoch >= 2")" = true ]'
done

# any chunk: SIGTERM/SIGHUP raise "interrupted! (SIGTERM)" at the next Lua step;
# unhandled, the process ends with 128 + the signal's number
for s in TERM:143 HUP:129; do
  sig=${s%:*} want=${s#*:}
  "$E" -e 'print("looping") io.stdout:flush() while true do end' >"$tmp/out" 2>&1 </dev/null &
  pid=$!
  until_true 30 "grep -q looping '$tmp/out'"
  kill -"$sig" "$pid"; wait "$pid"; rc=$?
  t "a script that does not handle SIG$sig: its message, exit $want" \
    '[ $rc -eq $want ] && clean && has "interrupted! (SIG$sig)"'
done

# --- the best model and the figure after an interrupted run ----------------------------
d="$tmp/sigTERM"
best=$("$E" -e "local b, e = math.huge, 0
  for _, r in ipairs(dm.log.read_metrics('$d/logs/metrics.jsonl')) do if r.val_loss < b then b, e = r.val_loss, r.epoch end end
  print(e)" 2>/dev/null)
"$E" "$root/tests/host/same_tensors.lua" "$d/models/memory_model.safetensors" "$d/models/memory_model_epoch_$best.safetensors" >"$tmp/out" 2>&1; rc=$?
t "after an interrupted run memory_model.safetensors is the best epoch's model" '[ $rc -eq 0 ]'
"$E" -e "local ok = dm.plot.check_svg(assert(io.open('$d/logs/training.svg')):read('a')); os.exit(ok and 0 or 1)" >"$tmp/out" 2>&1; rc=$?
t "... and training.svg is drawn (every epoch, not only at the end)" '[ $rc -eq 0 ]'
"$E" scripts/evaluate.lua --checkpoint "$d/models/memory_model.safetensors" >"$tmp/out" 2>&1; rc=$?
t "... which evaluate.lua reads, as the README's next command does" '[ $rc -eq 0 ] && has "accuracy"'

# --- timeout -s INT: SIGINT to the child, then to its process group --------------------------
d="$tmp/timeout"
# shellcheck disable=SC2046
timeout -s INT --preserve-status 6 "$E" $(targs "$d" "$tmp/tiny.txt") --set epochs=2000 --set patience=5000 \
  >"$tmp/out" 2>&1 </dev/null; rc=$?
t "timeout -s INT: exit 130 after saving, with the resume command" \
  '[ $rc -eq 130 ] && clean && has "interrupted at epoch" && has "resume with: "'
t "... and the checkpoint it saved resumes" '[ "$(field "$d/models/last.safetensors" "s.epoch >= 1")" = true ]'

# --- a second Ctrl-C while the checkpoint is written; a third one ------------------------------
# Every atomic write pauses 1.5 s between its temporary and the rename; the
# first Ctrl-C comes early in epoch 1 (1200 batches, seconds long), once the log says
# the model is built.
export DRLMEM_TEST_WRITE_DELAY_MS=1500
training() { grep -q "model: " "$1/logs/training.log" 2>/dev/null; }
d="$tmp/twice"
start "$d" "$tmp/long.txt" --set epochs=2000 --set patience=5000
until_true 60 "training '$d'"
sleep 0.3
kill -INT "$pid"
until_true 30 "[ -e '$d/models/last.safetensors.tmp.$pid' ]"; during=$?
kill -INT "$pid"; wait "$pid"; rc=$?
t "a second Ctrl-C during the save: the save completes, exit 130" \
  '[ $during -eq 0 ] && [ $rc -eq 130 ] && clean && has "already stopping" && has "resume with: "'
t "... the checkpoint is the one of the interruption (mid-epoch), and it loads" \
  '[ "$(field "$d/models/last.safetensors" "s.epoch == 1 and s.batch > 0")" = true ]'

d="$tmp/thrice"
start "$d" "$tmp/long.txt" --set epochs=2000 --set patience=5000
until_true 60 "training '$d'"
sleep 0.3
kill -INT "$pid"
until_true 30 "[ -e '$d/models/last.safetensors.tmp.$pid' ]"; during=$?
t0=$(date +%s%N)
kill -INT "$pid"; sleep 0.1; kill -INT "$pid"; wait "$pid"; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t "a third Ctrl-C stops at once (before the 1.5 s write ends), saying so" \
  '[ $during -eq 0 ] && [ $rc -eq 130 ] && [ $ms -lt 1400 ] && has "third time" && ! has "resume with: "'
t "... leaving nothing torn under the final name (only the temporary)" \
  '[ ! -e "$d/models/last.safetensors" ] && [ -e "$d/models/last.safetensors.tmp.$pid" ]'
unset DRLMEM_TEST_WRITE_DELAY_MS

# --- leftovers of killed writes ----------------------------------------------------------------
stale="$d/models/last.safetensors.tmp.$pid"
sleep 0 & deadpid=$!; wait $deadpid
touch "$d/models/memory_model.safetensors.tmp.$$" "$d/models/notes.txt.tmp.$deadpid" "$d/logs/metrics.jsonl.tmp.$deadpid"
train "$d" "$tmp/tiny.txt" --set epochs=1 --overwrite
t "a new run removes the temporaries of dead processes in its folders (and says so)" \
  '[ $rc -eq 0 ] && [ ! -e "$stale" ] && [ ! -e "$d/logs/metrics.jsonl.tmp.$deadpid" ] && has "removed $stale"'
t "... but not those of a live process, nor files not its own" \
  '[ -e "$d/models/memory_model.safetensors.tmp.$$" ] && [ -e "$d/models/notes.txt.tmp.$deadpid" ]'

# --- a used folder, a folder in use, a stale lock ------------------------------------------------
d="$tmp/used"
train "$d" "$tmp/tiny.txt" --set epochs=1
cp "$d/models/memory_model.safetensors" "$tmp/before.safetensors"
train "$d" "$tmp/tiny.txt" --set epochs=1
t "a second run on a used folder is refused: one line, --resume and --overwrite named, nothing replaced" \
  '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && has "$d/models.* already holds the results of an earlier run" \
   && has "--resume $d/models/last.safetensors" && has "--overwrite" && cmp -s "$tmp/before.safetensors" "$d/models/memory_model.safetensors"'
cp "$d/models/memory_model_epoch_1.safetensors" "$d/models/memory_model_epoch_9.safetensors"
train "$d" "$tmp/tiny.txt" --set epochs=1 --set seed=7 --overwrite
t "--overwrite replaces the earlier run (its epoch models go)" \
  '[ $rc -eq 0 ] && [ ! -e "$d/models/memory_model_epoch_9.safetensors" ] && ! cmp -s "$tmp/before.safetensors" "$d/models/memory_model.safetensors" \
   && [ "$(grep -c "epoch 1/1:" "$d/logs/training.log")" -eq 1 ]'

d="$tmp/busy"
bg_out="$tmp/busy.out" start "$d" "$tmp/long.txt" --set epochs=2000 --set patience=5000
first=$pid
until_true 60 "[ \"\$(cat '$d/models/.drlmem-train.lock' 2>/dev/null)\" = $first ]"
train "$d" "$tmp/tiny.txt" --set epochs=1 --overwrite
t "a run on a folder another run is using: one line naming the folder and its pid" \
  '[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && has "$d/models.* is in use by another training run (pid $first)"'
kill -9 "$first"; wait "$first" 2>/dev/null
train "$d" "$tmp/tiny.txt" --set epochs=1 --overwrite
t "after kill -9 of that run its lock file does not block a new one" '[ $rc -eq 0 ] && [ -e "$d/models/.drlmem-train.lock" ]'

"$E" "$root/scripts/train.lua" --config "$root/configs/tiny.yaml" --set "data_path=$tmp/tiny.txt" --set save_path=/proc/self \
  --set "log_file=$tmp/ro/logs/training.log" --set epochs=1 --progress none >"$tmp/out" 2>&1 </dev/null; rc=$?
t "an unwritable save folder is found before training, in one line" \
  '[ $rc -eq 1 ] && has "cannot write in folder .*/proc/self" && ! has "epoch 1/"'

# --- kill -9 at several moments, resume, compare with an uninterrupted run ----------------------
cfg=(--set epochs=3 --set checkpoint_steps=7)
t0=$(date +%s%N)
train "$tmp/kref" "$tmp/tiny.txt" "${cfg[@]}"
wall_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t "the uninterrupted reference run" '[ $rc -eq 0 ]'
d="$tmp/k"
kills=0 inside=1
# 1: inside the write of the first periodic checkpoint
DRLMEM_TEST_WRITE_DELAY_MS=400 start "$d" "$tmp/tiny.txt" "${cfg[@]}"
if until_true 60 "ls '$d/models/'last.safetensors.tmp.* >/dev/null 2>&1"; then inside=0; fi
kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)); wait "$pid" 2>/dev/null
t "killed with SIGKILL inside a checkpoint write" '[ $inside -eq 0 ]'
# then at fixed fractions of the reference run's wall time into each
# resumed run, so the kills land on a slow machine too; they add up to
# less than one run, so no resumed run can finish before its kill
for pct in 8 15 12 18 10; do
  off=$(awk -v w="$wall_ms" -v p="$pct" 'BEGIN { printf "%.3f", w * p / 100000 }')
  if [ -e "$d/models/last.safetensors" ]; then
    start "$d" "$tmp/tiny.txt" "${cfg[@]}" --resume "$d/models/last.safetensors"
  else
    start "$d" "$tmp/tiny.txt" "${cfg[@]}" --overwrite
  fi
  sleep "$off"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)); wait "$pid" 2>/dev/null
done
n_resumes=0
while [ $n_resumes -lt 10 ]; do
  n_resumes=$((n_resumes + 1))
  if [ -e "$d/models/last.safetensors" ]; then
    train "$d" "$tmp/tiny.txt" "${cfg[@]}" --resume "$d/models/last.safetensors"
  else
    train "$d" "$tmp/tiny.txt" "${cfg[@]}" --overwrite
  fi
  [ $rc -eq 0 ] && break
done
t "after $kills kills the resumed run finishes" '[ $rc -eq 0 ] && [ $kills -ge 3 ]'
"$E" "$root/tests/host/same_tensors.lua" "$tmp/kref/models/last.safetensors" "$d/models/last.safetensors" >"$tmp/out" 2>&1; rc=$?
t "... bit for bit where the uninterrupted run ends (weights, memory, optimizer moments)" '[ $rc -eq 0 ]'
"$E" "$root/tests/host/same_tensors.lua" "$tmp/kref/models/memory_model.safetensors" "$d/models/memory_model.safetensors" >"$tmp/out" 2>&1; rc=$?
t "... with the same best model" '[ $rc -eq 0 ]'
untimed() { sed -E 's/"(seconds|train_seconds|tokens_per_s|padded_tokens_per_s)":[^,]*,//g' "$1"; }
cmp -s <(untimed "$tmp/kref/logs/metrics.jsonl") <(untimed "$d/logs/metrics.jsonl"); rc=$?
t "... the same metrics.jsonl (timings aside)" '[ $rc -eq 0 ]'
once() { local e; for e in 1 2 3; do [ "$(grep -c " epoch $e/3: " "$d/logs/training.log")" -eq 1 ] || return 1; done; }
t "... every epoch logged exactly once, and no temporary left" 'once && ! ls "$d"/*/*.tmp.* >/dev/null 2>&1'

echo "1..$n"
