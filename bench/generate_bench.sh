#!/usr/bin/env bash
# Decode tokens/s of hp generate with the KV cache against the window-recompute loop
# (--recompute) on the same model and prompt, alternating the two over rounds, and
# time-to-first-token against prompt length. Prints markdown rows (docs/inference.md).
# usage: bench/generate_bench.sh HP [THREADS] [ROUNDS]
set -euo pipefail
HP=$1
THREADS=${2:-2}
ROUNDS=${3:-2}
field() { grep -oE "\"$1\":[^,}]*" | head -1 | sed "s/^\"$1\"://"; }
run() { "$HP" generate --threads "$THREADS" --temperature 0 --json "$@"; }

echo "| model | prompt | tokens | round | path | decode tok/s | ttft ms |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
# model, prompt tokens, tokens with the cache, tokens recomputing (fewer: each is a full window)
for spec in "gpt2-kjv 64 60 20" "llama-kjv 64 60 20" "gpt2-124m 64 32 6"; do
  read -r model prompt cached recomputed <<<"$spec"
  for round in $(seq 1 "$ROUNDS"); do
    for path in cache recompute; do
      if [[ $path == cache ]]; then
        r=$(run --model "$model" --prompt-tokens "$prompt" --tokens "$cached")
        n=$cached
      else
        r=$(run --model "$model" --prompt-tokens "$prompt" --tokens "$recomputed" --recompute)
        n=$recomputed
      fi
      echo "| $model | $prompt | $n | $round | $path | $(field decode_tok_s <<<"$r") |" \
        "$(field ttft_ms <<<"$r") |"
    done
  done
done

echo
echo "| model | prompt tokens | round | ttft ms | peak device bytes |"
echo "| --- | --- | --- | --- | --- |"
for round in $(seq 1 "$ROUNDS"); do
  for prompt in 16 64 256 512 1000; do
    r=$(run --model gpt2-124m --prompt-tokens "$prompt" --tokens 1)
    echo "| gpt2-124m | $prompt | $round | $(field ttft_ms <<<"$r") |" \
      "$(field peak_device_bytes <<<"$r") |"
  done
done
