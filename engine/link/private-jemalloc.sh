#!/bin/sh
# private-jemalloc.sh LIBJEMALLOC_PIC.A OUT.o
# The engine's private jemalloc: every object of Debian's PIC archive but the
# C++ operators, linked into one relocatable object whose public names
# (malloc, free, mallocx, mallctl, ...) are renamed iovt_je_*. Its other
# globals are hidden already (jemalloc's je_ internals). Linked into libiovt,
# it cannot become the process's malloc: nothing in it is called malloc.
set -eu
pic=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && ar x "$pic")
objs=$(ls "$tmp"/*.o | grep -v 'jemalloc_cpp')
ld -r -o "$tmp/all.o" $objs
# Every default-visibility global or weak symbol the archive defines (malloc_conf
# is weak) gets the prefix.
readelf -sW "$tmp/all.o" | awk '($5 == "GLOBAL" || $5 == "WEAK") && $6 == "DEFAULT" && $7 != "UND" { print $8 }' |
	sort -u >"$tmp/public"
[ -s "$tmp/public" ] || { echo "private-jemalloc: no public symbols in $pic" >&2; exit 1; }
grep -qx mallocx "$tmp/public" || { echo "private-jemalloc: $pic has no mallocx (prefixed build?)" >&2; exit 1; }
sed 's/.*/& iovt_je_&/' "$tmp/public" >"$tmp/map"
objcopy --redefine-syms="$tmp/map" "$tmp/all.o" "$out"
