#!/usr/bin/env python3
"""JSON -> gnuplot data files for scripts/plot.sh (stdlib only).

  plot_storm.py storm  FILE OUTDIR   iovt-storm JSON ({"machine":..,"scenarios":[..]})
  plot_storm.py gbench FILE OUTDIR   iovt-gbench JSON (--benchmark_format=json)

Writes tab-separated .dat files into OUTDIR and prints, on stdout, three
lines: the kind, the plots it has data for ("calls", "time", "latency",
"translate", "walk", "storm_translate"), and a caption (machine, CPUs,
scale, repetitions, date, commit from the JSON's context block) for the
plots' titles. A summary table goes to OUTDIR/*.txt. Missing pieces (no
baseline side yet, no latency fields) are left out, not errors; a count of
0 (an oracle not computed, no calls) is written as NaN: no bar, no point
(the summary still says 0); scenario names with spaces are quoted for gnuplot.
"""
import json
import math
import os
import re
import sys


def num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(v):
    return "NaN" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.6g" % v


def flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def latency(side, which):
    """p50/p99 in microseconds from whatever field carries it: 'p50_ns',
    'lat_p99_us', {'latency': {'p50': ..}} (unit from the name, else ns)."""
    for k, v in flatten(side).items():
        kl = k.lower()
        if which in kl and num(v) is not None:
            m = re.search(r"(?:_|\.)(ns|us|ms|s)$", kl) or re.search(r"(ns|us|ms)", kl)
            unit = m.group(1) if m else "ns"
            return num(v) * UNIT_US[unit]
    return None


def per_inval_us(side):
    if not side:
        return None
    inv = num(side.get("invalidations"))
    t = num(side.get("engine_s"))
    if t is None:
        t = num(side.get("cpu_s"))
    if not inv or t is None:
        return None
    return t * 1e6 / inv


def nonzero(v):
    # 0 is not drawn (a log scale cannot show it, and an oracle of 0 means
    # "not judged per fence"): NaN leaves the bar or point out
    if v is None or v <= 0:
        return None
    return v


def caption(doc):
    """machine, scale and date for the plots' titles: from the context block
    (iovt-storm, Google Benchmark), else whatever "machine" says."""
    c = doc.get("context") or {}
    m = doc.get("machine") or {}
    cpu = c.get("cpu_model") or m.get("cpu_model")
    ncpu = c.get("num_cpus") or m.get("cpus") or "?"
    parts = ["%s CPUs" % ncpu] if not cpu else ["%s, %s CPUs" % (cpu, ncpu)]
    if c.get("host_name"):
        parts.insert(0, c["host_name"])
    if "scale" in c:
        parts.append("scale %g" % c["scale"])
    if c.get("repetitions", 1) != 1:
        parts.append("medians of %s" % c["repetitions"])
    if c.get("date"):
        parts.append(str(c["date"])[:16].replace("T", " "))
    if c.get("git_commit") or c.get("iovt_version"):
        parts.append("iovt %s %s" % (c.get("iovt_version", ""), c.get("git_commit", "")))
    if c.get("build_type") or c.get("library_build_type"):
        parts.append("build %s" % (c.get("build_type") or "lib " + c.get("library_build_type")))
    return ", ".join(p.strip() for p in parts).replace('"', "'")


def storm(path, out):
    with open(path) as f:
        doc = json.load(f)
    scen = doc.get("scenarios", [])
    has_base = any(isinstance(s.get("baseline"), dict) for s in scen)
    plots = []
    rows = []
    with open(os.path.join(out, "storm_calls.dat"), "w") as c, \
            open(os.path.join(out, "storm_time.dat"), "w") as t, \
            open(os.path.join(out, "storm_latency.dat"), "w") as lat:
        c.write("# scenario engine_calls baseline_calls oracle_min (0: NaN, not drawn)\n")
        t.write("# scenario engine_us_per_inval baseline_us_per_inval\n")
        lat.write("# scenario engine_p50_us engine_p99_us baseline_p50_us baseline_p99_us\n")
        nlat = 0
        for s in scen:
            name = '"%s"' % s.get("name", "?").replace('"', "'")
            e = s.get("engine") or {}
            b = s.get("baseline") if isinstance(s.get("baseline"), dict) else None
            ec, bc = num(e.get("sink_calls")), num(b.get("sink_calls")) if b else None
            om = num(e.get("oracle_min_calls"))
            c.write("%s\t%s\t%s\t%s\n" % (name, fmt(nonzero(ec)), fmt(nonzero(bc)), fmt(nonzero(om))))
            et, bt = per_inval_us(e), per_inval_us(b)
            t.write("%s\t%s\t%s\n" % (name, fmt(et), fmt(bt)))
            l = [latency(e, "p50"), latency(e, "p99"),
                 latency(b, "p50") if b else None, latency(b, "p99") if b else None]
            if any(x is not None for x in l):
                nlat += 1
            lat.write("%s\t%s\n" % (name, "\t".join(fmt(x) for x in l)))
            rows.append((s.get("name", "?"), ec, bc, om, et, bt, l))
    plots += ["calls", "time"]
    if nlat:
        plots.append("latency")
    tr = doc.get("translate") or []
    if tr:
        # one row per configuration, one column per implementation (M lookups/s)
        impls = ["engine", "qemu", "dpdk"]
        cfgs = []
        vals = {}
        for t in tr:
            if t.get("workload") != "vhost":
                continue
            cfg = "pool %s, %s thr%s" % (t.get("pool"), t.get("threads"),
                                         " + inval" if t.get("invalidator") else "")
            if cfg not in cfgs:
                cfgs.append(cfg)
            vals[(cfg, t.get("impl"))] = num(t.get("lookups_per_s"))
        with open(os.path.join(out, "storm_translate.dat"), "w") as f:
            f.write("# config engine qemu dpdk (M lookups/s, medians)\n")
            for cfg in cfgs:
                f.write('"%s"\t%s\n' % (cfg, "\t".join(
                    fmt(vals.get((cfg, i)) / 1e6 if vals.get((cfg, i)) else None) for i in impls)))
        if cfgs:
            plots.append("storm_translate")
    with open(os.path.join(out, "storm_summary.txt"), "w") as f:
        m = doc.get("machine", {})
        f.write("machine: %s\n" % json.dumps(m))
        if not has_base:
            f.write("no baseline side in this JSON: engine only\n")
        f.write("%-24s %12s %12s %10s %8s %14s %14s\n" % (
            "scenario", "engine_calls", "base_calls", "oracle", "ratio", "eng_us/inval",
            "base_us/inval"))
        for name, ec, bc, om, et, bt, _ in rows:
            ratio = (bc / ec) if ec and bc is not None else None
            f.write("%-24s %12s %12s %10s %8s %14s %14s\n" % (
                name, fmt(ec), fmt(bc), fmt(om), fmt(ratio), fmt(et), fmt(bt)))
    print("baseline" if has_base else "nobaseline")
    print(" ".join(plots))
    print(caption(doc))


