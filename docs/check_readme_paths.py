#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""readme-paths: every `build/release/...` path the README and perf/README name
exists in this build once it is built (the path is taken relative to the build
root, so the test means the same in build/release, build/asan, ...). Paths
under docs/ are made by `ninja docs` (a run target; the `docs` test runs
doxygen itself): only the build's docs/ folder is checked.
Usage: check_readme_paths.py SOURCE_ROOT BUILD_ROOT"""
import os
import re
import sys

src, build = sys.argv[1], sys.argv[2]
bad, seen = [], set()
for doc in ('README.md', 'perf/README.md'):
    text = open(os.path.join(src, doc), encoding='utf-8').read()
    for m in re.finditer(r'build/release/([A-Za-z0-9_./-]+[A-Za-z0-9_-])', text):
        rel = m.group(1)
        if rel in seen:
            continue
        seen.add(rel)
        check = 'docs' if rel.startswith('docs/') else rel
        if not os.path.exists(os.path.join(build, check)):
            bad.append(f'{doc}: build/release/{rel}')
if not seen:
    print('readme-paths: no build/release/ path found in the READMEs (the check is broken)')
    sys.exit(1)
for b in bad:
    print(f'readme-paths: missing after the build: {b}')
print(f'readme-paths: {len(seen) - len(bad)} of {len(seen)} paths exist')
sys.exit(1 if bad else 0)
