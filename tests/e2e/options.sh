# Every command's --help is generated from its option table (src/cli/options.hpp): it lists
# each option with its default, exactly the options pinned here (the names and defaults users
# rely on), and docs/cli.md documents each of them. Values outside an option's range or choices,
# missing values and unknown options are errors naming the option, with exit code 1.
source "$(dirname "$0")/lib.sh"

# The --help entries of `hp CMD`, one line each (wrapped help text joined).
entries() {
  "$HP" "$@" --help | awk '/^  --/ { if (r) print r; r = $0; next }
                          /^      / { sub(/^ +/, " "); r = r $0; next }
                          { if (r) print r; r = "" } END { if (r) print r }'
}
# expect_help "CMD ..." NAME[=DEFAULT]...: exactly these options and --help; a valued option's
# entry shows "(default: DEFAULT" ("(required" for DEFAULT=required); each is in docs/cli.md.
expect_help() {
  local cmd=$1 e name dflt listed want out
  shift
  out=$(entries $cmd) || fail "hp $cmd --help failed"
  listed=$(grep -oE '^  --[a-z0-9-]+' <<<"$out" | sed 's/^  --//' | sort | tr '\n' ' ')
  want=$(for e in "$@" help; do echo "${e%%=*}"; done | sort | tr '\n' ' ')
  [[ "$listed" == "$want" ]] || fail "hp $cmd --help lists: $listed; expected: $want"
  for e in "$@"; do
    name=${e%%=*}
    grep -qF -- "--$name" "$ROOT/docs/cli.md" || fail "docs/cli.md does not mention --$name"
    [[ $e == *=* ]] || continue
    dflt=${e#*=}
    [[ $dflt == required ]] && want="(required" || want="(default: $dflt"
    grep -E -- "^  --$name( |$)" <<<"$out" | grep -F -- "$want" >/dev/null ||
      fail "hp $cmd --help: --$name lacks '$want': $(grep -E -- "^  --$name( |$)" <<<"$out")"
  done
}

offload=(device-memory=unlimited host-memory=unlimited optimizer-state=device
         offload-dir=offload)
devices=("devices=one device" strategy=dpN)
expect_help train config=none model=gpt2-kjv "init=fresh init" data=kjv data-format=text \
  steps=100 seed=1 json batch=8 seq=128 grad-accum=1 "threads=the cores" lr=3e-4 warmup=0 \
  min-lr-ratio=0.1 beta1=0.9 beta2=0.95 eps=1e-8 weight-decay=0.1 clip=1.0 val-fraction=0.05 \
  val-every=0 val-batches=4 ckpt-dir=none ckpt-every=0 keep=3 ckpt-format=sharded \
  ckpt-mode=async resume no-resume \
  resume-mode=false log-every=10 sample-tokens=0 trace=none reorder-pipeline "${offload[@]}" \
  "${devices[@]}" \
  cluster=local
expect_help check threads=1 "steps=the case's" "${devices[@]}" "${offload[@]}"
expect_help plan model=gpt2-tiny batch=8 seq=128 "threads=all cores" explain timeline=none profile \
  "${devices[@]}" \
  "${offload[@]}" "cluster=none" global-batch=512 micro-batch=searched schedule=searched \
  recompute=searched recompute-blocks=searched offload=searched top=1 json emit=none \
  infer-context=none infer-batch=1 \
  kv-offload=auto offload-weights
expect_help generate ckpt=none model=none "init=random weights (seed 1)" \
  "prompt=And God said" prompt-file=none prompt-tokens=none batch=1 tokens=200 temperature=0.8 \
  top-k=40 top-p=1 min-p=0 repetition-penalty=1 presence-penalty=0 frequency-penalty=0 \
  stop=none eos=-1 seed=1 "block-tokens=chosen per model" prefill-chunk=64 token-budget=0 "threads=the cores" recompute \
  json tokenizer=bytes device-memory=none kv-offload=auto \
  "offload-dir=the system's temporary directory" offload-weights "${devices[@]}"
expect_help serve ckpt=none model=none "init=random weights (seed 1)" host=127.0.0.1 port=8000 \
  max-queue=16 request-timeout=300 max-batch=4 max-batch-tokens=0 "block-tokens=chosen per model" \
  prefill-chunk=64 "threads=the cores" tokenizer=bytes device-memory=none kv-offload=auto \
  "offload-dir=the system's temporary directory" offload-weights
expect_help ckpt to=none
expect_help "bench spmd" layers=4 d=256 heads=4 vocab=256 seq=128 batch=8 threads=2 steps=8 rounds=3 \
  devices=threads:2
expect_help "bench steps" strategies=required model=gpt2-kjv batch=8 seq=128 steps=6 \
  "threads=the cores shared among the ranks of the process" devices=threads:2
expect_help "bench offload" layers=12 d-model=768 heads=12 vocab=50304 seq=128 batch=2 steps=3 \
  threads=2 offload-dir=offload_bench explain
expect_help calibrate "out=\$XDG_CONFIG_HOME/hp/cluster-local.yaml" devices=threads:2 quick
expect_help "bench comm" devices=threads:4 min-bytes=1KiB max-bytes=64MiB iters=20 warmup=3
expect_help "bench pipeline" layers=4 d=256 heads=4 vocab=256 seq=128 batch=8 microbatches=4 \
  threads=1 steps=6 profile-steps=5 schedules=gpipe,1f1b,interleaved,zb-h1,zbv devices=threads:2 \
  timeline=none reorder
# Ranges and choices are shown with the default. (grep reads to the end in these pipelines:
# grep -q would close the pipe early, and under pipefail the writer's SIGPIPE fails the check.)
entries train | grep -E '^  --beta1 ' | grep -F "(default: 0.9, in [0, 1])" >/dev/null ||
  fail "hp train --help does not show --beta1's range"
entries train | grep -F -- "--data-format text|u16|u32" >/dev/null ||
  fail "hp train --help does not show --data-format's choices"

# Bad values name the option, before any work, with exit code 1.
tiny=(--model gpt2-tiny --batch 2 --seq 16 --steps 1 --threads 1 --data random)
expect_fail "option --batch must be at least 1, got '0'" "$HP" train "${tiny[@]}" --batch 0
expect_fail "option --beta1 must be in [0, 1], got '1.5'" "$HP" train "${tiny[@]}" --beta1 1.5
expect_fail "option --log-every must be at least 1, got '-3'" \
  "$HP" train "${tiny[@]}" --log-every=-3
expect_fail "option --data-format must be one of text, u16, u32, got 'u8'" \
  "$HP" train "${tiny[@]}" --data-format u8
expect_fail "option --resume-mode must be one of false, true, auto, got 'maybe'" \
  "$HP" train "${tiny[@]}" --resume-mode maybe
expect_fail "option --optimizer-state must be one of device, host, disk, got 'gpu'" \
  "$HP" check "$WORK" --optimizer-state gpu
expect_fail "option --temperature must be at least 0, got '-1'" \
  "$HP" generate --ckpt "$WORK" --temperature -1
expect_fail "option --steps must be at least 2, got '1'" "$HP" bench spmd --steps 1
expect_fail "option --layers must be a decimal integer within int64, got 'x'" \
  "$HP" bench offload --layers x
expect_fail "option --threads must be at least 1, got '0'" \
  "$HP" plan --model gpt2-tiny --devices threads:2 --strategy dp2 --threads 0
expect_fail "give one of --ckpt DIR and --model CONFIG|NAME" "$HP" generate
expect_fail "give one of --ckpt DIR and --model CONFIG|NAME" "$HP" serve
expect_fail "option --port must be in [0, 65535], got '70000'" "$HP" serve --model gpt2-tiny \
  --port 70000
expect_fail "option --ckpt-mode must be one of async, sync, got 'later'" \
  "$HP" train "${tiny[@]}" --ckpt-mode later
expect_fail "usage: hp ckpt" "$HP" ckpt verify "$WORK"
expect_fail "hp ckpt export needs --to" "$HP" ckpt export "$WORK"
expect_fail "option --steps needs a value" "$HP" train "${tiny[@]}" --steps
expect_fail "option --json takes no value" "$HP" train "${tiny[@]}" --json=1
expect_fail "unknown option --bogus (see --help)" "$HP" bench offload --bogus 1
rc=0
"$HP" train "${tiny[@]}" --keep -1 2>/dev/null || rc=$?
[[ $rc == 1 ]] || fail "an out-of-range option exits $rc, not 1"
# A YAML config's values are checked as the options are, naming the file and line.
printf 'model: gpt2-tiny\nbatch: 0\n' > "$WORK/zero.yaml"
expect_fail "zero.yaml:2" "$HP" train --config "$WORK/zero.yaml"
expect_fail "option --batch must be at least 1, got '0'" "$HP" train --config "$WORK/zero.yaml"
echo "options: ok"
