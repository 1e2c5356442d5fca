#!/usr/bin/env bash
# The include-layering check passes on the tree, and fails (naming file, line and modules) on a
# copy of it where core includes an io header and ir includes a shard header.
# usage: layering.sh ROOT
set -euo pipefail
ROOT=$1
"$ROOT/scripts/check_layering.sh" "$ROOT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/t"
cp -r "$ROOT/src" "$ROOT/include" "$ROOT/scripts" "$WORK/t/"
sed -i '0,/^#include "/s//#include "hp\/io\/json.hpp"\n#include "/' "$WORK/t/src/core/shape.cpp"
sed -i '0,/^#include "/s//#include "hp\/shard\/layout.hpp"\n#include "/' "$WORK/t/src/ir/graph.cpp"
if "$WORK/t/scripts/check_layering.sh" "$WORK/t" 2> "$WORK/err"; then
  echo "FAIL: the layering check accepted core including io"; exit 1
fi
grep -q 'src/core/shape.cpp:[0-9]*: core includes "hp/io/json.hpp" of io' "$WORK/err" &&
  grep -q 'src/ir/graph.cpp:[0-9]*: ir includes "hp/shard/layout.hpp" of shard' "$WORK/err" ||
  { cat "$WORK/err"; echo "FAIL: violations not named"; exit 1; }
echo "layering: ok"
