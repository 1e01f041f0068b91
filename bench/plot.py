#!/usr/bin/env python3
"""Draws the benchmarks' CSV figures (bench/bench_util.hpp) as PNG charts.

    bench/plot.py [CSV_DIR [PNG_DIR]]

CSV_DIR defaults to build/release/bench/bench-results, PNG_DIR to CSV_DIR.
One PNG per benchmark (<bench>.png), a panel per group of figures: mproc's
bars beside each peer's in the same run, labelled with their values, on a
log scale where the bars differ by more than 30x. Ratio rows (unit "x") are
left to the printed report. `./build.sh bench` runs this; to refresh the
README's charts: bench/plot.py build/release/bench/bench-results docs/img
"""
import csv
import math
import os
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOWER_IS_BETTER = {"ns", "us", "ms", "s"}
MPROC = "#1f77b4"
PEER = "#b0b0b0"
PYTHON = "#ff7f0e"


def read(path):
    groups = OrderedDict()
    bench = os.path.splitext(os.path.basename(path))[0]
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            bench = r["bench"] or bench
            if r["unit"] == "x":
                continue
            try:
                value = float(r["value"])
            except ValueError:
                continue
            if not math.isfinite(value) or value <= 0:
                continue
            groups.setdefault(r["group"] or bench, []).append((r["label"], value, r["unit"]))
    return bench, groups


def colour(label):
    low = label.lower()
    if "mproc" in low:
        return MPROC
    if "python" in low or "pickle" in low:
        return PYTHON
    return PEER


def wrap(text, width=70):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = (line + " " + w).strip()
    if line:
        lines.append(line)
    return "\n".join(lines)


def draw(bench, groups, out_dir):
    if not groups:
        return None
    heights = [0.9 + 0.36 * len(rows) for rows in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], groups.items()):
        labels = [r[0] for r in rows][::-1]
        values = [r[1] for r in rows][::-1]
        units = sorted({r[2] for r in rows})
        ax.barh(range(len(rows)), values, color=[colour(l) for l in labels], height=0.65)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=8)
        better = "lower is better" if units[0] in LOWER_IS_BETTER else "higher is better"
        ax.set_title(wrap(title) + "  (" + better + ")", fontsize=9, loc="left")
        ax.set_xlabel(", ".join(units), fontsize=8)
        log = max(values) / min(values) > 30
        if log:
            ax.set_xscale("log")
            ax.set_xlim(min(values) / 2, max(values) * 8)
        else:
            ax.set_xlim(0, max(values) * 1.25)
        for i, v in enumerate(values):
            ax.text(v * 1.08 if log else v + max(values) * 0.01, i, "%.3g" % v, va="center", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(bench + "  (blue: mproc, grey: C/C++ peers, orange: Python)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, bench + ".png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main():
    csv_dir = sys.argv[1] if len(sys.argv) > 1 else "build/release/bench/bench-results"
    out_dir = sys.argv[2] if len(sys.argv) > 2 else csv_dir
    os.makedirs(out_dir, exist_ok=True)
    names = sorted(n for n in os.listdir(csv_dir) if n.endswith(".csv"))
    if not names:
        print("plot.py: no CSV files in " + csv_dir, file=sys.stderr)
        return 1
    for n in names:
        path = draw(*read(os.path.join(csv_dir, n)), out_dir)
        if path:
            print("wrote " + path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
