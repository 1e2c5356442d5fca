#!/usr/bin/env bash
# A sharded checkpoint under mpirun -np 4 (fsdp4, one rank per process): each process writes its
# own file, and the checkpoint resumes with the one-device losses (1e-5 relative) under tp2 on
# threads:2, on one device and under dp2xtp2 with mpirun -np 4, and under fsdp4 with mpirun -np 4
# with the uninterrupted fsdp4 run's losses bitwise.
# usage: ckpt_mpi.sh HP ROOT MPIEXEC
source "$(dirname "$0")/lib.sh"
MPIEXEC=$3
losses() { grep -o '"loss": [0-9.]*' "$@" | cut -d' ' -f2; }
common=(--model gpt2-tiny --data kjv --batch 4 --seq 32 --threads 1 --lr 3e-3 --warmup 2 --json)
"$HP" train "${common[@]}" --steps 4 > "$WORK/one.json" || fail "one device"
mpi4() { timeout 300 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 4 "$HP" train "$@"; }
mpi4 "${common[@]}" --steps 4 --devices mpi --strategy fsdp4 > "$WORK/full.json" 2> "$WORK/err.txt" ||
  { cat "$WORK/err.txt" >&2; fail "uninterrupted fsdp4 under mpirun"; }
mpi4 "${common[@]}" --steps 2 --devices mpi --strategy fsdp4 --ckpt-dir "$WORK/ck" \
  > "$WORK/r1.json" 2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "fsdp4 under mpirun"; }
for r in 0 1 2 3; do
  [ -s "$WORK/ck/step-2/rank-0000$r.safetensors" ] || fail "process $r wrote no file"
done
grep -q '"world": 4' "$WORK/ck/step-2/index.json" || fail "index does not record 4 ranks"
for c in tp2 one dp2xtp2 fsdp4; do cp -r "$WORK/ck" "$WORK/ck_$c"; done
# resume NAME [launcher and placement...]: steps 3 and 4 from ck_NAME.
resume() {
  local name=$1
  shift
  "$@" "${common[@]}" --steps 4 --ckpt-dir "$WORK/ck_$name" --resume > "$WORK/res_$name.json" \
    2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "$name resume"; }
  cat "$WORK/r1.json" "$WORK/res_$name.json" > "$WORK/$name.all.json"
}
close() {  # close NAME: the one-device losses within 1e-5 relative
  paste <(losses "$WORK/one.json") <(losses "$WORK/$1.all.json") |
    awk -v w="$1" '{ d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > m) m = r; n++;
           if (r > 1e-5) { print "FAIL: " w ": step " NR ": " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
         END { if (n != 4) { print "FAIL: " w ": " n " losses" > "/dev/stderr"; bad = 1 }
               printf "mpi fsdp4 -> %-8s max rel err vs one device %.2e\n", w, m; exit bad }'
}
resume tp2 "$HP" train --devices threads:2 --strategy tp2
close tp2
resume one "$HP" train
close one
resume dp2xtp2 mpi4 --devices mpi --strategy dp2xtp2
close dp2xtp2
resume fsdp4 mpi4 --devices mpi --strategy fsdp4
close fsdp4
diff <(losses "$WORK/full.json") <(losses "$WORK/fsdp4.all.json") ||
  fail "fsdp4 -> fsdp4 under mpirun is not bitwise"
echo PASS
