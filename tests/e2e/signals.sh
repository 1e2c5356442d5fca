# Stopping and refusing: SIGINT, SIGTERM (what mpirun forwards and schedulers send) and SIGHUP
# stop training after the step in flight, save, and exit with 128 + the signal; a second signal
# while it saves does not kill the save; the run resumes from what it saved. A checkpoint of
# another model is refused on resume, naming the first difference, and nothing is pruned.
source "$(dirname "$0")/lib.sh"
common=(--model gpt2-kjv --data kjv --batch 2 --seq 32 --lr 3e-3 --warmup 2 --json)

# run_until SIG DIR STEPS [args]: starts a long run, sends SIG (twice, the second while it is
# stopping) once STEPS steps are logged, and checks the exit status; prints the steps done.
run_until() {
  local sig=$1 dir=$2 steps=$3
  shift 3
  "$HP" train "${common[@]}" --steps 100000 --ckpt-dir "$dir" "$@" > "$dir.json" 2> "$dir.err" &
  local pid=$! i
  for ((i = 0; i < 1200; i++)); do
    (($(grep -c '"loss"' "$dir.json" || true) >= steps)) && break
    kill -0 "$pid" 2>/dev/null || fail "SIG$sig run ended early: $(cat "$dir.err")"
    sleep 0.1
  done
  kill "-$sig" "$pid"
  sleep 0.05
  kill "-$sig" "$pid" 2>/dev/null || true
  local rc=0
  wait "$pid" || rc=$?
  ((rc == 128 + $(kill -l "$sig"))) || fail "SIG$sig: exit $rc, expected $((128 + $(kill -l "$sig"))): $(cat "$dir.err")"
  grep -q "interrupted after step" "$dir.err" || fail "SIG$sig: no 'interrupted' line: $(cat "$dir.err")"
  grep -c '"loss"' "$dir.json"
}

for sig in TERM HUP INT; do
  n=$(run_until "$sig" "$WORK/$sig" 3 --threads 1)
  [[ -e "$WORK/$sig/step-$n" ]] || fail "SIG$sig after $n steps: no step-$n checkpoint: $(ls "$WORK/$sig")"
  "$HP" train "${common[@]}" --steps $((n + 1)) --ckpt-dir "$WORK/$sig" --resume --threads 1 \
    > "$WORK/$sig-resumed.json" || fail "SIG$sig: resume failed"
  grep -q "\"step\": $n," "$WORK/$sig-resumed.json" || fail "SIG$sig: resume did not continue at step $n"
done

# Two ranks of one process: either rank's signal stops both at the same step, and both save.
n=$(run_until TERM "$WORK/mesh" 2 --devices threads:2 --strategy fsdp2)
[[ -e "$WORK/mesh/step-$n" ]] || fail "threads:2 after $n steps: no step-$n checkpoint"

# A checkpoint of another model is never continued, and nothing of it is deleted.
tiny=(--data kjv --batch 2 --seq 32 --json --ckpt-dir "$WORK/tiny")
"$HP" train --model gpt2-tiny "${tiny[@]}" --steps 2 > /dev/null
cat > "$WORK/one-layer.json" <<'JSON'
{"model_type": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 4, "n_positions": 32,
 "vocab_size": 256, "layer_norm_epsilon": 1e-5}
JSON
sed 's/"n_layer": 1/"n_layer": 2/; s/1e-5/1e-6/' "$WORK/one-layer.json" > "$WORK/eps.json"
expect_fail "holds another model than this job's: 'n_layer' is 2 against 1" \
  "$HP" train --model "$WORK/one-layer.json" "${tiny[@]}" --steps 4 --resume
expect_fail "'layer_norm_epsilon' is 1e-05 against 1e-06" \
  "$HP" train --model "$WORK/eps.json" "${tiny[@]}" --steps 4 --resume
[[ -e "$WORK/tiny/step-2" ]] || fail "the refused resume deleted the checkpoint"
echo "signals: ok"
