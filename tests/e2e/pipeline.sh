#!/usr/bin/env bash
# Pipeline strategies on a reference case: `hp check CASE --devices threads:N --strategy S` passes
# the reference comparisons (losses, step-0 gradients, final weights) and prints the
# single-device losses within 1e-5 relative, for pp2, pp3 (blocks split unevenly), every schedule
# with 3 micro-batches of the case's batch (uneven: 2+1+1 of 4; fewer when it has fewer rows), interleaved with chunks placed by hand, and, when an
# mpirun is given, pp3 under mpirun -np 3. Stages on several devices: pipeline_submesh.sh.
# usage: pipeline.sh HP CASE_DIR [MPIEXEC]
source "$(dirname "$0")/pipeline_lib.sh" "$@"

# hp plan explains a pipeline strategy: its stages, the verified schedule, the simulation.
"$HP" plan --model gpt2-tiny --devices threads:2 --strategy pp2 > "$TMP/plan.txt" ||
  fail "hp plan --strategy pp2"
grep -q "^schedule (verified):" "$TMP/plan.txt" && grep -q "^r1: F1.0 BW1.0" "$TMP/plan.txt" &&
  grep -q "bubble" "$TMP/plan.txt" || { cat "$TMP/plan.txt" >&2; fail "hp plan pp2 output"; }
check pp2 threads:2 pp2
((blocks >= 3)) && check pp3 threads:3 pp3
for schedule in gpipe 1f1b interleaved zb-h1 zbv auto; do
  extra=""
  if [[ $schedule == interleaved || $schedule == zbv ]]; then
    ((blocks >= 4)) || continue  # two chunks on each of two stages
    extra="  virtual: 2"
  fi
  printf 'pipeline:\n  schedule: %s\n  microbatches: %d\n%s\n' "$schedule" "$micro" "$extra" \
    > "$TMP/$schedule.yaml"
  check "$schedule, $micro micro-batches" threads:2 "$TMP/$schedule.yaml"
done
if ((blocks >= 4)); then  # chunks by hand: stage 0 holds blocks 0 and 2, stage 1 blocks 1 and 3+
  cat > "$TMP/hand.yaml" <<YAML
pipeline:
  schedule: interleaved
  virtual: 2
  microbatches: 2
  stages:
    - blocks: ["0", "2"]
      devices: 1
    - blocks: ["1", "3-$((blocks - 1))"]
      devices: 1
YAML
  check "interleaved by hand" threads:2 "$TMP/hand.yaml"
fi
if [[ -n "$MPIEXEC" ]] && ((blocks >= 3)); then
  check "pp3 under mpirun -np 3" mpi pp3 timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 3
fi
# A pipeline run's checkpoint (each stage's rank writes its parameters) resumes on one device.
if [[ $(basename "$CASE") == gpt2-tiny ]]; then
  t=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --json --ckpt-dir "$TMP/ck")
  "$HP" train "${t[@]}" --steps 2 --devices threads:2 --strategy pp2 > /dev/null 2> "$TMP/err.txt" ||
    { cat "$TMP/err.txt" >&2; fail "pp2 with a checkpoint"; }
  "$HP" ckpt info "$TMP/ck" > /dev/null || fail "hp ckpt info of a pp2 checkpoint"
  "$HP" train "${t[@]}" --steps 3 --resume > "$TMP/resumed.txt" 2> "$TMP/err.txt" ||
    { cat "$TMP/err.txt" >&2; fail "resuming a pp2 checkpoint on one device"; }
  grep -q '"step": 2,' "$TMP/resumed.txt" || fail "the resumed run did not continue at step 2"
  # --reorder-pipeline: after the second step every rank runs the order the measured costs favour
  # (or keeps its own); refused without a pipeline.
  r=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --json --steps 3)
  "$HP" train "${r[@]}" --devices threads:2 --strategy pp2 --reorder-pipeline > /dev/null \
    2> "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "pp2 with --reorder-pipeline"; }
  grep -Eq "^pipeline schedule (reordered|kept: its order is no slower) at the measured costs$" \
    "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "--reorder-pipeline said nothing"; }
  if "$HP" train "${r[@]}" --reorder-pipeline > /dev/null 2> "$TMP/err.txt" ||
    ! grep -q "needs a pipeline strategy" "$TMP/err.txt"; then
    cat "$TMP/err.txt" >&2
    fail "--reorder-pipeline on one device was not refused"
  fi
fi
echo PASS
