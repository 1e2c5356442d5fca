# Offload through the CLI: hp check under a device budget and with optimizer state on disk prints
# losses identical to the run without offload, on one device and per rank on a mesh; hp train offloads, checkpoints and resumes; hp plan
# --explain lists the transfers; a budget below the smallest feasible one names that minimum.
# Without the reference cases in ../shared the rest runs, then the test is skipped (CI: fails).
source "$(dirname "$0")/lib.sh"
REF="${HP_SHARED:-$ROOT/../shared}/reference"
losses() { grep '"step"' "$1"; }

missing=()
for case in gpt2-tiny llama-tiny; do
  if [[ ! -f "$REF/$case/case.json" ]]; then
    missing+=("$REF/$case")
    continue
  fi
  "$HP" check "$REF/$case" > "$WORK/$case.plain" || fail "hp check $case"
  "$HP" check "$REF/$case" --device-memory 25% > "$WORK/$case.budget" 2> "$WORK/$case.budget.err" \
    || fail "hp check $case --device-memory 25%: $(cat "$WORK/$case.budget.err")"
  grep -q "transfers" "$WORK/$case.budget.err" || fail "$case: no offload summary under a budget"
  "$HP" check "$REF/$case" --optimizer-state disk --offload-dir "$WORK/disk-$case" \
    > "$WORK/$case.disk" || fail "hp check $case --optimizer-state disk"
  [[ -n "$(losses "$WORK/$case.plain")" ]] || fail "$case: no losses printed"
  diff <(losses "$WORK/$case.plain") <(losses "$WORK/$case.budget") \
    || fail "$case: losses under a 25% budget differ"
  diff <(losses "$WORK/$case.plain") <(losses "$WORK/$case.disk") \
    || fail "$case: losses with optimizer state on disk differ"
  [[ -z "$(find "$WORK/disk-$case" -type f 2> /dev/null)" ]] \
    || fail "$case: the disk tier left files behind"
  # Per rank on a mesh: each rank plans its own lowered program under its budget; the losses
  # are those of the same strategy without offload, and every rank's peak stays in its budget.
  for spec in "2 fsdp2 --device-memory 25% --optimizer-state disk --offload-dir $WORK/mesh-$case" \
              "4 tp4 --device-memory 25%"; do
    set -- $spec
    n=$1 s=$2; shift 2
    "$HP" check "$REF/$case" --devices "threads:$n" --strategy "$s" > "$WORK/$case.$s.plain" \
      2> /dev/null || fail "hp check $case $s"
    "$HP" check "$REF/$case" --devices "threads:$n" --strategy "$s" "$@" > "$WORK/$case.$s.off" \
      2> "$WORK/$case.$s.err" || fail "hp check $case $s $*: $(cat "$WORK/$case.$s.err")"
    diff <(losses "$WORK/$case.$s.plain") <(losses "$WORK/$case.$s.off") \
      || fail "$case $s: losses under offload differ"
    [[ $(grep -c '"memory": "device"' "$WORK/$case.$s.off") == "$n" ]] \
      || fail "$case $s: no device memory line per rank"
    grep '"memory": "device"' "$WORK/$case.$s.off" | sed 's/.*"budget": \([0-9]*\), "peak": \([0-9]*\).*/\1 \2/' |
      awk -v w="$case $s" '$1 == 0 || $2 > $1 { print "FAIL: " w ": peak " $2 " over budget " $1; bad = 1 }
                           END { exit bad }' || fail "$case $s: a rank above its budget"
  done
  [[ -z "$(find "$WORK/mesh-$case" -type f 2> /dev/null)" ]] \
    || fail "$case: the ranks' disk tiers left files behind"
  # Pipeline stages keep their optimizer state on the host or on disk: the losses of pp2 without
  # it, the largest rank's state on the device (parameters, moments) smaller, no files left.
  state() { grep '"memory": "state"' "$1" | sed 's/.*"measured_max": \([0-9]*\).*/\1/'; }
  "$HP" check "$REF/$case" --devices threads:2 --strategy pp2 > "$WORK/$case.pp2.plain" \
    2> /dev/null || fail "hp check $case pp2"
  for tier in host disk; do
    "$HP" check "$REF/$case" --devices threads:2 --strategy pp2 --optimizer-state "$tier" \
      --offload-dir "$WORK/pp-$case" > "$WORK/$case.pp2.$tier" 2> "$WORK/$case.pp2.err" ||
      fail "hp check $case pp2 --optimizer-state $tier: $(cat "$WORK/$case.pp2.err")"
    diff <(losses "$WORK/$case.pp2.plain") <(losses "$WORK/$case.pp2.$tier") ||
      fail "$case pp2: losses with optimizer state on $tier differ"
    plain=$(state "$WORK/$case.pp2.plain") off=$(state "$WORK/$case.pp2.$tier")
    ((plain > 0 && off > 0 && off < plain)) ||
      fail "$case pp2 $tier: the largest rank's state on the device $off, not under $plain"
  done
  [[ -z "$(find "$WORK/pp-$case" -type f 2> /dev/null)" ]] ||
    fail "$case pp2: the stages' disk tiers left files behind"
  # A device budget under a pipeline is checked before running: half of what a stage needs is
  # refused naming the smallest budget, with the activations the forwards keep offloaded to the
  # host between F and their backward (the default) or kept (offload: params,grads). Each
  # smallest budget then runs with the losses of no budget, every rank's peak under it. GPipe
  # over 2 micro-batches holds both on both stages, so moving them needs less, and rank 0's
  # peak is below its peak with room: activations did move.
  peaks() { grep '"memory": "device"' "$1" | sed 's/.*"budget": \([0-9]*\), "peak": \([0-9]*\).*/\1 \2/'; }
  printf 'mesh: {pp: 2}\npipeline: {schedule: gpipe, microbatches: 2}\n' > "$WORK/pp2-moved.yaml"
  cp "$WORK/pp2-moved.yaml" "$WORK/pp2-kept.yaml"
  echo 'offload: {offload: "params,grads"}' >> "$WORK/pp2-kept.yaml"
  "$HP" check "$REF/$case" --devices threads:2 --strategy "$WORK/pp2-moved.yaml" \
    --device-memory 1GiB > "$WORK/$case.pp2.roomy" 2> /dev/null ||
    fail "hp check $case pp2 gpipe --device-memory 1GiB"
  for kind in moved kept; do
    strategy="$WORK/pp2-$kind.yaml"
    err=$("$HP" check "$REF/$case" --devices threads:2 --strategy "$strategy" --device-memory 50% \
      2>&1 > /dev/null) && fail "$case pp2 ($kind): a 50% budget was accepted"
    smallest=$(sed -n 's/.*fits in is \([0-9]*\) bytes.*/\1/p' <<< "$err")
    [[ -n $smallest ]] || fail "$case pp2 50% ($kind): $err"
    [[ $kind == moved ]] && { grep -q "with activations offloaded" <<< "$err" ||
      fail "$case pp2 50%: the smallest budget is not the offloaded one: $err"; moved=$smallest; }
    "$HP" check "$REF/$case" --devices threads:2 --strategy "$strategy" --device-memory "$smallest" \
      > "$WORK/$case.pp2.$kind" 2> "$WORK/$case.pp2.err" ||
      fail "hp check $case pp2 ($kind) --device-memory $smallest: $(cat "$WORK/$case.pp2.err")"
    diff <(losses "$WORK/$case.pp2.plain") <(losses "$WORK/$case.pp2.$kind") ||
      fail "$case pp2 ($kind): losses under the budget differ"
    peaks "$WORK/$case.pp2.$kind" | awk -v w="$case pp2 $kind" -v b="$smallest" \
      'NF == 2 { n++ } $1 != b || $2 > $1 { print "FAIL: " w ": peak " $2 " over budget " $1; bad = 1 }
       END { exit bad || n != 2 }' || fail "$case pp2 ($kind): a rank above its budget"
  done
  ((moved < smallest)) || fail "$case pp2: offloading activations needs $moved, keeping them $smallest"
  roomy=$(peaks "$WORK/$case.pp2.roomy" | head -1 | cut -d' ' -f2)
  under=$(peaks "$WORK/$case.pp2.moved" | head -1 | cut -d' ' -f2)
  ((under < roomy)) || fail "$case pp2: rank 0 peaks at $under under $moved, $roomy with room"
