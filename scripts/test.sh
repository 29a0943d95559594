#!/usr/bin/env bash
# Builds iovt three ways and runs the tests:
#   build/release  gcc, jemalloc, DPDK   every test at full size, the `dpdk` suite too
#   build/asan     clang, ASan+UBSan     every test (plain malloc, no DPDK: wfcqueue intake)
#   build/tsan     clang, TSan           the suites that run threads (plain malloc, no DPDK)
#   build/tsan-dpdk clang, TSan, DPDK    the `dpdk` suite (rte_ring queues, lcore pollers)
#                  (the three sanitizer builds at IOVT_TEST_SCALE=0.1 unless it is set)
#   vfio           scripts/vfio-guest-test.sh: the real sinks against a real kernel in a QEMU
#                  guest; two counts (the type1 boot, the iommufd boot): passed, skipped
#                  (each with its reason) or 1 failed
#   install        scripts/check-install.sh: install into a temporary prefix, pkg-config,
#                  consumers shared and static, subproject, examples; one count per check
# Ends with the line "N passed, N failed, N skipped" summed over all builds (CI reads the
# "N passed, N failed" at its start); each build ends with "build B: ..." of the same shape.
# Every skip is listed with its reason ("skipped: NAME: last line of its output"): meson
# counts exit 77 as SKIP, so a skip is never silently a pass.
# Usage: scripts/test.sh [release|asan|tsan|tsan-dpdk|vfio|install ...]   (default: all six)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

