#!/usr/bin/env bash
# Installs the Debian packages the build needs (only those missing), then configures and builds
# into build/. Usage: scripts/setup.sh [--bench]   (--bench also installs PyTorch for baselines)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake ninja-build g++ pkg-config libdnnl-dev ocl-icd-opencl-dev googletest libgtest-dev libbenchmark-dev
      nlohmann-json3-dev libyaml-cpp-dev libopenmpi-dev openmpi-bin bible-kjv-text)
# The PyTorch baseline runs its matmuls in OpenBLAS (without it, Debian falls back to the
# reference BLAS, about 50x slower, which would flatter us).
if [[ "${1:-}" == "--bench" ]]; then pkgs+=(python3-torch python3-numpy libopenblas0-pthread); fi

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

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j "$jobs" | grep -v "^\[" || true
test -x build/bin/hp || { echo "setup: build failed" >&2; exit 1; }
echo "setup: built build/bin/hp"
