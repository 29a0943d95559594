#!/usr/bin/env bash
# The main job: build iovt (release) and run the invalidation-storm benchmark.
# Prints the results table and writes build/storm.json.
# Extra arguments go to iovt-storm (e.g. --scenario strict-dma --scale 4).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
mkdir -p build
[ -f build/bench/build.ninja ] || meson setup build/bench -Dbuildtype=release -Db_ndebug=false >build/bench.setup.log
ninja -C build/bench bench/iovt-storm >build/bench.build.log || { tail -30 build/bench.build.log; exit 1; }
./build/bench/bench/iovt-storm --json build/storm.json "$@"
echo "JSON: build/storm.json  (machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
