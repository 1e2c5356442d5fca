#!/usr/bin/env bash
# Pipeline stages on sub-meshes on a reference case of 4+ blocks: `hp check` passes the reference
# comparisons and matches one device's losses within 1e-5 relative for two stages of dp2, two of
# tp2, and stages of 2+1 devices (tp2, then one device; and dp2 written as rules), under every
# schedule with 3 micro-batches of the case's batch (2+1+1 of 4: a dp2 stage gets one-row
# micro-batches), and the presets pp2xdp2 / pp2xtp2 as given on the command line. When an mpirun
# is given, the 2+1 layout under mpirun -np 3 and pp2xdp2 under -np 4 (two stage groups split at
# once). On gpt2-deep, a pp2xdp2 checkpoint resumes on one device, a one-device checkpoint under
# 2+1 and a 2+1 one (tp-sharded pieces) under pp2xdp2, each to the uninterrupted run's losses.
# usage: pipeline_submesh.sh HP CASE_DIR [MPIEXEC]
source "$(dirname "$0")/pipeline_lib.sh" "$@"
((blocks >= 4)) || fail "$CASE: $blocks blocks, the sub-mesh layouts need 4"
half=$((blocks / 2))
last=$((blocks - 1))

# layout NAME SCHEDULE: a strategy file with two stages (blocks split at half; interleaved and zbv
# place two chunks per stage by hand) on the devices and strategies NAME gives.
layout() {
  local name=$1 schedule=$2 s0 s1 b0 b1 extra=""
  case $name in
    dp2+dp2) s0=$'      devices: 2\n      strategy: dp2' s1=$s0 ;;
    tp2+tp2) s0=$'      devices: 2\n      strategy: tp2' s1=$s0 ;;
    tp2+1) s0=$'      devices: 2\n      strategy: tp2' s1='      devices: 1' ;;
    rules+1) s0=$'      devices: 2\n      strategy: {mesh: {dp: 2}, presets: [dp]}'
      s1='      devices: 1' ;;
  esac
  case $schedule in
    interleaved) b0='["0", "2"]' b1="[\"1\", \"3-$last\"]" extra="  virtual: 2" ;;
    zbv) b0="[\"0\", \"3-$last\"]" b1='["1", "2"]' extra="  virtual: 2" ;;
    *) b0="\"0-$((half - 1))\"" b1="\"$half-$last\"" ;;
  esac
  cat <<YAML
pipeline:
  schedule: $schedule
  microbatches: $micro
$extra
  stages:
    - blocks: $b0
$s0
    - blocks: $b1
$s1
YAML
}

for name in dp2+dp2 tp2+tp2 tp2+1; do
  devices=threads:4
  [[ $name == *+1 ]] && devices=threads:3
  for schedule in gpipe 1f1b interleaved zb-h1 zbv auto; do
    layout "$name" "$schedule" > "$TMP/$name-$schedule.yaml"
    check "$name $schedule, $micro mb" "$devices" "$TMP/$name-$schedule.yaml"
  done
