#!/usr/bin/env bash
# The vision-language model vlm-tiny. hp check on its PyTorch float64 reference case
# (tests/reference/vlm-tiny, scripts/vlm_reference.py) on one device, then with the encoder and
# projector on one device and the decoder on two (dp2) under --devices threads:3
# (examples/vlm_pipeline.yaml, and the same stages under gpipe and zb-h1, and with a tp2 decoder
# stage, whose ranks then hold less than dp2's), and the whole model as dp2 and tp2: reference
# checks pass
# and losses equal one device's within 1e-5 relative. hp train --model vlm-tiny on the synthetic
# captioned images: the loss falls below half its start, and the 1 + 2 pipeline trains to one
# device's losses.
# When an mpirun is given, the 1 + 2 layout also under mpirun -np 3.
# usage: vlm.sh HP REPO [MPIEXEC]
HP=$1
REPO=$2
source "$(dirname "$0")/pipeline_lib.sh" "$HP" "$REPO/tests/reference/vlm-tiny" "${3:-}"
STRATEGY=$REPO/examples/vlm_pipeline.yaml

check "encoder 1 + decoder dp2 1f1b" threads:3 "$STRATEGY"
for s in dp2 tp2; do check "whole model $s" threads:2 "$s"; done
if [[ -n "$MPIEXEC" ]]; then
  check "encoder 1 + decoder dp2 under mpirun -np 3" mpi "$STRATEGY" \
    timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 3
fi
for schedule in gpipe zb-h1; do
  sed "s/schedule: 1f1b/schedule: $schedule/" "$STRATEGY" > "$TMP/$schedule.yaml"
  check "encoder 1 + decoder dp2 $schedule" threads:3 "$TMP/$schedule.yaml"
done
sed "s/strategy: dp2/strategy: tp2/" "$STRATEGY" > "$TMP/tp2.yaml"
check "encoder 1 + decoder tp2 1f1b" threads:3 "$TMP/tp2.yaml"
# tp2 splits the decoder's weights: its ranks hold less than the dp2 ranks' whole copies.
state() { grep -o '"planned_max": [0-9]*' "$1" | tr -dc '0-9'; }
"$HP" check "$CASE" --devices threads:3 --strategy "$STRATEGY" > "$TMP/dp2.txt"
(($(state "$TMP/out.txt") < $(state "$TMP/dp2.txt"))) ||
  fail "tp2 state $(state "$TMP/out.txt") bytes per rank, not below dp2's $(state "$TMP/dp2.txt")"


# Training on the synthetic set: the caption is only predictable from the image, so the loss must
# fall well below what the caption's text alone allows after a few steps.
train() {
  "$HP" train --model vlm-tiny --steps "$1" --batch 8 --seq 24 --lr 3e-3 --warmup 0 \
    --val-every 0 --log-every 1000 --json "${@:2}" 2> "$TMP/train_err.txt"
}
train 60 --threads 2 > "$TMP/train.txt" || { cat "$TMP/train_err.txt" >&2; fail "hp train"; }
first=$(loss "$TMP/train.txt" | head -n 1)
last=$(loss "$TMP/train.txt" | tail -n 1)
awk -v a="$first" -v b="$last" 'BEGIN { printf "train vlm-tiny: loss %s -> %s\n", a, b;
  exit !(a > 0 && b > 0 && b < a / 2) }' || fail "the loss did not fall below half: $first -> $last"

train 6 --threads 1 > "$TMP/single.txt" || fail "hp train, 6 steps"
loss "$TMP/single.txt" > "$TMP/single.loss"
train 6 --threads 1 --devices threads:3 --strategy "$STRATEGY" > "$TMP/pp.txt" ||
  { cat "$TMP/train_err.txt" >&2; fail "hp train under $STRATEGY"; }
same_losses "train encoder 1 + decoder dp2" "$TMP/pp.txt"
