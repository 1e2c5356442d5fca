# hp calibrate writes a cluster file that hp plan reads; without one, --cluster local and
# --strategy auto name hp calibrate; hp train --strategy auto prints the planner's strategy, runs
# exactly that file, and matches one device's losses within 1e-5.
source "$(dirname "$0")/lib.sh"
export XDG_CONFIG_HOME="$WORK/xdg" TMPDIR="$WORK"

expect_fail "run \`hp calibrate\` first" "$HP" plan --model gpt2-tiny --cluster local \
  --global-batch 8 --seq 32
expect_fail "run \`hp calibrate\` first" "$HP" train --model gpt2-tiny --data random --batch 8 \
  --seq 32 --steps 1 --devices threads:2 --strategy auto
expect_fail "needs --devices" "$HP" train --model gpt2-tiny --data random --steps 1 --strategy auto
expect_fail "--cluster applies with --strategy auto only" "$HP" train --model gpt2-tiny \
  --data random --steps 1 --cluster local

"$HP" calibrate --quick --devices threads:2 --out "$WORK/local.yaml" >"$WORK/cal.txt"
grep -q '^name: local$' "$WORK/local.yaml" || fail "no name: local in $(cat "$WORK/local.yaml")"
grep -q 'peak_f32_tflops' "$WORK/local.yaml" || fail "no f32 peak in $(cat "$WORK/local.yaml")"
grep -q '^  gemm:$' "$WORK/local.yaml" || fail "no gemm table in $(cat "$WORK/local.yaml")"
grep -q '^devices: 2$' "$WORK/local.yaml" || fail "not 2 devices: $(cat "$WORK/local.yaml")"
# The calibration block split into the cost model's terms, and how far apart its rounds were.
grep -qE "^# \(its rounds' best [0-9.]+-[0-9.]+ ms\), [0-9]+% GEMMs, [0-9]+% attention, [0-9]+% other" \
  "$WORK/local.yaml" || fail "no calibration block line in $(cat "$WORK/local.yaml")"
grep -qE '^  memory_split: [0-9.e+-]+$' "$WORK/local.yaml" ||
  fail "no memory_split share in $(cat "$WORK/local.yaml")"
# The trainer's AdamW timed (the file is parsed back, which checks the share's range).
grep -qE '^  optimizer: [0-9.e+-]+$' "$WORK/local.yaml" ||
  fail "no optimizer share in $(cat "$WORK/local.yaml")"

expect_fail "has 4 devices but --devices gives 2" "$HP" train --model gpt2-tiny --data random \
  --steps 1 --devices threads:2 --strategy auto --cluster "$WORK/local.yaml:4"

# The default path is the one --cluster local reads.
"$HP" calibrate --quick --devices threads:2 >/dev/null
[[ -f "$XDG_CONFIG_HOME/hp/cluster-local.yaml" ]] || fail "no $XDG_CONFIG_HOME/hp/cluster-local.yaml"
out=$("$HP" plan --model gpt2-tiny --cluster local --global-batch 8 --seq 32 --json --top 3)
python3 - "$out" <<'PY' || fail "hp plan --cluster local: $out"
import json, sys
recs = [json.loads(l) for l in sys.argv[1].splitlines()]
assert recs, "no plan"
for r in recs:
    assert r["step_s"] > 0 and r["offload"] == "off", r
    # the CPU attention recomputes its scores, a one-device stage keeps its forward's values
    assert r["recompute"] == "selective", r
    assert r["zero"] in ("none", "full"), r          # the runtime has no ZeRO-1
    assert r["pp"] in (1, 2) and (r["pp"] == 1 or r["dp"] * r["tp"] == 1), r
    assert r["pp"] > 1 or r["micro_batch"] * r["dp"] == 8, r  # no accumulation without pp
PY
# Stages of several devices keep their forward's values too.
out=$("$HP" plan --model gpt2-tiny --cluster local:4 --strategy pp2xdp2 --global-batch 8 --seq 32 \
  --json --top 1)
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["recompute"] == "selective", r' \
  "$out" || fail "pp2xdp2 on local:4: $out"
"$HP" plan --model "$ROOT/../shared/reference/gpt2-deep" --cluster "$WORK/local.yaml:2" \
  --global-batch 16 --seq 32 >/dev/null || fail "hp plan on gpt2-deep"

