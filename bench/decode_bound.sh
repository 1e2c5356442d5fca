#!/usr/bin/env bash
# Long-context decode against the plan's bound (docs/inference.md): llama-long, a 10240-token
# prompt and 128 more tokens under 40 MiB of device memory, per round and mode: `hp plan
# --infer-context` (its read probe) and a decode, REPS times in turn, their medians. Modes: the
# plan's choice (auto), the fetch into staging (host), and every block resident without a
# budget (none). Prints one row per round and mode.
# Usage: [REPS=3] [MODES="auto host none"] bench/decode_bound.sh HP [ROUNDS] [PROMPT] [BUDGET]
set -euo pipefail
hp=${1:?usage: decode_bound.sh HP [ROUNDS] [PROMPT] [BUDGET]}
rounds=${2:-3}
prompt=${3:-10240}
budget=${4:-40MiB}
tokens=129
reps=${REPS:-3}   # plan and decode in turn this many times per round and mode
modes=${MODES:-auto host none}
context=$((prompt + tokens))
echo "| round | mode | plan | read rate | bound ms/token | measured ms/token | measured / bound |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
for ((r = 1; r <= rounds; r++)); do
  for mode in $modes; do
    limit=(--device-memory "$budget" --kv-offload "$mode")
    [[ $mode == none ]] && limit=(--kv-offload none)
    bounds=() rates=() times=()
    for ((k = 0; k < reps; k++)); do  # plan (its probe), decode, in turn: both see the same neighbours
      line=$("$hp" plan --model llama-long --infer-context "$context" "${limit[@]}" |
        grep 'predicted decode')
      bounds+=("$(sed 's/.*decode: \([0-9.]*\) ms.*/\1/' <<<"$line")")
      rates+=("$(sed 's/.* reading \([0-9.]*\) GB.*/\1/' <<<"$line")")
      rec=$("$hp" generate --model llama-long --prompt-tokens "$prompt" --temperature 0 --json \
        --tokens "$tokens" "${limit[@]}" | tail -1)
      times+=("$(python3 -c 'import json,sys; print(1000 / json.loads(sys.argv[1])["decode_tok_s"])' "$rec")")
      plan=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kv_plan"])' "$rec")
    done
    bound=$(median "${bounds[@]}") rate=$(median "${rates[@]}") ms=$(median "${times[@]}")
    python3 -c 'import sys
r, mode, plan, rate, bound, ms = sys.argv[1:]
print("| %s | %s | %s | %.1f GB/s | %.2f | %.3f | %.2f |" % (r, mode, plan, float(rate), float(bound), float(ms), float(ms) / float(bound)))' \
      "$r" "$mode" "$plan" "$rate" "$bound" "$ms"
  done
done
