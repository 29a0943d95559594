#!/usr/bin/env bash
# JSON -> PNG plots with gnuplot (data extracted by scripts/plot_storm.py,
# python3 stdlib only).
#
#   bash scripts/plot.sh [-o OUTDIR] [FILE.json ...]
#
# Each FILE is recognised by its content: an iovt-storm JSON ("scenarios")
# or an iovt-gbench JSON ("benchmarks"). With no FILE: build/storm.json and,
# when present, build/gbench.json. OUTDIR defaults to build/plots.
#
# One colour per meaning in every plot: engine blue, QEMU-style baseline
# orange, DPDK-vhost-style baseline green, gbench's locked std::map purple,
# the oracle minimum black points;
# a p99 is a light shade of its side's colour. Every title names the machine,
# scale and date (the JSON's context block).
#
# Storm JSON ->
#   storm_calls.png    sink calls per scenario, engine vs baseline (and the
#                      oracle minimum as points), grouped bars, log scale;
#                      a 0 (an oracle not judged per fence) is not drawn
#   storm_time.png     engine time per invalidation (µs), baseline beside it
#   storm_latency.png  p50/p99 per scenario, only when the JSON has them
#   storm_translate.png  the translate section: M lookups/s per configuration,
#                      engine vs both baselines
#   storm_summary.txt  the same numbers as a table (baseline/engine call ratio)
# gbench JSON ->
#   gbench_translate_<N>.png  translate throughput (M lookups/s, log) vs reader
#                             threads, engine vs locked, with/without writer
#   gbench_walk.png           walk+diff ns per PTE (DSI on an unchanged domain)
#   gbench_summary.txt        the numbers and the engine/locked ratios
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=build/plots
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    -h|--help) sed -n 2,24p "$0"; exit 0 ;;
    *) files+=("$1"); shift ;;
  esac