# One device, then auto on two threads: the same losses; the strategy printed is the file run.
common=(--model gpt2-tiny --data random --batch 8 --seq 32 --steps 4 --seed 3 --json)
"$HP" train "${common[@]}" 2>/dev/null | grep -o '"loss": [0-9.e+-]*' | cut -d' ' -f2 >"$WORK/one"
"$HP" train "${common[@]}" --devices threads:2 --threads 1 --strategy auto \
  --cluster "$WORK/local.yaml" >"$WORK/auto.json" 2>"$WORK/auto.txt" ||
  fail "auto: $(cat "$WORK/auto.txt")"
grep -o '"loss": [0-9.e+-]*' "$WORK/auto.json" | cut -d' ' -f2 >"$WORK/two"
file=$(sed -n 's/^strategy auto: .*; written to \(.*\):$/\1/p' "$WORK/auto.txt")
[[ -n $file && -f $file ]] || fail "no strategy file named: $(cat "$WORK/auto.txt")"
grep -qF "strategy $file)" "$WORK/auto.txt" || fail "the run's strategy is not $file: $(cat "$WORK/auto.txt")"
sed -n '/^strategy auto: /,/^model /p' "$WORK/auto.txt" | sed '1d;$d' >"$WORK/printed.yaml"
cmp -s "$WORK/printed.yaml" "$file" || fail "printed strategy differs from $file"
grep -q '^mesh: {' "$file" || fail "no mesh in $(cat "$file")"
! grep -q 'warning: \[strategy\]' "$WORK/auto.txt" || fail "the trainer warned: $(cat "$WORK/auto.txt")"
# The file as hp plan --emit writes it reads back to the same plan (hp plan --strategy FILE).
"$HP" plan --model gpt2-tiny --cluster "$WORK/local.yaml" --global-batch 8 --seq 32 \
  --strategy "$file" --json >/dev/null || fail "hp plan refused $(cat "$file")"
[[ $(wc -l <"$WORK/one") == 4 && $(wc -l <"$WORK/two") == 4 ]] || fail "step counts"
paste "$WORK/one" "$WORK/two" | awk '
  { d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > 1e-5) { print "step " NR ": " $2 " vs " $1; bad = 1 } }
  END { exit bad }' || fail "auto ($(head -1 "$file")) differs from one device"
# A file whose planner keys the trainer does not run as written: a warning naming each key.
printf 'mesh: {dp: 2}\npresets: [dp]\nmicro_batch: 2\nrecompute: full\nzero: optimizer\n' \
  >"$WORK/other.yaml"
"$HP" train --model gpt2-tiny --data random --batch 8 --seq 32 --steps 1 --devices threads:2 \
  --strategy "$WORK/other.yaml" >"$WORK/other.txt" 2>&1 || fail "$(cat "$WORK/other.txt")"
for key in "other.yaml:3:14 (micro_batch)" "other.yaml:4:12 (recompute)" "other.yaml:5:7 (zero)"; do
  grep -qF "$key" "$WORK/other.txt" || fail "no warning at $key: $(cat "$WORK/other.txt")"
done
# Pipeline stages keep their forward's values: `recompute: full` is warned of, and `selective` is
# what runs.
for rc in full selective; do
  printf 'mesh: {pp: 2}\npipeline: {schedule: 1f1b, microbatches: 4}\nmicro_batch: 2\nrecompute: %s\n' \
    "$rc" >"$WORK/pp-$rc.yaml"
  "$HP" train --model gpt2-tiny --data random --batch 8 --seq 32 --steps 1 --devices threads:2 \
    --strategy "$WORK/pp-$rc.yaml" >"$WORK/pp-$rc.txt" 2>&1 || fail "$(cat "$WORK/pp-$rc.txt")"
done
grep -qF "pp-full.yaml:4:12 (recompute)" "$WORK/pp-full.txt" ||
  fail "no warning of recompute full: $(cat "$WORK/pp-full.txt")"
! grep -q "warning" "$WORK/pp-selective.txt" || fail "warned: $(cat "$WORK/pp-selective.txt")"
echo "calibrate: ok"
