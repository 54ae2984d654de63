#!/usr/bin/env bash
# learning.sh: the README's "Learning" figures. Trains the default
# configuration and an improved one on two real corpora, each with drlmem and
# with the PyTorch reference (../shared/reference/reference.py), one process
# at a time on one OpenBLAS thread, and writes the comparison to $OUT
# (logs/learning/ by default): per run metrics.jsonl, its log and its wall
# time; summary.md with the tables; kjv.svg and tinyshakespeare.svg with the
# validation (and training) loss by epoch of both programs.
#
#   scripts/learning.sh                 # everything: 8 runs, about 35 minutes on 2 cores
#   scripts/learning.sh --report        # only redo summary.md and the figures
#   scripts/learning.sh --lm            # configs/lm-char.yaml on all of Tiny Shakespeare (~20 min)
#   ONLY=kjv-default-drlmem scripts/learning.sh   # runs whose name matches
#
# The corpora are read from ../shared/data (never copied into the repo); a
# missing one is skipped with a message. Fixed subsets keep each run near
# five minutes, made reproducibly into data/ (git-ignored):
#   kjv.txt             first $KJV_LINES lines (verses): word tokenizer, lines
#                       mode, max_seq_length $KJV_T (a few long verses are cut)
#   tinyshakespeare.txt first $SHAKES_CHARS characters: char tokenizer, stream
#                       mode, max_seq_length 100
# Configurations (model and optimiser settings from configs/default.yaml;
# both programs get the same values, the reference through a copy of the
# keys it knows):
#   default   configs/default.yaml as it is (loss_ignore_pad true)
#   improved  default + $IMPROVED (output_activation none: no GELU on the
#             logits, which otherwise cannot go below -0.17)
# vocab_from=train for both; data order and initialisation differ between the
# programs (different generators), so compare curves, not digits.
set -euo pipefail
cd "$(dirname "$0")/.."

DRLMEM=${DRLMEM:-./drlmem}
PYTHON=${PYTHON:-/usr/bin/python3}
REFERENCE=${REFERENCE:-../shared/reference/reference.py}
DATA_DIR=${DATA_DIR:-../shared/data}
OUT=${OUT:-logs/learning}
EPOCHS=${EPOCHS:-4}
KJV_LINES=${KJV_LINES:-1200}
KJV_T=${KJV_T:-64}
SHAKES_CHARS=${SHAKES_CHARS:-100000}
IMPROVED=${IMPROVED:-"output_activation=none"}
ONLY=${ONLY:-}

report() {
  "$DRLMEM" scripts/learning_report.lua --dir "$OUT" --epochs "$EPOCHS"
}
if [ "${1:-}" = "--report" ]; then report; exit 0; fi

# --lm: the shipped language-model configuration on the full Tiny Shakespeare,
# split as nanoGPT splits it (first 90% of the characters train, the rest
# validates): configs/lm-char.yaml, one run, about 20 minutes on 2 idle cores.
# Prints the validation loss (nats per character) of every epoch and the
# wall time; the run's log, metrics and figure go to $OUT/lm-char/.
if [ "${1:-}" = "--lm" ]; then
  shakes="$DATA_DIR/tinyshakespeare.txt"
  if [ ! -f "$shakes" ]; then echo "learning.sh: $shakes is absent: skipping the lm-char run"; exit 0; fi
  mkdir -p data "$OUT/lm-char"
  n=$(wc -c < "$shakes"); k=$((n * 9 / 10))
  head -c "$k" "$shakes" > data/tinyshakespeare-train.txt
  tail -c +"$((k + 1))" "$shakes" > data/tinyshakespeare-val.txt
  sets=(); for kv in ${LM_SETS:-}; do sets+=(--set "$kv"); done # e.g. LM_SETS="epochs=1" for a try
  t0=$(date +%s)
  "$DRLMEM" scripts/train.lua --config configs/lm-char.yaml --overwrite --progress plain "${sets[@]}" \
    --set "log_file=$OUT/lm-char/training.log" --set "save_path=$OUT/lm-char/models/" \
    > "$OUT/lm-char/stdout.txt" 2>&1 || { tail -5 "$OUT/lm-char/stdout.txt" >&2; exit 1; }
  grep -E "^epoch +[0-9]+/[0-9]+:" "$OUT/lm-char/stdout.txt" | cut -d' ' -f1-7
  echo "lm-char: $(( $(date +%s) - t0 )) s in all"
  exit 0
fi

