# hp generate with --devices and --strategy against one device: greedy tokens of a batch of
# prompts of different lengths (gpt2-tiny, llama-kjv) under tp2 and dp2 on threads:2, dp2xtp2 on
# threads:4 and tp2 under mpirun -np 2 (--devices mpi) when MPI is built, sampled ones under tp2
# and dp2; an error on the ranks (a prompt
# longer than the model, refused before the ranks start; a strategy moving the KV pool, refused
# on every rank) ends the run with the message, never a hang; a pipeline is refused.
# usage: generate_sharded.sh HP ROOT [MPIEXEC]
source "$(dirname "$0")/lib.sh"
MPIEXEC=${3:-}
field() { grep -oE "\"$1\":(\[[^]]*\]|[^,}]*)" | sed "s/^\"$1\"://"; }
printf 'And God said\nIn the beginning God\nLet\n' > "$WORK/prompts.txt"
# Greedy on both models everywhere; sampled (the draws of each request's sequence number) on
# one model under tp2 and dp2.
for job in "gpt2-tiny|--temperature 0" "llama-kjv|--temperature 0" \
           "gpt2-tiny|--temperature 0.9 --top-k 20 --seed 3"; do
  model=${job%%|*} sampling=${job#*|}
  runs=("threads:2 tp2" "threads:2 dp2" "threads:4 dp2xtp2")
  [[ $sampling == *0.9* ]] && runs=("threads:2 tp2" "threads:2 dp2")
  # shellcheck disable=SC2206
  args=(--model "$model" --prompt-file "$WORK/prompts.txt" --batch 3 --tokens 12 --threads 1
        --block-tokens 4 --prefill-chunk 8 --json $sampling)
  one=$(timeout 120 "$HP" generate "${args[@]}" | field tokens) || fail "$model one device"
  [[ $(wc -l <<<"$one") == 3 ]] || fail "$model: not 3 records: $one"
  for run in "${runs[@]}"; do
    set -- $run
    got=$(timeout 120 "$HP" generate "${args[@]}" --devices "$1" --strategy "$2" | field tokens) ||
      fail "$model $run"
    [[ $got == "$one" ]] || fail "$model $sampling: $run tokens differ from one device: $got vs $one"
  done
  if [[ -n $MPIEXEC && $sampling != *0.9* ]]; then
    got=$(timeout 180 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$HP" generate \
      "${args[@]}" --devices mpi --strategy tp2 2> "$WORK/mpi.err" | field tokens) ||
      fail "$model under mpirun: $(cat "$WORK/mpi.err")"
    [[ $got == "$one" ]] || fail "$model $sampling: mpirun tp2 tokens differ: $got vs $one"
  fi
done
long=$(head -c 600 /dev/zero | tr '\0' a)
expect_fail "more than the model's" timeout 60 "$HP" generate --model gpt2-tiny --prompt "$long" \
  --devices threads:2 --strategy tp2
# An error inside the ranks (compiling a program under a strategy that would move the KV pool)
# ends the run with its message on threads and under mpirun.
printf 'mesh: {tp: 2}\npresets: [tp]\nrules:\n  - match: kv_pool\n    layout: [tp]\n' > "$WORK/pool.yaml"
expect_fail "moves the KV pool" timeout 60 "$HP" generate --model gpt2-tiny --tokens 4 \
  --devices threads:2 --strategy "$WORK/pool.yaml"
if [[ -n $MPIEXEC ]]; then
  expect_fail "moves the KV pool" timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 \
    "$HP" generate --model gpt2-tiny --tokens 4 --devices mpi --strategy "$WORK/pool.yaml"
fi
expect_fail "is a pipeline" "$HP" generate --model gpt2-tiny --devices threads:2 --strategy pp2
echo "generate_sharded: ok"
