#!/usr/bin/env bash
# Side by side, in one run: GPT-2 training throughput and peak step memory of hp vs PyTorch eager
# (Debian's python3-torch, ../shared/bench/torch_gpt.py at its best thread setting), at 1 and 2
# threads, on the same model and batch. Prints the tokens/s ratio per setting, and each process's
# peak RSS increase over its start (the same measure on both sides; hp's also beside its allocator
# peak).
# Usage: bench/compare_torch.sh [small|124m|all] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-small}
steps=${2:-8}
HP=build/bin/hp
TORCH_SCRIPT=${TORCH_SCRIPT:-../shared/bench/torch_gpt.py}
PY=/usr/bin/python3
"$PY" -c "import torch" 2>/dev/null || { echo "python3-torch missing: run scripts/setup.sh --bench" >&2; exit 1; }
test -x "$HP" || { echo "build first: scripts/setup.sh" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_case() {  # name L D H T B V
  local name=$1 L=$2 D=$3 H=$4 T=$5 B=$6 V=$7
  cat > "$tmp/config.json" <<JSON
{"model_type": "gpt2", "n_layer": $L, "n_embd": $D, "n_head": $H, "n_positions": $T,
 "vocab_size": $V, "layer_norm_epsilon": 1e-5}
JSON
  for thr in 1 2; do
    local t_out h_json
    t_out=$("$PY" "$TORCH_SCRIPT" "$L" "$D" "$H" "$T" "$B" "$V" "$steps" "$thr")
    "$HP" train --model "$tmp/config.json" --data random --batch "$B" --seq "$T" --steps "$steps" \
      --threads "$thr" --clip 0 --json 2>/dev/null > "$tmp/hp.json"
    local t_tps t_mem h_tps h_mem h_gf
    t_tps=$(grep -o 'tok/s=[0-9.]*' <<<"$t_out" | cut -d= -f2)
    t_mem=$(grep -o 'peak_rss_increase=[0-9]*' <<<"$t_out" | cut -d= -f2)
    h_tps=$(grep '"loss"' "$tmp/hp.json" | tail -n +2 | grep -o '"tokens_per_s": [0-9.]*' | cut -d' ' -f2 | median)
    h_gf=$(grep '"loss"' "$tmp/hp.json" | tail -n +2 | grep -o '"gflops": [0-9.]*' | cut -d' ' -f2 | median)
    h_mem=$(grep -o '"peak_bytes": [0-9]*' "$tmp/hp.json" | tail -1 | awk '{printf "%.0f", $2/1048576}')
    h_rss=$(grep -o '"rss_increase_bytes": [0-9]*' "$tmp/hp.json" | tail -1 | awk '{printf "%.0f", $2/1048576}')
    printf "%-10s threads=%d  hp %8.0f tok/s (%5.1f GFLOP/s, allocator peak %5s MiB, peak RSS +%5s MiB)  torch %8.0f tok/s (peak RSS +%5s MiB)  ratio %.2fx\n" \
      "$name" "$thr" "$h_tps" "$h_gf" "$h_mem" "$h_rss" "$t_tps" "$t_mem" "$(awk -v a="$h_tps" -v b="$t_tps" 'BEGIN{print a/b}')"
  done
}

echo "torch $("$PY" -c 'import torch; print(torch.__version__)'), steps=$steps (median step after the first)"
if [[ $which == small || $which == all ]]; then run_case gpt2-4L 4 256 4 128 8 256; fi
if [[ $which == 124m || $which == all ]]; then run_case gpt2-124M 12 768 12 128 4 50304; fi
