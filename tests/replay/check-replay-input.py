#!/usr/bin/env python3
# The `replay-input` test: iovt-storm refuses input it cannot replay (README
# "Trace replay": widths, AM, the page bound, malformed lines, binary data)
# and a bad command line up front: a normal exit 2 with a message on stderr
# (FILE:LINE for a trace; printable text only), nothing on stdout (nothing
# ran), within a small time and memory. Good traces still replay.
#   check-replay-input.py IOVT_STORM SRCDIR SANITIZE
# SANITIZE: meson's b_sanitize ("none": the refused runs also get a 1 GiB
# address-space limit; sanitizer runtimes need terabytes of it).
import gzip
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time

storm, src, sanitize = sys.argv[1], sys.argv[2], sys.argv[3]
plain = sanitize == "none"
# Refused inputs: the trace is checked before any world exists.
# Sanitizer builds get three times as long: their refusal of 68 M blank
# lines takes ~2.4 s alone and passed 5 s with a second test running beside
# it on 2 cores (a noisy day's CI); a refusal that does the work it should
# not takes minutes either way.
REFUSE_S = 5.0 if plain else 15.0
REFUSE_RSS_KB = (64 if plain else 256) << 10
REFUSE_AS = 1 << 30
# Good traces: the whole replay, both sides.
GOOD_S = 60.0
GOOD_RSS_KB = (512 if plain else 2048) << 10

tmp = tempfile.mkdtemp(prefix="replay-input.")
failures = []


def path(name):
    return os.path.join(tmp, name)


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path(name)


def vm_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(args, time_s, rss_kb, as_limit):
    """Runs iovt-storm; kills it past time_s or rss_kb (polled). Returns
    (exit code or -signal, stdout, stderr, seconds, peak RSS KiB, killed why)."""
    out, err = path("stdout"), path("stderr")
    t0 = time.monotonic()
    pid = os.fork()
    if not pid:
        try:
            if as_limit:
                resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
            fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fe = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fo, 1)
            os.dup2(fe, 2)
            os.execv(storm, [storm] + args)
        finally:
            os._exit(127)
    killed = None
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid:
            break
        dt = time.monotonic() - t0
        rss = vm_rss_kb(pid)
        if not killed and (dt > time_s or rss > rss_kb):
            killed = "ran %.1f s" % dt if dt > time_s else "RSS %d MiB" % (rss >> 10)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)
    dt = time.monotonic() - t0
    rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    with open(out, "rb") as f:
        so = f.read()
    with open(err, "rb") as f:
        se = f.read()
    # ru_maxrss: the child's peak, which starts at this Python's (~10 MiB:
    # exec keeps the high-water mark of the forked image).
    return rc, so, se, dt, ru.ru_maxrss, killed


def refused(what, args, pattern):
    """iovt-storm ARGS must exit 2 at once with a message matching pattern."""
    rc, so, se, dt, rss, killed = run(args, REFUSE_S, REFUSE_RSS_KB, REFUSE_AS if plain else 0)
    text = se.decode("ascii", "replace")
    bad = []
    if killed:
        bad.append("killed: " + killed)
    elif rc != 2:
        bad.append("exit %d, not 2" % rc)
    if so:
        bad.append("wrote %d bytes to stdout (something ran)" % len(so))
    if not re.search(pattern, text):
        bad.append("stderr does not match %r" % pattern)
    if any(b > 0x7e or (b < 0x20 and b != 0x0a) for b in se):
        bad.append("raw bytes on stderr")
    if dt > REFUSE_S:
        bad.append("took %.2f s" % dt)
    if rss > REFUSE_RSS_KB:
        bad.append("peak RSS %d KiB" % rss)
    first = text.strip().splitlines()[:1]
    print("%-34s exit %3d  %6.3f s  %6d KiB  %s" % (what, rc, dt, rss, first[0][:110] if first else ""))
    if bad:
        failures.append(what)
        print("FAIL %s: %s\n  stderr: %s" % (what, "; ".join(bad), text[:2000]), file=sys.stderr)


