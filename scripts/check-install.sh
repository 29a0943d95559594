#!/usr/bin/env bash
# Proof that iovt installs and embeds as README "Packaging" says: builds the
# libraries alone (-Dtests=false -Dbench=false, which must not look up GLib or
# Google Benchmark), installs them into a temporary prefix, and checks
#   pc-cflags          pkg-config --cflags iovt carries no DPDK flag
#   pc-static-libs     pkg-config --static --libs iovt works
#   headers-alone      each installed header compiles with only the prefix's include/
#   consumer-shared    a tiny VMM-like program, through pkg-config, against libiovt.so
#   consumer-static    the same against libiovt.a (pkg-config --static)
#   dpdk-shared        (with DPDK) a program that calls nothing of iovt-dpdk but
#                      links it through iovt-dpdk.pc gets rte_ring queues; the
#                      library is marked NODELETE (dlclose would unmap its glue)
#   dpdk-static        the same with the static archives (see README for what
#                      Debian's libdpdk.pc allows)
#   subproject         a meson project with iovt as a subproject: dependency('iovt'),
#                      no engine/ include path, no iovt tests built
#   examples           bash examples/build-and-run.sh PREFIX, when that script exists
# Prints "check-install: NAME: passed|FAILED" per check and ends with
# "check-install: N passed, N failed". Usage: scripts/check-install.sh [BUILD_DIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bdir=${1:-build/install}
work=$(mktemp -d /tmp/iovt-check-install.XXXXXX)
prefix=$work/prefix
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
log=$work/log

