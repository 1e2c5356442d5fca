#!/usr/bin/env bash
# Builds (via setup.sh) and runs the test suite: unit, e2e and mpi tests; `--all` adds the tests
# labelled slow. `--sanitize` instead builds into build-asan with AddressSanitizer and
# UndefinedBehaviorSanitizer (-DHP_SANITIZE=address) and runs the unit and e2e tests there.
# Prints ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "--sanitize" ]]; then
  log=build-asan/build.log
  mkdir -p build-asan
  if ! cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DHP_SANITIZE=address >"$log" 2>&1 || ! ninja -C build-asan -j "$(nproc)" >>"$log" 2>&1; then
    grep -v '^\[[0-9]*/[0-9]*\]' "$log" >&2 || true
    echo "test.sh: sanitizer build failed (full log: $log)" >&2
    exit 1
  fi
  # OpenMP and oneDNN keep allocations to exit on purpose: leaks there are noise.
  export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # Unit and end-to-end tests (the e2e scripts run build-asan/bin/hp); not the mpi label, whose
  # uninstrumented Open MPI runtime ASan cannot follow.
  exec ctest --test-dir build-asan --output-on-failure --timeout 1200 -LE 'slow|mpi' -j 2
fi
args=(--test-dir build --output-on-failure --timeout 600)
if [[ "${1:-}" != "--all" ]]; then args+=(-LE slow); fi
ctest "${args[@]}" -j 2