def replays(what, args, name):
    """iovt-storm ARGS must replay (exit 0, the scenario in the table)."""
    rc, so, se, dt, rss, killed = run(args, GOOD_S, GOOD_RSS_KB, 0)
    bad = []
    if killed:
        bad.append("killed: " + killed)
    elif rc:
        bad.append("exit %d" % rc)
    if name.encode() not in so:
        bad.append("no %s in the table" % name)
    print("%-34s exit %3d  %6.3f s  %6d KiB" % (what, rc, dt, rss))
    if bad:
        failures.append(what)
        print("FAIL %s: %s\n  stderr: %s" % (what, "; ".join(bad), se.decode("ascii", "replace")[:2000]),
              file=sys.stderr)


R = ["--replay"]

# 1. Claimed sizes: beyond the 48-bit domain, and aligned but over the page bound.
t = write("huge.trace", "map 1 0 0 fffffffffffff000 rw\npsi 1 0 0 0\nwait\n")
refused("map of 2^64-4K", R + [t], r"huge\.trace:1: malformed \(iova range .*48-bit width")
replays("map of 2^64-4K, skipped", R + [t, "--replay-skip-malformed"], "replay:huge")
t = write("t40.trace", "map 1 0 0 10000000000 rw\npsi 1 0 1c 0\nwait\n")
refused("map of 2^40 (aligned)", R + [t], r"t40\.trace:1: map of 268435456 pages .*bound")
refused("map of 2^40, skipping malformed", R + [t, "--replay-skip-malformed"], r"t40\.trace:1: .*bound")
t = write("sum.trace", "".join("map 1 %x 0 40000000 rw\n" % (i << 30) for i in range(70)) + "dsi 1\nwait\n")
refused("70 x 1 GiB maps (sum over bound)", R + [t], r"sum\.trace:65: map of 262144 pages")
t = write("unmap.trace", "unmap 1 0 ffff00000000\ndsi 1\nwait\n")
refused("unmap of 2^48-4G", R + [t], r"unmap\.trace:1: unmap of .*bound")
t = write("gpa.trace", "map 1 0 fffffffffffff000 1000 rw\n")
refused("gpa beyond 52 bits", R + [t], r"gpa\.trace:1: malformed \(gpa range")
refused("sample, --replay-max-pages 16", R + [os.path.join(src, "sample.trace"), "--replay-max-pages", "16"],
        r"sample\.trace:\d+: map of \d+ pages .*16 pages")

# 2. AM as the engine takes it (0..0x34), PSI addresses inside the domain.
t = write("am63.trace", "map 1 0 0 1000 rw\npsi 1 0 3f 0\nwait\n")
refused("psi am 63", R + [t], r"am63\.trace:2: malformed \(am 0x3f above 0x34")
t = write("am53.trace", "map 1 0 0 1000 rw\npsi 1 0 35 0\nwait\n")
refused("psi am 0x35", R + [t], r"am53\.trace:2: malformed \(am 0x35")
t = write("psiaddr.trace", "map 1 0 0 1000 rw\npsi 1 1000000000000 0 0\nwait\n")
refused("psi addr 2^48", R + [t], r"psiaddr\.trace:2: malformed \(addr beyond")

# 3. Not a text trace: random bytes, high bytes only (escaped), NULs, endless
#    input, a gzip of zeros, a long line, a .gz that is not gzip.
rnd = random.Random(15)
t = write("garbage.trace", bytes(rnd.getrandbits(8) for _ in range(65536)))
refused("64 KiB of random bytes", R + [t], r"garbage\.trace:1: byte 0x.. at column \d+: binary data")
t = write("high.trace", b"".join(bytes(rnd.randrange(0x80, 0x100) for _ in range(40)) + b"\n" for _ in range(30)))
refused("high bytes (text-like garbage)", R + [t], r"high\.trace:1: malformed \(unknown event\): \\x")
t = write("nul.trace", b"map 1 0 0 1000 rw\0 trailing\npsi 1 0 0 0\nwait\n")
refused("NUL inside a good line", R + [t], r"nul\.trace:1: byte 0x00 at column 18")
refused("/dev/zero", R + ["/dev/zero"], r"/dev/zero:1: byte 0x00 at column 1: binary data")
with gzip.open(path("bomb.trace.gz"), "wb", compresslevel=1) as f:
    f.write(bytes(64 << 20))
