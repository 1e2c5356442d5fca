# Bad input gets a clear error naming the file or option and the field, before any work: sizes
# that would overflow, models that cannot fit in memory, FIFOs, huge device counts, numbers that
# are not plain decimals, out-of-range checkpoint steps, unwritable offload dirs, wrong shapes.
source "$(dirname "$0")/lib.sh"
# Every command here must fail fast; a hang is a failure, not a stuck test.
hp() { timeout 60 "$HP" "$@"; }
gpt2() {  # gpt2 N_LAYER N_EMBD [extra json] > config
  echo "{\"model_type\": \"gpt2\", \"n_layer\": $1, \"n_embd\": $2, \"n_head\": 4,
         \"n_positions\": 32, \"vocab_size\": 256 ${3:-}}"
}
tiny=(--batch 2 --seq 16 --steps 1 --threads 1 --data random)

# config.json sizes are bounded, the error names the file and the field.
gpt2 2 64 ', "n_inner": 4611686018427387905' > "$WORK/inner.json"
expect_fail "inner.json: 'n_inner' = 4611686018427387905 is out of range (max" \
  hp train --model "$WORK/inner.json" "${tiny[@]}"
sed 's/"n_positions": 32/"n_positions": 288230376151711745/' "$WORK/inner.json" | \
  sed 's/, "n_inner": [0-9]*//' > "$WORK/pos.json"
expect_fail "'n_positions' = 288230376151711745 is out of range" \
  hp train --model "$WORK/pos.json" "${tiny[@]}"
gpt2 1000000000 64 > "$WORK/deep.json"
expect_fail "'n_layer' = 1000000000 is out of range" \
  hp plan --model "$WORK/deep.json" --batch 2 --seq 16 --devices threads:2 --strategy dp2
gpt2 2 64 ', "vocab_size": 18446744073709551615' > "$WORK/u64.json"
expect_fail "'vocab_size' = 18446744073709551615 is out of range" \
  hp train --model "$WORK/u64.json" "${tiny[@]}"

# A model that cannot fit fails before allocating, naming the bytes needed and available.
gpt2 4096 16384 > "$WORK/huge.json"
expect_fail "but this machine has" hp train --model "$WORK/huge.json" "${tiny[@]}"
expect_fail "but this machine has" hp train --model "$WORK/huge.json" "${tiny[@]}" --devices threads:2

# FIFOs are refused without blocking; the error names the path.
mkfifo "$WORK/fifo"
expect_fail "fifo is not a regular file (a FIFO)" \
  hp train --model gpt2-tiny --init "$WORK/fifo" "${tiny[@]}"
expect_fail "fifo is not a regular file (a FIFO)" \
  hp train --model gpt2-tiny "${tiny[@]}" --data "$WORK/fifo"
expect_fail "fifo is not a regular file (a FIFO)" \
  hp train --model gpt2-tiny "${tiny[@]}" --data "$WORK/fifo" --data-format u16

# Thread worlds are capped before the planner, whose cost grows faster than the rank count.
expect_fail "at most 256" hp train --model gpt2-tiny "${tiny[@]}" --devices threads:10000
expect_fail "at most 256" hp plan --model gpt2-tiny --batch 2 --seq 16 --devices threads:257 \
  --strategy dp257

# Numbers: 0 bytes is no budget; hex, inf and nan are not numbers here.
expect_fail "must be > 0" hp train --model gpt2-tiny "${tiny[@]}" --device-memory 0
expect_fail "must be > 0" hp train --model gpt2-tiny "${tiny[@]}" --device-memory 0MiB
expect_fail "option --lr must be a finite decimal number, got '0x10'" \
  hp train --model gpt2-tiny "${tiny[@]}" --lr 0x10
expect_fail "option --lr must be a finite decimal number" hp train --model gpt2-tiny "${tiny[@]}" --lr inf
expect_fail "option --lr must be a finite decimal number" hp train --model gpt2-tiny "${tiny[@]}" --lr nan
expect_fail "option --steps must be a decimal integer" hp train --model gpt2-tiny "${tiny[@]}" --steps 0x10
expect_fail "option --steps must be a decimal integer" \
  hp train --model gpt2-tiny "${tiny[@]}" --steps 99999999999999999999

# A checkpoint's step out of range is an error naming state.json (single-file layout) or
# index.json (sharded) and the field.
hp train --model gpt2-tiny "${tiny[@]}" --steps 2 --ckpt-dir "$WORK/ck" --ckpt-format single \
  > /dev/null
hp train --model gpt2-tiny "${tiny[@]}" --steps 2 --ckpt-dir "$WORK/sh" > /dev/null
cp -r "$WORK/sh" "$WORK/shneg"
sed -i 's/"step": 2/"step": -5/' "$WORK/shneg/step-2/index.json"
expect_fail "index.json: 'step' = -5 is out of range" \
  hp train --model gpt2-tiny "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/shneg" --resume
expect_fail "index.json: 'step' = -5 is out of range" hp generate --ckpt "$WORK/shneg" --tokens 2
sed -i 's/"n_layer": 2/"n_layer": 100000000/' "$WORK/sh/step-2/index.json"
expect_fail "index.json (extra.config): 'n_layer' = 100000000 is out of range" \
  hp generate --ckpt "$WORK/sh" --tokens 2
sed -i 's/"n_layer": 100000000/"n_layer": 2/' "$WORK/sh/step-2/index.json"
cp -r "$WORK/ck" "$WORK/neg"
sed -i 's/"step": 2/"step": -5/' "$WORK/neg/step-2/state.json"
expect_fail "state.json: 'step' = -5 is out of range" \
  hp train --model gpt2-tiny "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/neg" --resume
