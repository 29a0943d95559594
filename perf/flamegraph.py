#!/usr/bin/env python3
"""Folded stacks ("a;b;c COUNT" lines) -> a flame graph SVG (stdlib only).

  flamegraph.py [--title T] STACKS.folded > flame.svg

One box per function per call path: the stacks are folded by symbol
(stackcollapse-perf.awk strips the instruction offsets), so a function is
never split by where in it the sample landed. Width = share of samples;
hover a box for its name, samples and share. Boxes narrower than 0.1 % of
the width are left out (their time still counts in the parent).
"""
import html
import sys
import zlib

W, ROW, FONT, MIN_FRAC = 1200, 16, 11, 0.001


def load(path):
    root = {"n": 0, "kids": {}}
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        node = root
        node["n"] += n
        for f in stack.split(";"):
            node = node["kids"].setdefault(f, {"n": 0, "kids": {}})
            node["n"] += n
    return root


def colour(name):
    h = zlib.crc32(name.encode())
    return "rgb(%d,%d,%d)" % (205 + h % 50, 80 + (h >> 8) % 130, 40 + (h >> 16) % 40)


def main():
    args = sys.argv[1:]
    title = "flame graph"
    if len(args) >= 2 and args[0] == "--title":
        title, args = args[1], args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    root = load(args[0])
    total = root["n"] or 1
    boxes, depth = [], 0

    def walk(node, x, d):
        nonlocal depth
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] / total
            if w >= MIN_FRAC:
                boxes.append((name, x, d, w, kid["n"]))
                depth = max(depth, d + 1)
                walk(kid, x, d + 1)
            x += w

    walk(root, 0.0, 0)
    top = 40
    height = top + depth * ROW + 20
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="monospace" '
           'font-size="%d">' % (W, height, FONT),
           '<rect width="100%%" height="100%%" fill="#f8f8f0"/>',
           '<text x="%d" y="20" text-anchor="middle" font-size="14">%s (%d samples)</text>'
           % (W // 2, html.escape(title), root["n"])]
    for name, x, d, w, n in boxes:
        px, pw = x * (W - 20) + 10, w * (W - 20)
        y = height - 20 - (d + 1) * ROW
        label = html.escape(name)
        out.append('<g><title>%s (%d samples, %.2f%%)</title><rect x="%.1f" y="%d" width="%.1f" '
                   'height="%d" fill="%s" rx="2"/>' % (label, n, 100.0 * n / total, px, y, pw,
                                                      ROW - 1, colour(name)))
        chars = int(pw / (FONT * 0.62))
        if chars >= 3:
            text = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (px + 2, y + ROW - 4, html.escape(text)))
        out.append("</g>")
    out.append("</svg>")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
