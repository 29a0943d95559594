#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""No thread-local access of the shared libraries goes through __tls_get_addr.

check_tls.py LIB.so...

A shared object built with -fPIC reaches its __thread variables (and
liburcu's reader state, which rcu_read_lock touches) through the general- or
local-dynamic model: a call to __tls_get_addr per access, which the linker
relaxes away only in an executable. So every benchmark that links the
internal archive saw none of it, while libiovt.so paid it on every PSI,
fence and translation (a translate hit 18.6 ns against 14.4 ns built
initial-exec). The library objects are built -ftls-model=initial-exec
(meson.build); this fails if a dynamic-model relocation (DTPMOD64, DTPOFF64,
TLSDESC) comes back — an object built without the flag, a new dependency linked in
whole — and if the library stops being marked STATIC_TLS, which
initial-exec implies and README "Packaging" documents.
"""
import subprocess, sys

# The dynamic models' relocations: general/local dynamic (DTPMOD64,
# DTPOFF64) and TLS descriptors (-mtls-dialect=gnu2), each a call per access.
DYNAMIC = ('R_X86_64_DTPMOD64', 'R_X86_64_DTPOFF64', 'R_X86_64_TLSDESC')

bad = 0
for lib in sys.argv[1:]:
    header = subprocess.run(['readelf', '-hW', lib], capture_output=True, text=True, check=True).stdout
    if 'X86-64' not in header:
        print('%s: not x86-64: these relocation names do not apply' % lib)
        sys.exit(77)  # meson: skipped
    relocs = subprocess.run(['readelf', '-rW', lib], capture_output=True, text=True, check=True).stdout
    dyn = [l for l in relocs.splitlines() if any(k in l for k in DYNAMIC)]
    flags = subprocess.run(['readelf', '-dW', lib], capture_output=True, text=True, check=True).stdout
    static_tls = any('(FLAGS)' in l and 'STATIC_TLS' in l for l in flags.splitlines())
    tpoff = sum('R_X86_64_TPOFF64' in l for l in relocs.splitlines())
    print('%s: %d dynamic-model TLS relocations, %d initial-exec, STATIC_TLS %s'
          % (lib, len(dyn), tpoff, 'yes' if static_tls else 'no'))
    for l in dyn:
        print('  ' + l.strip())
    # The library has thread-locals of its own: none reached initial-exec
    # (tpoff 0) is as wrong as a dynamic one, and STATIC_TLS must be there.
    if dyn or not tpoff or not static_tls:
        bad += 1
sys.exit(1 if bad else 0)