sed -i 's/"step": -5/"step": 9223372036854775807/' "$WORK/neg/step-2/state.json"
expect_fail "'step' = 9223372036854775807 is out of range" \
  hp generate --ckpt "$WORK/neg" --tokens 2
mkdir "$WORK/neg/step-9999999999999999999"
echo "step-9999999999999999999" > "$WORK/neg/latest"
expect_fail "holds 'step-9999999999999999999', not step-<N>" \
  hp train --model gpt2-tiny "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/neg" --resume

# A checkpoint whose model config is huge: out of range, or too big for memory, before tracing.
cp -r "$WORK/ck" "$WORK/deepck"
sed -i 's/"n_layer": 2/"n_layer": 100000000/' "$WORK/deepck/step-2/state.json"
expect_fail "state.json (extra.config): 'n_layer' = 100000000 is out of range" \
  hp generate --ckpt "$WORK/deepck" --tokens 2
sed -i -e 's/"n_layer": 100000000/"n_layer": 4096/' -e 's/"n_embd": 64/"n_embd": 16384/' \
  "$WORK/deepck/step-2/state.json"
expect_fail "but this machine has" hp generate --ckpt "$WORK/deepck" --tokens 2

# Weights of the wrong shape: the error names the file and the parameter.
gpt2 2 32 > "$WORK/narrow.json"
expect_fail "ck/step-2/model.safetensors: parameter 'wte.weight' has shape [256, 64], the config needs [256, 32]" \
  hp train --model "$WORK/narrow.json" "${tiny[@]}" --init "$WORK/ck/step-2/model.safetensors"
# A checkpoint of another model: refused on resume naming the first config key that differs.
expect_fail "ck/step-2 holds another model than this job's: 'n_embd' is 64 against 32" \
  hp train --model "$WORK/narrow.json" "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/ck" --resume
expect_fail "ck/step-2 holds another model than this job's: 'n_embd' is 64 against 32" \
  hp train --model "$WORK/narrow.json" "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/ck" --resume \
  --devices threads:2
expect_fail "sh/step-2 holds another model than this job's: 'n_embd' is 64 against 32" \
  hp train --model "$WORK/narrow.json" "${tiny[@]}" --steps 4 --ckpt-dir "$WORK/sh" --resume \
  --devices threads:2 --strategy tp2

# An offload dir that cannot be written: the real reason and the directory (tests run as root,
# which may write anywhere: a path under a regular file, and a read-only bind mount if allowed).
touch "$WORK/plain"
expect_fail "plain/off': Not a directory" hp train --model gpt2-tiny "${tiny[@]}" \
  --optimizer-state disk --offload-dir "$WORK/plain/off"
mkdir "$WORK/ro"
if unshare -rm true 2>/dev/null; then
  expect_fail "cannot write in offload dir '$WORK/ro': Read-only file system" \
    unshare -rm sh -c 'mount --bind -o ro "$1" "$1" && shift && exec "$@"' sh "$WORK/ro" \
    timeout 60 "$HP" train --model gpt2-tiny "${tiny[@]}" --optimizer-state disk --offload-dir "$WORK/ro"
fi
# hp bench comm takes the launcher convention of every command (--devices), and nothing else.
hp bench comm --devices threads:2 --min-bytes 4K --max-bytes 4K --iters 1 --warmup 1 \
  > "$WORK/comm.txt" || fail "hp bench comm --devices threads:2"
grep -q "^all_reduce  *4096 " "$WORK/comm.txt" || fail "hp bench comm printed no all_reduce row"
expect_fail "unknown option --backend" hp bench comm --backend threads
expect_fail "--devices: unknown world 'gpu' (expected threads:N or mpi)" hp bench comm --devices gpu
expect_fail "bad device count in 'threads:0x2'" hp bench comm --devices threads:0x2
expect_fail "option --iters must be at least 1, got '0'" hp bench comm --iters 0
expect_fail "need 4 <= --min-bytes <= --max-bytes" hp bench comm --min-bytes 8K --max-bytes 4K
# hp bench steps: one record per strategy, each with its timed steps; its errors name the input.
hp bench steps --model gpt2-tiny --batch 4 --seq 32 --steps 2 --threads 1 \
  --strategies dp2,tp2 >"$WORK/steps.json" || fail "hp bench steps"
python3 - "$WORK/steps.json" <<'PY' || fail "hp bench steps printed: $(cat "$WORK/steps.json")"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["strategy"] for r in recs] == ["dp2", "tp2"], recs
for r in recs:
    assert len(r["step_s"]) == 2 and len(r["cpu_s"]) == 2, r
    assert all(math.isfinite(x) and 0 < x < 60 for x in r["step_s"] + r["cpu_s"]), r
PY
# A strategy that names a file must exist, not be read as a preset and refused for its terms.
expect_fail "strategy file '$WORK/none.yaml' not found" hp train --model gpt2-tiny --steps 1 \
  --devices threads:2 --strategy "$WORK/none.yaml"
expect_fail "strategy file 'none.yml' not found" hp plan --model gpt2-tiny --cluster h100-dgx:8 \
  --strategy none.yml
expect_fail "option --strategies is required" hp bench steps --model gpt2-tiny
expect_fail "an empty entry in 'dp2,'" hp bench steps --model gpt2-tiny --strategies dp2,
expect_fail "runs on threads:N" hp bench steps --model gpt2-tiny --strategies dp2 --devices mpi
echo "bad_input: ok"
