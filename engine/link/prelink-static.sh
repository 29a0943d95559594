#!/bin/sh
# prelink-static.sh OUT.a VERSION.map IN.a...
# The installed static library: every object of the IN.a archives linked into one
# relocatable object (ld -r), in which every global symbol but those the
# version map exports is made local (objcopy --keep-global-symbols). So a
# program linking libiovt.a sees the same names libiovt.so exports, and none
# of the engine's internal ones (apply_plan, iovt_alloc, the private
# jemalloc's iovt_je_*) can clash with the host's.
set -eu
out=$1 map=$2
shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The names in the map's global: sections (lines "name;").
sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);[[:space:]]*$/\1/p' "$map" >"$tmp/keep"
ld -r --whole-archive "$@" -o "$tmp/all.o"
objcopy --keep-global-symbols="$tmp/keep" "$tmp/all.o" "$tmp/$(basename "$out" .a).o"
rm -f "$out"
ar rcsD "$out" "$tmp/$(basename "$out" .a).o"
