# hp generate samples from the weights of the checkpoint it is given, not from anything else:
# - the last checkpoint of a run reproduces the sample hp train printed from the weights in
#   memory (same prompt, seed, temperature, top-k and threads);
# - greedy decoding of one checkpoint is repeatable, by its run directory or its step-<N>;
# - two runs with the same seed (so the same initial weights), stopped after step 1 and after
#   step 100, give different greedy samples.
source "$(dirname "$0")/lib.sh"
train() {  # train DIR STEPS: gpt2-tiny on the KJV text, checkpoint in DIR, output in DIR.out
  "$HP" train --model gpt2-tiny --data kjv --batch 4 --seq 32 --steps "$2" --lr 3e-3 --seed 7 \
    --threads 1 --ckpt-dir "$1" --sample-tokens 40 > "$1.out" 2>&1 ||
    fail "hp train --steps $2: $(cat "$1.out")"
}
greedy() { "$HP" generate --ckpt "$1" --prompt "In the" --tokens 20 --temperature 0; }
train "$WORK/c1" 1
train "$WORK/c100" 100

trained=$(sed -n '/^sample:$/,$p' "$WORK/c100.out" | tail -n +2)
[[ "$trained" == "And God said"?* ]] || fail "hp train printed no sample: $(cat "$WORK/c100.out")"
loaded=$("$HP" generate --ckpt "$WORK/c100" --tokens 40 --seed 7 --threads 1)
[[ "$loaded" == "$trained" ]] ||
  fail "the checkpoint does not reproduce the trained sample: '$loaded' vs '$trained'"

a=$(greedy "$WORK/c100")
b=$(greedy "$WORK/c100/step-100")
[[ "$a" == "$b" ]] || fail "greedy samples of one checkpoint differ: '$a' vs '$b'"
[[ "$a" == "In the"* ]] || fail "sample does not start with the prompt"
(( ${#a} >= 20 )) || fail "sample too short: '$a'"
early=$(greedy "$WORK/c1")
[[ "$early" == "$(greedy "$WORK/c1/step-1")" ]] || fail "greedy samples of step 1 differ"
[[ "$early" != "$a" ]] || fail "step 1 and step 100 give the same greedy sample: '$a'"
expect_fail "no checkpoint" "$HP" generate --ckpt "$WORK/none"
echo "generate: ok (step 1: '$early', step 100: '$a')"
