#!/usr/bin/env bash
# The planner on this machine (docs/planner.md#accuracy-on-this-machine): for dp2, fsdp2, tp2,
# tp2+sp and pp2 (one thread per rank) the step time hp plan --cluster predicts against the one
# measured running the same strategy file. Each round runs hp calibrate, then `hp bench steps`
# over the five files: one process holding a trainer per strategy on every rank, the strategies
# taking one step each in turn, so that a slow spell of a shared machine falls on all of them
# alike. Other tenants only ever add time: a strategy's measured step is the best of its timed
# steps over all rounds (its median beside it), and each calibration keeps its probes' best of
# three rounds; the prediction comes from the median of the rounds' calibrations, each figure on
# its own (below). The top choice is the planner's under that calibration; where it is one of the
# five files (the same keys), its measured step is that file's, else it runs as many rounds
# afterwards. Beside the steps, the CPU time per rank per step, which other processes do not
# inflate but which does not see time spent waiting (pipeline bubbles, the slower rank).
# usage: bench/plan_accuracy.sh [HP] [WORK_DIR] [ROUNDS] [MODEL] [BATCH] [SEQ]
set -euo pipefail
HP=${1:-build/bin/hp}
W=${2:-/tmp/hp_plan_accuracy}
ROUNDS=${3:-5}
MODEL=${4:-gpt2-kjv}
BATCH=${5:-8}
SEQ=${6:-128}
STEPS=6
mkdir -p "$W"
common=(--model "$MODEL" --global-batch "$BATCH" --seq "$SEQ")

# The five strategies as files: what hp plan fixes and hp train runs (micro-batch: the batch per
# replica; pp2: 1F1B over 4 micro-batches on one-device stages, which keep their forward's values).
half=$((BATCH / 2))
cat >"$W/dp2.yaml" <<Y
mesh: {dp: 2}
presets: [dp]
micro_batch: $half
recompute: selective
zero: none
Y
cat >"$W/fsdp2.yaml" <<Y
mesh: {fsdp: 2}
presets: [fsdp]
micro_batch: $half
recompute: selective
zero: full
Y
cat >"$W/tp2.yaml" <<Y
mesh: {tp: 2}
presets: [tp]
micro_batch: $BATCH
recompute: selective
zero: none
Y
cat >"$W/tp2+sp.yaml" <<Y
mesh: {tp: 2}
presets: [tp, sp]
micro_batch: $BATCH
recompute: selective
zero: none
Y
cat >"$W/pp2.yaml" <<Y
mesh: {pp: 2}
pipeline: {schedule: 1f1b, microbatches: 4}
micro_batch: $((BATCH / 4))
recompute: selective
zero: none
Y
five=(dp2 fsdp2 tp2 tp2+sp pp2)
# One round of the strategies named: each one's timed steps' seconds appended to $W/NAME.measured,
# its CPU seconds per rank per step to $W/NAME.cpu.
measure() {
  local files=() n
  for n in "$@"; do files+=("$W/$n.yaml"); done
  "$HP" bench steps --model "$MODEL" --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" \
    --devices threads:2 --threads 1 --strategies "$(IFS=,; echo "${files[*]}")" |
    python3 -c 'import json, os, sys
w = sys.argv[1]
for line in sys.stdin:
    r = json.loads(line)
    n = os.path.basename(r["strategy"])[:-len(".yaml")]
    with open(f"{w}/{n}.measured", "a") as f: f.writelines(f"{x}\n" for x in r["step_s"])
    with open(f"{w}/{n}.cpu", "a") as f: f.writelines(f"{x}\n" for x in r["cpu_s"])' "$W"
}
# What hp plan predicts for strategy file `$1` on cluster file `$2`: step, strategy, schedule, mb.
predict() {
  "$HP" plan "${common[@]}" --cluster "$2" --strategy "$W/$1.yaml" --json |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); print(r["step_s"], r["strategy"], r["schedule"], r["micro_batch"])'
}
for n in "${five[@]}" top; do : >"$W/$n.measured" && : >"$W/$n.cpu"; done
for round in $(seq "$ROUNDS"); do
  "$HP" calibrate --devices threads:2 --out "$W/local-$round.yaml" >/dev/null
  measure "${five[@]}"
