#!/usr/bin/env bash
# Builds (via setup.sh) and runs the test suite: unit, e2e and mpi tests; `--all` adds the tests
# labelled slow. `--sanitize` instead builds into build-asan with AddressSanitizer and
# UndefinedBehaviorSanitizer (-DHP_SANITIZE=address) and runs the unit tests there.
# Prints ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "--sanitize" ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHP_SANITIZE=address >/dev/null
  ninja -C build-asan -j "$(nproc)" | grep -v "^\[" || true
  # OpenMP and oneDNN keep allocations to exit on purpose: leaks there are noise.
  export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  exec ctest --test-dir build-asan --output-on-failure --timeout 1200 -L unit -j 2
fi
args=(--test-dir build --output-on-failure --timeout 600)
if [[ "${1:-}" != "--all" ]]; then args+=(-LE slow); fi
ctest "${args[@]}" -j 2