done
if [ ${#files[@]} -eq 0 ]; then
  files=(build/storm.json)
  [ -f build/gbench.json ] && files+=(build/gbench.json)
fi
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot missing (bash scripts/install-deps.sh installs gnuplot-nox)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "plot.sh: python3 missing" >&2; exit 1; }
mkdir -p "$out"
dat="$out/data"
mkdir -p "$dat"
term='set terminal pngcairo size 1200,700 noenhanced font "sans,10"'
common='set style data histogram; set style histogram cluster gap 1; set style fill solid 0.8 border -1;
set boxwidth 0.9; set grid ytics; set key outside right top; set xtics rotate by -30 nomirror'
made=()
# the colours (see above)
C_ENGINE='#1f5fb4' C_ENGINE_P99='#8db8ea' C_BASE='#e6550d' C_BASE_P99='#fdb07a'
C_DPDK='#2ca02c' C_MAP='#7b4fa0' C_MAP_W='#c2a5dc' C_ORACLE='#000000'

plot_storm() {  # $1 json
  local info kind plots cap
  info=$(python3 scripts/plot_storm.py storm "$1" "$dat") || { echo "plot.sh: cannot read $1" >&2; return 1; }
  kind=$(sed -n 1p <<<"$info"); plots=$(sed -n 2p <<<"$info"); cap=$(sed -n 3p <<<"$info")
  local base_calls='' base_time='' sub=''
  if [ "$kind" = baseline ]; then
    base_calls=", '' using 3 title 'baseline (QEMU way)' lc rgb '$C_BASE'"
    base_time=", '' using 3 title 'baseline' lc rgb '$C_BASE'"
  else
    sub=' (no baseline side in this JSON)'
  fi
  gnuplot <<GP
$term
$common
set datafile separator "\t"
set output "$out/storm_calls.png"
set title "sink calls per scenario$sub (log scale; 0 not drawn)\n$cap"
set logscale y
set ylabel "sink calls (MAP+UNMAP)"
set yrange [0.5:*]
plot "$dat/storm_calls.dat" using 2:xtic(1) title 'engine' lc rgb '$C_ENGINE'$base_calls, \
     '' using (\$0 - 0.15):4 with points pt 9 ps 1.6 lc rgb '$C_ORACLE' title 'oracle minimum'
unset logscale y; set autoscale y
set output "$out/storm_time.png"
set title "time per invalidation$sub (engine_s / invalidations)\n$cap"
set logscale y
set ylabel "µs per invalidation (log)"
plot "$dat/storm_time.dat" using 2:xtic(1) title 'engine' lc rgb '$C_ENGINE'$base_time
GP
  made+=("$out/storm_calls.png" "$out/storm_time.png")
  if [[ " $plots " == *" latency "* ]]; then
    gnuplot <<GP
$term
$common
set datafile separator "\t"
set output "$out/storm_latency.png"
set title "invalidation latency p50 / p99 (µs, log)\n$cap"
set logscale y
set ylabel "µs"
plot "$dat/storm_latency.dat" using 2:xtic(1) title 'engine p50' lc rgb '$C_ENGINE', \
     '' using 3 title 'engine p99' lc rgb '$C_ENGINE_P99', \
     '' using 4 title 'baseline p50' lc rgb '$C_BASE', '' using 5 title 'baseline p99' lc rgb '$C_BASE_P99'
GP
    made+=("$out/storm_latency.png")
  else
    echo "plot.sh: no p50/p99 fields in $1: storm_latency.png not drawn" >&2
  fi
  if [[ " $plots " == *" storm_translate "* ]]; then
    gnuplot <<GP
$term
$common
set datafile separator "\t"
set output "$out/storm_translate.png"
set title "translate, vhost-like workload: M lookups/s (log), engine IOTLB vs baselines\n$cap"
set logscale y
set ylabel "M lookups/s, all reader threads"
plot "$dat/storm_translate.dat" using 2:xtic(1) title 'engine' lc rgb '$C_ENGINE', \
     '' using 3 title 'QEMU-style baseline' lc rgb '$C_BASE', \
     '' using 4 title 'DPDK-vhost-style baseline' lc rgb '$C_DPDK'
GP
    made+=("$out/storm_translate.png")
  fi
  cp "$dat/storm_summary.txt" "$out/"
  made+=("$out/storm_summary.txt")
}

plot_gbench() {  # $1 json
  local info plots sizes n ncol cap colours
  info=$(python3 scripts/plot_storm.py gbench "$1" "$dat") || { echo "plot.sh: cannot read $1" >&2; return 1; }
  plots=$(sed -n 2p <<<"$info"); cap=$(sed -n 3p <<<"$info")
  sizes=$(tr ' ' '\n' <<<"$plots" | sed -n 's/^translate://p' | tr ',' ' ')
  for n in $sizes; do
    ncol=$(head -1 "$dat/gb_translate_$n.dat" | awk -F'\t' '{print NF}')
    # engine columns blue, the locked (baseline) ones orange; with a writer, the light shade
    colours=$(head -1 "$dat/gb_translate_$n.dat" | awk -F'\t' -v e="$C_ENGINE" -v ep="$C_ENGINE_P99" \
      -v b="$C_BASE" -v bp="$C_BASE_P99" -v m="$C_MAP" -v mp="$C_MAP_W" '{ for (i = 2; i <= NF; i++) {
        w0 = ($i ~ /w0/)
        c = ($i ~ /engine/) ? (w0 ? e : ep) : ($i ~ /map/) ? (w0 ? m : mp) : (w0 ? b : bp)
        printf "%s ", c } }')
    gnuplot <<GP
$term
$common
set datafile separator "\t"
set key autotitle columnheader outside right
set output "$out/gbench_translate_$n.png"
set title "translate throughput, $n extents: engine (lock-free) vs locked (one mutex), ± a 1M ops/s writer (light)\n$cap"
colours = "$colours"
set logscale y
set ylabel "M lookups/s, all reader threads (log)"
set xlabel "reader threads"
unset xtics; set xtics nomirror
plot for [c=2:$ncol] "$dat/gb_translate_$n.dat" using c:xtic(1) lc rgb word(colours, c - 1)
GP
    made+=("$out/gbench_translate_$n.png")
  done
  if [[ " $plots " == *" walk "* ]]; then
    gnuplot <<GP
$term
$common
set datafile separator "\t"
set output "$out/gbench_walk.png"
set title "walk+diff of an unchanged domain (DSI + fence): ns per PTE walked\n$cap"
set ylabel "ns / PTE"
set xlabel "leaves / scattered GPAs (s1: one extent per leaf)"
plot "$dat/gb_walk.dat" using 2:xtic(1) title 'ns per PTE (engine)' lc rgb '$C_ENGINE'
GP
    made+=("$out/gbench_walk.png")
  fi
  cp "$dat/gbench_summary.txt" "$out/"
  made+=("$out/gbench_summary.txt")
}

rc=0
for f in "${files[@]}"; do
  if [ ! -f "$f" ]; then
    echo "plot.sh: $f not found (bash scripts/storm.sh writes build/storm.json)" >&2; rc=1; continue
  fi
  if grep -q '"scenarios"' "$f"; then plot_storm "$f" || rc=1
  elif grep -q '"benchmarks"' "$f"; then plot_gbench "$f" || rc=1
  else echo "plot.sh: $f is neither an iovt-storm nor an iovt-gbench JSON" >&2; rc=1
  fi
done
for m in "${made[@]}"; do echo "wrote $m"; done
exit $rc
