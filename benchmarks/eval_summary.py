"""Headline table from an evaluation CSV: the model against the best classical baseline, per set.

    python -m benchmarks.eval_summary                       # reads docs/eval/results.csv
    python -m benchmarks.eval_summary --csv runs/eval/results.csv --metrics Qabf VIF MEF-SSIM
    python -m benchmarks.eval_summary --previous docs/eval/previous_model.csv   # + the model it replaced

For every set and metric: the model's mean, the Average baseline's, the best classical method's
(name and mean) and the margin to it. Means are over the set's scored pairs, as in the per-set tables.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

CLASSICAL = ("average", "laplacian", "mertens")


def means(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{set: {method: {metric: mean}}} over the rows of a results.csv (empty cells skipped)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(path) as f:
        for row in csv.DictReader(f):
            for key, cell in row.items():
                if key not in ("set", "method", "item", "seconds") and cell:
                    values[row["set"]][row["method"]][key].append(float(cell))
    return {s: {m: {k: float(np.mean(v)) for k, v in ms.items()} for m, ms in by.items()} for s, by in values.items()}


def main() -> None:
    """Print the headline markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=Path("docs/eval/results.csv"))
    ap.add_argument("--metrics", nargs="+", default=["Qabf", "VIF", "MEF-SSIM", "SD"])
    ap.add_argument("--previous", type=Path, help="results.csv rows of an earlier model: adds its mean and our change")
    args = ap.parse_args()
    table = means(args.csv)
    previous = means(args.previous) if args.previous else {}
    extra = " previous | ours − previous |" if previous else ""
    print("| set | metric | ours | Average | best classical | ours − best |" + extra)
    print("|---|---|---:|---:|---|---:|" + ("---:|---:|" if previous else ""))
    for name in sorted(table):
        ours = next((m for m in table[name] if m not in CLASSICAL), None)
        for metric in args.metrics:
            if ours is None or metric not in table[name][ours]:
                continue
            classical = {m: table[name][m][metric] for m in CLASSICAL if metric in table[name].get(m, {})}
            best = max(classical, key=lambda m: classical[m])
            mine = table[name][ours][metric]
            line = (f"| {name} | {metric} | {mine:.3f} | {classical['average']:.3f} | {best} {classical[best]:.3f} "
                    f"| {mine - classical[best]:+.3f} |")
            before = next(iter(previous.get(name, {}).values()), {}).get(metric)
            if previous:
                line += f" {before:.3f} | {mine - before:+.3f} |" if before is not None else " — | — |"
            print(line)


if __name__ == "__main__":
    main()
