#!/usr/bin/env bash
# Fails when a module includes a header of a module it may not depend on. Modules are the
# libraries of docs/architecture.md; the allowed list below is each one's dependencies as linked in
# CMake, closed transitively. A file belongs to the module of its folder (src/<module>/...,
# include/hp/<module>/...); a header maps to the module that implements it.
# Not a style check: includes of the standard library and third-party headers are not looked at.
# usage: scripts/check_layering.sh [REPO]     (prints each violation as FILE:LINE: ...; exit 1)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

declare -A allowed=(
  [core]=""
  [backend/cpu]="core"
  [ir]="backend/cpu core"
  [runtime]="ir backend/cpu core"
  [comm]="core"
  [io]="core"
  [data]="io core"
  [nn]="runtime io ir backend/cpu core"
  [optim]="runtime io ir backend/cpu core"
  [shard]="ir io comm backend/cpu core"
  [memory]="runtime io ir backend/cpu core"
  [train]="nn optim data shard comm memory runtime io ir backend/cpu core"
  [cli]="train memory shard comm nn optim data runtime io ir backend/cpu core"
)

# The module a source or header file belongs to, in REPLY (no subshell: this runs per file).
module_of_file() {
  case $1 in
    src/backend/cpu/* | include/hp/cpu/*) REPLY=backend/cpu ;;
    src/ops/* | src/autodiff/* | src/ir/* | include/hp/ir/* | include/hp/ops.hpp | \
      include/hp/autodiff.hpp) REPLY=ir ;;
    include/hp/*/*) REPLY=${1#include/hp/} REPLY=${REPLY%%/*} ;;
    include/hp/*) REPLY=core ;;
    src/*/*) REPLY=${1#src/} REPLY=${REPLY%%/*} ;;
    *) REPLY="" ;;
  esac
}

# The module an include path (as written between the quotes) refers to, in REPLY; empty: not ours.
module_of_include() {
  case $1 in
    hp/cpu/*) REPLY=backend/cpu ;;
    hp/ir/* | hp/ops.hpp | hp/autodiff.hpp) REPLY=ir ;;
    hp/*/*) REPLY=${1#hp/} REPLY=${REPLY%%/*} ;;
    hp/*) REPLY=core ;;
    backend/cpu/*) REPLY=backend/cpu ;;
    ops/* | autodiff/*) REPLY=ir ;;
    */*) REPLY=${1%%/*}; [[ -n "${allowed[$REPLY]+x}" ]] || REPLY="" ;;
    *) REPLY="" ;;  # a header beside the file: its own module
  esac
}

bad=0
checked=0
# One pass over every quoted include: "FILE:LINE:#include "PATH"".
while IFS=: read -r file line text; do
  module_of_file "$file"
  from=$REPLY
  [[ -n "$from" ]] || continue
  [[ -n "${allowed[$from]+x}" ]] || { echo "$file: unknown module '$from'" >&2; bad=1; continue; }
  inc=${text#*\"} inc=${inc%%\"*}
  module_of_include "$inc"
  to=$REPLY
  checked=$((checked + 1))
  [[ -z "$to" || "$to" == "$from" ]] && continue
  if [[ " ${allowed[$from]} " != *" $to "* ]]; then
    echo "$file:$line: $from includes \"$inc\" of $to, which $from may not depend on" >&2
    bad=1
  fi
done < <(grep -rn --include='*.cpp' --include='*.hpp' '^#include "' src include | sort)

((checked > 100)) || { echo "check_layering: only $checked includes seen: wrong tree?" >&2; exit 1; }
if ((bad)); then exit 1; fi
echo "check_layering: $checked includes, none crosses the module graph"
