#!/usr/bin/env bash
# Builds the parser fuzz targets (tests/fuzz: libFuzzer with AddressSanitizer and
# UndefinedBehaviorSanitizer, clang) into a build directory of their own and runs each for a
# bounded time over its seed corpus. Fails naming the target and the saved input when a run finds
# a crash, a sanitizer report, a leak, an exception other than hp::Error, a hang or an allocation
# above the limit.
# Usage: scripts/fuzz.sh [--seconds N] [--build-dir DIR] [TARGET...]
#   --seconds N    time per target (default 60)
#   --build-dir D  the fuzz build (default build-fuzz); configured here unless it already is
#   TARGET         safetensors, model_config, strategy, yaml_config, checkpoint, tokens (default all)
# New inputs the runs find go to D/corpus/<target> (and are reused by the next run); a failing
# input is saved as D/artifacts/<target>-crash-<hash> (or leak-, oom-, timeout-): to make it a
# regression input, copy it into tests/fuzz/corpus/<target>/ once the parser is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
build=build-fuzz
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  targets=(safetensors model_config strategy yaml_config checkpoint tokens)
fi

log=$build/build.log
mkdir -p "$build"
if ! { [[ -f $build/CMakeCache.txt ]] ||
       cmake -S . -B "$build" -G Ninja -DHP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DCMAKE_CXX_COMPILER=clang++; } >"$log" 2>&1 ||
   ! ninja -C "$build" -j "$(nproc)" >>"$log" 2>&1; then
  grep -v '^\[[0-9]*/[0-9]*\]' "$log" >&2 || true
  echo "fuzz.sh: the fuzz build failed (full log: $log)" >&2
  exit 1
fi

failed=()
for t in "${targets[@]}"; do
  bin=$build/bin/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz.sh: no target '$t' ($bin)" >&2; exit 2; }
  mkdir -p "$build/corpus/$t" "$build/artifacts"
  # A single allocation above 256 MiB from an input of a few KiB can only come from a size field
  # that was believed; -timeout catches inputs that hang a parser.
  if "$bin" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
       "$build/corpus/$t" "tests/fuzz/corpus/$t" >"$build/$t.log" 2>&1; then
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/$t.log" |
                     grep -o '[0-9]*$') inputs in ${seconds} s, no failure"
  else
    failed+=("$t")
    echo "fuzz_$t: FAILED (log: $build/$t.log)" >&2
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*uncaught exception|.*Test unit written)' \
      "$build/$t.log" | head -n 8 >&2 || true
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
  exit 1
fi
