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
  [ir]="core"
  [ops]="ir core"
  [autodiff]="ops ir core"
  [runtime]="ir core"
  [backend/cpu]="runtime ir core"
  [comm]="core"
  [io]="core"
  [data]="io core"
  [mpmd]="io core"
  [nn]="ops io ir core"
  [optim]="runtime io ir core"
  [shard]="ops runtime io comm ir core"
  [memory]="runtime io ir core"
  [train]="nn optim data shard comm memory autodiff runtime ops io ir core"
  [cli]="train memory shard comm nn optim data autodiff runtime ops io ir backend/cpu core"
)

# The module a source or header file belongs to, in REPLY (no subshell: this runs per file).
module_of_file() {
  case $1 in
    src/backend/cpu/* | include/hp/cpu/*) REPLY=backend/cpu ;;
    include/hp/ops.hpp) REPLY=ops ;;
    include/hp/autodiff.hpp) REPLY=autodiff ;;
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
    hp/ops.hpp) REPLY=ops ;;
    hp/autodiff.hpp) REPLY=autodiff ;;
    hp/*/*) REPLY=${1#hp/} REPLY=${REPLY%%/*} ;;
    hp/*) REPLY=core ;;
    backend/cpu/*) REPLY=backend/cpu ;;
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
  elif [[ $from == backend/* && $inc == hp/ir/op_def.hpp ]]; then
    # Backends know ops by id (hp/ir/op_id.hpp), never by their records.
    echo "$file:$line: $from includes the op records \"$inc\"; a backend may use op ids only" >&2
    bad=1
  fi
done < <(grep -rn --include='*.cpp' --include='*.hpp' '^#include "' src include | sort)

((checked > 100)) || { echo "check_layering: only $checked includes seen: wrong tree?" >&2; exit 1; }
if ((bad)); then exit 1; fi
echo "check_layering: $checked includes, none crosses the module graph"
