#!/usr/bin/env bash
# One-command profile of the storm benchmark. See perf/README.md.
#
#   bash perf/profile-storm.sh [iovt-storm args]     (default: --scenario strict-dma)
#
# 1. builds iovt-storm (release -O3, -g for DWARF unwinding; the project
#    already compiles with -fno-omit-frame-pointer) in $IOVT_PERF_BUILD
#    (default build/perf)
# 2. perf stat (software events: task-clock, context switches, migrations,
#    page faults; this VM exposes no hardware counters) -> perf/out/stat.txt
# 3. perf record -F 999 --call-graph dwarf -> perf/out/perf.data,
#    flat profile -> perf/out/report.txt, stacks folded by symbol ->
#    perf/out/stacks.folded, the engine-only view -> perf/out/engine.folded
#    (perf/engine-view.py), flame graphs of both -> perf/out/flame.svg,
#    perf/out/flame-engine.svg (perf/flamegraph.py, stdlib Python)
# 4. USDT: perf buildid-cache --add, perf probe sdt_iovt:NAME for every probe
#    in the binary, counts of hits -> perf/out/probes.txt, fence latency
#    (fence_begin -> fence_end, queue_fence_begin -> queue_fence_end)
#    percentiles -> perf/out/fence_latency.txt
# Every step fails soft: it says what failed and goes on. Exit status is 0
# unless the build fails (nothing to profile then).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=perf/out
bd=${IOVT_PERF_BUILD:-build/perf}
args=("$@")
[[ " $* " == *" --scenario "* || " $* " == *" -s "* || " $* " == *"--scenario="* ]] || args=(--scenario strict-dma "${args[@]}")
rm -rf "$out"; mkdir -p "$out"
notes=$out/NOTES.txt
: >"$notes"
say() { echo "== profile-storm: $*"; }
warn() { echo "profile-storm: SKIPPED/FAILED: $*" >&2; echo "$*" >>"$notes"; }

# ---- 1. build -------------------------------------------------------------
say "build ($bd)"
bash scripts/install-deps.sh || warn "install-deps failed (not root? offline?): using what is installed"
if [ ! -f "$bd/build.ninja" ]; then
  meson setup "$bd" -Doptimization=3 -Ddebug=true -Db_ndebug=true >"$out/setup.log" 2>&1 \
    || { cat "$out/setup.log" >&2; echo "profile-storm: meson setup failed" >&2; exit 1; }
fi
ninja -C "$bd" bench/iovt-storm >"$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log" >&2; echo "profile-storm: build failed" >&2; exit 1; }
bin=$(cd "$bd/bench" && pwd)/iovt-storm
echo "binary: $bin  args: ${args[*]}" | tee "$out/run.txt"

if ! command -v perf >/dev/null; then
  warn "perf not found (Debian: linux-perf, installed by scripts/install-deps.sh); running the benchmark once without it"
  "$bin" "${args[@]}" >>"$out/run.txt" 2>&1
  exit 0
fi
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?')
echo "perf $(perf --version 2>/dev/null | awk '{print $3}'), perf_event_paranoid=$paranoid, uid=$(id -u)" >>"$out/run.txt"
if [ "$(id -u)" -ne 0 ] && [ "$paranoid" != '?' ] && [ "$paranoid" -gt 1 ]; then
  warn "perf_event_paranoid=$paranoid and not root: perf may refuse (sysctl kernel.perf_event_paranoid=1, or run as root)"
fi

# ---- 2. perf stat -----------------------------------------------------------
say "perf stat -> $out/stat.txt"
if perf stat -e task-clock,context-switches,cpu-migrations,page-faults,minor-faults,major-faults \
     -o "$out/stat.txt" -- "$bin" "${args[@]}" >"$out/storm.txt" 2>&1; then
  cat "$out/storm.txt"
  grep -E 'task-clock|context-switches|cpu-migrations|faults|elapsed|user|sys' "$out/stat.txt"
  perf stat -e cycles,instructions -- true >/dev/null 2>"$out/hwcheck.txt" \
    && grep -q 'not supported' "$out/hwcheck.txt" \
    && echo "(hardware counters: not supported on this machine; software events only)" | tee -a "$out/stat.txt"
else
  warn "perf stat failed (see $out/storm.txt); perf may be restricted here"
fi

# ---- 3. perf record + flame graph ------------------------------------------
say "perf record -F 999 --call-graph dwarf -> $out/perf.data"
if perf record -F 999 --call-graph dwarf -o "$out/perf.data" -- "$bin" "${args[@]}" \
     >/dev/null 2>"$out/record.log"; then
  perf report -i "$out/perf.data" --no-children -g none --stdio --percent-limit 0.5 \
    --sort symbol 2>/dev/null | grep -v '^$' >"$out/report.txt" || warn "perf report failed"
  echo "top of the flat profile (self time):"
  grep -E '^ +[0-9.]+%' "$out/report.txt" | head -12
  if perf script -i "$out/perf.data" >"$out/perf.script" 2>"$out/script.log"; then
    awk -f perf/stackcollapse-perf.awk "$out/perf.script" | sort >"$out/stacks.folded"
    echo "folded stacks: $(wc -l <"$out/stacks.folded") distinct, $(awk '{s+=$NF} END{print s+0}' "$out/stacks.folded") samples -> $out/stacks.folded"
    python3 perf/engine-view.py "$out/stacks.folded" engine bench tests >"$out/engine.folded" 2>"$out/engine-view.txt" \
      && cat "$out/engine-view.txt" || warn "engine-only view failed (see $out/engine-view.txt)"
    python3 perf/flamegraph.py --title "iovt-storm ${args[*]}" "$out/stacks.folded" >"$out/flame.svg" \
      && echo "flame graph: $out/flame.svg" || warn "flame graph failed"
    python3 perf/flamegraph.py --title "iovt-storm ${args[*]}: engine only" "$out/engine.folded" \
      >"$out/flame-engine.svg" && echo "flame graph, engine only: $out/flame-engine.svg" \
      || warn "engine-only flame graph failed"
  else
    warn "perf script failed (see $out/script.log)"
  fi
