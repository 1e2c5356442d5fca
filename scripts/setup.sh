#!/usr/bin/env bash
# Installs the Debian packages the build needs (only those missing), then configures and builds
# into build/. Usage: scripts/setup.sh [--bench]   (--bench also installs PyTorch for baselines)
set -euo pipefail
cd "$(dirname "$0")/.."

# ocl-icd-opencl-dev: Debian's libdnnl-dev only recommends it, but oneDNN's CMake config
# (dnnl-config.cmake) requires OpenCL, so a --no-install-recommends install must name it.
# clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes, which clang's packages only
# recommend): the parser fuzz targets of the slow test fuzz_parsers (scripts/fuzz.sh). libicu-dev:
# Unicode character classes for the BPE pre-tokenizer (src/data/bpe.cpp); python3-regex: the test
# that compares it with the regex it reimplements. libcpp-httplib-dev: hp serve's HTTP server;
# python3: the e2e tests' clients (stdlib only).
pkgs=(cmake ninja-build g++ pkg-config libdnnl-dev ocl-icd-opencl-dev googletest libgtest-dev
      libbenchmark-dev nlohmann-json3-dev libyaml-cpp-dev libopenmpi-dev openmpi-bin
      bible-kjv-text clang libclang-rt-14-dev libxxhash-dev libicu-dev python3-regex
      libcpp-httplib-dev python3)
# The PyTorch baseline runs its matmuls in OpenBLAS (without it, Debian falls back to the
# reference BLAS, about 50x slower, which would flatter us).
if [[ "${1:-}" == "--bench" ]]; then pkgs+=(python3-torch python3-numpy libopenblas0-pthread); fi
# node and npm: the OpenAI Node SDK client of tests/e2e/serve_node.sh; Debian's, unless a node
# with its npm is installed already (NodeSource's nodejs holds npm and conflicts with Debian's).
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The SDK at the version tests/e2e/node/package-lock.json pins, into its git-ignored node_modules.
npm ci --prefix tests/e2e/node --no-audit --no-fund --loglevel=error >/dev/null

jobs=$(nproc)
log=build/setup-build.log
mkdir -p build
# A failed configure or build stops here with its output: never fall through to stale binaries.
if ! cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1 ||
   ! ninja -C build -j "$jobs" >>"$log" 2>&1; then
  grep -v '^\[[0-9]*/[0-9]*\]' "$log" >&2 || true
  echo "setup: build failed (full log: $log)" >&2
  exit 1
fi
echo "setup: built build/bin/hp"
