#!/usr/bin/env bash
# The include-layering check passes on the tree, and fails (naming file, line and modules) on a
# copy of it where core includes an io header, ir includes a shard header and an ops header,
# runtime includes the CPU backend, the CPU backend includes the op records, and a header sits
# directly in include/hp/ (outside every module's folder).
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
sed -i '0,/^#include "/s//#include "hp\/ops\/registry.hpp"\n#include "/' "$WORK/t/src/ir/op_def.cpp"
sed -i '0,/^#include "/s//#include "hp\/backend\/cpu\/backend.hpp"\n#include "/' "$WORK/t/src/runtime/executor.cpp"
sed -i '0,/^#include "/s//#include "hp\/ir\/op_def.hpp"\n#include "/' "$WORK/t/src/backend/cpu/backend.cpp"
printf '#pragma once\n#include "hp/core/error.hpp"\n' > "$WORK/t/include/hp/stray.hpp"
if "$WORK/t/scripts/check_layering.sh" "$WORK/t" 2> "$WORK/err"; then
  echo "FAIL: the layering check accepted core including io"; exit 1
fi
grep -q 'src/core/shape.cpp:[0-9]*: core includes "hp/io/json.hpp" of io' "$WORK/err" &&
  grep -q 'src/ir/graph.cpp:[0-9]*: ir includes "hp/shard/layout.hpp" of shard' "$WORK/err" &&
  grep -q 'src/ir/op_def.cpp:[0-9]*: ir includes "hp/ops/registry.hpp" of ops' "$WORK/err" &&
  grep -q \
    'runtime/executor.cpp:[0-9]*: runtime includes "hp/backend/cpu/backend.hpp" of backend/cpu' \
    "$WORK/err" &&
  grep -q 'src/backend/cpu/backend.cpp:[0-9]*: backend/cpu includes the op records' "$WORK/err" &&
  grep -q "include/hp/stray.hpp: unknown module '?'" "$WORK/err" ||
  { cat "$WORK/err"; echo "FAIL: violations not named"; exit 1; }
echo "layering: ok"