refused("gzip of 64 MiB of zeros", R + [path("bomb.trace.gz")], r"bomb\.trace\.gz:1: byte 0x00")
t = write("long.trace", "wait " + " " * 5000 + "\n")
refused("a 5000-byte line", R + [t], r"long\.trace:1: line longer than 4096 bytes")
t = write("notgz.trace.gz", "wait\n")
refused(".gz that is not gzip", R + [t], r"gzip -dc failed")
refused("missing file", R + [path("missing.trace")], r"missing\.trace: No such file")
refused("a directory", R + [tmp], r"Is a directory")

# 4. Malformed lines: each reported as FILE:LINE (reason); the trace is refused
#    (reading stops after 10); --replay-skip-malformed replays the rest.
lines = ["frobnicate 1 2", "map 11 1000 2000 1000", "map 11 1001 2000 1000 rw", "unmap 11 zz 1000",
         "psi 11 0 40 0", "psi 11 0 0 2", "wait now", "map 11 1000 2000 1000 x", "dsi 10000",
         "unmap 11 fffffffffffff000 2000", "map -1 0 0 1000 rw", "psi 11 0 0"]
t = write("one-bad.trace", "map 1 0 0 1000 rw\npsi 1 0 0 0\nwait 1\nwait\n")
refused("one malformed line", R + [t], r"one-bad\.trace:3: malformed \(wait takes 0 fields, not 1\)")
t = write("bad.trace", "map 1 0 0 1000 rw\npsi 1 0 0 0\nwait\n" + "\n".join(lines) + "\n")
refused("12 malformed lines", R + [t],
        r"(?s)" + "".join(r"bad\.trace:%d: malformed.*" % (4 + i) for i in range(10)) +
        r"stopped reading after 10 malformed lines")
replays("12 malformed lines, skipped", R + [t, "--replay-skip-malformed"], "replay:bad")

# 5. The command line (issue 14).
for v in ["-1", "0", "abc", "nan", "inf", "1e9", "2x", ""]:
    refused("--scale %r" % v, ["--scale", v, "--scenario", "strict-dma"], r"--scale .*: not a number")
refused("extra argument", ["--scenario", "strict-dma", "extra"], r"unexpected argument 'extra'")
refused("unknown option", ["--frobnicate"], r"unrecognized option")
refused("--json in a missing directory", ["--scenario", "strict-dma", "--json", path("no/such/dir.json")],
        r"--json .*: No such file or directory")
refused("--json is a directory", ["--scenario", "strict-dma", "--json", tmp], r"--json .*: Is a directory")
refused("unknown scenario", ["--scenario", "no-such-scenario"], r"no scenario named no-such-scenario")
refused("--replay-max-pages 0", R + [os.path.join(src, "sample.trace"), "--replay-max-pages", "0"],
        r"--replay-max-pages 0: not a page count")
refused("--replay-max-pages without --replay", ["--replay-max-pages", "5"], r"go with --replay")
for v in [" -1", "-1", "0x10", "1e3", ""]:  # decimal digits only (" -1" was 2^64 - 1)
    refused("--replay-max-pages %r" % v, R + [os.path.join(src, "sample.trace"), "--replay-max-pages", v],
            r"--replay-max-pages .*: not a page count")
refused("--replay-max-pages 010 (ten, not 8)", R + [os.path.join(src, "sample.trace"), "--replay-max-pages", "010"],
        r"more than 10 pages")
refused("--replay-max-work 0", R + [os.path.join(src, "sample.trace"), "--replay-max-work", "0"],
        r"--replay-max-work 0: not a step count")