builds=("$@"); [ ${#builds[@]} -eq 0 ] && builds=(release asan tsan tsan-dpdk vfio install)
export TSAN_OPTIONS="suppressions=$root/tests/tsan.supp halt_on_error=1 second_deadlock_stats=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}"

total_pass=0; total_fail=0; total_skip=0
count() { # testlog.json -> a "skipped: NAME: REASON" line per skip, then "pass fail skip"
  python3 - "$1" <<'PY'
import json, sys
def last(text):
    lines = [l.strip() for l in (text or '').splitlines() if l.strip()]
    return lines[-1][:300] if lines else ''
p = f = s = 0
try:
    for line in open(sys.argv[1]):
        line = line.strip()
        if not line: continue
        r = json.loads(line)
        if r.get('result') in ('OK', 'EXPECTEDFAIL'): p += 1
        elif r.get('result') == 'SKIP':
            s += 1
            why, err = last(r.get('stdout')), last(r.get('stderr'))
            if err: why = f'{why} [stderr: {err}]' if why else err
            print(f"skipped: {r.get('name', '?')}: {why or '(no output)'}")
        else: f += 1
except (OSError, ValueError):  # no testlog.json, or a broken one
    f += 1
print(p, f, s)
PY
}

for b in "${builds[@]}"; do
  dir="build/$b"
  case $b in
    release) setup=(-Dbuildtype=debugoptimized -Ddpdk=enabled); env=(); suites=()
             scale=${IOVT_TEST_SCALE:-1} ;;
    asan)    setup=(-Dbuildtype=debug -Doptimization=1 -Db_sanitize=address,undefined -Db_lundef=false -Dallocator=malloc -Ddpdk=disabled)
             env=(CC=clang-14 CXX=clang++-14); suites=()
             scale=${IOVT_TEST_SCALE:-0.1} ;;
    tsan)    setup=(-Dbuildtype=debug -Doptimization=1 -Db_sanitize=thread -Db_lundef=false -Dallocator=malloc -Ddpdk=disabled)
             env=(CC=clang-14 CXX=clang++-14); suites=(--suite tsan)
             scale=${IOVT_TEST_SCALE:-0.1} ;;
    tsan-dpdk) # EAL is not instrumented: C11 atomics in the inline ring code, and
             # tests/tsan.supp's called_from_lib for what happens inside librte_eal.
             setup=(-Dbuildtype=debug -Doptimization=1 -Db_sanitize=thread -Db_lundef=false -Dallocator=malloc -Ddpdk=enabled -Dc_args=-DRTE_USE_C11_MEM_MODEL)
             env=(CC=clang-14 CXX=clang++-14); suites=(--suite dpdk)
             scale=${IOVT_TEST_SCALE:-0.1} ;;
    vfio)    echo "=== vfio (guest) ==="
             vlog=build/vfio-guest-test.log; mkdir -p build
             bash scripts/vfio-guest-test.sh >"$vlog" 2>&1
             grep -E '^(vfio-guest: cost|iovt-vfio-guest: scenario .*FAILED)' "$vlog" | tail -20
             vline=$(tail -1 "$vlog"); echo "$vline"
             # Two counts, one per boot: type1 and iommufd. A pass whose
             # iommufd half was skipped (no kernel build) is 1 passed and 1
             # skipped with its reason, never 2 passed (found by review).
             vp=0 vf=0 vs=0
             case $vline in
               "vfio-guest: passed"*)
                 vp=1
                 why=$(grep -oE 'iommufd: skipped \([^)]*\)' <<<"$vline" | head -1)
                 if [ -n "$why" ]; then vs=1; echo "skipped: vfio-guest iommufd: ${why#iommufd: skipped }"
                 else vp=2; fi ;;
               "vfio-guest: skipped"*) vs=2; echo "skipped: vfio-guest (type1 and iommufd): ${vline#vfio-guest: skipped: }" ;;
               *) tail -30 "$vlog"; vf=1 ;;
             esac
             echo "build vfio: $vp passed, $vf failed, $vs skipped"
             total_pass=$((total_pass + vp)); total_fail=$((total_fail + vf)); total_skip=$((total_skip + vs))
             continue ;;
    install) echo "=== install ==="
             ilog=build/check-install.log; mkdir -p build
             bash scripts/check-install.sh build/install >"$ilog" 2>&1
             grep -E '^check-install: ' "$ilog" | sed '$d'
             iline=$(grep -E '^check-install: [0-9]+ passed, [0-9]+ failed$' "$ilog" | tail -1)
             if [ -n "$iline" ]; then
               read -r ip if_ <<<"$(sed -E 's/^check-install: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$iline")"
             else
               tail -30 "$ilog"; ip=0 if_=1
             fi
             grep -E '^ {4}' "$ilog" | tail -40
             echo "build install: $ip passed, $if_ failed, 0 skipped"
             total_pass=$((total_pass + ip)); total_fail=$((total_fail + if_))
             continue ;;
    *) echo "unknown build $b"; exit 2 ;;
  esac
  echo "=== build $b ==="
  mkdir -p build
  if [ ! -f "$dir/build.ninja" ] &&
     ! env "${env[@]}" meson setup "$dir" "${setup[@]}" >"$dir.setup.log" 2>&1; then
    # meson's reason (a missing dependency on a fresh machine), not ninja's
    # "loading build.ninja" that would follow it (found by review)
    tail -40 "$dir.setup.log"
    echo "build $b: setup FAILED"; total_fail=$((total_fail + 1)); continue
  fi
  if ! ninja -C "$dir" >"$dir.build.log" 2>&1; then
    tail -40 "$dir.build.log"
    echo "build $b: FAILED"; total_fail=$((total_fail + 1)); continue
  fi
  rm -f "$dir/meson-logs/testlog.json"
  # Each build's own scale (an export here would carry asan's into the
  # builds after it: found by review).
  IOVT_TEST_SCALE=$scale meson test -C "$dir" --print-errorlogs --num-processes 2 "${suites[@]}" 2>&1 | grep -vE '^\s*$' | tail -60
  counts=$(count "$dir/meson-logs/testlog.json")
  sed '$d' <<<"$counts"
  read -r p f s <<<"$(tail -n 1 <<<"$counts")"
  echo "build $b: $p passed, $f failed, $s skipped"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
done

echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