def gbench(path, out):
    with open(path) as f:
        doc = json.load(f)
    # translate/<impl>/writer:<w>/<n>/real_time/threads:<t>
    tr = {}
    walk = []
    benches = doc.get("benchmarks", [])
    # with --benchmark_repetitions: use the medians, else the plain runs
    medians = [b for b in benches if b.get("aggregate_name") == "median"]
    for b in medians or benches:
        if b.get("error_occurred") or (not medians and b.get("run_type", "iteration") != "iteration"):
            continue
        name = b.get("run_name") or b.get("name", "")
        parts = name.split("/")
        ips = num(b.get("items_per_second"))
        if parts[0] == "translate" and len(parts) >= 4 and ips:
            impl, wr, n = parts[1], parts[2].split(":")[-1], parts[3]
            th = int(b.get("threads", 1))
            tr.setdefault(n, {}).setdefault("%s w%s" % (impl, wr), {})[th] = ips / 1e6
        elif parts[0] == "walk_diff" and ips:
            label = "/".join(parts[2:]).replace("leaves:", "").replace("scattered:", "s")
            walk.append((label, 1e9 / ips, num(b.get("extents"))))
    plots = []
    series = []
    for n in sorted(tr, key=int):
        cols = sorted(tr[n])
        series.append((n, cols))
        with open(os.path.join(out, "gb_translate_%s.dat" % n), "w") as f:
            f.write("threads\t" + "\t".join('"%s"' % c for c in cols) + "\n")
            for th in sorted({t for c in cols for t in tr[n][c]}):
                f.write("%d\t%s\n" % (th, "\t".join(fmt(tr[n][c].get(th)) for c in cols)))
    if series:
        plots.append("translate:" + ",".join(n for n, _ in series))
    if walk:
        with open(os.path.join(out, "gb_walk.dat"), "w") as f:
            f.write("# config(leaves/scattered) ns_per_pte extents\n")
            for label, ns, ext in walk:
                f.write('"%s"\t%s\t%s\n' % (label, fmt(ns), fmt(ext)))
        plots.append("walk")
    with open(os.path.join(out, "gbench_summary.txt"), "w") as f:
        ctx = doc.get("context", {})
        f.write("library_build_type: %s (Debian's libbenchmark is a debug build)\n"
                % ctx.get("library_build_type", "?"))
        for n, cols in series:
            f.write("translate, %s extents, M lookups/s (aggregate):\n" % n)
            for c in cols:
                f.write("  %-22s %s\n" % (c, "  ".join(
                    "t%d=%.1f" % (t, v) for t, v in sorted(tr[n][c].items()))))
            for w in ("0", "1"):
                eng = tr[n].get("engine w" + w, {})
                for other in cols:
                    if other.startswith("engine") or not other.endswith("w" + w):
                        continue
                    f.write("  engine/%s (writer %s): %s\n" % (other.split()[0], w, "  ".join(
                        "t%d=%.1fx" % (t, eng[t] / v) for t, v in sorted(tr[n][other].items())
                        if t in eng and v)))
        for label, ns, ext in walk:
            f.write("walk+diff %s: %.2f ns/PTE (%s extents)\n" % (label, ns, fmt(ext)))
    print("gbench")
    print(" ".join(plots))
    print(caption(doc))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("storm", "gbench"):
        sys.stderr.write(__doc__)
        sys.exit(2)
    os.makedirs(sys.argv[3], exist_ok=True)
    (storm if sys.argv[1] == "storm" else gbench)(sys.argv[2], sys.argv[3])
