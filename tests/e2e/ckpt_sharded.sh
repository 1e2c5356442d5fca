#!/usr/bin/env bash
# Sharded checkpoints end to end: fsdp4 on threads:4 saves step 3 with every rank writing its own
# file (none over 30% of the data bytes); tp2 on threads:2, dp2xtp2 on threads:4 and one device
# resume it and print the uninterrupted one-device losses (1e-5 relative), fsdp4 bitwise (same
# losses, same files); sync and async saves write the same bytes; a corrupt byte is caught by
# its checksum at resume and by hp ckpt info; a corrupt or incomplete latest names the previous
# complete step; a writer's failure reaches every rank and leaves the previous checkpoint.
# usage: ckpt_sharded.sh HP ROOT
source "$(dirname "$0")/lib.sh"
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --threads 1 --lr 3e-3 --warmup 2 --json)
losses() { grep -o '"loss": [0-9.]*' "$@" | cut -d' ' -f2; }
close() {  # close A.json B.json what: the same losses within 1e-5 relative
  local a b
  a=$(losses "$1"); b=$(losses "$2")
  [ -n "$a" ] && [ "$(wc -l <<<"$a")" -eq "$(wc -l <<<"$b")" ] || fail "$3: loss record count"
  paste <(echo "$a") <(echo "$b") | awk -v w="$3" '
    { d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > m) m = r;
      if (r > 1e-5) { print "FAIL: " w ": record " NR ": " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
    END { printf "%-32s max rel err vs one device %.2e\n", w, m; exit bad }'
}
"$HP" train "${common[@]}" --steps 6 > "$WORK/one.json" || fail "one device"
"$HP" train "${common[@]}" --steps 6 --devices threads:4 --strategy fsdp4 --ckpt-dir "$WORK/full" \
  > "$WORK/full.json" || fail "fsdp4 to step 6"
"$HP" train "${common[@]}" --steps 3 --devices threads:4 --strategy fsdp4 --ckpt-dir "$WORK/ck" \
  --ckpt-every 1 > "$WORK/r1.json" 2> "$WORK/r1.err" || fail "fsdp4 to step 3"
s3="$WORK/ck/step-3"
[ -f "$s3/index.json" ] && [ "$(cat "$WORK/ck/latest")" = step-3 ] || fail "no index at step 3"
grep -q "writing in the background" "$WORK/r1.err" || fail "the default save is not asynchronous"
# Every rank wrote its own file, none more than its share.
total=$(cat "$s3"/rank-*.safetensors | wc -c)
for r in 0 1 2 3; do
  f="$s3/rank-0000$r.safetensors"
  [ -f "$f" ] || fail "rank $r wrote no file"
  awk -v a="$(wc -c < "$f")" -v t="$total" 'BEGIN { exit !(a <= 0.3 * t) }' ||
    fail "rank $r's file holds $(wc -c < "$f") of $total bytes"
done
grep -q '"hf_shape"' "$s3/index.json" && grep -q '"xxh64"' "$s3/index.json" ||
  fail "index lacks hf_shape or checksums"
for c in tp2 dp2xtp2 one same; do cp -r "$WORK/ck" "$WORK/ck_$c"; done

resume() {  # resume NAME [devices strategy]: steps 4..6 from ck_NAME
  local extra=()
  [ $# -gt 1 ] && extra=(--devices "$2" --strategy "$3")
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/ck_$1" --resume "${extra[@]}" \
    > "$WORK/res_$1.json" || fail "resume under $1"
  grep -q '"step": 3,' "$WORK/res_$1.json" && ! grep -q '"step": 2,' "$WORK/res_$1.json" ||
    fail "$1 did not continue at step 3"
  cat "$WORK/r1.json" "$WORK/res_$1.json" > "$WORK/$1.all.json"
}
resume tp2 threads:2 tp2
close "$WORK/one.json" "$WORK/tp2.all.json" "fsdp4 -> tp2 (2 ranks)"
resume dp2xtp2 threads:4 dp2xtp2
close "$WORK/one.json" "$WORK/dp2xtp2.all.json" "fsdp4 -> dp2xtp2 (4 ranks)"
resume one
close "$WORK/one.json" "$WORK/one.all.json" "fsdp4 -> one device"
close "$WORK/one.json" "$WORK/full.json" "fsdp4 uninterrupted"
resume same threads:4 fsdp4
diff <(losses "$WORK/full.json") <(losses "$WORK/same.all.json") ||
  fail "fsdp4 -> fsdp4 resume is not bitwise"
for r in 0 1 2 3; do
  cmp "$WORK/full/step-6/rank-0000$r.safetensors" "$WORK/ck_same/step-6/rank-0000$r.safetensors" ||
    fail "fsdp4 resume: rank $r's step-6 file differs from the uninterrupted run's"
done

# Moments offloaded to disk are saved from there and resume on one device.
"$HP" train "${common[@]}" --steps 3 --devices threads:2 --strategy fsdp2 --optimizer-state disk \
  --offload-dir "$WORK/off" --ckpt-dir "$WORK/disk" > "$WORK/d1.json" || fail "fsdp2, state on disk"
"$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/disk" --resume > "$WORK/d2.json" ||
  fail "one-device resume of a checkpoint saved from disk-offloaded moments"
cat "$WORK/d1.json" "$WORK/d2.json" > "$WORK/d.json"
close "$WORK/one.json" "$WORK/d.json" "fsdp2 (moments on disk) -> one"

# Synchronous saves write the same files.
"$HP" train "${common[@]}" --steps 3 --devices threads:4 --strategy fsdp4 --ckpt-dir "$WORK/sync" \
  --ckpt-mode sync > /dev/null 2> "$WORK/sync.err" || fail "sync save"
! grep -q "background" "$WORK/sync.err" || fail "--ckpt-mode sync wrote in the background"
for r in 0 1 2 3; do
  cmp "$s3/rank-0000$r.safetensors" "$WORK/sync/step-3/rank-0000$r.safetensors" ||
    fail "sync and async saves differ (rank $r)"
done

# hp ckpt info lists tensors and boxes and verifies every checksum.
"$HP" ckpt info "$WORK/ck" > "$WORK/info.txt" || fail "hp ckpt info"
grep -q "step 3, strategy fsdp4, written by 4 rank" "$WORK/info.txt" || fail "info header"
grep -q "h.0.attn.c_attn.weight .*F32 \[.*, 3, .*\] (HF \[" "$WORK/info.txt" ||
  fail "info does not show c_attn's logical and HF shapes"
grep -q "every xxh64 checksum matches" "$WORK/info.txt" || fail "info did not verify"

# One corrupt byte: caught at resume and by info, naming the file, the tensor and step-2.
cp -r "$WORK/ck" "$WORK/bad"
python3 - "$WORK/bad/step-3/index.json" <<'PY'
import json, sys
x = json.load(open(sys.argv[1]))
b = x["tensors"]["h.1.mlp.c_fc.weight"]["boxes"][0]
with open(sys.argv[1].replace("index.json", b["file"]), "r+b") as f:
    f.seek(b["byte_range"][0] + 5); c = f.read(1); f.seek(-1, 1); f.write(bytes([c[0] ^ 1]))
PY
expect_fail "checksum mismatch in tensor 'h.1.mlp.c_fc.weight'" \
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/bad" --resume --devices threads:2 \
  --strategy tp2
expect_fail "previous complete checkpoint is $WORK/bad/step-2" \
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/bad" --resume
expect_fail "checksum mismatch in tensor 'h.1.mlp.c_fc.weight'" "$HP" ckpt info "$WORK/bad"
"$HP" ckpt info "$WORK/bad/step-2" > /dev/null || fail "info of the intact step-2"
# An incomplete latest (no index.json, a file missing): refused, naming step-2.
cp -r "$WORK/ck" "$WORK/inc" && rm "$WORK/inc/step-3/index.json"
expect_fail "names step-3, which is incomplete (no index.json); the previous complete checkpoint is $WORK/inc/step-2" \
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/inc" --resume
cp -r "$WORK/ck" "$WORK/gone" && rm "$WORK/gone/step-3/rank-00002.safetensors"
expect_fail "rank-00002.safetensors" \
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/gone" --resume
expect_fail "previous complete checkpoint is $WORK/gone/step-2" \
  "$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/gone" --resume

# A writer that fails (rank 1's file cannot be created) fails every rank at the next sync point;
# the previous checkpoint stays and resumes; a stale staging dir of a killed save goes at the next.
"$HP" train "${common[@]}" --steps 1 --devices threads:2 --strategy fsdp2 --ckpt-dir "$WORK/w" \
  > /dev/null || fail "fsdp2 to step 1"
mkdir -p "$WORK/w/.tmp-step-2/rank-00001.safetensors" "$WORK/w/.tmp-step-7"
expect_fail "rank-00001.safetensors" "$HP" train "${common[@]}" --steps 2 --devices threads:2 \
  --strategy fsdp2 --ckpt-dir "$WORK/w" --resume
[ "$(cat "$WORK/w/latest")" = step-1 ] && [ ! -d "$WORK/w/step-2" ] ||
  fail "a failed save moved latest"
[ ! -d "$WORK/w/.tmp-step-7" ] || fail "the stale staging dir of a killed save is still there"
rm -r "$WORK/w/.tmp-step-2"
"$HP" train "${common[@]}" --steps 2 --devices threads:2 --strategy fsdp2 --ckpt-dir "$WORK/w" \
  --resume > /dev/null || fail "resume after a failed save"
[ "$(cat "$WORK/w/latest")" = step-2 ] || fail "latest did not move after a good save"
echo "ckpt_sharded: ok"
