#!/usr/bin/env bash
# Proves iovt's real sinks against a real Linux kernel: boots a small guest
# under QEMU (TCG) with an emulated Intel VT-d (caching mode) and the `edu`
# PCI device bound to vfio-pci, and runs the static test binary
# `iovt-vfio-guest` (tests/vfio/guest/) inside it:
#   boot 1: Debian's 6.12 kernel (CONFIG_IOMMUFD off)   -> VFIO type1 sink
#   boot 2: a 6.12 kernel built here with CONFIG_IOMMUFD -> iommufd sink
#           (built once from Debian's linux-source-6.12, ~20 min on 2 cores,
#           cached outside the repo, keyed by a hash of its configuration)
# The last line is the verdict:
#   vfio-guest: passed: N scenarios, N calls, 0 rejected
#   vfio-guest: FAILED: ...
#   vfio-guest: skipped: <why>      (cannot boot a guest: no qemu, no network, ...)
# Exit 0 when passed or skipped, 1 when failed.
#
# Environment:
#   IOVT_VFIO_CACHE     cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/iovt-vfio-guest)
#   IOVT_VFIO_SCALE     workload scale for the guest binary (default 5: ~100k calls)
#   IOVT_VFIO_IOMMUFD   0: skip the iommufd boot (and the kernel build)
#   IOVT_VFIO_TIMEOUT   seconds per guest boot (default 900)
# Usage: scripts/vfio-guest-test.sh [--kernel-only]   (--kernel-only: build/cache the iommufd kernel, exit)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t_start=$(date +%s)
# HOME may be unset on a CI runner (set -u would abort before any verdict:
# a failure, not a skip; found by review): the build dir then.
CACHE=${IOVT_VFIO_CACHE:-${XDG_CACHE_HOME:-${HOME:-$root/build}/.cache}/iovt-vfio-guest}
SCALE=${IOVT_VFIO_SCALE:-5}
TIMEOUT=${IOVT_VFIO_TIMEOUT:-900}
BUILD=${IOVT_VFIO_BUILD:-$root/build/vfio-guest}
mkdir -p "$CACHE" || { echo "vfio-guest: skipped: cannot create $CACHE"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { echo "vfio-guest: $*" >&2; }
skip() { echo "vfio-guest: skipped: $*"; exit 0; }
fail() { echo "vfio-guest: FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- packages
need_pkgs() {
  local missing=() p
  for p in qemu-system-x86 busybox-static cpio xz-utils "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    >"$CACHE/apt.log" 2>&1
}

# Newest package whose name matches an extended regex (from the local apt lists).
newest_pkg() {
  apt-cache search --names-only "$1" 2>/dev/null | awk '{print $1}' | sort -V | tail -1
}

# Downloads a .deb into $CACHE/debs (once) and prints its path.
fetch_deb() { # name
  local d="$CACHE/debs" f
  mkdir -p "$d"
  f=$(ls "$d/$1"_*.deb 2>/dev/null | sort -V | tail -1)
  if [ -z "$f" ]; then
    # Stale apt lists name versions the mirror dropped: refresh once and retry.
    (cd "$d" && apt-get download "$1" >"$CACHE/download.log" 2>&1) ||
      { $SUDO apt-get update -q >/dev/null 2>&1; (cd "$d" && apt-get download "$1" >>"$CACHE/download.log" 2>&1); } ||
      return 1
    f=$(ls "$d/$1"_*.deb 2>/dev/null | sort -V | tail -1)
  fi
  [ -n "$f" ] && echo "$f"
}

# ---------------------------------------------------------------- Debian kernel (type1)
debian_kernel() { # prints the kernel dir (vmlinuz + modules)
  local pkg deb dir
  pkg=$(newest_pkg '^linux-image-6\.12\.[0-9.]+\+deb12-amd64-unsigned$')
  [ -n "$pkg" ] || pkg=$(newest_pkg '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$')
  [ -n "$pkg" ] || { $SUDO apt-get update -q >/dev/null 2>&1;
                     pkg=$(newest_pkg '^linux-image-6\.12\.[0-9.]+\+deb12-amd64-unsigned$'); }
  [ -n "$pkg" ] || return 1
  dir="$CACHE/kernels/$pkg"
  if [ ! -d "$dir/k" ]; then
    deb=$(fetch_deb "$pkg") || return 1
    rm -rf "$dir"; mkdir -p "$dir"
    dpkg -x "$deb" "$dir/k.tmp" && mv "$dir/k.tmp" "$dir/k" || return 1
  fi
  echo "$dir"
}

# ---------------------------------------------------------------- iommufd kernel (built once)
IOMMUFD_FRAG="$root/tests/vfio/guest/iommufd-kernel.config"
iommufd_kernel() { # prints the bzImage path; builds it when not cached
  local ver key out src deb t0
  ver=$(apt-cache policy linux-source-6.12 2>/dev/null | awk '/Candidate:/{print $2}')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || { $SUDO apt-get update -q >/dev/null 2>&1;
    ver=$(apt-cache policy linux-source-6.12 2>/dev/null | awk '/Candidate:/{print $2}'); }
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  key=$( { echo "linux-source-6.12 $ver x86_64_defconfig kvm_guest.config"; cat "$IOMMUFD_FRAG"; } \
         | sha256sum | cut -c1-16)
  out="$CACHE/iommufd-kernel-$key"
  if [ -f "$out/bzImage" ]; then echo "$out/bzImage"; return 0; fi
  mkdir -p "$out"
  exec 9>"$out/.lock"; flock 9
  if [ -f "$out/bzImage" ]; then echo "$out/bzImage"; return 0; fi
  need_pkgs bison flex bc libelf-dev libssl-dev make gcc || return 1
  t0=$(date +%s)
  log "building the iommufd guest kernel (linux-source-6.12 $ver, once; ~20 min on 2 cores)"
  deb=$(fetch_deb linux-source-6.12) || return 1
  src="$out/src"
  rm -rf "$src" "$out/x"; mkdir -p "$src" "$out/x"
  dpkg -x "$deb" "$out/x" || return 1
  tar -xJf "$out"/x/usr/src/linux-source-6.12.tar.xz -C "$src" --strip-components=1 || return 1
  rm -rf "$out/x"
  (
    cd "$src" || exit 1
    make -s x86_64_defconfig && make -s kvm_guest.config &&
      scripts/kconfig/merge_config.sh -m .config "$IOMMUFD_FRAG" >/dev/null &&
      make -s olddefconfig &&
      grep -q '^CONFIG_IOMMUFD=y' .config && grep -q '^CONFIG_VFIO_PCI=y' .config &&
      nice -n 10 make -s -j"$(( $(nproc) + 1 ))" bzImage
  ) >"$out/build.log" 2>&1 || { log "kernel build failed, see $out/build.log"; return 1; }
  cp "$src/arch/x86/boot/bzImage" "$out/bzImage.tmp" && cp "$src/.config" "$out/config" &&
    mv "$out/bzImage.tmp" "$out/bzImage" || return 1
  rm -rf "$src"
  log "iommufd kernel built in $(( $(date +%s) - t0 )) s"
  echo "$out/bzImage"
}

if [ "${1:-}" = "--kernel-only" ]; then
  need_pkgs || skip "cannot install qemu/busybox"
  k=$(iommufd_kernel) || { echo "vfio-guest: kernel build failed"; exit 1; }
  echo "vfio-guest: iommufd kernel at $k"
  exit 0
fi

# ---------------------------------------------------------------- one guest boot
# boot <tag> <kernel image> <module dir or -> <sink>: builds the initramfs,
# boots, leaves the console in $CACHE/<tag>.console.log. Returns 0 when the
# guest reached the test (GUEST-BEGIN), 1 when it never booted.
VFIO_MODS="irqbypass vfio_virqfd vfio vfio_iommu_type1 vfio-pci-core vfio-pci"
boot() {
  local tag=$1 kimg=$2 kmods=$3 sink=$4 m f
  local r="$CACHE/run-$tag"
  rm -rf "$r"; mkdir -p "$r/root/bin" "$r/root/proc" "$r/root/sys" "$r/root/dev" "$r/root/lib/vfio"
  cp "$(command -v busybox)" "$r/root/bin/busybox" || return 1
  cp "$BIN" "$r/root/test" || return 1
  if [ "$kmods" != "-" ]; then
    for m in $VFIO_MODS; do
      f=$(find "$kmods" -name "$m.ko*" 2>/dev/null | head -1); [ -n "$f" ] || continue
      case $f in *.xz) xz -dc "$f" ;; *.zst) zstd -dc "$f" ;; *) cat "$f" ;; esac >"$r/root/lib/vfio/$m.ko"
    done
  fi
  cat >"$r/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
