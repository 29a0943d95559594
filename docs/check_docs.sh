#!/usr/bin/env bash
# The `docs` test: runs doxygen over the public headers into a scratch folder
# and fails on any warning (an undocumented function, parameter, return, or a
# malformed command). Exit 77 (skip) only when doxygen is not installed.
# Usage: check_docs.sh DOXYGEN|"" DOXYFILE
set -uo pipefail
doxygen=$1 doxyfile=$2
if [ -z "$doxygen" ] || ! command -v "$doxygen" >/dev/null; then
  echo "doxygen is not installed (Debian package doxygen; scripts/install-deps.sh installs it)"
  exit 77
fi
work=$(mktemp -d /tmp/iovt-docs.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The same configuration, its output and warnings redirected here.
{ cat "$doxyfile"; echo "OUTPUT_DIRECTORY = $work"; echo "WARN_LOGFILE = $work/warnings"; } |
  "$doxygen" - >"$work/out" 2>&1
rc=$?
cat "$work/out"
if [ -s "$work/warnings" ]; then
  echo "docs: $(wc -l <"$work/warnings") doxygen warning line(s):"
  cat "$work/warnings"
  exit 1
fi
[ $rc -eq 0 ] || { echo "docs: doxygen exited $rc"; exit 1; }
[ -f "$work/html/index.html" ] || { echo "docs: no html/index.html"; exit 1; }
echo "docs: $(ls "$work/html" | wc -l) HTML files, 0 warnings"
