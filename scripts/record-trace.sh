#!/usr/bin/env bash
# Records an iovt trace (README.md, "Trace replay") from a Linux guest with a
# VT-d vIOMMU, with tracefs. Run it INSIDE the guest, as root:
#
#   record-trace.sh [-d DID] [-t SECONDS] [-o OUT] [-b KB] [-s] [-k]
#       enables iommu:map, iommu:unmap and intel_iommu:qi_submit (when the
#       kernel has it), reads trace_pipe for SECONDS (default: until Ctrl-C),
#       then converts. OUT defaults to iovt.trace; a name ending in .gz is
#       gzipped. -b: per-CPU ring buffer in KiB (default 16384). -k: keep the
#       raw trace_pipe text as OUT.raw.
#   record-trace.sh --convert [-d DID] [-s] [FILE...]
#       converts trace_pipe text (FILE or stdin) to the trace format on stdout.
#
# Options:
#   -d DID  the VT-d domain id written on map/unmap lines (hex, default 1).
#           iommu:map and iommu:unmap do not say which domain they edit: trace
#           one device (one DMA domain) at a time and pass its DID (the DID in
#           that device's qi_submit PSIs; `grep qi_submit OUT.raw` shows them).
#   -s      synthesize the invalidations: after every map a PSI (ih=0) over it
#           and a wait, after every unmap a PSI (ih=1) and a wait (a strict,
#           caching-mode guest), for kernels without intel_iommu:qi_submit.
#           qi_submit lines are then ignored. Without qi_submit and without
#           -s the trace has no invalidations and replays to nothing;
#           recording turns -s on by itself then.
#
# Decoding (VT-d invalidation descriptors, qw0/qw1 of qi_submit):
#   qw0 bits 3:0 type: 2 = IOTLB invalidate: granularity qw0 bits 5:4
#     (1 global -> `global`, 2 domain -> `dsi DID`, 3 page -> `psi DID ADDR AM IH`),
#     DID = qw0 bits 31:16, ADDR = qw1 & ~0xfff, AM = qw1 bits 5:0, IH = qw1 bit 6;
#   5 = invalidation wait -> `wait`; every other type (context cache, IEC,
#     device-TLB, PASID-based) is dropped.
#   Linux's qi_submit_sync traces the descriptors it is given but not the wait
#   descriptor it appends: so after a run of IOTLB descriptors from one CPU
#   (other qi_submit lines of that CPU may sit between them) a `wait` is
#   written, unless the kernel traced a wait descriptor itself.
#   Perm: iommu:map does not carry it; every map is written `rw`.
set -euo pipefail

did=1 seconds=0 out=iovt.trace kb=16384 synth=0 keep=0 convert=0
if [ "${1:-}" = "--convert" ]; then
	convert=1
	shift
fi
while getopts "d:t:o:b:sk" o; do
	case $o in
	d) did=${OPTARG#0x} ;;
	t) seconds=$OPTARG ;;
	o) out=$OPTARG ;;
	b) kb=$OPTARG ;;
	s) synth=1 ;;
	k) keep=1 ;;
	*) sed -n '2,20p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $did =~ ^[0-9a-fA-F]{1,4}$ ]] || { echo "record-trace: -d wants a hex DID (0..ffff)" >&2; exit 2; }

