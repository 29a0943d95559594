#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The exported symbols of an installed-form iovt library against the public API.

check_exports.py --cc CC --headers H... --lib LIB [--lib LIB...]

The public API is every function the installed headers declare at file scope
(preprocessed with only those headers on the include path, so a header that
reaches outside the installed set fails here too). iovt_dpdk_* belong to
libiovt-dpdk, everything else to libiovt. A library may export exactly its
share, plus (libiovt.so only) iovt_internal_* in the IOVT_INTERNAL version
node (engine/glue.h). Works on .so (dynamic symbols, with versions) and .a
(global symbols of the archive). Fails on any extra export and any public
function not exported.
"""
import argparse, os, re, shutil, subprocess, sys, tempfile

def public_functions(cc, headers):
    tmp = tempfile.mkdtemp()
    try:
        for h in headers:
            shutil.copy(h, tmp)
        names = set()
        for h in headers:
            src = os.path.join(tmp, 'use.c')
            with open(src, 'w') as f:
                f.write('#include "%s"\n' % os.path.basename(h))
            out = subprocess.run([cc, '-E', '-I', tmp, src], capture_output=True, text=True)
            if out.returncode:
                sys.exit('abi: %s does not compile alone with only the installed headers:\n%s'
                         % (os.path.basename(h), out.stderr))
            # Keep only the text that comes from the iovt headers themselves.
            mine, text = False, []
            for line in out.stdout.splitlines():
                m = re.match(r'# \d+ "([^"]+)"', line)
                if m:
                    mine = os.path.dirname(m.group(1)) == tmp and not m.group(1).endswith('use.c')
                    continue
                if mine:
                    text.append(line)
            names |= file_scope_functions('\n'.join(text))
        return names
    finally:
        shutil.rmtree(tmp)

def file_scope_functions(text):
    """Names declared as functions at brace depth 0 (not inline bodies, not
    struct members, not typedefs)."""
    names, depth, stmt = set(), 0, ''
    for ch in text:
        if ch == '{':
            if depth == 0:
                stmt += '{'
            depth += 1
            continue
        if ch == '}':
            depth -= 1
            continue
        if depth:
            continue
        if ch == ';':
            s = ' '.join(stmt.split())
            stmt = ''
            if s.startswith('typedef') or '{' in s or s.startswith('static'):
                continue
            m = re.search(r'\b([A-Za-z_]\w*)\s*\(', s)
            if m and not re.search(r'\(\s*\*', s[:m.end()]):
                names.add(m.group(1))
            continue
        stmt += ch
    return names

def exported(lib):
    if lib.endswith('.a'):
        out = subprocess.run(['nm', '-g', '--defined-only', lib], capture_output=True,
                             text=True, check=True).stdout
        return {l.split()[2]: None for l in out.splitlines() if len(l.split()) == 3}
    out = subprocess.run(['readelf', '--dyn-syms', '-W', lib], capture_output=True,
                         text=True, check=True).stdout
    syms = {}
    for l in out.splitlines():
        f = l.split()
        if len(f) < 8 or not f[0].rstrip(':').isdigit():
            continue
        typ, bind, ndx, name = f[3], f[4], f[6], f[7]
        if ndx in ('UND', 'ABS') or bind not in ('GLOBAL', 'WEAK') or typ == 'NOTYPE' and ndx == 'ABS':
            continue
        base, _, ver = name.partition('@')
        syms[base] = ver.lstrip('@') or None
    return syms

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cc', default='cc')
    ap.add_argument('--headers', nargs='+', required=True)
    ap.add_argument('--lib', action='append', required=True)
    a = ap.parse_args()
    api = public_functions(a.cc, a.headers)
    print('abi: %d public functions in %s' % (len(api), ' '.join(os.path.basename(h) for h in a.headers)))
    bad = 0
    for lib in a.lib:
        dpdk = os.path.basename(lib).startswith('libiovt-dpdk')
        want = {n for n in api if n.startswith('iovt_dpdk_') == dpdk}
        got = exported(lib)
        extra, missing = [], sorted(want - set(got))
        for name, ver in sorted(got.items()):
            if name in want:
                if ver is not None and not ver.startswith('IOVT_DPDK_' if dpdk else 'IOVT_0'):
                    extra.append('%s (version %s)' % (name, ver))
                continue
            internal_ok = (not dpdk and name.startswith('iovt_internal_')
                           and ver in (None, 'IOVT_INTERNAL'))
            if not internal_ok:
                extra.append(name if ver is None else '%s@%s' % (name, ver))
        print('abi: %s: %d exported, %d public expected' % (os.path.basename(lib), len(got), len(want)))
        for n in extra:
            print('abi: %s: exported but not public API: %s' % (os.path.basename(lib), n))
        for n in missing:
            print('abi: %s: public but not exported: %s' % (os.path.basename(lib), n))
        bad += len(extra) + len(missing)
    print('abi: %s' % ('ok' if not bad else '%d problems' % bad))
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main())
