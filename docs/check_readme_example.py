#!/usr/bin/env python3
"""The README's "Using it" code block must be taken from examples/minimal/minimal.c:
each of its lines, except `/* ... */` elisions, appears in the file, in the same order.
Usage: check_readme_example.py README.md examples/minimal/minimal.c"""
import re, sys

readme, example = sys.argv[1], sys.argv[2]
text = open(readme).read()
m = re.search(r'^## Using it\n.*?```c\n(.*?)^```', text, re.S | re.M)
if not m:
    sys.exit(f'{readme}: no ```c block under "## Using it"')
want = [l.strip() for l in m.group(1).splitlines()]
want = [l for l in want if l and not (l.startswith('/* ...') and l.endswith('*/'))]
have = [l.strip() for l in open(example).read().splitlines()]
i = 0
for n, line in enumerate(want):
    try:
        i = have.index(line, i) + 1
    except ValueError:
        sys.exit(f'{readme}: line {n + 1} of the "Using it" block is not in {example} '
                 f'(after its line {i}): {line!r}')
print(f'readme-example: {len(want)} lines of the README block found in order in {example}')
