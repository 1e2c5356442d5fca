#!/usr/bin/env bash
# Multi-device hp train: dp2 and fsdp2 on threads:2 print the single-device losses and validation
# losses (1e-5 relative); a YAML config can name devices and strategy; resume works across
# strategies and device counts (fsdp2 to step 3, then dp2 and one device continue to step 6);
# gradient accumulation matches one device.
# usage: train_spmd.sh HP ROOT
source "$(dirname "$0")/lib.sh"
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --threads 1 --lr 3e-3 --warmup 2 --json
        --val-every 3 --val-batches 2)
losses() { grep -o "\"$1\": [0-9.]*" "$2" | cut -d' ' -f2; }
same() {  # same KEY A.json B.json what
  local a b
  a=$(losses "$1" "$2"); b=$(losses "$1" "$3")
  [ -n "$a" ] && [ "$(wc -l <<<"$a")" -eq "$(wc -l <<<"$b")" ] || fail "$4: $1 record count"
  paste <(echo "$a") <(echo "$b") | awk -v w="$4 $1" '
    { d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > m) m = r;
      if (r > 1e-5) { print "FAIL: " w ": record " NR ": " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
    END { printf "%-28s max rel err vs one device %.2e\n", w, m; exit bad }'
}
"$HP" train "${common[@]}" --steps 6 > "$WORK/one.json"
for s in dp2 fsdp2; do
  "$HP" train "${common[@]}" --steps 6 --devices threads:2 --strategy $s > "$WORK/$s.json" ||
    fail "$s training"
  same loss "$WORK/one.json" "$WORK/$s.json" "$s"
  same val_loss "$WORK/one.json" "$WORK/$s.json" "$s"
done

# The same keys in a YAML config.
printf 'model: gpt2-tiny\ndata: kjv\nbatch: 4\nseq: 32\nthreads: 1\nlr: 3e-3\nwarmup: 2\n'\
'steps: 6\ndevices: threads:2\nstrategy: fsdp2\n' > "$WORK/job.yaml"
"$HP" train --config "$WORK/job.yaml" --json > "$WORK/yaml.json" || fail "YAML job"
same loss "$WORK/one.json" "$WORK/yaml.json" "yaml fsdp2"

# Resume: fsdp2 writes step 3 (each rank its shards); dp2 and one device continue from it.
"$HP" train "${common[@]}" --steps 3 --devices threads:2 --strategy fsdp2 --ckpt-dir "$WORK/ck" \
  > "$WORK/r1.json" || fail "fsdp2 to step 3"
[ -f "$WORK/ck/step-3/index.json" ] && [ -f "$WORK/ck/step-3/rank-00001.safetensors" ] ||
  fail "no checkpoint at step 3"
cp -r "$WORK/ck" "$WORK/ck1"
"$HP" train "${common[@]}" --steps 6 --devices threads:2 --strategy dp2 --ckpt-dir "$WORK/ck" \
  --resume > "$WORK/r2.json" || fail "dp2 resume"
grep -q '"step": 3,' "$WORK/r2.json" && ! grep -q '"step": 2,' "$WORK/r2.json" ||
  fail "dp2 resume did not continue at step 3"
cat "$WORK/r1.json" "$WORK/r2.json" > "$WORK/r.json"
same loss "$WORK/one.json" "$WORK/r.json" "fsdp2 -> dp2 resume"
"$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/ck1" --resume > "$WORK/r3.json" ||
  fail "one-device resume from an fsdp2 checkpoint"
cat "$WORK/r1.json" "$WORK/r3.json" > "$WORK/r.json"
same loss "$WORK/one.json" "$WORK/r.json" "fsdp2 -> one device resume"
# Gradient accumulation: two micro-batches per step, as on one device.
"$HP" train "${common[@]}" --steps 4 --grad-accum 2 > "$WORK/acc1.json"
"$HP" train "${common[@]}" --steps 4 --grad-accum 2 --devices threads:2 --strategy fsdp2 \
  > "$WORK/acc2.json" || fail "fsdp2 with --grad-accum 2"
same loss "$WORK/acc1.json" "$WORK/acc2.json" "fsdp2 grad-accum 2"
echo "train_spmd: ok"
