# Helpers for the e2e scripts: a temp dir removed on exit, and assertions that say what failed.
set -euo pipefail
HP=$1
ROOT=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_fail() {  # expect_fail "message substring" cmd...
  local want=$1; shift
  local out
  if out=$("$@" 2>&1); then fail "expected failure: $*"; fi
  grep -qF -- "$want" <<<"$out" || fail "error of '$*' lacks '$want': $out"
}
