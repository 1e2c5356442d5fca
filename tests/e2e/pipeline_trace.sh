#!/usr/bin/env bash
# Timelines and traces of pipeline steps: `hp plan --timeline` writes the simulated timeline (SVG,
# one row per rank; with --profile from a profiling step's costs), and `hp train --trace` writes
# every rank's measured actions as Chrome-trace JSON, which trace_check.py parses: every rank has a
# track, every scheduled compute action of every step appears once and in the schedule's order,
# times are non-negative and ordered, each RECV ends after its SEND started. Also for a
# non-pipeline strategy (the step's program and optimizer per rank) and, with an mpirun, pp2
# under mpirun -np 2 (gathered to rank 0).
# usage: pipeline_trace.sh HP [MPIEXEC]
set -euo pipefail
HP=$1
MPIEXEC=${2:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
CHECK="$(dirname "$0")/trace_check.py"
steps=2
common=(--model gpt2-tiny --batch 4 --seq 32 --threads 1)

for schedule in 1f1b zb-h1; do
  printf 'pipeline:\n  schedule: %s\n  microbatches: 3\n' "$schedule" > "$TMP/$schedule.yaml"
  # The schedule as hp plan prints it ("r0: F0.0 B0.0 W0.0 ... OPT"), and its timelines.
  "$HP" plan "${common[@]}" --devices threads:2 --strategy "$TMP/$schedule.yaml" \
    --timeline "$TMP/$schedule.svg" > "$TMP/$schedule.plan" || fail "hp plan $schedule"
  grep -E '^r[0-9]+:' "$TMP/$schedule.plan" > "$TMP/$schedule.schedule"
  [[ $(wc -l < "$TMP/$schedule.schedule") -eq 2 ]] || { cat "$TMP/$schedule.plan" >&2; fail "$schedule: no schedule"; }
  python3 "$CHECK" svg "$TMP/$schedule.svg" 2 || fail "$schedule: modelled timeline"
  "$HP" plan "${common[@]}" --devices threads:2 --strategy "$TMP/$schedule.yaml" --profile \
    --explain --timeline "$TMP/$schedule-profiled.svg" > "$TMP/$schedule-profiled.plan" ||
    fail "hp plan --profile $schedule"
  grep -q "costs of a profiling step" "$TMP/$schedule-profiled.plan" &&
    grep -q "^r1: .*F c1 m0 \[" "$TMP/$schedule-profiled.plan" ||
    { cat "$TMP/$schedule-profiled.plan" >&2; fail "$schedule: --profile --explain output"; }
  python3 "$CHECK" svg "$TMP/$schedule-profiled.svg" 2 || fail "$schedule: profiled timeline"

  "$HP" train "${common[@]}" --data random --steps $steps --devices threads:2 \
    --strategy "$TMP/$schedule.yaml" --trace "$TMP/$schedule.json" > "$TMP/$schedule.out" 2>&1 ||
    { cat "$TMP/$schedule.out" >&2; fail "hp train --trace $schedule"; }
  python3 "$CHECK" pipeline "$TMP/$schedule.json" "$TMP/$schedule.schedule" $steps ||
    fail "$schedule: trace"
done

# A non-pipeline strategy: per rank, each step's program and its optimizer.
"$HP" train "${common[@]}" --data random --steps $steps --devices threads:2 --strategy dp2 \
  --trace "$TMP/dp2.json" > "$TMP/dp2.out" 2>&1 || { cat "$TMP/dp2.out" >&2; fail "hp train --trace dp2"; }
printf 'r0: BW0.0 OPT\nr1: BW0.0 OPT\n' > "$TMP/dp2.schedule"
python3 "$CHECK" pipeline "$TMP/dp2.json" "$TMP/dp2.schedule" $steps || fail "dp2: trace"

# --timeline without a pipeline is refused.
if "$HP" plan "${common[@]}" --devices threads:2 --strategy dp2 --timeline "$TMP/x.svg" \
  > "$TMP/err.txt" 2>&1; then
  fail "hp plan --timeline accepted dp2"
fi
grep -q "need a pipeline strategy" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "dp2 --timeline message"; }

if [[ -n "$MPIEXEC" ]]; then
  timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$HP" train "${common[@]}" \
    --data random --steps $steps --devices mpi --strategy "$TMP/zb-h1.yaml" \
    --trace "$TMP/mpi.json" > "$TMP/mpi.out" 2>&1 || { cat "$TMP/mpi.out" >&2; fail "mpirun --trace"; }
  python3 "$CHECK" pipeline "$TMP/mpi.json" "$TMP/zb-h1.schedule" $steps || fail "mpirun: trace"
fi
echo "pipeline timelines and traces: ok"