for m in $VFIO_MODS; do [ -f /lib/vfio/\$m.ko ] && insmod /lib/vfio/\$m.ko; done
BDF=
for d in /sys/bus/pci/devices/*; do
  [ "\$(cat \$d/vendor):\$(cat \$d/device)" = "0x1234:0x11e8" ] && BDF=\${d##*/}
done
echo "GUEST-BEGIN kernel \$(uname -r) edu \$BDF"
echo vfio-pci > /sys/bus/pci/devices/\$BDF/driver_override
echo \$BDF > /sys/bus/pci/drivers_probe
/test \$BDF $sink $SCALE; echo "GUEST-TEST-RC=\$?"
poweroff -f
INIT
  chmod +x "$r/root/init"
  (cd "$r/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$r/initrd.gz" || return 1
  local t0; t0=$(date +%s)
  timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -M q35 \
    -device intel-iommu,intremap=on,caching-mode=on -device edu -m 1536M -smp 2 \
    -kernel "$kimg" -initrd "$r/initrd.gz" \
    -append "console=ttyS0 intel_iommu=on panic=-1 quiet" \
    -nographic -nodefaults -serial stdio -no-reboot -monitor none </dev/null \
    >"$CACHE/$tag.console.log" 2>&1
  local qrc=$?
  log "$tag: guest ran $(( $(date +%s) - t0 )) s (qemu rc $qrc)"
  grep -q 'GUEST-BEGIN' "$CACHE/$tag.console.log"
}