done

# hp train with offload (a share of the peak and the disk tier, from the YAML config's offload:
# section) computes the same losses as without it, and its checkpoints resume exactly as a
# plain run's do (--steps sets the schedule, so each run is compared with its plain twin).
write_job() {  # write_job FILE [offload lines...]
  local f=$1; shift
  printf 'model: gpt2-tiny\ndata: random\nbatch: 2\nseq: 16\nthreads: 1\nlr: 0.001\n' > "$f"
  for line in "$@"; do echo "$line" >> "$f"; done
}
write_job "$WORK/plain.yaml"
write_job "$WORK/job.yaml" "offload:" "  device_budget: 40%" "  optimizer_state: disk" \
  "  offload_dir: $WORK/job-disk"
train_losses() {  # train_losses OUT YAML args...: the JSON losses of a run
  local out=$1 yaml=$2; shift 2
  "$HP" train --config "$yaml" --json "$@" > "$out.json" 2> "$out.err" \
    || fail "hp train --config $yaml $*: $(cat "$out.err")"
  grep -o '"step": [0-9]*, "loss": [0-9.e+-]*' "$out.json" > "$out"
}
train_losses "$WORK/p4" "$WORK/plain.yaml" --steps 4
train_losses "$WORK/o4" "$WORK/job.yaml" --steps 4 --ckpt-dir "$WORK/full"
grep -q "offload: device budget" "$WORK/o4.err" || fail "hp train printed no offload summary"
diff "$WORK/p4" "$WORK/o4" || fail "offloaded hp train computes other losses"
train_losses "$WORK/p2" "$WORK/plain.yaml" --steps 2 --ckpt-dir "$WORK/plain-part"
train_losses "$WORK/o2" "$WORK/job.yaml" --steps 2 --ckpt-dir "$WORK/part"
train_losses "$WORK/pr" "$WORK/plain.yaml" --steps 4 --ckpt-dir "$WORK/plain-part" --resume
train_losses "$WORK/or" "$WORK/job.yaml" --steps 4 --ckpt-dir "$WORK/part" --resume
grep -q "resumed from" "$WORK/or.err" || fail "offloaded hp train did not resume"
[[ $(wc -l < "$WORK/or") == 2 ]] || fail "resumed run did not run steps 2 and 3"
diff "$WORK/pr" "$WORK/or" || fail "resumed offloaded run differs from the resumed plain run"
# The command-line options override the YAML (optimizer state back on the host, bytes budget).
"$HP" train --config "$WORK/job.yaml" --steps 1 --json --device-memory 2MiB --optimizer-state host \
  2> "$WORK/cli.err" > /dev/null || fail "hp train with offload options: $(cat "$WORK/cli.err")"
