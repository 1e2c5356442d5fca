#!/usr/bin/env bash
# Builds (via setup.sh) and runs the test suite: unit, e2e and mpi tests; `--all` adds the tests
# labelled slow. `--sanitize` instead runs the suite under the sanitizers, one build each:
#   build-asan  AddressSanitizer + UndefinedBehaviorSanitizer (-DHP_SANITIZE=address): the unit
#               and e2e tests;
#   build-tsan  ThreadSanitizer (-DHP_SANITIZE=thread): the unit tests, which include the threads
#               communicator and the multi-rank steps on it (comm_test, spmd_units_test), and the
#               threads-backend e2e tests of the tiny cases (e2e_spmd_{gpt2,llama}-tiny), with
#               scripts/tsan.supp.
# `--sanitize=address` or `--sanitize=thread` runs one of them. Prints ctest's summary lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# build KIND DIR: configures and builds DIR with -DHP_SANITIZE=KIND.
build() {
  local kind=$1 dir=$2 log=$2/build.log
  mkdir -p "$dir"
  if ! cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DHP_SANITIZE="$kind" >"$log" 2>&1 || ! ninja -C "$dir" -j "$(nproc)" >>"$log" 2>&1; then
    grep -v '^\[[0-9]*/[0-9]*\]' "$log" >&2 || true
    echo "test.sh: $kind sanitizer build failed (full log: $log)" >&2
    return 1
  fi
}

# Unit and end-to-end tests (the e2e scripts run build-asan/bin/hp); not the mpi label, whose
# uninstrumented Open MPI runtime ASan cannot follow. OpenMP and oneDNN keep allocations to exit
# on purpose: leaks there are noise.
run_address() {
  build address build-asan || return
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 1200 -LE 'slow|mpi' -j 2
}

# The unit tests and the threads-backend e2e tests of the tiny cases (the deep cases and
# e2e_spmd_train, which train longer, are left out to keep the run short). Debian's libgomp, oneDNN and
# libstdc++ are not built with TSan: libgomp's barriers are annotated (src/core/tsan_openmp.cpp),
# scripts/tsan.supp names what it hides in those libraries (docs/cli.md); a race anywhere else
# stops the test with exit code 66.
run_thread() {
  build thread build-tsan || return
  export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1 exitcode=66"
  ctest --test-dir build-tsan --output-on-failure --timeout 1200 -L unit -j 2 || return
  ctest --test-dir build-tsan --output-on-failure --timeout 1200 -R '^e2e_spmd_(gpt2|llama)-tiny$'
}

case "${1:-}" in
  --sanitize) run_address && run_thread ;;
  --sanitize=address) run_address ;;
  --sanitize=thread) run_thread ;;
  *)
    args=(--test-dir build --output-on-failure --timeout 600)
    if [[ "${1:-}" != "--all" ]]; then args+=(-LE slow); fi
    ctest "${args[@]}" -j 2
    ;;
esac
