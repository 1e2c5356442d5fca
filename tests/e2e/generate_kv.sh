# hp generate on the KV-cache engine, from a config with random weights:
# - greedy decoding is repeatable, and equals the window-recompute loop (--recompute) token for
#   token while the sequence fits the model's positions;
# - seeded sampling repeats with its seed and changes with another;
# - a batch of prompt lines gives each line the tokens it gets alone;
# - --json records carry the fields benchmarks read; bad values are refused naming the option.
source "$(dirname "$0")/lib.sh"
gen() { "$HP" generate --threads 1 "$@"; }
# The value of "key" in each --json record of stdin, one per line.
field() { grep -oE "\"$1\":(\[[^]]*\]|[^,}]*)" | sed "s/^\"$1\"://"; }

greedy=(--model gpt2-tiny --prompt-tokens 20 --tokens 10 --json --temperature 0)
a=$(gen "${greedy[@]}") || fail "hp generate --json: $a"
b=$(gen "${greedy[@]}")
[[ $(field tokens <<<"$a") == "$(field tokens <<<"$b")" ]] ||
  fail "greedy runs differ: $(field tokens <<<"$a") vs $(field tokens <<<"$b")"
[[ $(field tokens <<<"$a" | tr -cd , | wc -c) == 9 ]] || fail "not 10 tokens: $a"
for key in tokens prompt_tokens ttft_ms decode_tok_s peak_device_bytes kv_offloaded_bytes; do
  grep -q "\"$key\":" <<<"$a" || fail "--json lacks $key: $a"
done
[[ $(field prompt_tokens <<<"$a") == 20 ]] || fail "prompt_tokens is not 20: $a"
[[ $(field kv_offloaded_bytes <<<"$a") == 0 ]] || fail "kv_offloaded_bytes is not 0: $a"

for model in gpt2-tiny llama-kjv; do
  c=$(gen --model "$model" --prompt "In the beginning" --tokens 12 --temperature 0 --json)
  r=$(gen --model "$model" --prompt "In the beginning" --tokens 12 --temperature 0 --json \
    --recompute)
  [[ $(field tokens <<<"$c") == "$(field tokens <<<"$r")" ]] ||
    fail "$model: cached and recomputed greedy tokens differ: $c vs $r"
done

s1=$(gen --model llama-kjv --prompt "In the" --tokens 16 --temperature 1.5 --top-k 0 --json)
s1b=$(gen --model llama-kjv --prompt "In the" --tokens 16 --temperature 1.5 --top-k 0 --json)
s2=$(gen --model llama-kjv --prompt "In the" --tokens 16 --temperature 1.5 --top-k 0 --json \
  --seed 2)
[[ $(field tokens <<<"$s1") == "$(field tokens <<<"$s1b")" ]] || fail "seed 1 does not repeat"
[[ $(field tokens <<<"$s1") != "$(field tokens <<<"$s2")" ]] ||
  fail "seeds 1 and 2 give the same tokens: $(field tokens <<<"$s1")"

printf 'And God said\nIn the beginning God created\nLet\n' > "$WORK/prompts.txt"
batch=$(gen --model gpt2-kjv --prompt-file "$WORK/prompts.txt" --batch 3 --tokens 8 \
  --temperature 0 --prefill-chunk 4 --json)
[[ $(grep -c '"tokens"' <<<"$batch") == 3 ]] || fail "--batch 3 gave not 3 records: $batch"
i=0
while IFS= read -r line; do
  i=$((i + 1))
  alone=$(gen --model gpt2-kjv --prompt "$line" --tokens 8 --temperature 0 --json)
  [[ $(field tokens <<<"$batch" | sed -n "${i}p") == "$(field tokens <<<"$alone")" ]] ||
    fail "prompt '$line' in a batch differs from alone: $batch vs $alone"
done < "$WORK/prompts.txt"

stop=$(gen --model gpt2-tiny --prompt "ab" --tokens 30 --temperature 0 --json)
text=$(field text <<<"$stop" | tr -d '"')
if (( ${#text} >= 4 )) && [[ ${text:2:2} != *\\* ]]; then  # stop at bytes 2..3 of the output
  stopped=$(gen --model gpt2-tiny --prompt "ab" --tokens 30 --temperature 0 --json \
    --stop "${text:2:2}")
  [[ $(field finish <<<"$stopped") == '"stop"' ]] || fail "--stop did not stop: $stopped"
fi

tiny=(--model gpt2-tiny --prompt-tokens 4 --tokens 2)
expect_fail "option --top-p must be in [0, 1], got '1.5'" gen "${tiny[@]}" --top-p 1.5
expect_fail "option --top-p must be in (0, 1], got 0" gen "${tiny[@]}" --top-p 0
expect_fail "option --min-p must be in [0, 1], got '-1'" gen "${tiny[@]}" --min-p -1
expect_fail "option --repetition-penalty must be > 0" gen "${tiny[@]}" --repetition-penalty 0
expect_fail "option --batch must be at least 1, got '0'" gen "${tiny[@]}" --batch 0
expect_fail "option --block-tokens must be at least 1" gen "${tiny[@]}" --block-tokens 0
expect_fail "give one of --ckpt DIR and --model" gen --ckpt "$WORK" "${tiny[@]}"
expect_fail "give one of --prompt, --prompt-file and --prompt-tokens" \
  gen "${tiny[@]}" --prompt "x"
expect_fail "option --init needs --model" gen --ckpt "$WORK" --init x.safetensors
expect_fail "option --prompt-file: cannot read" gen --model gpt2-tiny --prompt-file "$WORK/none"
expect_fail "more than the model's 32 positions" gen --model gpt2-tiny --prompt-tokens 33
# A vocabulary smaller than the bytes': text prompts need a tokenizer, random ids do not.
sed -n '/"model": {/,/}/p' "$ROOT/tests/reference/llama-mqa/case.json" | sed '1s/.*/{/;$s/},*/}/' \
  > "$WORK/v128.json"
expect_fail "makes ids up to 255 but the model's vocabulary has 128" \
  gen --model "$WORK/v128.json" --prompt "x"
small=$(gen --model "$WORK/v128.json" --prompt-tokens 5 --tokens 4 --temperature 0 --json) ||
  fail "random prompt ids on a 128-token vocabulary: $small"
[[ $(field tokens <<<"$small" | tr -cd "," | wc -c) == 3 ]] || fail "not 4 tokens: $small"
echo "generate_kv: ok"
