#!/usr/bin/env bash
# HyperOffload's claim at fixed device memory: for a Llama-70B-class model, the best plan the
# search finds with offload allowed (optimizer state and activations on the host) against the
# best without, on 64 H100-class devices and on cloudmatrix384, at the preset's device memory
# and at smaller ones. Prints one table row per (cluster, device memory).
# Usage: bench/offload_claim.sh HP [MODEL] [SEQ]
set -euo pipefail
hp=${1:?usage: offload_claim.sh HP [MODEL] [SEQ]}
model=${2:-llama3-70b}
seq=${3:-4096}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
row() {  # cluster-file devices batch memory_gib
  local file=$1 n=$2 batch=$3 gib=$4 out
  sed "0,/memory_gib:/s/memory_gib: [0-9.]*/memory_gib: $gib/" "$file" >"$tmp/c.yaml"
  for off in off searched; do
    local flag=()
    [[ $off == off ]] && flag=(--offload off)
    "$hp" plan --model "$model" --cluster "$tmp/c.yaml:$n" --global-batch "$batch" --seq "$seq" \
      "${flag[@]}" --json >"$tmp/$off.json" 2>"$tmp/$off.err" || true
  done
  python3 - "$tmp" "$(basename "$file" .yaml):$n" "$gib" <<'PY'
import json, sys
tmp, cluster, gib = sys.argv[1:]
def best(name):
    try:
        lines = [l for l in open(f"{tmp}/{name}.json") if l.strip()]
        return json.loads(lines[0]) if lines else None
    except (OSError, ValueError):
        return None
a, b = best("off"), best("searched")
def show(r):
    if r is None:
        return "does not fit"
    what = ("optimizer+activations" if r["offload_optimizer"] and r["offload_activations"] else
            "optimizer" if r["offload_optimizer"] else
            "activations" if r["offload_activations"] else "none")
    return (f"{r['strategy']} mb{r['micro_batch']} {r['schedule']} rc {r['recompute']}, "
            f"offload {what}: {r['step_s']:.2f} s, MFU {100 * r['mfu']:.1f}%")
ratio = f"{a['step_s'] / b['step_s']:.3f}" if a and b else "-"
print(f"| {cluster} | {gib} GiB | {show(a)} | {show(b)} | {ratio} |")
PY
}
echo "| cluster | device memory | best without offload | best with offload searched | speed-up |"
echo "|---|---|---|---|---|"
for gib in 80 48 32 24; do row "$here/examples/clusters/h100-dgx.yaml" 64 512 $gib; done
for gib in 128 64 32 24; do row "$here/examples/clusters/cloudmatrix384.yaml" 384 768 $gib; done
