# hp train's contract: --json records, validation, YAML config with flag overrides, clear errors.
source "$(dirname "$0")/lib.sh"
"$HP" train --model gpt2-tiny --data random --batch 2 --seq 16 --steps 3 --threads 1 --json \
  --val-every 3 > "$WORK/r.json"
for key in step loss tokens_per_s peak_bytes gflops; do
  [[ $(grep -c "\"$key\":" "$WORK/r.json") -ge 3 ]] || fail "missing $key in --json records"
done
grep -q '"val_loss"' "$WORK/r.json" || fail "no validation record"
# YAML config, a flag overriding it, gradient accumulation.
cat > "$WORK/c.yaml" <<YAML
model: gpt2-tiny
data: kjv
batch: 2
seq: 16
steps: 50
grad-accum: 2
YAML
"$HP" train --config "$WORK/c.yaml" --steps 2 --json > "$WORK/c.json"
[[ $(grep -c '"loss"' "$WORK/c.json") == 2 ]] || fail "--steps did not override the config"
# Errors name the problem.
echo "stepz: 3" > "$WORK/bad.yaml"
expect_fail "stepz" "$HP" train --config "$WORK/bad.yaml"
expect_fail "unknown option --bogus" "$HP" train --bogus 1
expect_fail "exceeds the model's 32 positions" "$HP" train --model gpt2-tiny --seq 64 --steps 1
head -c 100 /dev/urandom > "$WORK/trunc.safetensors"
expect_fail "trunc.safetensors" "$HP" train --model gpt2-tiny --init "$WORK/trunc.safetensors" --steps 1
# --device-memory is the offload budget: below the smallest feasible one it names that minimum.
expect_fail "cannot be met: the smallest feasible budget is" "$HP" train --model gpt2-tiny --steps 1 \
  --device-memory 64KiB
# The example config of the main job parses and runs (shortened).
"$HP" train --config "$ROOT/examples/train_kjv.yaml" --steps 2 --ckpt-dir "$WORK/kjv" \
  --sample-tokens 10 --val-every 0 > "$WORK/kjv.txt"
grep -q "sample:" "$WORK/kjv.txt" || fail "no sample printed"
test -f "$WORK/kjv/step-2/index.json" || fail "no checkpoint written"
echo "train_cli: ok"
