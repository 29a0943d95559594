#!/usr/bin/env bash
# The `sdt-probes` test: the USDT probes in BIN (provider iovt) are exactly
# the ones engine/common/probes.h and perf/README.md list, one ELF note
# each -- perf cannot add an event for a name whose notes differ in their
# argument format, which is how perf/profile-storm.sh lost fence_begin.
#   check-probes.sh BIN
set -euo pipefail
bin=$1
want="dsi fence_begin fence_end psi queue_fence_begin queue_fence_end sink_map sink_unmap window"
names=$(readelf -n "$bin" | awk '/Provider: iovt/{p=1; next} p && /Name:/{print $2; p=0}' | sort)
# Registered only where <sys/sdt.h> exists (bench/meson.build), and the
# build defines IOVT_HAVE_SDT there: no notes is a lost probe, not a skip.
[ -n "$names" ] || { echo "FAIL: no iovt USDT notes in $bin, though <sys/sdt.h> is there"; exit 1; }
dups=$(uniq -d <<<"$names")
got=$(uniq <<<"$names" | xargs)
echo "probes: $got"
fail=0
[ -z "$dups" ] || { echo "FAIL: more than one note named: $(xargs <<<"$dups")"; fail=1; }
[ "$got" = "$want" ] || { echo "FAIL: expected: $want"; fail=1; }
exit $fail
