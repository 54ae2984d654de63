#!/usr/bin/env bash
# bench_mpi.sh: the scaling figure of training across processes (README
# "Training across processes"), measured in one run: tokens/s of the
# training step (scripts/bench_mpi.lua) for 2 ranks x 1 OpenBLAS thread
# under mpirun, 1 process x 2 threads and 1 process x 1 thread, at each
# vocabulary and batch per rank, each measurement a fresh process and the
# three layouts in turn for each case (so a noisy neighbour slows all
# three); then the table, with the allreduce's share of a step and the
# bytes each rank allreduces per step.
#
#   scripts/bench_mpi.sh [VOCABS [BATCHES [STEPS]]]    default "64 10000" "16 64" 3
#   BENCH_SEQ=10 scripts/bench_mpi.sh 64 2 1           a quick look (sequence 10)
#
# The ranks stay on this machine, on shared memory and loopback. The JSON
# lines go to $BENCH_OUT (default a temporary file), the table to stdout.
set -u
cd "$(dirname "$0")/.."
E=${DRLMEM_EXE:-./build/drlmem}
VOCABS=${1:-64 10000}
BATCHES=${2:-16 64}
STEPS=${3:-3}
SEQ=${BENCH_SEQ:-100}
OUT=${BENCH_OUT:-$(mktemp)}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader
        --mca oob_tcp_if_include lo --mca btl_tcp_if_include lo)
: >"$OUT"
echo "# bench_mpi $(date -u '+%Y-%m-%d %H:%M UTC'): T=$SEQ E=D=128 M=512 H=256x2, median of $STEPS steps (1 warm-up); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for V in $VOCABS; do
  for B in $BATCHES; do
    a=(scripts/bench_mpi.lua --vocab "$V" --batch "$B" --seq "$SEQ" --steps "$STEPS" --warmup 1)
    OPENBLAS_NUM_THREADS=1 "$E" "${a[@]}" --threads 1 >>"$OUT" || exit 1
    OPENBLAS_NUM_THREADS=2 "$E" "${a[@]}" --threads 2 >>"$OUT" || exit 1
    "${MPIRUN[@]}" -x OPENBLAS_NUM_THREADS=1 "$E" "${a[@]}" --threads 1 >>"$OUT" || exit 1
    echo "# V=$V B=$B done $(date -u +%H:%M:%S)" >&2
  done
done
"$E" scripts/bench_mpi.lua --report "$OUT"
