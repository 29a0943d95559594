#!/usr/bin/env bash
# Installs the Debian 12 packages iovt needs to build, test and benchmark.
# Idempotent: does nothing when everything is already there. Run as root.
set -euo pipefail

PKGS=(
  meson ninja-build pkg-config gcc g++ python3
  liburcu-dev libjemalloc-dev libdpdk-dev libbenchmark-dev
  libsystemd-dev  # libdpdk.pc --static names -lsystemd (scripts/check-install.sh)
  systemtap-sdt-dev clang-14 libclang-rt-14-dev llvm-14
  gnuplot-nox linux-perf
  libglib2.0-dev gdb
  libjansson-dev      # iovt-storm's JSON (the storm driver only; the library does not use it)
  doxygen
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