if [ ! -x "$DRLMEM" ]; then echo "learning.sh: $DRLMEM is missing: run make first" >&2; exit 1; fi
if [ ! -f "$REFERENCE" ]; then echo "learning.sh: $REFERENCE is missing" >&2; exit 1; fi
mkdir -p "$OUT" data

# The keys of configs/default.yaml the reference also knows, with the same
# values (it rejects drlmem's extra keys such as threads or min_freq).
REF_KEYS="embedding_dim memory_size learning_rate batch_size max_seq_length train_size_ratio val_size_ratio
epochs accumulation_steps write_strength patience seed optimizer weight_decay grad_clip scheduler t_max eta_min
hidden_size num_layers dropout output_activation loss_ignore_pad tokenizer sample_mode vocab_from"
awk -v keys="$(echo $REF_KEYS)" 'BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
  /^[a-z_]+:/ { key = $1; sub(/:$/, "", key); if (key in want) print }' configs/default.yaml \
  > "$OUT/reference-default.yaml"

# name corpus config impl data settings...
run() {
  local name=$1 impl=$2 data=$3; shift 3
  local dir="$OUT/$name"
  if [ -n "$ONLY" ] && [[ "$name" != *$ONLY* ]]; then return 0; fi
  rm -rf "$dir"; mkdir -p "$dir"
  local sets=() kv
  for kv in "$@"; do sets+=(--set "$kv"); done
  echo "== $name ($(date +%H:%M:%S))"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  if [ "$impl" = drlmem ]; then
    "$DRLMEM" scripts/train.lua --config configs/default.yaml --set "data_path=$data" "${sets[@]}" \
      --set threads=1 --set "log_file=$dir/training.log" --set "save_path=$dir/models" --progress plain \
      > "$dir/stdout.txt" 2>&1 || rc=$?
    rm -rf "$dir/models"
  else
    OPENBLAS_NUM_THREADS=1 "$PYTHON" "$REFERENCE" train --data "$data" --config "$OUT/reference-default.yaml" \
      "${sets[@]}" --json-out "$dir/metrics.jsonl" --threads 1 --blas-threads 1 \
      > "$dir/stdout.txt" 2>&1 || rc=$?
  fi
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{ printf "%.1f\n", $2 - $1 }' > "$dir/wall_seconds"
  grep -E "^epoch +[0-9]+(/[0-9]+:| train)" "$dir/stdout.txt" || true
  if [ "$rc" -ne 0 ]; then
    echo "learning.sh: $name failed (exit $rc); see $dir/stdout.txt" >&2
    tail -5 "$dir/stdout.txt" >&2
    FAILED=1
    return 0
  fi
  echo "   $(cat "$dir/wall_seconds") s"
}

corpus_runs() {
  local corpus=$1 data=$2; shift 2
  local common=("epochs=$EPOCHS" "$@")
  local impl
  for impl in drlmem reference; do
    run "$corpus-default-$impl" "$impl" "$data" "${common[@]}"
    # shellcheck disable=SC2086
    run "$corpus-improved-$impl" "$impl" "$data" "${common[@]}" $IMPROVED
  done
}

FAILED=0
if [ -f "$DATA_DIR/kjv.txt" ]; then
  head -n "$KJV_LINES" "$DATA_DIR/kjv.txt" > "data/kjv_$KJV_LINES.txt"
  corpus_runs kjv "data/kjv_$KJV_LINES.txt" tokenizer=word sample_mode=lines "max_seq_length=$KJV_T" \
    vocab_from=train
else
  echo "learning.sh: $DATA_DIR/kjv.txt is absent: skipping the kjv runs"
fi
if [ -f "$DATA_DIR/tinyshakespeare.txt" ]; then
  head -c "$SHAKES_CHARS" "$DATA_DIR/tinyshakespeare.txt" > "data/tinyshakespeare_$SHAKES_CHARS.txt"
  corpus_runs tinyshakespeare "data/tinyshakespeare_$SHAKES_CHARS.txt" tokenizer=char sample_mode=stream \
    max_seq_length=100 vocab_from=train
else
  echo "learning.sh: $DATA_DIR/tinyshakespeare.txt is absent: skipping the tinyshakespeare runs"
fi
{
  echo "KJV_LINES=$KJV_LINES KJV_T=$KJV_T SHAKES_CHARS=$SHAKES_CHARS EPOCHS=$EPOCHS IMPROVED=$IMPROVED"
  echo "drlmem $DRLMEM at ${DRLMEM_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
} > "$OUT/settings.txt"
report
exit $FAILED
