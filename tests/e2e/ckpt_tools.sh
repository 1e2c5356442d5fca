#!/usr/bin/env bash
# hp ckpt export / import and loading sharded checkpoints whole: an fsdp4 checkpoint exported to
# one safetensors file is byte for byte the model the gathered single-file save writes; hp
# generate samples the same text from both; a Hugging Face model split over two files (with
# model.safetensors.index.json and config.json) imports as a step-0 checkpoint that exports back
# to the same bytes and that hp train --resume continues exactly as --init of the same weights.
# usage: ckpt_tools.sh HP ROOT
source "$(dirname "$0")/lib.sh"
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --threads 1 --lr 3e-3 --warmup 2 --json)
losses() { grep -o '"loss": [0-9.]*' "$@" | cut -d' ' -f2; }
mesh=(--devices threads:4 --strategy fsdp4)
"$HP" train "${common[@]}" "${mesh[@]}" --steps 2 --ckpt-dir "$WORK/sh" > /dev/null ||
  fail "sharded save"
"$HP" train "${common[@]}" "${mesh[@]}" --steps 2 --ckpt-dir "$WORK/single" --ckpt-format single \
  > /dev/null 2> "$WORK/single.err" || fail "single-file save"
grep -q "gathered and written in" "$WORK/single.err" || fail "no save time printed"
[ -f "$WORK/single/step-2/model.safetensors" ] && [ ! -f "$WORK/single/step-2/index.json" ] ||
  fail "--ckpt-format single did not write the single-file layout"
"$HP" ckpt export "$WORK/sh/step-2" --to "$WORK/model.safetensors" > /dev/null || fail "export"
cmp "$WORK/model.safetensors" "$WORK/single/step-2/model.safetensors" ||
  fail "exported model differs from the gathered parameters"
g1=$("$HP" generate --ckpt "$WORK/sh/step-2" --tokens 40) || fail "generate from a sharded checkpoint"
g2=$("$HP" generate --ckpt "$WORK/single/step-2" --tokens 40) || fail "generate (single-file)"
[ "$g1" = "$g2" ] && [ -n "$g1" ] || fail "generate differs: '$g1' vs '$g2'"
expect_fail "single-file checkpoint" "$HP" ckpt info "$WORK/single"
# The single-file layout still resumes, under another strategy, exactly as the sharded one does.
for c in sh single; do
  "$HP" train "${common[@]}" --steps 4 --devices threads:2 --strategy tp2 --ckpt-dir "$WORK/$c" \
    --resume > "$WORK/$c.json" || fail "tp2 resume of the $c checkpoint"
done
[ "$(losses "$WORK/sh.json" | wc -l)" -eq 2 ] || fail "resume did not train steps 3 and 4"
diff <(losses "$WORK/sh.json") <(losses "$WORK/single.json") ||
  fail "single-file and sharded checkpoints resume differently"
expect_fail "no checkpoint in" "$HP" ckpt export "$WORK/nothing" --to "$WORK/x.safetensors"

# A Hugging Face model in two files, as HF writes them.
mkdir "$WORK/hf"
python3 - "$WORK/model.safetensors" "$WORK/hf" "$WORK/sh/step-2/index.json" <<'PY'
import json, struct, sys
src, out, index = sys.argv[1:]
data = open(src, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
names = sorted(header)
halves = [names[: len(names) // 2], names[len(names) // 2:]]
weight_map = {}
for i, part in enumerate(halves):
    fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(halves))
    h, blobs, pos = {}, [], 0
    for k in part:
        b, e = header[k]["data_offsets"]
        blob = data[8 + n + b: 8 + n + e]
        h["transformer." + k if not k.startswith("lm_head") else k] = {
            "dtype": header[k]["dtype"], "shape": header[k]["shape"],
            "data_offsets": [pos, pos + len(blob)]}
        weight_map["transformer." + k] = fname
        blobs.append(blob); pos += len(blob)
    hj = json.dumps(h).encode(); hj += b" " * ((8 - len(hj) % 8) % 8)
    open(out + "/" + fname, "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
json.dump({"metadata": {}, "weight_map": weight_map},
          open(out + "/model.safetensors.index.json", "w"))
json.dump(json.load(open(index))["extra"]["config"], open(out + "/config.json", "w"))
PY
"$HP" ckpt import "$WORK/hf" --to "$WORK/imp" > /dev/null || fail "import"
[ -f "$WORK/imp/step-0/index.json" ] && [ "$(cat "$WORK/imp/latest")" = step-0 ] ||
  fail "import wrote no step-0 checkpoint"
"$HP" ckpt info "$WORK/imp" > /dev/null || fail "info of the imported checkpoint"
"$HP" ckpt export "$WORK/imp" --to "$WORK/back.safetensors" > /dev/null || fail "export imported"
cmp "$WORK/model.safetensors" "$WORK/back.safetensors" || fail "import/export round trip differs"
"$HP" train "${common[@]}" --steps 2 --ckpt-dir "$WORK/imp" --resume > "$WORK/a.json" ||
  fail "resume from the imported checkpoint"
"$HP" train "${common[@]}" --steps 2 --init "$WORK/model.safetensors" > "$WORK/b.json" ||
  fail "--init of the exported model"
[ "$(losses "$WORK/a.json" | wc -l)" -eq 2 ] || fail "resume from step 0 did not train 2 steps"
diff <(losses "$WORK/a.json") <(losses "$WORK/b.json") || fail "imported resume != --init"
# A NaN weight, a missing config.json, a weight the index maps to a file that lacks it, and a
# missing file are errors naming them.
cp -r "$WORK/hf" "$WORK/hfnan"
python3 - "$WORK/hfnan/model-00001-of-00002.safetensors" <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n]); k = sorted(h)[0]
struct.pack_into("<f", data, 8 + n + h[k]["data_offsets"][0] + 4, float("nan"))
open(sys.argv[1], "wb").write(data)
PY
expect_fail "holds a non-finite value (nan) at element 1" \
  "$HP" ckpt import "$WORK/hfnan" --to "$WORK/impnan"
[ ! -e "$WORK/impnan/latest" ] || fail "a refused import left a checkpoint"
rm "$WORK/hfnan/config.json"
expect_fail "config.json" "$HP" ckpt import "$WORK/hfnan" --to "$WORK/impnan"
python3 - "$WORK/hf/model.safetensors.index.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); k = sorted(j["weight_map"])[0]
j["weight_map"][k] = "model-00002-of-00002.safetensors" if j["weight_map"][k].startswith("model-00001") else "model-00001-of-00002.safetensors"
json.dump(j, open(sys.argv[1], "w"))
PY
expect_fail "which the index maps to it" "$HP" ckpt import "$WORK/hf" --to "$WORK/imp2"
rm "$WORK/hf/model-00002-of-00002.safetensors"
expect_fail "model-00002-of-00002.safetensors" "$HP" ckpt import "$WORK/hf" --to "$WORK/imp3"
echo "ckpt_tools: ok"