check() { # NAME COMMAND...: runs it, logs, counts
  local name=$1; shift
  if "$@" >"$log" 2>&1; then
    echo "check-install: $name: passed"; pass=$((pass + 1))
  else
    echo "check-install: $name: FAILED"; tail -25 "$log" | sed 's/^/    /'; fail=$((fail + 1))
  fi
}
finish() { echo "check-install: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

# --- build and install the libraries alone ----------------------------------
mkdir -p build
rm -rf "$bdir"
setup_build() {
  meson setup "$bdir" --prefix="$prefix" --libdir=lib -Dbuildtype=release \
    -Dtests=false -Dbench=false -Ddpdk=auto &&
  ! grep -E "Run-time dependency (glib-2.0|benchmark)|dependency glib|dependency benchmark" \
      "$bdir/meson-logs/meson-log.txt" &&
  ninja -C "$bdir" install
}
check "build-install (no GLib, no Google Benchmark looked up)" setup_build
[ -f "$prefix/lib/pkgconfig/iovt.pc" ] || finish
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
has_dpdk=false; pkg-config --exists iovt-dpdk && has_dpdk=true

pc_cflags() {
  local f; f=$(pkg-config --cflags iovt) || return 1
  echo "cflags: $f"
  ! grep -qE -- '-include|-march|dpdk|dbus|libnl|-mno|-mavx|-msse' <<<"$f"
}
check pc-cflags pc_cflags
check pc-static-libs pkg-config --static --libs iovt

headers_alone() {
  local h
  for h in "$prefix"/include/*.h; do
    echo "#include \"$(basename "$h")\"" | cc -std=c11 -fsyntax-only -Wall -Werror -nostdinc \
      -isystem "$(cc -print-file-name=include)" -isystem /usr/include -isystem /usr/include/x86_64-linux-gnu \
      -I "$prefix/include" -x c - || { echo "$h does not compile alone"; return 1; }
  done
}
check headers-alone headers_alone

# --- a tiny consumer ----------------------------------------------------------
cat >"$work/consumer.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include "iovt.h"
#include "iovt_vfio.h"
#include "iovt_model.h"
static int events;
static int on_event(void *arg, const struct iovt_event *ev) { (void)arg; (void)ev; events++; return 0; }
int main(void)
{
	iovt_thread_register();
	struct iovt_engine *e;
	if (iovt_engine_create(NULL, &e)) return 1;
	static char ram[1 << 20] __attribute__((aligned(4096)));
	if (iovt_guest_ram_add(e, 0, sizeof(ram), ram, NULL)) return 2;
	struct iovt_domain_config dc = { .did = 7, .root_gpa = 0, .addr_width = 48 };
	struct iovt_domain *d;
	if (iovt_domain_create(e, &dc, &d)) return 3;
	struct iovt_sink s;
	if (iovt_callback_sink_init(&s, on_event, NULL, NULL)) return 4;
	struct iovt_notifier *n;
	if (iovt_notifier_attach(d, IOVT_NOTIFY_MAP | IOVT_NOTIFY_UNMAP, &s, &n)) return 5;
	if (iovt_invalidate_dsi(e, 7) || iovt_fence(e)) return 6;
	struct iovt_extent x;
	int rc = iovt_translate(d, 0x1000, &x);
	printf("consumer: iovt %s, translate of an empty table: %d, events %d\n", iovt_version(), rc, events);
	if (rc != -ENOENT) return 7;
	iovt_notifier_detach(n);
	iovt_domain_destroy(d);
	iovt_engine_destroy(e);
	iovt_thread_unregister();
	return 0;
}
C

# ldd's output is read whole before grep looks at it: `ldd | grep -q` under
# pipefail fails (or, negated, passes) when grep exits before ldd's last write
# and ldd dies of SIGPIPE (consumer-shared failed so once in CI).
consumer_shared() {
  cc -std=c11 -Wall -Werror -o "$work/c-shared" "$work/consumer.c" \
    $(pkg-config --cflags --libs iovt) -Wl,-rpath,"$prefix/lib" || return 1
  local deps; deps=$(ldd "$work/c-shared") || return 1
  grep -q "$prefix/lib/libiovt.so" <<<"$deps" || { echo "not linked to libiovt.so"; return 1; }
  "$work/c-shared"
}
check consumer-shared consumer_shared

consumer_static() { # the archive by name: the prefix holds the .so too
  cc -std=c11 -Wall -Werror -o "$work/c-static" "$work/consumer.c" $(pkg-config --cflags iovt) \
    $(pkg-config --static --libs iovt | sed 's/-liovt\b/-l:libiovt.a/') || return 1
  local deps; deps=$(ldd "$work/c-static") || return 1
  ! grep -q libiovt <<<"$deps" || { echo "libiovt.so linked"; return 1; }
  "$work/c-static"
}
check consumer-static consumer_static

# --- iovt-dpdk ----------------------------------------------------------------
if $has_dpdk; then
  cat >"$work/dpdk.c" <<'C'
#include <stdio.h>
#include "iovt.h"
/* Calls nothing of libiovt-dpdk: linking it through iovt-dpdk.pc must be
 * enough for the core to get the rte_ring backend (its constructor). */
int main(void)
{
	iovt_thread_register();
	struct iovt_engine *e;
	struct iovt_queue *q;
	if (iovt_engine_create(NULL, &e)) return 1;
	struct iovt_queue_config qc = { .backend = IOVT_QUEUE_RTE_RING };
	int rc = iovt_queue_create(e, &qc, &q);
	printf("dpdk consumer: rte_ring queue create: %d\n", rc);
	if (rc) return 2;
	iovt_queue_destroy(q);
	iovt_engine_destroy(e);
	return 0;
}
C
  pc_dpdk() { pkg-config --cflags --libs iovt-dpdk; }
  dpdk_shared() {
    cc -o "$work/d-shared" "$work/dpdk.c" $(pkg-config --cflags --libs iovt-dpdk) \
      -Wl,--as-needed -Wl,-rpath,"$prefix/lib" || return 1
    # its constructor hands the core pointers into it: never unloaded
    readelf -d "$prefix"/lib/libiovt-dpdk.so | grep -q NODELETE || { echo "libiovt-dpdk.so: no NODELETE"; return 1; }
    "$work/d-shared"
  }
  dpdk_static() {
    local libs
    libs=$(pkg-config --static --libs iovt-dpdk) || return 1
    cc -o "$work/d-static" "$work/dpdk.c" $(pkg-config --cflags iovt-dpdk) \
      $(sed 's/-liovt-dpdk\b/-l:libiovt-dpdk.a/; s/-liovt\b/-l:libiovt.a/' <<<"$libs") || return 1
    local deps; deps=$(ldd "$work/d-static") || return 1
    ! grep -q libiovt <<<"$deps" || { echo "libiovt.so linked"; return 1; }
    "$work/d-static"
  }
  check pc-dpdk pc_dpdk
  check dpdk-shared dpdk_shared
  check dpdk-static dpdk_static
fi

# --- as a meson subproject ------------------------------------------------------
subproject() {
  local p=$work/subproj
  mkdir -p "$p/subprojects"
  ln -s "$root" "$p/subprojects/iovt"
  cp "$work/consumer.c" "$p/"
  cat >"$p/meson.build" <<'M'
project('iovt-consumer', 'c', default_options : ['c_std=c11'])
iovt = dependency('iovt')  # found as a subproject: meson.override_dependency
test('consumer', executable('consumer', 'consumer.c', dependencies : iovt))
M
  # The subproject builds from a copy of the repository's sources but its
  # own build folder; tests and benchmarks must not be configured.
  # (not the installed iovt.pc: the subproject, whatever pkg-config finds)
  env -u PKG_CONFIG_PATH meson setup "$p/build" "$p" --force-fallback-for=iovt \
    -Dbuildtype=release -Diovt:dpdk=disabled &&
  grep -q "Executing subproject iovt" "$p/build/meson-logs/meson-log.txt" &&
  ! grep -qE "glib-2.0|Run-time dependency benchmark" "$p/build/meson-logs/meson-log.txt" &&
  ninja -C "$p/build" &&
  # Consumers get include/ only: no -I of the engine's internal folders.
  python3 - "$p/build/compile_commands.json" <<'PY' &&
import json, sys
cmds = [c for c in json.load(open(sys.argv[1])) if c['file'].endswith('consumer.c')]
assert cmds, 'consumer.c not compiled'
for c in cmds:
    inc = [a for a in c['command'].split() if a.startswith('-I')]
    print('consumer include path:', ' '.join(inc))
    bad = [a for a in inc if 'subprojects/iovt' in a and not a.rstrip('/').endswith('include')]
    assert not bad, 'internal include path handed to the consumer: %s' % bad
PY
  [ -z "$(ls "$p/build/subprojects/iovt/tests" 2>/dev/null)" ] &&
  meson test -C "$p/build" --print-errorlogs
}
check subproject subproject

# --- examples (when the examples/ folder provides its script) -------------------
if [ -f examples/build-and-run.sh ]; then
  check examples bash examples/build-and-run.sh "$prefix"
else
  echo "check-install: examples: no examples/build-and-run.sh (not counted)"
fi
finish
