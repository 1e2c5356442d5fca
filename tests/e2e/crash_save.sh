#!/usr/bin/env bash
# Crash injection (label slow): runs of fsdp2 training on threads:2 that save every step
# asynchronously are killed with SIGKILL at random moments; each is then resumed
# (--resume-mode auto: from its last complete checkpoint, or afresh when it had none) to the end,
# and must print the uninterrupted run's losses for the steps it ran and leave its final
# checkpoint byte for byte equal to the uninterrupted run's, with no staging directory or
# incomplete step left behind. Kills fall uniformly over the steps: after the first step is
# logged, within as long as the uninterrupted run took from there. They must land in saves often
# enough to test them: a staging directory (.tmp-step-N) present at the kill counts as a kill
# during a save, and at least a fifth of the runs must be such kills.
# usage: crash_save.sh HP ROOT [RUNS]   (RUNS defaults to 50)
source "$(dirname "$0")/lib.sh"
runs=${3:-50}
steps=8
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --lr 3e-3 --warmup 2 --json
        --steps "$steps" --ckpt-every 1 --keep 2 --devices threads:2 --strategy fsdp2)
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# step_lines FILE: "step loss grad_norm" per logged step, the bits that must repeat exactly.
step_lines() { sed -n 's/.*"step": \([0-9]*\), "loss": \([0-9.]*\), .*"grad_norm": \([0-9.]*\).*/\1 \2 \3/p' "$1"; }

# wait_first_step FILE PID: returns once FILE logs a step (or PID ends).
wait_first_step() {
  local i
  for ((i = 0; i < 6000; i++)); do
    grep -q '"loss"' "$1" 2> /dev/null && return
    kill -0 "$2" 2> /dev/null || return 0
    sleep 0.01
  done
  fail "no step logged in 60 s"
}

# The uninterrupted run, timed from its first logged step (start-up is not what is tested).
"$HP" train "${common[@]}" --ckpt-dir "$WORK/ref" > "$WORK/ref.json" 2> "$WORK/ref.err" &
pid=$!
wait_first_step "$WORK/ref.json" "$pid"
t0=$(now_ms)
wait "$pid" || fail "the uninterrupted run failed: $(cat "$WORK/ref.err")"
span=$(($(now_ms) - t0))
step_lines "$WORK/ref.json" > "$WORK/ref.steps"
(($(wc -l < "$WORK/ref.steps") == steps)) || fail "the uninterrupted run logged $(wc -l < "$WORK/ref.steps") steps"
final="$WORK/ref/step-$steps"
[ -f "$final/index.json" ] || fail "the uninterrupted run left no step-$steps checkpoint"

in_save=0 resumed=0
for ((i = 1; i <= runs; i++)); do
  dir="$WORK/run"
  rm -rf "$dir"
  delay=$((RANDOM % span))
  "$HP" train "${common[@]}" --ckpt-dir "$dir" > "$WORK/killed.json" 2> "$WORK/killed.err" &
  pid=$!
  wait_first_step "$WORK/killed.json" "$pid"
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  kill -KILL "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  ls -d "$dir"/.tmp-* > /dev/null 2>&1 && in_save=$((in_save + 1))
  latest=$(cat "$dir/latest" 2> /dev/null || echo none)
  "$HP" train "${common[@]}" --ckpt-dir "$dir" --resume-mode auto > "$WORK/resumed.json" \
    2> "$WORK/resumed.err" ||
    fail "run $i (killed at $delay ms, latest $latest): the resume failed: $(cat "$WORK/resumed.err")"
  [ "$latest" = none ] || resumed=$((resumed + 1))
  step_lines "$WORK/resumed.json" > "$WORK/resumed.steps"
  [ -s "$WORK/resumed.steps" ] || [ "$latest" = "step-$steps" ] ||
    fail "run $i (killed at $delay ms, latest $latest): the resume logged no step"
  # Every step the resume ran is the uninterrupted run's step, to the printed digit.
  if [ -s "$WORK/resumed.steps" ]; then
    grep -vxFf "$WORK/ref.steps" "$WORK/resumed.steps" > "$WORK/diff.steps" || true
    [ ! -s "$WORK/diff.steps" ] ||
      fail "run $i (killed at $delay ms, latest $latest): steps differ from the uninterrupted run: $(cat "$WORK/diff.steps")"
    first=$(head -n 1 "$WORK/resumed.steps" | cut -d' ' -f1)
    [ "$latest" = none ] && want=0 || want=${latest#step-}
    [ "$first" = "$want" ] || fail "run $i: resumed at step $first, its latest was $latest"
  fi
  diff -r "$final" "$dir/step-$steps" > /dev/null ||
    fail "run $i (killed at $delay ms, latest $latest): the final checkpoint differs from the uninterrupted run's"
  leftover=$(find "$dir" -mindepth 1 -maxdepth 1 \( -name '*.tmp*' -o -type d -name 'step-*' \
               ! -exec test -f '{}/index.json' ';' \) -print)
  # What a kill leaves is removed by the next save (a kill during the final pruning leaves a
  # half-deleted step when the resume has nothing left to run and so never saves).
  [ -z "$leftover" ] || [ ! -s "$WORK/resumed.steps" ] || fail "run $i: left behind: $leftover"
done
echo "crash_save: $runs kills over ${span} ms of steps, $in_save during a save, $resumed resumed from a checkpoint; every resume bitwise equal"
((in_save * 5 >= runs)) || fail "only $in_save of $runs kills landed during a save"