grep -q "optimizer state on host" "$WORK/cli.err" || fail "--optimizer-state did not override"

# hp plan --explain: the per-tier timeline and the transfers, with bytes, without running.
"$HP" plan --model gpt2-tiny --batch 2 --seq 16 --device-memory 30% --explain > "$WORK/plan.txt" \
  || fail "hp plan --explain with offload"
grep -q "transfers" "$WORK/plan.txt" || fail "hp plan --explain lists no transfers"
grep -qi "prefetch\|write-back\|to device" "$WORK/plan.txt" || fail "hp plan shows no transfer"
grep -q "KiB\|MiB" "$WORK/plan.txt" || fail "hp plan shows no bytes"

# A budget below the smallest feasible one is rejected before anything runs, naming the minimum.
expect_fail "the smallest feasible budget is" "$HP" train --model gpt2-tiny --steps 1 \
  --device-memory 64KiB
expect_fail "the smallest feasible budget is" "$HP" plan --model gpt2-tiny --device-memory 1KiB
expect_fail "--optimizer-state" "$HP" train --model gpt2-tiny --steps 1 --optimizer-state gpu
if ((${#missing[@]})); then
  # The checks above without reference data passed; the test still fails under CI and is
  # otherwise reported as skipped (exit 77), naming what is missing.
  echo "offload e2e: ok without the reference cases"
  rc=0
  sh "$ROOT/tests/missing_input.sh" "${missing[*]}" || rc=$?
  exit $rc
fi
echo "offload e2e: ok"
