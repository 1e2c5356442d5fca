#!/usr/bin/env bash
# Checkpoint save cost on GPT-2 124M under --devices threads:4 --strategy fsdp4 (docs/performance.md):
# 1. save time and peak RSS of the sharded save (--ckpt-mode sync) against gathering every
#    parameter and moment on rank 0 and writing one file (--ckpt-format single), one step then a
#    save, alternating, ROUNDS rounds;
# 2. step times with an asynchronous save after every step, a synchronous one, and none.
# usage: bench/ckpt_save.sh [HP] [WORK_DIR] [ROUNDS]
set -uo pipefail
HP=${1:-build/bin/hp}
W=${2:-/tmp/hp_ckpt_bench}
ROUNDS=${3:-3}
mkdir -p "$W"
common=(--model gpt2-124m --data random --batch 1 --seq 32 --threads 1 --devices threads:4
        --strategy fsdp4 --keep 1)
for round in $(seq "$ROUNDS"); do
  for fmt in sharded single; do
    rm -rf "${W:?}/$fmt"
    echo "== round $round $fmt"
    /usr/bin/time -f "maxrss_kb %M wall %e" "$HP" train "${common[@]}" --steps 1 \
      --ckpt-dir "$W/$fmt" --ckpt-format "$fmt" --ckpt-mode sync 2>&1 |
      grep -E "checkpoint|maxrss"
  done
done
for round in $(seq "$ROUNDS"); do
  for mode in async sync none; do
    rm -rf "${W:?}/steps"
    echo "== step times, round $round, $mode"
    extra=(--ckpt-dir "$W/steps" --ckpt-every 1 --ckpt-mode "$mode")
    [ "$mode" = none ] && extra=()
    /usr/bin/time -f "maxrss_kb %M wall %e" "$HP" train "${common[@]}" --steps 4 --json \
      "${extra[@]}" 2>&1 |
      grep -oE '"step": [0-9]+|"step_s": [0-9.e+-]+|checkpoint.*|maxrss.*' | paste -sd' '
  done
done
rm -rf "${W:?}"
