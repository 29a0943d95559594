#!/usr/bin/env python3
"""Folded stacks -> the engine-only view (perf/README.md "Engine-only view").

  engine-view.py STACKS.folded ENGINE_SRC_DIR [OTHER_SRC_DIR ...] > engine.folded

Keeps the samples that have an engine frame, rooted at the outermost one
(the harness, the guest simulator and the baseline above it are cut off;
the guest-table walker and the stats readers, which the harness also calls
directly, count only below another engine frame),
and drops those that reach a judge below it (the model sink the engine
calls as its sink with the harness's timer around it, the oracle): what is left is the engine's own cost, its
allocator and liburcu included. Engine functions are the ones defined in
ENGINE_SRC_DIR's .c/.h files (inlined ones too: perf's DWARF unwinding
names them); judges are those of sinks/model_sink.c and sync/oracle.c.
A name also defined in an OTHER_SRC_DIR (bench/, tests/: static functions
such as on_leaf exist on both sides, and folded stacks carry no file) is
never taken as an entry either. A summary line goes to stderr.
"""
import os
import re
import sys

JUDGES = {os.path.join("sinks", "model_sink.c"), os.path.join("sync", "oracle.c")}
# Engine code the harness also calls directly: the guest-table walker and
# guest RAM (the judges and the guest simulator walk with them) and the
# statistics readers (the storm driver samples the shadow size after every
# fence). They count below an engine entry, never as one.
SHARED_DIRS = ("guest" + os.sep,)
NOT_ENTRIES = {"iovt_stats_get", "iovt_domain_stats_get", "snapshot", "add_shadow"}
# The harness's timer around each model sink call (tests/harness/world.c):
# the sink's cost, not the engine's — judged like the model sink it wraps
# (before the seventh session its clock reads were 14-24% of the engine
# samples on strict-dma and domain-switch).
SINK_TIMER = {"timed_map", "timed_unmap", "timed_unmap_all"}
# a function definition: a line starting with its type, the name before "(",
# no ";" (a prototype) -- the body's "{" may be on the next line.
DEF = re.compile(r"^(?:static\s+|inline\s+|extern\s+|const\s+|unsigned\s+|struct\s+\w+\s+|enum\s+\w+\s+|"
                 r"__attribute__\(\(.*?\)\)\s+)*[A-Za-z_]\w*[\s\*]+\**([A-Za-z_]\w*)\s*\([^;]*$")


def functions(root):
    engine, judges, shared = set(), set(), set()
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            names = set()
            with open(p, errors="replace") as fh:
                for line in fh:
                    m = DEF.match(line)
                    if m and m.group(1) not in ("if", "while", "for", "switch", "return", "sizeof"):
                        names.add(m.group(1))
            (judges if rel in JUDGES else engine).update(names)
            if rel.startswith(SHARED_DIRS):
                shared.update(names)
    return engine - judges, judges, shared


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    engine, judges, shared = functions(sys.argv[2])
    judges |= SINK_TIMER
    elsewhere = set()
    for d in sys.argv[3:]:
        e, j, _ = functions(d)
        elsewhere |= e | j
    entries = engine - shared - NOT_ENTRIES - elsewhere
    total = kept = judged = 0
    for line in open(sys.argv[1]):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        first = next((i for i, f in enumerate(frames) if f in entries), None)
        if first is None:
            continue
        if any(f in judges for f in frames[first:]):
            judged += n
            continue
        kept += n
        print("%s %d" % (";".join(frames[first:]), n))
    sys.stderr.write("engine-only view: %d of %d samples have engine frames and no judge below "
                     "them (%d more reached the model sink or the oracle from the engine; %d "
                     "harness/judges/baseline only)\n" % (kept, total, judged, total - kept - judged))


if __name__ == "__main__":
    main()
