"""Import times: how long `import X` takes in a fresh interpreter, for the package's entry points.

    python -m benchmarks.import_time                                # this checkout
    python -m benchmarks.import_time --compare before=/tmp/old      # and another version (the folder holding its tcmoa/)

Each row is the median over --runs fresh interpreters of the time spent in the import statement
alone (interpreter start-up excluded), after one untimed warm-up that writes the bytecode caches.
With --compare, runs of the versions alternate, so machine load affects them alike. The
machine's load average is printed too: timings on a shared machine are only as good as its load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATEMENTS = (
    "import tcmoa",
    "import tcmoa.metrics.vifb",
    "import tcmoa.imaging",
    "import tcmoa.metrics.baselines",
    "import tcmoa.metrics.evaluation",
    "from tcmoa import Fuser, load_model",
    "import tcmoa.cli",
    "import tcmoa.train.fusion_stage",
)
TIMER = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t, 'torch' in __import__('sys').modules)"


def time_import(statement: str, root: Path) -> tuple[float, bool]:
    """Seconds `statement` takes in a fresh interpreter with `root` first on the path, and whether torch was loaded."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what a user sees: cached bytecode
    out = subprocess.run([sys.executable, "-c", TIMER.format(statement)], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1] == "True"


def main() -> None:
    """Time every statement for this checkout (and each --compare), alternating, and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                        help="another version: a column NAME for the tcmoa/ package under DIR (repeatable)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    roots = {name: Path(folder) for name, folder in (c.split("=", 1) for c in args.compare)} | {"now": REPO}
    load = os.getloadavg()
    rows = []
    for statement in STATEMENTS:
        times: dict[str, list[float]] = {name: [] for name in roots}
        torch_loaded = {}
        for name, root in roots.items():
            time_import(statement, root)  # warm-up: bytecode caches
        for _ in range(args.runs):
            for name, root in roots.items():
                seconds, torch_loaded[name] = time_import(statement, root)
                times[name].append(seconds)
        cells = [f"{statistics.median(times[n]):.2f} s{'' if torch_loaded[n] else ' (no torch)'}" for n in roots]
        rows.append(f"| `{statement}` | " + " | ".join(cells) + " |")
    print(f"| import | {' | '.join(roots)} |\n|---|{'---|' * len(roots)}\n" + "\n".join(rows))
    after = os.getloadavg()
    print(f"\nmedian of {args.runs} fresh interpreters; load average {load[0]:.2f} before, {after[0]:.2f} after "
          f"({os.cpu_count()} cores); Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
