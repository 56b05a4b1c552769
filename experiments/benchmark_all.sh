#!/usr/bin/env bash
# Every figure of the population engine on this machine, in one command:
#
#   experiments/benchmark_all.sh OUTDIR
#
# Each step writes OUTDIR/<step>.json (the benchmark's JSON) and OUTDIR/<step>.log
# (its progress lines and errors), most important first, so a run stopped early
# keeps what it measured. OUTDIR/summary.txt lists each step's exit status and
# seconds.
#
# On CPU it measures the default strategy (loop). On a GPU or TPU it first runs
# the fused kernel's tests natively (tests/test_fused.py, against to_optax), then
# measures the vmap and fused strategies side by side, step by step: the digits
# overheads (--quick), the paper-scale CNNs, the 50 x 50 digits search and the
# optimizer step alone. docs/benchmarks.md says what each figure means.
#
# Environment: PYTHON (default python3), STEP_LIMIT (seconds per step, default
# 600), PAPER_FLAGS (extra flags of the paper-scale step; on CPU the default is
# "--paper_steps=5 --paper_populations=16", the figures docs/benchmarks.md gives
# for 2 cores: 50 steps there take over an hour, and P = 64 of the BatchNorm CNN
# more memory than 24 GiB).
set -uo pipefail

out=${1:?usage: experiments/benchmark_all.sh OUTDIR}
python=${PYTHON:-python3}
limit=${STEP_LIMIT:-600}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out" || exit 2
: >"$out/summary.txt"

step() {  # step NAME ARGS...: $python ARGS, stdout to NAME.json, stderr to NAME.log
  local name=$1 start=$SECONDS status
  shift
  echo "[benchmark_all] $name: $python $*" >&2
  timeout "$limit" "$python" "$@" >"$out/$name.json" 2>"$out/$name.log"
  status=$?
  echo "$name exit=$status seconds=$((SECONDS - start))" | tee -a "$out/summary.txt" >&2
}

backend=$("$python" -c "import jax; print(jax.default_backend())") || exit 2
echo "[benchmark_all] backend: $backend" | tee -a "$out/summary.txt" >&2

if [[ $backend == cpu ]]; then
  strategies=(loop)
  paper_flags=${PAPER_FLAGS---paper_steps=5 --paper_populations=16}
else
  paper_flags=${PAPER_FLAGS-}
  strategies=(vmap fused)
  step fused_tests -m pytest -q -x -n 0 -p no:cacheprovider "$here/../tests/test_fused.py"
fi
for s in "${strategies[@]}"; do
  step "engine_$s" "$here/benchmark.py" --quick --strategy="$s"
done
for s in "${strategies[@]}"; do
  # shellcheck disable=SC2086  # a list of flags
  step "paper_$s" "$here/benchmark.py" --scale=paper --strategy="$s" $paper_flags
done
for s in "${strategies[@]}"; do
  step "search_$s" "$here/benchmark_search.py" --part=speed --strategy="$s"
done
for s in "${strategies[@]}"; do
  step "step_$s" "$here/benchmark_step.py" --strategy="$s"
done
