# hp generate samples deterministically from a checkpoint; greedy decoding is repeatable.
source "$(dirname "$0")/lib.sh"
"$HP" train --model gpt2-tiny --data kjv --batch 2 --seq 32 --steps 2 --ckpt-dir "$WORK/c" > /dev/null
a=$("$HP" generate --ckpt "$WORK/c" --prompt "In the" --tokens 20 --temperature 0)
b=$("$HP" generate --ckpt "$WORK/c/step-2" --prompt "In the" --tokens 20 --temperature 0)
[[ "$a" == "$b" ]] || fail "greedy samples differ"
[[ "$a" == "In the"* ]] || fail "sample does not start with the prompt"
(( ${#a} >= 20 )) || fail "sample too short: '$a'"
expect_fail "no checkpoint" "$HP" generate --ckpt "$WORK/none"
echo "generate: ok"