done
# The median calibration: every figure of the rounds' files (each GEMM shape's share, the
# block's shares, the link and the collectives) the median of the rounds', each on its own. Each
# file is already its probes' best of three rounds; the fastest of the rounds again would be the
# lowest of several noisy estimates, and one whole round's file (the median one, until 2026-12-03)
# carries its own draw of every shape: the GEMM time of tp2's shapes over dp2's came out 0.85 to
# 1.03 in the files of one machine minutes apart. The median of each stands for them all.
python3 - "$W" "$ROUNDS" <<'PY'
import re, statistics, sys
w, n = sys.argv[1], int(sys.argv[2])
files = [open(f"{w}/local-{r}.yaml").read().splitlines() for r in range(1, n + 1)]
assert len({len(f) for f in files}) == 1, "the calibrations' files differ in length"
number = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
out = [f"# The median of {n} calibrations by hp calibrate, each figure on its own "
       "(bench/plan_accuracy.sh)."]
for lines in zip(*files):
    if lines[0].lstrip().startswith("#"):
        continue
    texts = [number.split(l) for l in lines]
    assert all(t == texts[0] for t in texts), f"the calibrations' files differ: {lines}"
    values = [[float(x) for x in number.findall(l)] for l in lines]
    medians = [statistics.median(v) for v in zip(*values)]
    line = texts[0][0]
    for m, t in zip(medians, texts[0][1:]):
        line += f"{m:.6g}" + t
    out.append(line)
open(f"{w}/local.yaml", "w").write("\n".join(out) + "\n")
PY
for n in "${five[@]}"; do predict "$n" "$W/local.yaml" >"$W/$n.predicted"; done
"$HP" plan "${common[@]}" --cluster "$W/local.yaml" --emit "$W/top.yaml" --json >"$W/top.json"
predict top "$W/local.yaml" >"$W/top.predicted"
# The same keys as one of the five (the comments and the validation mode aside): its runs.
keys() { grep -v '^#' "$1" | grep -v '^mode:' | sort; }
same=
for n in "${five[@]}"; do
  if [ "$(keys "$W/top.yaml")" = "$(keys "$W/$n.yaml")" ]; then same=$n; fi
done
if [ -n "$same" ]; then
  for f in measured cpu; do cp "$W/$same.$f" "$W/top.$f"; done
else
  for round in $(seq "$ROUNDS"); do measure top; done
fi
echo "calibration: the median of $ROUNDS rounds, each figure on its own; the top choice's runs: ${same:-its own}"
python3 - "$W" "${five[@]}" top <<'PY'
import statistics, sys
w, names = sys.argv[1], sys.argv[2:]
rows, errs = [], []
for n in names:
    p = open(f"{w}/{n}.predicted").read().split()
    m = [float(x) for x in open(f"{w}/{n}.measured").read().split()]
    best, med = min(m), statistics.median(m)
    cpu = statistics.median(float(x) for x in open(f"{w}/{n}.cpu").read().split())
    err = (float(p[0]) - best) / best
    if n != "top": errs.append(abs(err))
    label = n if n != "top" else f"top choice: {p[1]} {p[2]} mb{p[3]}"
    rows.append((label, float(p[0]), best, med, err, cpu))
print("| strategy | predicted ms | measured ms (best) | measured ms (median) | error vs best "
      "| CPU ms per rank per step |")
print("|---|---|---|---|---|---|")
for label, p, b, m, e, c in rows:
    print(f"| {label} | {p*1e3:.1f} | {b*1e3:.1f} | {m*1e3:.1f} | {e*100:+.1f}% | {c*1e3:.1f} |")
print(f"mean |error| {statistics.mean(errs)*100:.1f}%, max {max(errs)*100:.1f}%")
fastest = min(rows[:-1], key=lambda r: r[2])
top = rows[-1]
print(f"measured fastest of the five: {fastest[0]} {fastest[2]*1e3:.1f} ms; planner's top choice "
      f"measured {top[2]*1e3:.1f} ms ({(top[2]/fastest[2]-1)*100:+.1f}%)")
PY
