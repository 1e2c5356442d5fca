#!/usr/bin/env bash
# Runs the README's first command, `scripts/setup.sh && build/bin/hp train`, as a newcomer would:
# in a new Debian 12 root where nothing the project needs is installed, so a package missing from
# setup.sh's list (or a build that needs something outside the tree, such as CUDA) fails here
# rather than on someone's first day. Checks that the run ends with the trained sample.
#
# The base root (`mmdebstrap --variant=apt bookworm`) is made once and kept as a tarball in the
# cache; every run unpacks a new root from it, copies in the repository's tracked and unignored
# files (not build/), and removes the root on exit. Downloaded .deb files are kept in the cache
# too, so later runs do not fetch them again (they are still installed by setup.sh every time).
#
# usage: scripts/fresh_root.sh [--base-only]     (--base-only: make the cached base root and stop)
# env:   HP_FRESH_ROOT_CACHE   cache directory (default /var/cache/hp-fresh-root)
#        HP_FRESH_ROOT_TIMEOUT seconds allowed for setup + build + train (default 2400)
#        HP_FRESH_ROOT_SOURCES apt sources file for the new root (default: this machine's own
#                              /etc/apt/sources.list and sources.list.d/*.list|*.sources)
# Needs root (chroot, mount) and network access to the mirror. The last run's output is kept in
# CACHE/last-run.log.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HP_FRESH_ROOT_CACHE:-/var/cache/hp-fresh-root}
limit=${HP_FRESH_ROOT_TIMEOUT:-2400}
# The new root fetches from the mirrors this machine's apt already uses (mmdebstrap pastes a
# file given as a mirror into the root's sources).
sources=()
if [[ -n "${HP_FRESH_ROOT_SOURCES:-}" ]]; then
  sources=("$HP_FRESH_ROOT_SOURCES")
else
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -s "$f" ]] && sources+=("$f")
  done
fi
fail() { echo "FAIL: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "fresh_root.sh needs root (it uses chroot and mount)"
mkdir -p "$cache/debs/partial"

# (1) The base root, made once. flock: two runs at once make it only once.
exec 9> "$cache/lock"
flock 9
if [[ ! -f "$cache/base.tar" ]]; then
  if ! command -v mmdebstrap > /dev/null; then
    echo "fresh_root: installing mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap \
      > /dev/null
  fi
  echo "fresh_root: creating the base root in $cache/base.tar"
  rm -f "$cache/base.tar.part"
  # The sources are given explicitly: without them mmdebstrap would read them from stdin.
  ((${#sources[@]})) || fail "no apt sources found (set HP_FRESH_ROOT_SOURCES)"
  mmdebstrap --variant=apt --format=tar bookworm "$cache/base.tar.part" "${sources[@]}" < /dev/null
  mv "$cache/base.tar.part" "$cache/base.tar"
fi
flock -u 9
[[ "${1:-}" == "--base-only" ]] && { echo "fresh_root: base root ready"; exit 0; }

# (2) A new root for this run, removed on exit with everything mounted in it.
root=$(mktemp -d /var/tmp/hp-fresh-root.XXXXXX)
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; --i)); do
    umount "${mounts[i]}" 2> /dev/null || umount -l "${mounts[i]}" || true
  done
  # Never delete through a mount that is still there (it would reach the host's /dev).
  if grep -q " $root/" /proc/mounts; then
    echo "fresh_root: $root still has mounts; left in place" >&2
  else
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_in() {  # mount_in TARGET mount-args...
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounts+=("$target")
}
tar -C "$root" -xf "$cache/base.tar"
mkdir -p "$root/src"
# Tracked and new unignored files as they are in the work tree (not build/, runs/: ignored).
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
  tar --null -T - -cf -) | tar -C "$root/src" -xf -
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# The network's TLS trust as this machine has it (an egress proxy's CA, where there is one): a
# newcomer's machine on the same network trusts it too (npm fetches over https).
ca_env=()
if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/hp-fresh-root-ca.crt"
  ca_env=(NODE_EXTRA_CA_CERTS=/etc/hp-fresh-root-ca.crt)
fi
mount_in "$root/proc" -t proc proc
mount_in "$root/dev" --bind /dev
mount_in "$root/dev/pts" --bind /dev/pts  # apt logs through a pseudo-terminal
mount_in "$root/var/cache/apt/archives" --bind "$cache/debs"

# (3) The README's first command, with a clean environment, as root (setup.sh needs no sudo).
log="$cache/last-run.log"
echo "fresh_root: running 'scripts/setup.sh && build/bin/hp train' in $root (limit ${limit} s)"
start=$SECONDS
rc=0
timeout --kill-after=30 "$limit" chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${ca_env[@]}" \
  bash -c 'cd /src && scripts/setup.sh && build/bin/hp train' > "$log" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
echo "fresh_root: finished with status $rc after ${elapsed} s ($((elapsed / 60)) min $((elapsed % 60)) s)"

# (4) It must have built, trained every step of the default job and printed the sample.
show() { echo "--- last 40 lines of $log:"; tail -n 40 "$log"; echo "---"; }
((rc != 124 && rc != 137)) || { show; fail "not finished within $limit s"; }
((rc == 0)) || { show; fail "exited with status $rc"; }
grep -q "^setup: built build/bin/hp" "$log" || { show; fail "setup.sh did not report a build"; }
steps=$(sed -n 's/^steps: *\([0-9]*\).*/\1/p' "$repo/examples/train_kjv.yaml")
grep -q "^done: $steps steps" "$log" || { show; fail "hp train did not report $steps steps done"; }
# The last validation loss: a model that learned the text (untrained: ln 256 = 5.5 per byte;
# 2.43 after 100 steps, 1.97 after the default job's 600).
val=$(sed -n 's/^step [0-9]*: validation loss \([0-9.]*\)$/\1/p' "$log" | tail -n 1)
[[ -n "$val" ]] || { show; fail "no validation loss printed"; }
awk -v v="$val" 'BEGIN { exit !(v < 2.2) }' || { show; fail "final validation loss $val >= 2.2"; }
# The sample: after "sample:", the prompt and its continuation (200 bytes in the default job,
# possibly over several lines) to the end of the output.
sample=$(sed -n '/^sample:$/,$p' "$log" | tail -n +2)
[[ "$sample" == "And God said"* ]] || { show; fail "no sample after 'sample:'"; }
((${#sample} >= 150)) || { show; fail "sample too short: '$sample'"; }
echo "fresh_root: final validation loss $val; sample:"
echo "$sample"
echo "PASS fresh root: setup, build and hp train in ${elapsed} s"
