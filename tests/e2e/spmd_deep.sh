#!/usr/bin/env bash
# SPMD on a reference case whose batch splits over 4 ranks (gpt2-deep, llama-deep: batch 4). With
# the tiny cases' batch of 2, fsdp4 computes the matmuls' weight gradients whole on every rank and
# only slices them; here each rank holds a partial sum that must be reduce-scattered. Checks:
# - `hp plan --explain` for fsdp4 at this batch reduce-scatters the gradient of every matmul
#   weight (as many as the model has), so the path below is the one under test;
# - `hp check CASE --devices threads:4 --strategy S` for fsdp4, dp2xtp2 and fsdp2xtp2 passes the
#   reference comparisons (losses, step-0 gradients, final weights) and matches the single-device
#   losses within 1e-5 relative.
# usage: spmd_deep.sh HP CASE_DIR
set -euo pipefail
HP=$1
CASE=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
loss() { grep '"step"' "$1" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/'; }

# The batch from the header of batch.safetensors ("tokens": [B, T+1]) and the model from case.json.
shape=$(head -c 4096 "$CASE/batch.safetensors" | grep -ao '"shape": *\[[0-9]*, *[0-9]*\]' | head -n 1 |
  tr -dc '0-9,')
batch=${shape%,*} seq=$((${shape#*,} - 1))
((batch % 4 == 0)) || fail "$CASE: batch $batch does not split over 4 ranks"
sed -n '/^  "model": {/,/^  }/p' "$CASE/case.json" | sed '1s/.*/{/; $s/.*/}/' > "$TMP/config.json"

"$HP" plan --model "$TMP/config.json" --batch "$batch" --seq "$seq" --devices threads:4 \
  --strategy fsdp4 --explain > "$TMP/plan.txt" 2> "$TMP/err.txt" ||
  { cat "$TMP/err.txt" >&2; fail "hp plan fsdp4"; }
matmul='[a-z0-9_.]*(_proj|c_attn|c_fc|c_proj|lm_head)\.weight'
weights=$(sed '/^collectives per step/q' "$TMP/plan.txt" | grep -cE "^  %[0-9]+ $matmul f32\[") || true
scattered=$(sed -n '/^collectives per step/,$p' "$TMP/plan.txt" |
  grep -cE "^  reduce_scatter\(fsdp\) grad/$matmul .*\+partial\(fsdp\) -> ") || true
echo "fsdp4 plan at batch $batch: $scattered of $weights matmul weight gradients reduce-scattered"
((weights > 0 && scattered == weights)) ||
  { cat "$TMP/plan.txt" >&2; fail "fsdp4 does not reduce-scatter every matmul weight gradient"; }

"$HP" check "$CASE" > "$TMP/single.txt" || { cat "$TMP/single.txt" >&2; fail "single-device check"; }
loss "$TMP/single.txt" > "$TMP/single.loss"
for s in fsdp4 dp2xtp2 fsdp2xtp2; do
  "$HP" check "$CASE" --devices threads:4 --strategy "$s" > "$TMP/run.txt" 2> "$TMP/err.txt" ||
    { cat "$TMP/run.txt" "$TMP/err.txt" >&2; fail "$s on 4 threads: check failed"; }
  loss "$TMP/run.txt" > "$TMP/multi.loss"
  [ -s "$TMP/multi.loss" ] && [ "$(wc -l < "$TMP/multi.loss")" -eq "$(wc -l < "$TMP/single.loss")" ] ||
    fail "$s: step count"
  paste "$TMP/single.loss" "$TMP/multi.loss" | awk -v s="$s" '
    { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r;
      if (r > 1e-5) { print "FAIL: " s ": step " NR-1 " loss " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
    END { printf "%-10s max loss rel err vs one device %.2e\n", s, w; exit bad }'
done
echo PASS
