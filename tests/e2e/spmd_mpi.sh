#!/usr/bin/env bash
# `hp check CASE --devices mpi --strategy S` under mpirun (two processes, rank 0 prints) passes
# the reference comparisons and prints the single-device losses (1e-5 relative) for dp2 and tp2.
# usage: spmd_mpi.sh HP CASE_DIR MPIEXEC
set -euo pipefail
HP=$1
CASE=$2
MPIEXEC=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
loss() { grep '"step"' "$1" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/'; }

"$HP" check "$CASE" > "$TMP/single.txt" || fail "single-device check"
loss "$TMP/single.txt" > "$TMP/single.loss"
for s in dp2 tp2; do
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 \
    "$HP" check "$CASE" --devices mpi --strategy "$s" > "$TMP/mpi.txt" 2> "$TMP/err.txt" ||
    { cat "$TMP/mpi.txt" "$TMP/err.txt" >&2; fail "$s under mpirun"; }
  loss "$TMP/mpi.txt" > "$TMP/mpi.loss"
  [ "$(wc -l < "$TMP/mpi.loss")" -eq "$(wc -l < "$TMP/single.loss")" ] ||
    { cat "$TMP/mpi.txt" >&2; fail "$s: step count (only rank 0 may print)"; }
  paste "$TMP/single.loss" "$TMP/mpi.loss" | awk -v s="$s" '
    { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r;
      if (r > 1e-5) { print "FAIL: " s ": step " NR-1 " loss " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
    END { printf "mpi %-6s max loss rel err vs one device %.2e\n", s, w; exit bad }'
done
echo PASS
