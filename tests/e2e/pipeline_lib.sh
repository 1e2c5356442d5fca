# Shared by pipeline.sh and pipeline_submesh.sh (sourced with their arguments HP CASE_DIR
# [MPIEXEC]): a scratch directory TMP, the case's block count and batch rows, its single-device
# losses, and `check`, which runs `hp check` under a pipeline strategy and compares its losses
# with one device's.
set -euo pipefail
HP=$1
CASE=$2
MPIEXEC=${3:-}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
loss() { grep '"step"' "$1" | sed 's/.*"loss": \([0-9.e+-]*\).*/\1/'; }
blocks=$(sed -n '/^  "model": {/,/^  }/p' "$CASE/case.json" |
  grep -oE '"(n_layer|num_hidden_layers)": *[0-9]+' | tr -dc '0-9')
((blocks >= 2)) || fail "$CASE: $blocks blocks"
# The batch from the header of batch.safetensors ("tokens": [B, T+1]): 3 micro-batches when it has
# the rows (a batch of 4 then splits 2+1+1), else one per row.
shape=$(head -c 4096 "$CASE/batch.safetensors" | grep -ao '"shape": *\[[0-9]*, *[0-9]*\]' | head -n 1 |
  tr -dc '0-9,')
batch=${shape%,*}
((batch >= 1)) || fail "$CASE: no batch shape in batch.safetensors"
micro=$((batch < 3 ? batch : 3))

"$HP" check "$CASE" > "$TMP/single.txt" || fail "single-device check"
loss "$TMP/single.txt" > "$TMP/single.loss"
[[ -s "$TMP/single.loss" ]] || fail "no single-device losses"

# same_losses NAME FILE: FILE's losses are the single device's (1e-5 relative), one per step.
same_losses() {
  loss "$2" > "$TMP/run.loss"
  [[ $(wc -l < "$TMP/run.loss") -eq $(wc -l < "$TMP/single.loss") ]] ||
    { cat "$2" >&2; fail "$1: step count"; }
  paste "$TMP/single.loss" "$TMP/run.loss" | awk -v s="$1" '
    { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r;
      if (r > 1e-5) { print "FAIL: " s ": step " NR-1 " loss " $2 " vs " $1 > "/dev/stderr"; bad = 1 } }
    END { printf "%-28s max loss rel err vs one device %.2e\n", s, w; exit bad }'
}

# check NAME DEVICES STRATEGY [launcher...]: hp check passes and matches one device.
check() {
  local name=$1 devices=$2 strategy=$3
  shift 3
  "$@" "$HP" check "$CASE" --devices "$devices" --strategy "$strategy" > "$TMP/out.txt" \
    2> "$TMP/err.txt" || { cat "$TMP/out.txt" "$TMP/err.txt" >&2; fail "$name"; }
  grep -q '"ok": false' "$TMP/out.txt" && { cat "$TMP/out.txt" >&2; fail "$name: a check failed"; }
  grep -q '"check": "grad"' "$TMP/out.txt" || fail "$name: no gradient check ran"
  same_losses "$name" "$TMP/out.txt"
}
