#!/bin/sh
# Runs comm_mpi in a failure mode (kill: the last rank SIGKILLs itself; throw: it throws) under
# mpirun and checks that every surviving rank reported an hp::RemoteError that names the victim
# ("[comm] rank <NP-1> failed"), within the timeout. A timeout, an error naming another rank or
# none, or a missing report fails.
# mpirun's own exit status is ignored: a job with a dead or failed rank is expected to fail.
# usage: comm_mpi_failure.sh MPIEXEC EXE kill|throw OUTDIR NP
set -u
mpiexec=$1 exe=$2 mode=$3 out=$4 np=$5
rm -rf "$out" && mkdir -p "$out"
# --enable-recovery: mpirun keeps the survivors running when one process dies, so they can report.
timeout 90 "$mpiexec" --allow-run-as-root --oversubscribe --enable-recovery -np "$np" \
  "$exe" "--$mode" "$out" >"$out/mpirun.log" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then
  echo "FAIL: mpirun did not finish within 90 s (a rank hung)"; cat "$out/mpirun.log"; exit 1
fi
status=0
last=$((np - 1))
for r in $(seq 0 $((last - 1))); do
  if grep -q "^PASS RemoteError: \[comm\] rank $last failed" "$out/rank$r.txt" 2>/dev/null; then
    echo "rank $r: $(cat "$out/rank$r.txt")"
  else
    echo "FAIL rank $r: $(cat "$out/rank$r.txt" 2>/dev/null || echo 'no report')"; status=1
  fi
done
[ "$status" -eq 0 ] || cat "$out/mpirun.log"
exit $status
