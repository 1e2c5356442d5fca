#!/usr/bin/env bash
# A sharded checkpoint under mpirun -np 4 (fsdp4, one rank per process): each process writes its
# own file, and the checkpoint resumes under tp2 on threads:2 with the one-device losses.
# usage: ckpt_mpi.sh HP ROOT MPIEXEC
source "$(dirname "$0")/lib.sh"
MPIEXEC=$3
losses() { grep -o '"loss": [0-9.]*' "$@" | cut -d' ' -f2; }
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --threads 1 --lr 3e-3 --warmup 2 --json)
"$HP" train "${common[@]}" --steps 4 > "$WORK/one.json" || fail "one device"
timeout 300 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 4 \
  "$HP" train "${common[@]}" --steps 2 --devices mpi --strategy fsdp4 --ckpt-dir "$WORK/ck" \
  > "$WORK/r1.json" 2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "fsdp4 under mpirun"; }
for r in 0 1 2 3; do
  [ -s "$WORK/ck/step-2/rank-0000$r.safetensors" ] || fail "process $r wrote no file"
done
grep -q '"world": 4' "$WORK/ck/step-2/index.json" || fail "index does not record 4 ranks"
"$HP" train "${common[@]}" --steps 4 --devices threads:2 --strategy tp2 --ckpt-dir "$WORK/ck" \
  --resume > "$WORK/r2.json" || fail "tp2 resume"
paste <(losses "$WORK/one.json") <(cat <(losses "$WORK/r1.json") <(losses "$WORK/r2.json")) |
  awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > m) m = r; n++;
         if (r > 1e-5) { print "FAIL: step " NR ": " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
       END { if (n != 4) { print "FAIL: " n " losses" > "/dev/stderr"; bad = 1 }
             printf "mpi fsdp4 -> tp2 max rel err vs one device %.2e\n", m; exit bad }'
echo PASS