refused("--replay-max-work without --replay", ["--replay-max-work", "5"], r"go with --replay")

# 5b. The run's work, bounded before it runs (found by review: these ran
#     for minutes to hours within the page bound): a 64 MiB map and a
#     million DSIs over it (21 KB gzipped), edits never invalidated that
#     every later PSI scans, a gigabyte of blank lines (4.7 MB gzipped).
with gzip.open(path("dsiflood.trace.gz"), "wb", compresslevel=1) as f:
    f.write(b"map 1 0x1000 0x0 0x4000000 rw\npsi 1 0 0 0\nwait\n" + b"dsi 1\nwait\n" * 1000000)
t = write("bypass.trace", "map 1 0x1000 0x0 0x4000000 rw\npsi 1 0 0 0\nwait\n"
          "unmap 1 100000000 4000000\ndsi 1\nwait\n" + "dsi 1\nwait\n" * 20000)
refused("DSIs after an unmap of pages never mapped", R + [t],  # it emptied a map-unmap count
        r"bypass\.trace:\d+: the trace would cost")
refused("a million DSIs over 64 MiB", R + [path("dsiflood.trace.gz")],
        r"dsiflood\.trace\.gz:\d+: the trace would cost the run more than \d+ steps by this line.*--replay-max-work")
lines = ["map 1 %x %x 1000 rw" % (0x100000000 + i * 0x2000, i * 0x1000) for i in range(40000)]
lines += ["psi 1 %x 0 0\nwait" % (i * 0x1000) for i in range(40000)]
t = write("held.trace", "\n".join(lines) + "\n")
# (a lower bound than the default: the dry run scans ~4 held edits a step,
# 2^29 of them before the default refuses, ~0.25 s plain but past the time
# allowed under ASan)
refused("40k held edits, 40k PSIs elsewhere", R + [t, "--replay-max-work", "16777216"],
        r"held\.trace:\d+: the trace would cost")
# One 16 GiB map never invalidated, 10,000 PSIs elsewhere: the run holds it
# as 16 edits (split at the 1 GiB fold) that every PSI scans; the estimate
# held one, 2 steps a PSI against the run's 5 (found by review: the dry run
# did not fold). 30,000 steps: refused only when the estimate folds too.
t = write("fold.trace", "map 1 0 0 400000000 rw\n" + "psi 1 ffff00000000 0 0\nwait\n" * 10000)
refused("a 16 GiB map held, PSIs elsewhere", R + [t, "--replay-max-work", "30000"],
        r"fold\.trace:\d+: the trace would cost")
refused("the same, a lower work bound", R + [os.path.join(src, "sample.trace"), "--replay-max-work", "1"],
        r"sample\.trace:\d+: the trace would cost")
with gzip.open(path("blank.trace.gz"), "wb", compresslevel=1) as f:
    chunk = b"\n" * (1 << 22)
    for _ in range(17):  # 17 x 4 Mi lines: past the bound of 64 Mi lines
        f.write(chunk)
refused("68 M blank lines", R + [path("blank.trace.gz")], r"blank\.trace\.gz:67108864: more than 67108864 lines")

# 6. Good traces still replay: the sample (and its judges pass: exit 0), a PSI
#    of the largest AM the engine takes, a 1 GiB map.
replays("sample.trace", R + [os.path.join(src, "sample.trace"), "--json", path("sample.json")], "replay:sample")
t = write("am52.trace", "map 1 0 0 1000 rw\npsi 1 0 34 0\nwait\nunmap 1 0 1000\npsi 1 fffff000 34 1\nwait\n")
replays("psi am 0x34", R + [t], "replay:am52")
t = write("g1.trace", "map 1 40000000 0 40000000 rw\npsi 1 40000000 12 0\nwait\n")
replays("1 GiB map", R + [t], "replay:g1")

for f in os.listdir(tmp):
    os.unlink(path(f))
os.rmdir(tmp)
if failures:
    sys.exit("replay-input: %d failed: %s" % (len(failures), ", ".join(failures)))
print("replay-input: all ok")
