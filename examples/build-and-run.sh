#!/usr/bin/env bash
# Builds every example against an iovt installed under PREFIX, the way a user
# would: the system C compiler and pkg-config only (no meson, nothing from this
# source tree but the example's .c file), once linked shared and once with
# `pkg-config --static` against the static libiovt; then runs each program.
#   minimal  pkg-config iovt
#   dpdk     pkg-config iovt-dpdk when it exists, else iovt + libdpdk
#            (runs EAL without hugepages: needs root for /var/run/dpdk)
#   vfio     pkg-config iovt; run without arguments (prints usage, exits 0)
# Prints "example NAME (shared|static): ok|FAILED" per build, then
# "N passed, N failed"; exits non-zero when anything failed.
# Usage: examples/build-and-run.sh PREFIX        (CC, CFLAGS honoured)
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(cd "$1" 2>/dev/null && pwd) || { echo "build-and-run: no such prefix: $1" >&2; exit 2; }
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g -Wall -Wextra -Werror}
multiarch=$($CC -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch=$($CC -dumpmachine)
export PKG_CONFIG_PATH="$prefix/lib/$multiarch/pkgconfig:$prefix/lib64/pkgconfig:$prefix/lib/pkgconfig:$prefix/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
out=$(mktemp -d /tmp/iovt-examples.XXXXXX)
trap 'rm -rf "$out"; rm -rf /var/run/dpdk/iovt-example-* 2>/dev/null' EXIT

pass=0 fail=0
if ! pkg-config --exists iovt; then
  echo "build-and-run: pkg-config finds no iovt under $prefix (PKG_CONFIG_PATH=$PKG_CONFIG_PATH)"
  echo "0 passed, 1 failed"; exit 1
fi
libdir=$(pkg-config --variable=libdir iovt)

# The DPDK glue: its own package when the install has one. Without it (a
# libiovt with the glue inside), iovt + libdpdk; for a static link iovt alone
# when its .pc already pulls libdpdk in privately (naming libdpdk twice
# repeats DPDK's --whole-archive block: multiple definitions).
if pkg-config --exists iovt-dpdk; then
  dpdk_pkgs="iovt-dpdk"; dpdk_static_pkgs="iovt-dpdk"
else
  dpdk_pkgs="iovt libdpdk"; dpdk_static_pkgs="iovt libdpdk"
  pkg-config --print-requires-private iovt | grep -qw libdpdk && dpdk_static_pkgs="iovt"
fi
echo "build-and-run: $prefix, libdir $libdir; dpdk example: pkg-config $dpdk_pkgs (static: $dpdk_static_pkgs)"

# static_libs PKGS...: `pkg-config --static --libs` with iovt's own libraries
# taken from their .a (-l:libX.a), so the program does not need libiovt*.so;
# the system libraries stay as the linker finds them.
static_libs() {
  local libs; libs=$(pkg-config --static --libs "$@") || return 1
  local f res=()
  for f in $libs; do
    case $f in
      -liovt|-liovt-*) res+=("-l:lib${f#-l}.a") ;;
      *) res+=("$f") ;;
    esac
  done
  echo "${res[@]}"
}

# one NAME MODE SRC "PKGS" RUN-ARGS...: build, check the link, run.
one() {
  local name=$1 mode=$2 src=$3 pkgs=$4; shift 4
  local bin=$out/$name-$mode log=$out/$name-$mode.log cflags libs
  {
    echo "== $name ($mode): pkg-config $pkgs"
    if [ "$mode" = static ]; then
      cflags=$(pkg-config --static --cflags $pkgs) && libs=$(static_libs $pkgs)
    else
      cflags=$(pkg-config --cflags $pkgs) && libs=$(pkg-config --libs $pkgs)
    fi || { echo "pkg-config failed"; return 1; }
    echo "$CC $CFLAGS -o $bin $src $cflags $libs"
    # shellcheck disable=SC2086
    $CC $CFLAGS -o "$bin" "$here/$src" $cflags $libs || { echo "build failed"; return 1; }
    if [ "$mode" = static ]; then
      if readelf -d "$bin" | grep -q 'NEEDED.*libiovt'; then
        echo "static build still needs a shared libiovt:"; readelf -d "$bin" | grep NEEDED; return 1
      fi
      timeout 120 "$bin" "$@"
    else
      LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 120 "$bin" "$@"
    fi
    local rc=$?
    echo "exit code $rc"
    return $rc
  } >"$log" 2>&1
}

run_example() { # NAME MODE SRC PKGS CHECK RUN-ARGS...
  local name=$1 mode=$2 src=$3 pkgs=$4 check=$5; shift 5
  if one "$name" "$mode" "$src" "$pkgs" "$@" && { [ -z "$check" ] || grep -q "$check" "$out/$name-$mode.log"; }; then
    echo "example $name ($mode): ok"; pass=$((pass + 1))
  else
    echo "example $name ($mode): FAILED"; fail=$((fail + 1))
    sed 's/^/    /' "$out/$name-$mode.log" | tail -25
  fi
}

for mode in shared static; do
  run_example minimal "$mode" minimal/minimal.c "iovt" "^minimal: ok"
  if [ "$mode" = static ]; then pk=$dpdk_static_pkgs; else pk=$dpdk_pkgs; fi
  run_example dpdk "$mode" dpdk/dpdk_pollers.c "$pk" "^dpdk_pollers: ok"
  run_example vfio "$mode" vfio/vfio_sketch.c "iovt" "^usage: "
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
