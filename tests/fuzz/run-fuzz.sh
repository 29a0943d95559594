#!/bin/sh
# run-fuzz.sh TARGET SEED_CORPUS SECONDS [LIBFUZZER_FLAG...]
# A bounded libFuzzer run over a copy of the seed corpus (in a temp dir, so the
# checkout stays clean). Exit 0 when the run ends clean; exit 1 -- never 77, which
# meson counts as a skip -- on a crash or sanitizer report, a leak, a timeout
# (-timeout), an out-of-memory (-rss_limit_mb / -malloc_limit_mb) or any other
# trouble. On failure it prints each reproducer's name and base64 (base64 -w0) and
# the tail of the libFuzzer output. Artifacts never go into the source tree: they go
# to $FUZZ_ARTIFACTS/TARGET/RUN/ if set, else to fuzz-artifacts/TARGET/RUN/ next to
# TARGET (in the build dir); a clean run removes its empty RUN dir.
# Extra flags go to libFuzzer after the defaults (the last one wins), e.g. -timeout=5.
set -u

fail() { echo "run-fuzz: FAILED: $*"; exit 1; }
[ $# -ge 3 ] || fail "usage: run-fuzz.sh TARGET SEED_CORPUS SECONDS [libFuzzer flags]"
target=$1 seeds=$2 secs=$3
shift 3
[ -x "$target" ] || fail "no fuzz target $target"
[ -d "$seeds" ] || fail "no seed corpus $seeds"
name=$(basename "$target")
case $target in /*) ;; *) target=$(pwd)/$target ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/run-fuzz.$name.XXXXXX") || fail "mktemp"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
{ mkdir "$work/corpus" && cp -R "$seeds"/. "$work/corpus/"; } || fail "cannot copy $seeds"

base=${FUZZ_ARTIFACTS:-$(cd "$(dirname "$target")" && pwd)/fuzz-artifacts}
art=$base/$name/$(date +%Y%m%d-%H%M%S)-$$
if ! mkdir -p "$art" 2>/dev/null; then
  art=$work/artifacts.keep; mkdir -p "$art" || fail "cannot make an artifact dir"
  trap 'rm -rf "$work/corpus"' EXIT
fi
echo "run-fuzz: $name for ${secs}s over $seeds; artifacts: $art/"

# UBSan recovers unless told to halt: a report must end the run and fail it.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"
log=$work/libfuzzer.log
"$target" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
  -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
  -artifact_prefix="$art/" "$@" "$work/corpus" >"$log" 2>&1
rc=$?

repros=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
  -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
if [ "$rc" -eq 0 ] && [ -z "$repros" ]; then
  grep -E '^(stat::|Done )' "$log"
  rmdir "$art" 2>/dev/null || echo "run-fuzz: kept $art/ (slow inputs): $(ls "$art")"
  echo "run-fuzz: $name passed"
  exit 0
fi

echo "run-fuzz: --- libFuzzer output (last 60 lines) ---"
tail -n 60 "$log"
echo "run-fuzz: --- end of libFuzzer output ---"
cp "$log" "$art/libfuzzer.log" 2>/dev/null && echo "run-fuzz: whole log: $art/libfuzzer.log"
if [ -z "$repros" ]; then
  echo "run-fuzz: libFuzzer exited $rc and wrote no reproducer"
fi
for f in $repros; do
  echo "run-fuzz: reproducer $(basename "$f") ($(wc -c <"$f") bytes): $f"
  echo "run-fuzz: base64: $(base64 -w0 "$f")"
  echo "run-fuzz: replay: $target $f"
done
fail "$name (libFuzzer exit $rc)"
