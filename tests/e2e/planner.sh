# hp plan --cluster: JSON records with the documented fields, best first; --emit writes a strategy
# that the planner reads back to the same plan and, without pp, that hp plan's threads path
# (HyperShard's strategy parser) accepts; bad clusters and strategies are errors naming them.
source "$(dirname "$0")/lib.sh"

out=$("$HP" plan --model gpt3-175b --cluster h100-dgx:64 --global-batch 64 --seq 2048 --top 3 \
  --json --emit "$WORK/plan.yaml")
[[ $(wc -l <<<"$out") == 3 ]] || fail "--top 3 printed: $out"
python3 - "$out" <<'PY' || fail "records lack fields or order: $out"
import json, sys
recs = [json.loads(l) for l in sys.argv[1].splitlines()]
need = ["strategy", "micro_batch", "schedule", "recompute", "offload", "step_s",
        "tflops_per_device", "mfu", "peak_memory_bytes", "configs_covered", "configs_evaluated",
        "search_s"]
for r in recs:
    missing = [k for k in need if k not in r]
    assert not missing, missing
    assert r["peak_memory_bytes"] <= 0.9 * 80 * 2**30, r
    assert 0 < r["mfu"] < 1, r
assert [r["step_s"] for r in recs] == sorted(r["step_s"] for r in recs)
assert recs[0]["configs_covered"] >= recs[0]["configs_evaluated"] > 0
PY
grep -q '^mesh: {' "$WORK/plan.yaml" || fail "no mesh in $(cat "$WORK/plan.yaml")"
best=$(head -1 <<<"$out")
again=$("$HP" plan --model gpt3-175b --cluster h100-dgx:64 --global-batch 64 --seq 2048 \
  --strategy "$WORK/plan.yaml" --json)
python3 - "$best" "$again" <<'PY' || fail "the emitted strategy reads back to another plan: $again"
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert b["configs_covered"] == 1, b
for k in ["strategy", "micro_batch", "schedule", "recompute", "offload", "step_s"]:
    assert a[k] == b[k], (k, a[k], b[k])
PY

# A plan without pp on a small cluster file: hp plan's threads path accepts the emitted strategy.
cat > "$WORK/two.yaml" <<'YAML'
name: two
devices: 2
device: {name: test, peak_bf16_tflops: 100, memory_gib: 1, memory_bandwidth_gbps: 500}
host: {memory_gib: 4, bandwidth_gbps: 10}
tiers:
  - {name: all, devices: 0, bandwidth_gbps: 50, latency_us: 5}
YAML
"$HP" plan --model gpt2-tiny --cluster "$WORK/two.yaml" --global-batch 8 --seq 32 \
  --emit "$WORK/two_plan.yaml" >"$WORK/two.txt"
grep -q "searched" "$WORK/two.txt" || fail "no readable explanation: $(cat "$WORK/two.txt")"
grep -q "memory per device" "$WORK/two.txt" || fail "no memory line: $(cat "$WORK/two.txt")"
"$HP" plan --model gpt2-tiny --batch 8 --seq 32 --devices threads:2 --threads 1 \
  --strategy "$WORK/two_plan.yaml" >/dev/null || fail "hp plan refused $(cat "$WORK/two_plan.yaml")"

# --recompute full fixes the kind and leaves the count of whole blocks recomputed per stage to
# the search (as a strategy file's recompute: full does); --recompute-blocks fixes the count.
# gpt3-175b on pp8 has 12 blocks per stage; recomputing fewer is faster where they fit.
rc() {
  "$HP" plan --model gpt3-175b --cluster h100-dgx:64 --strategy pp8xtp8 --global-batch 64 \
    --seq 2048 --recompute full "$@" --json | head -1 |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["recompute"], r["recompute_blocks"], r["configs_covered"], r["step_s"])'
}
read -r kind n searched t_searched <<<"$(rc)"
read -r _ all fixed t_all <<<"$(rc --recompute-blocks all)"
read -r _ two _ _ <<<"$(rc --recompute-blocks 2)"
[[ $kind == full && $all == 12 && $two == 2 && $n -ge 1 && $n -lt 12 ]] ||
  fail "recompute blocks: searched $n, all $all, 2 gave $two ($kind)"
(( searched == 12 * fixed )) || fail "the count searched covers $searched configurations, fixed $fixed"
python3 -c "import sys; sys.exit(not $t_searched < $t_all)" ||
  fail "recomputing $n blocks ($t_searched s) is not faster than all 12 ($t_all s)"
expect_fail "it needs --recompute full" "$HP" plan --model gpt2-tiny --cluster h100-dgx:8 \
  --recompute selective --recompute-blocks 2
expect_fail "positive integer or all, got '0'" "$HP" plan --model gpt2-tiny --cluster h100-dgx:8 \
  --recompute full --recompute-blocks 0

expect_fail "neither a preset" "$HP" plan --model gpt2-tiny --cluster nowhere:8
expect_fail "do not fill whole nvlink" "$HP" plan --model gpt2-tiny --cluster h100-dgx:12
printf 'name: x\ndevices: 2\n' > "$WORK/bad.yaml"
expect_fail "bad.yaml" "$HP" plan --model gpt2-tiny --cluster "$WORK/bad.yaml"
expect_fail "unknown term 'ep2'" "$HP" plan --model gpt2-tiny --cluster h100-dgx:8 \
  --strategy dp4xep2
expect_fail "option --schedule: an empty entry in '1f1b,,zbv'" "$HP" plan --model gpt2-tiny \
  --cluster h100-dgx:8 --schedule 1f1b,,zbv
expect_fail "unknown schedule 'zb-h3'" "$HP" plan --model gpt2-tiny --cluster h100-dgx:8 \
  --schedule 1f1b,zb-h3
expect_fail "has what the options fix" "$HP" plan --model gpt2-tiny --cluster h100-dgx:8 \
  --strategy dp8 --global-batch 4
expect_fail "fits on" "$HP" plan --model megatron-1t --cluster h100-dgx:8 --global-batch 8 --seq 2048
# Sequences the model cannot hold: past its learned positions; a vision model's image tokens
# take positions too, and its default sequence leaves them room.
expect_fail "sequence length 4096 exceeds the model's 2048 positions" "$HP" plan --model gpt3-175b \
  --cluster h100-dgx:64 --global-batch 64 --seq 4096
expect_fail "sequence length 64 after 16 image tokens exceeds the model's 64 positions" "$HP" plan \
  --model vlm-tiny --cluster h100-dgx:8 --global-batch 8 --seq 64
"$HP" plan --model vlm-tiny --cluster h100-dgx:8 --global-batch 8 --json --top 1 |
  grep -q '"step_s"' || fail "vlm-tiny at its default sequence"
echo "planner: ok"
