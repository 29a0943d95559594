#!/bin/sh
# run-fuzz.sh TARGET SEED_CORPUS SECONDS: a bounded libFuzzer run; fails on a crash.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$2"/. "$work/"
exec "$1" -max_total_time="$3" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 "$work"
