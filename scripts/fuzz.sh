#!/usr/bin/env bash
# A longer libFuzzer campaign than the 20 s CI runs (tests/fuzz/run-fuzz.sh).
# Usage: scripts/fuzz.sh [MINUTES]   (default 30 per target; fractions work: 0.5)
#        FUZZ_SLOTS=N scripts/fuzz.sh ...   (N targets at once; default: as the CPUs fit)
# Builds every fuzz target (tests/fuzz/fuzz_*.c) in build/fuzz (clang-14, ASan+UBSan, the
# asan build's options), fuzzes each for MINUTES with nproc worker processes shared among
# the targets (-jobs=-workers=W each; targets that do not fit run after), then merges what
# it found into tests/fuzz/corpus-NAME with -merge=1 (only inputs that add coverage; commit
# them). Reports per target: execs (stat::number_of_executed_units summed over workers),
# crashes (crash-/leak-/timeout-/oom- artifacts), new corpus files.
# Out of the source tree: artifacts in build/fuzz/artifacts/RUN/NAME/, worker logs in
# build/fuzz/campaign/RUN/NAME/. Exits 1 if any target crashed (or its run failed),
# printing each reproducer's path and base64.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

minutes=${1:-30}
secs=$(awk -v m="$minutes" 'BEGIN { if (m !~ /^[0-9]*\.?[0-9]+$/) exit 1
  s = int(m * 60 + 0.5); if (s < 1) exit 1; print s }') \
  || { echo "usage: scripts/fuzz.sh [MINUTES]"; exit 2; }

bash scripts/install-deps.sh || { echo "fuzz: install-deps failed"; exit 1; }
dir=build/fuzz
mkdir -p build
if [ ! -f "$dir/build.ninja" ]; then
  CC=clang-14 CXX=clang++-14 meson setup "$dir" -Dbuildtype=debug -Doptimization=1 \
    -Db_sanitize=address,undefined -Db_lundef=false -Dallocator=malloc -Ddpdk=disabled \
    >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; echo "fuzz: setup FAILED"; exit 1; }
fi
names=()
for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
[ ${#names[@]} -gt 0 ] || { echo "fuzz: no tests/fuzz/fuzz_*.c"; exit 1; }
if ! ninja -C "$dir" "${names[@]/#/tests/fuzz/fuzz_}" >"$dir.build.log" 2>&1; then
  tail -40 "$dir.build.log"; echo "fuzz: build FAILED"; exit 1
fi

cpus=$(nproc)
workers=$((cpus / ${#names[@]})); [ "$workers" -ge 1 ] || workers=1
slots=$((cpus / workers)); [ "$slots" -ge 1 ] || slots=1
# FUZZ_SLOTS=N: run N targets at once anyway (each gets MINUTES of wall time,
# sharing the CPUs: fewer execs per target, one campaign length in all).
slots=${FUZZ_SLOTS:-$slots}
run=$(date +%Y%m%d-%H%M%S)
camp_root=$root/$dir/campaign/$run
art_root=$root/$dir/artifacts/$run
echo "fuzz: ${names[*]}: ${secs}s each, $workers worker(s) each, $slots target(s) at a time ($cpus CPUs)"
echo "fuzz: logs $camp_root/, artifacts $art_root/"

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
limits=(-timeout=30 -rss_limit_mb=4096)

# Fuzz one target into a fresh corpus dir (reading the seeds too), then merge the new
# inputs that add coverage into the seeds. Writes rc, before, after into its campaign dir.
campaign() {
  local name=$1 exe=$root/$dir/tests/fuzz/fuzz_$1 seeds=$root/tests/fuzz/corpus-$1
  local camp=$camp_root/$1 art=$art_root/$1
  mkdir -p "$camp/new" "$art" "$seeds"
  (cd "$camp" && "$exe" -jobs="$workers" -workers="$workers" -max_total_time="$secs" \
     "${limits[@]}" -print_final_stats=1 -artifact_prefix="$art/" "$camp/new" "$seeds" \
     >"$camp/fuzz.log" 2>&1)
  echo $? >"$camp/rc"
  find "$seeds" -maxdepth 1 -type f | wc -l >"$camp/before"
  "$exe" -merge=1 -merge_control_file="$camp/merge.ctl" "${limits[@]}" \
    -artifact_prefix="$art/" "$seeds" "$camp/new" >"$camp/merge.log" 2>&1 \
    || echo "fuzz: $name: merge FAILED, see $camp/merge.log"
  find "$seeds" -maxdepth 1 -type f | wc -l >"$camp/after"
  echo "fuzz: $name done"
}

for n in "${names[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do wait -n; done
  echo "fuzz: $n started"
  campaign "$n" &
done
wait

failed=0; grown=0
printf '\n%-16s %14s %8s %11s\n' target execs crashes new-corpus
for n in "${names[@]}"; do
  camp=$camp_root/$n art=$art_root/$n
  execs=$(cat "$camp"/fuzz-*.log 2>/dev/null \
    | awk '/^stat::number_of_executed_units:/ { s += $2 } END { print s + 0 }')
  crashes=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  new=$(( $(cat "$camp/after") - $(cat "$camp/before") ))
  grown=$((grown + new))
  printf '%-16s %14s %8s %11s\n' "$n" "$execs" "$crashes" "$new"
done
echo
for n in "${names[@]}"; do
  camp=$camp_root/$n art=$art_root/$n
  rc=$(cat "$camp/rc")
  repros=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  if [ -z "$repros" ] && [ "$rc" -ne 0 ]; then
    echo "fuzz: $n: libFuzzer exited $rc and wrote no reproducer; see $camp/"
    tail -20 "$camp/fuzz.log"; failed=1
  fi
  for f in $repros; do
    failed=1
    echo "fuzz: $n: reproducer $f ($(wc -c <"$f") bytes)"
    echo "fuzz: $n: base64: $(base64 -w0 "$f")"
    echo "fuzz: $n: replay: $root/$dir/tests/fuzz/fuzz_$n $f"
    log=$(grep -lF "$f" "$camp"/fuzz-*.log "$camp/merge.log" 2>/dev/null | head -1)
    [ -n "$log" ] && { echo "fuzz: $n: --- $log (last 30 lines) ---"; tail -30 "$log"; }
  done
done
[ "$grown" -gt 0 ] && echo "fuzz: $grown new corpus file(s): git add tests/fuzz/corpus-*"
if [ "$failed" -ne 0 ]; then echo "fuzz: FAILED"; exit 1; fi
echo "fuzz: passed"
