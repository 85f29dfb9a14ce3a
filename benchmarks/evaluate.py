"""Evaluation benchmark: a TC-MoA model and the classical baselines on the eval sets.

    python -m benchmarks.evaluate --model compact --limit 5 --out docs/eval
    python -m benchmarks.evaluate --sets vif/tno25 mef/mefb100          # whole sets, shipped model

The sets are read from --root, by default $TCMOA_DATA/eval (else ../shared/data/eval).

Writes <out>/<task>_<set>.md (methods x metrics, seconds per pair) and <out>/results.csv, and
prints the tables. Seconds per pair: median over pairs of one fusion call on in-memory images.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from tcmoa.metrics.baselines import BASELINES, run_baseline
from tcmoa.model.checkpoint import load_model
from tcmoa.metrics.evaluation import discover_sets, markdown_table, metric_names, run_method, write_csv
from tcmoa.metrics.scores import METRICS
from tcmoa.fuse.pipeline import Fuser
from tcmoa.tasks import get_preset

from .data import DATA_ROOT


def main() -> None:
    """Parse arguments, run every method on every set, write and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DATA_ROOT / "eval", help="the eval/ folder")
    parser.add_argument("--sets", nargs="*", default=None, help="e.g. vif/tno25 (default: all)")
    parser.add_argument("--model", default=None, help="model folder / .pth / preset (default: shipped)")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--limit", type=int, default=None, help="first N items per set")
    parser.add_argument("--metrics", nargs="*", default=None, choices=list(METRICS),
                        help="score only these (default: every metric; Qcb, Qcv and Nabf take half the time)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("docs/eval"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fuser = None
    if args.model != "none":
        model = load_model(args.model)
        fuser = Fuser(model, device=args.device)
        trained = "" if model.info.get("trained") else ", untrained"
        model_label = f"TC-MoA ({model.info.get('name')}{trained})"

    all_rows = []
    for eval_set in discover_sets(args.root, args.sets):
        methods = {name: (lambda src, s, n=name: run_baseline(n, src, get_preset(s.task).router))
                   for name in args.baselines}
        if fuser is not None:
            methods[model_label] = lambda src, s: fuser.fuse(src, s.task).image
        rows = []
        for method, fuse in methods.items():
            bar = partial(tqdm, desc=f"{eval_set.name} {method}", leave=False, unit="pair")
            rows += run_method(eval_set, method, fuse, args.limit, bar, args.metrics)
        all_rows += rows
        table = markdown_table(rows, metric_names(eval_set))
        n_items = min(len(eval_set.items), args.limit or len(eval_set.items))
        text = f"### {eval_set.name} ({n_items} of {len(eval_set.items)} items, task {eval_set.task})\n\n{table}\n"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{eval_set.name.replace('/', '_')}.md").write_text(text)
        print(text, flush=True)
    write_csv(all_rows, args.out / "results.csv")
    print(f"wrote {args.out}/*.md and {args.out / 'results.csv'}")


if __name__ == "__main__":
    main()
