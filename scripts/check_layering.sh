#!/usr/bin/env bash
# Fails when a module includes a header of a module it may not depend on. Modules are the
# libraries of docs/architecture.md; the allowed list below is each one's dependencies as linked in
# CMake, closed transitively. A file belongs to the module of its folder (src/<module>/...,
# include/hp/<module>/..., the two mirror each other); a header maps to the module that
# implements it.
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
  [infer]="nn shard comm memory runtime ops io ir core"
  [shard]="ops runtime io comm ir core"
  [memory]="runtime io ir core"
  [planner]="mpmd io core"
  [train]="nn optim data shard comm memory mpmd autodiff runtime ops io ir core"
  [cli]="planner mpmd train infer memory shard comm nn optim data autodiff runtime ops io ir backend/cpu core"
)

# The module of a path below src/ or include/hp/, in REPLY: its first folder, or the first two
# under backend/ (backend/cpu); empty for a file directly below (no module). No subshell: this
# runs per file.
module_of_path() {
  case $1 in
    backend/*/*) REPLY=${1#backend/} REPLY=backend/${REPLY%%/*} ;;
    */*) REPLY=${1%%/*} ;;
    *) REPLY="" ;;
  esac
}

# The module a source or header file belongs to, in REPLY: include/hp/<module>/ mirrors
# src/<module>/. A file directly in src/ or include/hp/ belongs to none ("?": reported).
module_of_file() {
  case $1 in
    src/* | include/hp/*)
      [[ $1 == src/* ]] && module_of_path "${1#src/}" || module_of_path "${1#include/hp/}"
      [[ -n "$REPLY" ]] || REPLY="?" ;;
    *) REPLY="" ;;
  esac
}

# The module an include path (as written between the quotes) refers to, in REPLY; empty: not ours.
module_of_include() {
  case $1 in
    hp/*) module_of_path "${1#hp/}" ;;
    backend/*/*) module_of_path "$1" ;;
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

# include/hp/<module>/ mirrors src/<module>/: a header folder without its source folder is an error.
while IFS= read -r dir; do
  module_of_path "${dir#include/hp/}/x"
  [[ -d "src/$REPLY" ]] || { echo "$dir: no src/$REPLY beside it" >&2; bad=1; }
done < <(find include/hp -mindepth 1 -type d -not -path 'include/hp/backend' | sort)

((checked > 100)) || { echo "check_layering: only $checked includes seen: wrong tree?" >&2; exit 1; }
if ((bad)); then exit 1; fi
echo "check_layering: $checked includes, none crosses the module graph"
