#!/usr/bin/env bash
# The `replay` test: iovt-storm --replay on the sample trace (plain, gzipped,
# with malformed lines: refused, then skipped) and on the converter's output
# of a synthetic trace_pipe capture; the judges must pass (engine: calls ==
# oracle). Input it must refuse: the `replay-input` test.
#   check-replay.sh IOVT_STORM SRCDIR RECORD_TRACE_SH
set -euo pipefail
storm=$1 src=$2 rec=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# check JSON NAME: the scenario is there; judges clean on both sides; engine calls == oracle.
check() {
	python3 - "$1" "$2" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
sc = [s for s in doc["scenarios"] if s["name"] == name]
if len(sc) != 1:
    sys.exit("no scenario %s in %s: %s" % (name, path, [s["name"] for s in doc["scenarios"]]))
s = sc[0]
e = s["engine"]
for side in ("engine", "baseline"):
    r = s.get(side)
    if r is None:
        continue
    if r["mismatches"] or r["rejected_calls"]:
        sys.exit("%s %s: mismatches %d rejected %d" % (name, side, r["mismatches"], r["rejected_calls"]))
if e["sink_calls"] != e["oracle_min_calls"]:
    sys.exit("%s engine: %d calls, oracle %d" % (name, e["sink_calls"], e["oracle_min_calls"]))
if not e["invalidations"] or not e["fences"] or not e["sink_calls"]:
    sys.exit("%s engine: nothing replayed" % name)
print("%s: ok (%d invalidations, %d calls = oracle)" % (name, e["invalidations"], e["sink_calls"]))
print(e["sink_calls"], file=open(path + ".calls", "w"))
PY
}

# 1. The sample trace.
"$storm" --replay "$src/sample.trace" --json "$tmp/plain.json" >"$tmp/plain.out" || fail "replay of sample.trace"
check "$tmp/plain.json" replay:sample

# 2. Its gzipped copy: the same scenario, the same calls.
gzip -c "$src/sample.trace" >"$tmp/sample.trace.gz"
"$storm" --replay "$tmp/sample.trace.gz" --json "$tmp/gz.json" >"$tmp/gz.out" || fail "replay of sample.trace.gz"
check "$tmp/gz.json" replay:sample
cmp -s "$tmp/plain.json.calls" "$tmp/gz.json.calls" || fail ".gz replay differs from the plain one"

# 3. Malformed lines: reported as FILE:LINE; the trace is refused (exit 2, nothing
#    run) unless --replay-skip-malformed, which counts and skips them.
n=$(wc -l <"$src/sample.trace")
{
	cat "$src/sample.trace"
	printf 'frobnicate 1 2\nmap 11 1000 2000 1000\nmap 11 1001 2000 1000 rw\nunmap 11 zz 1000\npsi 11 0 40 0\npsi 11 0 0 2\nwait now\nmap 11 1000 2000 1000 x\n'
	printf 'dsi 10000\nunmap 11 fffffffffffff000 2000\n'
} >"$tmp/bad.trace"
rc=0
"$storm" --replay "$tmp/bad.trace" >"$tmp/strict.out" 2>"$tmp/strict.err" || rc=$?
[ "$rc" = 2 ] || fail "trace with malformed lines: exit $rc, not 2"
[ ! -s "$tmp/strict.out" ] || fail "trace with malformed lines: something ran"
grep -q "bad.trace:$((n + 1)): malformed" "$tmp/strict.err" || { cat "$tmp/strict.err"; fail "no FILE:LINE"; }
grep -q "10 malformed lines: not replayable" "$tmp/strict.err" || { cat "$tmp/strict.err"; fail "not refused"; }
"$storm" --replay "$tmp/bad.trace" --replay-skip-malformed --json "$tmp/bad.json" >"$tmp/bad.out" 2>"$tmp/bad.err" || fail "replay with malformed lines skipped"
check "$tmp/bad.json" replay:bad
grep -q "10 malformed lines skipped" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "malformed lines not counted"; }
grep -q "bad.trace:$((n + 1)): malformed" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "no line number"; }
cmp -s "$tmp/plain.json.calls" "$tmp/bad.json.calls" || fail "malformed lines changed the replay"

# 4. A missing file is an error, not a crash.
if "$storm" --replay "$tmp/missing.trace" >/dev/null 2>&1; then fail "missing trace accepted"; fi

# 5. The tracefs converter on a synthetic trace_pipe capture, then its replay.
bash "$rec" --convert -d 5 "$src/tracefs-sample.txt" >"$tmp/conv.trace" 2>"$tmp/conv.err"
diff -u <(grep -v '^#' "$src/tracefs-sample.expected") <(grep -v '^#' "$tmp/conv.trace") || fail "converter output differs"
grep -q "1 trace line(s) not understood" "$tmp/conv.err" || fail "converter did not count the bad line"
"$storm" --replay "$tmp/conv.trace" --json "$tmp/conv.json" >"$tmp/conv.out" || fail "replay of the converted trace"
check "$tmp/conv.json" replay:conv
bash "$rec" --convert -s "$src/tracefs-sample.txt" >"$tmp/synth.trace" 2>/dev/null
"$storm" --replay "$tmp/synth.trace" --json "$tmp/synth.json" >"$tmp/synth.out" || fail "replay of the synthesized trace"
check "$tmp/synth.json" replay:synth
echo "replay: all ok"