else
  warn "perf record failed: $(tail -3 "$out/record.log" | tr '\n' ' ')"
fi

# ---- 4. USDT probes -----------------------------------------------------------
say "USDT probes (provider iovt) -> $out/probes.txt"
probes=$(readelf -n "$bin" 2>/dev/null | awk '/Provider: iovt/{p=1; next} p && /Name:/{print $2; p=0}' | sort -u)
if [ -z "$probes" ]; then
  warn "no iovt USDT probes in $bin (built without <sys/sdt.h>: install systemtap-sdt-dev)"
elif ! perf buildid-cache --add "$bin" 2>"$out/probe.log"; then
  warn "perf buildid-cache --add failed: $(tail -2 "$out/probe.log" | tr '\n' ' ')"
else
  perf probe -d 'sdt_iovt:*' >/dev/null 2>&1   # stale ones from an older binary
  events=()
  for p in $probes; do
    if perf probe -x "$bin" -a "sdt_iovt:$p" >>"$out/probe.log" 2>&1 \
       || perf probe "sdt_iovt:$p" >>"$out/probe.log" 2>&1; then
      events+=("sdt_iovt:$p")
    else
      warn "perf probe sdt_iovt:$p failed (uprobes disabled? see $out/probe.log)"
    fi
  done
  if [ ${#events[@]} -gt 0 ]; then
    ev=$(IFS=,; echo "${events[*]}")
    if perf stat -e "$ev" -o "$out/probes.stat" -- "$bin" "${args[@]}" >/dev/null 2>&1; then
      { echo "# USDT probe hits, iovt-storm ${args[*]}  (perf stat -e $ev)"
        awk '/sdt_iovt:/{gsub(",", "", $1); printf "%-24s %s\n", $2, $1}' "$out/probes.stat"
      } >"$out/probes.txt"
      cat "$out/probes.txt"
    else
      warn "perf stat on the USDT events failed"
    fi
    # Latency of both kinds of fence: iovt_fence (fence_begin -> fence_end)
    # and a queue's fence item (queue_fence_begin -> queue_fence_end),
    # paired per thread (a queue fence may run inside iovt_fence).
    fev=()
    for p in fence_begin fence_end queue_fence_begin queue_fence_end; do
      [[ " ${events[*]} " == *" sdt_iovt:$p "* ]] && fev+=(-e "sdt_iovt:$p")
    done
    if [ ${#fev[@]} -ge 2 ]; then
      if perf record "${fev[@]}" -o "$out/fences.data" -- "$bin" "${args[@]}" >/dev/null 2>"$out/fences.log"; then
        perf script --ns -i "$out/fences.data" -F tid,time,event 2>/dev/null | awk '
          { t = $2; sub(":", "", t); t *= 1e6; ev = $3; sub(/^sdt_iovt:/, "", ev); sub(/:$/, "", ev) }
          ev ~ /_begin$/ { k = ev; sub(/_begin$/, "", k); b[$1, k] = t }
          ev ~ /_end$/ { k = ev; sub(/_end$/, "", k); if (($1, k) in b) { printf "%s %.3f\n", k, t - b[$1, k]; delete b[$1, k] } }' \
          | sort -k1,1 -k2,2n | awk '
          function flush() {
            if (!n) return
            printf "%-12s %7d  p50 %8.2f us  p90 %8.2f us  p99 %8.2f us  max %8.2f us\n", kind, n,
              d[int(n*0.5)+1], d[int(n*0.9)+1], d[int(n*0.99)+1], d[n]
          }
          $1 != kind { flush(); kind = $1; n = 0 }
          { d[++n] = $2 }
          END {
            flush()
            if (!NR) print "no fence pairs recorded"
            print "(fence = iovt_fence, queue_fence = a queue fence item applied; uprobe overhead included)"
          }' >"$out/fence_latency.txt" && cat "$out/fence_latency.txt"
      else
        warn "perf record of the sdt_iovt fence probes failed: $(tail -2 "$out/fences.log" | tr '\n' ' ')"
      fi
    else
      warn "no fence probe pair could be added: no fence latency"
    fi
    perf probe -d 'sdt_iovt:*' >/dev/null 2>&1
  fi
fi

say "done: $(ls "$out" | tr '\n' ' ')"
[ -s "$notes" ] && { echo "notes:"; cat "$notes"; }
exit 0
