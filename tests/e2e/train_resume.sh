# Resume is bitwise: 3 steps + resume to 6 == 6 steps straight (weights, optimizer, losses).
source "$(dirname "$0")/lib.sh"
common=(--model gpt2-tiny --data kjv --batch 2 --seq 32 --threads 2 --lr 3e-3 --warmup 2 --json)
"$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/a" > "$WORK/a.json"
"$HP" train "${common[@]}" --steps 3 --ckpt-dir "$WORK/b" > "$WORK/b1.json"
"$HP" train "${common[@]}" --steps 6 --ckpt-dir "$WORK/b" --resume > "$WORK/b2.json"
# One device writes one shard holding the weights and the optimizer state.
"$HP" ckpt export "$WORK/a" --to "$WORK/a.safetensors" > /dev/null
"$HP" ckpt export "$WORK/b" --to "$WORK/b.safetensors" > /dev/null
cmp "$WORK/a.safetensors" "$WORK/b.safetensors" || fail "weights differ"
cmp "$WORK/a/step-6/rank-00000.safetensors" "$WORK/b/step-6/rank-00000.safetensors" ||
  fail "optimizer state differs"
losses() { grep -o '"loss": [0-9.]*' "$@" | cut -d' ' -f2; }
diff <(losses "$WORK/a.json") <(cat <(losses "$WORK/b1.json") <(losses "$WORK/b2.json")) ||
  fail "loss sequences differ"
[[ $(losses "$WORK/a.json" | wc -l) == 6 ]] || fail "expected 6 loss records"
# The loss falls on real text.
first=$(losses "$WORK/a.json" | head -1); last=$(losses "$WORK/a.json" | tail -1)
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 0.3) }' || fail "loss did not fall: $first -> $last"
# A crash mid-write leaves the previous checkpoint loadable: a stale temp dir is ignored.
mkdir "$WORK/b/.tmp-step-9-1234" && echo junk > "$WORK/b/.tmp-step-9-1234/model.safetensors"
"$HP" train "${common[@]}" --steps 7 --ckpt-dir "$WORK/b" --resume > "$WORK/b3.json"
grep -q '"step": 6,' "$WORK/b3.json" || fail "resume after a stale temp dir did not continue at step 6"
echo "train_resume: ok"