# Reads the RESULT line of a boot: sets R_SCEN R_FAILED R_CALLS R_REJ R_MAPNS R_UNMAPNS, R_OK.
result_of() {
  local line
  line=$(grep -a 'iovt-vfio-guest: RESULT' "$CACHE/$1.console.log" | tail -1 | tr -d '\r')
  R_OK=0; R_SCEN=0; R_FAILED=1; R_CALLS=0; R_REJ=0; R_MAPNS=0; R_UNMAPNS=0
  [ -n "$line" ] || return 1
  R_SCEN=$(sed -n 's/.* scenarios=\([0-9]*\).*/\1/p' <<<"$line")
  R_FAILED=$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$line")
  R_CALLS=$(sed -n 's/.* calls=\([0-9]*\).*/\1/p' <<<"$line")
  R_REJ=$(sed -n 's/.* rejected=\([0-9]*\).*/\1/p' <<<"$line")
  R_MAPNS=$(sed -n 's/.* map_ns=\([0-9]*\).*/\1/p' <<<"$line")
  R_UNMAPNS=$(sed -n 's/.* unmap_ns=\([0-9]*\).*/\1/p' <<<"$line")
  grep -aq 'GUEST-TEST-RC=0' "$CACHE/$1.console.log" && [ "$R_FAILED" = 0 ] && [ "$R_REJ" = 0 ] &&
    [ "${R_SCEN:-0}" -gt 0 ] && R_OK=1
  return 0
}

# ---------------------------------------------------------------- main
need_pkgs || skip "cannot install qemu-system-x86 busybox-static cpio xz-utils (see $CACHE/apt.log)"
command -v qemu-system-x86_64 >/dev/null && command -v busybox >/dev/null && command -v cpio >/dev/null ||
  skip "qemu-system-x86_64 / busybox / cpio missing"