# trace_pipe text -> trace format.
convert_text() {
	awk -v did="$did" -v synth="$synth" '
	function hexval(s,   i, v, c) { # value of a hex string (exact below 2^53)
		sub(/^0[xX]/, "", s); v = 0
		for (i = 1; i <= length(s); i++) {
			c = index("0123456789abcdef", tolower(substr(s, i, 1)))
			if (!c) return -1
			v = v * 16 + c - 1
		}
		return v
	}
	function low(s, n) { sub(/^0[xX]/, "", s); return hexval(length(s) > n ? substr(s, length(s) - n + 1) : s) }
	function hex(v,   s, d) { # a number (integer below 2^53) in hex
		if (v == 0) return "0"
		s = ""
		while (v > 0) { d = v % 16; s = substr("0123456789abcdef", d + 1, 1) s; v = (v - d) / 16 }
		return s
	}
	function trim(s) { sub(/^0[xX]/, "", s); sub(/^0+/, "", s); return s == "" ? "0" : s }
	function key(k,   i) { for (i = start; i <= NF; i++) if (index($i, k "=") == 1) return substr($i, length(k) + 2); return "" }
	function flush_wait() { if (pending) { print "wait"; pending = 0 } }
	function synth_inv(iova, size, ih,   first, last, am, f) {
		first = int(hexval(iova) / 4096); last = int((hexval(iova) + size - 1) / 4096); am = 0
		while (int(first / 2 ^ am) != int(last / 2 ^ am)) am++
		if (am > 18) print "dsi " did
		else { f = int(first / 2 ^ am) * 2 ^ am * 4096; print "psi " did " " hex(f) " " hex(am) " " ih }
		print "wait"
	}
	BEGIN { pending = 0; pcpu = ""; skipped = 0 }
	/^#/ || NF == 0 { next }
	{
		ev = ""; cpu = ""
		for (i = 1; i < NF; i++) {
			if (cpu == "" && $i ~ /^\[[0-9]+\]$/) cpu = $i
			if ($i ~ /^[0-9]+\.[0-9]+:$/) { ev = $(i + 1); start = i + 2; break }
		}
		if (ev == "") { skipped++; next }
		if (pending && !(ev == "qi_submit:" && cpu == pcpu)) flush_wait()
		if (ev == "map:") {
			iova = key("iova"); pa = key("paddr"); size = key("size")
			if (iova == "" || pa == "" || size !~ /^[0-9]+$/ || size == 0) { skipped++; next }
			print "map " did " " trim(iova) " " trim(pa) " " hex(size + 0) " rw"
			if (synth) synth_inv(iova, size + 0, 0)
		} else if (ev == "unmap:") {
			iova = key("iova"); size = key("unmapped_size")
			if (size == "") size = key("size")
			if (iova == "" || size !~ /^[0-9]+$/) { skipped++; next }
			if (size == 0) next
			print "unmap " did " " trim(iova) " " hex(size + 0)
			if (synth) synth_inv(iova, size + 0, 1)
		} else if (ev == "qi_submit:") {
			if (synth) next
			n = 0
			for (i = start; i <= NF; i++) if ($i ~ /^0[xX][0-9a-fA-F]+$/) q[n++] = $i
			if (n < 2) { skipped++; next }
			w0 = low(q[0], 8); type = w0 % 16
			if (type == 2) {
				gran = int(w0 / 16) % 4; d = hex(int(w0 / 65536) % 65536)
				if (gran == 1) print "global"
				else if (gran == 2) print "dsi " d
				else if (gran == 3) {
					a = q[1]; sub(/^0[xX]/, "", a)
					addr = length(a) > 3 ? trim(substr(a, 1, length(a) - 3) "000") : "0"
					w1 = low(q[1], 3)
					print "psi " d " " addr " " hex(w1 % 64) " " int(w1 / 64) % 2
				} else { skipped++; next }
				pending = 1; pcpu = cpu
			} else if (type == 5) {
				print "wait"; pending = 0
			}
		}
	}
	END {
		flush_wait()
		if (skipped) printf "record-trace: %d trace line(s) not understood, skipped\n", skipped > "/dev/stderr"
	}' "$@"
}

if [ $convert = 1 ]; then
	echo "# iovt trace, converted by record-trace.sh (map/unmap domain 0x$did)"
	convert_text "$@"
	exit 0
fi

[ "$(id -u)" = 0 ] || { echo "record-trace: run as root inside the guest" >&2; exit 1; }
T=/sys/kernel/tracing
[ -d $T/events ] || mount -t tracefs nodev $T 2>/dev/null || true
[ -d $T/events ] || T=/sys/kernel/debug/tracing
[ -d $T/events ] || { echo "record-trace: no tracefs (mount -t tracefs nodev /sys/kernel/tracing)" >&2; exit 1; }
for e in iommu/map iommu/unmap; do
	[ -e $T/events/$e/enable ] || { echo "record-trace: the kernel has no $e trace event" >&2; exit 1; }
done
events="iommu/map iommu/unmap"
if [ -e $T/events/intel_iommu/qi_submit/enable ]; then
	events="$events intel_iommu/qi_submit"
elif [ $synth = 0 ]; then
	echo "record-trace: no intel_iommu:qi_submit event: synthesizing strict invalidations (-s)" >&2
	synth=1
fi

raw=$(mktemp /tmp/iovt-trace.XXXXXX)
echo 0 >$T/tracing_on
echo >$T/trace
echo "$kb" >$T/buffer_size_kb
for e in $events; do echo 1 >$T/events/$e/enable; done
echo 1 >$T/tracing_on
# The reader ignores Ctrl-C (it goes to the whole process group): this script stops it.
(trap '' INT; exec cat $T/trace_pipe) >"$raw" &
reader=$!
stopped=0
stop() {
	[ $stopped = 1 ] && return
	stopped=1
	echo 0 >$T/tracing_on
	sleep 1
	kill "$reader" 2>/dev/null || true
	wait "$reader" 2>/dev/null || true
	grep -v '^#' $T/trace >>"$raw" || true # what the reader had not consumed yet
	for e in $events; do echo 0 >$T/events/$e/enable; done
}
trap stop INT TERM
limit=""
[ "$seconds" != 0 ] && limit="for $seconds s or "
echo "record-trace: recording ($events) into $out ${limit}until Ctrl-C" >&2
if [ "$seconds" != 0 ]; then
	sleep "$seconds" & wait $! || true
else
	while [ $stopped = 0 ]; do sleep 1 & wait $! || true; done
fi
stop
{
	echo "# iovt trace recorded by record-trace.sh on $(uname -n) ($(uname -r)), $(date -u +%FT%TZ)"
	echo "# map/unmap domain 0x$did (-d); events: $events; synthesized invalidations: $synth"
	convert_text "$raw"
} | if [[ $out == *.gz ]]; then gzip -c >"$out"; else cat >"$out"; fi
[ $keep = 1 ] && cp "$raw" "$out.raw"
rm -f "$raw"
echo "record-trace: wrote $out" >&2
