#!/usr/bin/env bash
# Builds (via setup.sh) and runs the test suite: unit, e2e and mpi tests; `--all` adds the
# tests labelled slow. Prints ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
args=(--test-dir build --output-on-failure --timeout 600)
if [[ "${1:-}" != "--all" ]]; then args+=(-LE slow); fi
ctest "${args[@]}" -j 2