# The static test binary, from this checkout.
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Ddefault_library=static -Dallocator=malloc -Ddpdk=disabled \
    -Dlong_tests=false -Dstatic_guest_test=true >"$CACHE/meson-setup.log" 2>&1 ||
    { tail -20 "$CACHE/meson-setup.log"; fail "meson setup of $BUILD"; }
fi
ninja -C "$BUILD" tests/vfio/guest/iovt-vfio-guest >"$CACHE/ninja.log" 2>&1 ||
  { tail -30 "$CACHE/ninja.log"; fail "building iovt-vfio-guest"; }
BIN="$BUILD/tests/vfio/guest/iovt-vfio-guest"
if command -v file >/dev/null; then file "$BIN" | grep -q "statically linked" || fail "$BIN is not statically linked"; fi

tot_scen=0; tot_calls=0; tot_rej=0; parts=(); failed=""; costs=()

run_part() { # tag kimg kmods sink
  if ! boot "$1" "$2" "$3" "$4"; then
    grep -a . "$CACHE/$1.console.log" | tail -5 >&2
    return 2 # never booted
  fi
  grep -a 'iovt-vfio-guest:' "$CACHE/$1.console.log" | tr -d '\r'
  result_of "$1"
  tot_scen=$((tot_scen + R_SCEN)); tot_calls=$((tot_calls + R_CALLS)); tot_rej=$((tot_rej + R_REJ))
  costs+=("$4 map $R_MAPNS ns/call, unmap $R_UNMAPNS ns/call (all scenarios)")
  if [ "$R_OK" = 1 ]; then
    parts+=("$4: $R_SCEN scenarios, $R_CALLS calls, $R_REJ rejected")
    return 0
  fi
  parts+=("$4: FAILED ($R_FAILED of $R_SCEN scenarios failed, $R_REJ rejected)")
  failed="$failed $4"
  return 1
}

# Boot 1: Debian's kernel, VFIO type1.
kdir=$(debian_kernel) || skip "cannot fetch a Debian linux-image 6.12 (no network or apt lists?)"
vmlinuz=$(ls "$kdir"/k/boot/vmlinuz-* 2>/dev/null | head -1)
[ -n "$vmlinuz" ] || skip "no vmlinuz in $kdir"
log "boot 1: $(basename "$vmlinuz"), sink type1"
run_part debian-type1 "$vmlinuz" "$kdir/k/lib/modules" type1
case $? in 2) skip "the guest did not boot (see $CACHE/debian-type1.console.log)" ;; esac

# Boot 2: the iommufd kernel, iommufd sink.
if [ "${IOVT_VFIO_IOMMUFD:-1}" = 0 ]; then
  parts+=("iommufd: skipped (IOVT_VFIO_IOMMUFD=0)")
elif ! bz=$(iommufd_kernel); then
  parts+=("iommufd: skipped (kernel build unavailable, see $CACHE)")
else
  log "boot 2: $bz, sink iommufd"
  run_part iommufd "$bz" - iommufd
  [ $? = 2 ] && { failed="$failed iommufd(no-boot)"; parts+=("iommufd: FAILED (the guest did not boot)"); }
fi

for c in "${costs[@]}"; do echo "vfio-guest: cost $c"; done
grep -ah 'iovt-vfio-guest: cost' "$CACHE"/debian-type1.console.log "$CACHE"/iommufd.console.log 2>/dev/null |
  tr -d '\r' | sed 's/^iovt-vfio-guest: /vfio-guest: /'
summary=$(IFS=';'; echo "${parts[*]}" | sed 's/;/; /g')
wall=$(( $(date +%s) - t_start ))
if [ -n "$failed" ]; then
  echo "vfio-guest: FAILED: $tot_scen scenarios, $tot_calls calls, $tot_rej rejected ($summary; ${wall} s)"
  exit 1
fi
echo "vfio-guest: passed: $tot_scen scenarios, $tot_calls calls, $tot_rej rejected ($summary; ${wall} s)"
exit 0