done
layout rules+1 1f1b > "$TMP/rules.yaml"
check "dp2 rules+1 1f1b, $micro mb" threads:3 "$TMP/rules.yaml"
check "preset pp2xdp2" threads:4 pp2xdp2
check "preset pp2xtp2" threads:4 pp2xtp2
if [[ -n "$MPIEXEC" ]]; then
  check "tp2+1 under mpirun -np 3" mpi "$TMP/tp2+1-1f1b.yaml" \
    timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 3
  check "pp2xdp2 under mpirun -np 4" mpi pp2xdp2 \
    timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 4
  # A device budget that only holds with kept activations on the host (gpipe keeps every
  # micro-batch on every stage, the tp2 stage's pieces among them): a 4 KiB one is refused on
  # every process naming the smallest, which then runs (the strategy file's offload: section)
  # with the checks and losses of no budget.
  err=$(timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 3 "$HP" check "$CASE" \
    --devices mpi --strategy "$TMP/tp2+1-gpipe.yaml" --device-memory 4096 2>&1 > /dev/null) &&
    fail "tp2+1 gpipe under mpirun: a 4 KiB budget was accepted"
  smallest=$(sed -n 's/.*fits in is \([0-9]*\) bytes.*/\1/p' <<<"$err" | head -1)
  grep -q "with activations offloaded" <<<"$err" || fail "tp2+1 gpipe under mpirun: $err"
  cp "$TMP/tp2+1-gpipe.yaml" "$TMP/tp2+1-gpipe-budget.yaml"
  echo "offload: {device_budget: $smallest}" >> "$TMP/tp2+1-gpipe-budget.yaml"
  check "tp2+1 gpipe at $smallest bytes under mpirun -np 3" mpi "$TMP/tp2+1-gpipe-budget.yaml" \
    timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 3
  grep '"memory": "device"' "$TMP/out.txt" | sed 's/.*"budget": \([0-9]*\), "peak": \([0-9]*\).*/\1 \2/' |
    awk -v b="$smallest" '$1 != b || $2 > $1 { bad = 1 } { n++ } END { exit bad || n != 3 }' ||
    fail "tp2+1 gpipe under mpirun: a process above its budget: $(cat "$TMP/out.txt")"
fi

# Checkpoints across layouts, each resumed at step 2 with the losses of an uninterrupted
# one-device run.
if [[ $(basename "$CASE") == gpt2-deep ]]; then
  # A constant learning rate: the schedule does not depend on --steps.
  t=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --json --min-lr-ratio 1)
  step_loss() { grep "\"step\": $2," "$1" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/'; }
  "$HP" train "${t[@]}" --steps 4 > "$TMP/whole.txt" 2> "$TMP/err.txt" ||
    { cat "$TMP/err.txt" >&2; fail "the uninterrupted run"; }
  resumed() {  # NAME FROM_ARGS... -- TO_ARGS...: save 2 steps under FROM, resume to 4 under TO
    local name=$1 from=() to=()
    shift
    while [[ $1 != -- ]]; do from+=("$1"); shift; done
    shift
    to=("$@")
    rm -rf "$TMP/ck"
    "$HP" train "${t[@]}" --ckpt-dir "$TMP/ck" --steps 2 "${from[@]}" > /dev/null 2> "$TMP/err.txt" ||
      { cat "$TMP/err.txt" >&2; fail "$name: saving"; }
    "$HP" train "${t[@]}" --ckpt-dir "$TMP/ck" --steps 4 --resume "${to[@]}" > "$TMP/res.txt" \
      2> "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "$name: resuming"; }
    for s in 2 3; do
      a=$(step_loss "$TMP/whole.txt" $s) b=$(step_loss "$TMP/res.txt" $s)
      [[ -n $a && -n $b ]] || { cat "$TMP/res.txt" >&2; fail "$name: no loss at step $s"; }
      awk -v a="$a" -v b="$b" -v n="$name" -v s=$s 'BEGIN { d = a - b; if (d < 0) d = -d;
        printf "%-28s step %d loss %s vs %s uninterrupted\n", n, s, b, a; exit !(d <= 1e-5 * a) }' ||
        fail "$name: step $s loss $b, uninterrupted $a"
    done
  }
  resumed "pp2xdp2 -> one device" --devices threads:4 --strategy pp2xdp2 --
  printf 'pipeline:\n  schedule: 1f1b\n  microbatches: 3\n  stages:\n%s\n%s\n' \
    $'    - blocks: "0"\n      devices: 2\n      strategy: tp2' $'    - blocks: "1"\n      devices: 1' \
    > "$TMP/two_one.yaml"  # gpt2-tiny has 2 blocks
  resumed "one device -> tp2+1" -- --devices threads:3 --strategy "$TMP/two_one.yaml"
  resumed "tp2+1 -> pp2xdp2" --devices threads:3 --strategy "$TMP/two_one.yaml" -- \
    --devices threads:4 --strategy pp2xdp2
fi
echo PASS
