#!/usr/bin/env bash
# The main job: build iovt (build/release, the same build scripts/test.sh
# makes and tests) and run the invalidation-storm benchmark.
# Prints the results table and writes build/storm.json (plot it with
# scripts/plot.sh). Extra arguments go to iovt-storm
# (e.g. --scenario strict-dma --scale 4 --repetitions 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
dir=build/release
mkdir -p build
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" -Dbuildtype=debugoptimized -Ddpdk=enabled >"$dir.setup.log" 2>&1 \
    || { tail -30 "$dir.setup.log"; exit 1; }
fi
ninja -C "$dir" bench/iovt-storm >"$dir.storm-build.log" 2>&1 || { tail -30 "$dir.storm-build.log"; exit 1; }
"./$dir/bench/iovt-storm" --json build/storm.json "$@"
echo "JSON: build/storm.json  (machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
