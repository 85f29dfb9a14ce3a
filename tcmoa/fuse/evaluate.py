"""`tcmoa evaluate`: a TC-MoA model and the classical baselines on the eval sets, scored and tabulated.

    tcmoa evaluate --root DATA/eval --model compact --limit 5 --out runs/eval
    tcmoa evaluate --root DATA/eval --sets vif/tno25 mef/mefb100          # whole sets, shipped model

The sets are read from --root (the eval/ folder of the data; default $TCMOA_DATA/eval, else
../shared/data/eval). Writes <out>/<task>_<set>.md (methods x metrics, seconds per pair) and
<out>/results.csv, and prints the tables. Seconds per pair: median over pairs of one fusion call on
in-memory images.
With --merge the rows already in <out>/results.csv stay, except those of the (set, method) pairs
run now: e.g. `--baselines --merge` re-scores only the model and keeps the baselines' rows.
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data_root import DATA_ROOT
from ..metrics.baselines import BASELINES, run_baseline
from ..metrics.evaluation import (EvalSet, FuseFn, discover_sets, markdown_table, metric_names, read_csv, run_method,
                                  write_csv)
from ..metrics.scores import METRICS
from ..model.checkpoint import load_model
from ..tasks import get_preset
from .pipeline import Fuser


def build_parser() -> argparse.ArgumentParser:
    """The command line of `tcmoa evaluate`."""
    parser = argparse.ArgumentParser(prog="tcmoa evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DATA_ROOT / "eval",
                        help="the eval/ folder of the data (default: $TCMOA_DATA/eval, else ../shared/data/eval)")
    parser.add_argument("--sets", nargs="*", default=None, help="e.g. vif/tno25 (default: all)")
    parser.add_argument("--model", default=None, help="model folder / .pth / preset, or 'none' (default: shipped)")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--limit", type=int, default=None, help="first N items per set")
    parser.add_argument("--metrics", nargs="*", default=None, choices=list(METRICS),
                        help="score only these (default: every metric; Qcb, Qcv and Nabf take half the time)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU when present)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("docs/eval"),
                        help="folder for the per-set tables and results.csv (default: docs/eval)")
    parser.add_argument("--merge", action="store_true", help="keep the other rows of <out>/results.csv")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run every method on every set, write and print the tables."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"no eval sets at {args.root}: the research data sets are not in the repository (README, "
                     "'Data and credits'); set $TCMOA_DATA or pass --root")
    torch.set_num_threads(args.threads)

    fuser = None
    if args.model != "none":
        model = load_model(args.model)
        fuser = Fuser(model, device=args.device)
        trained = "" if model.info.get("trained") else ", untrained"
        model_label = f"TC-MoA ({model.info.get('name')}{trained})"

    kept = read_csv(args.out / "results.csv") if args.merge and (args.out / "results.csv").is_file() else []
    all_rows = []
    for eval_set in discover_sets(args.root, args.sets):
        methods: dict[str, FuseFn] = {name: partial(_baseline, name) for name in args.baselines}
        if fuser is not None:
            methods[model_label] = lambda src, s: fuser.fuse(src, s.task).image
        rows = []
        for method, fuse in methods.items():
            bar = partial(tqdm, desc=f"{eval_set.name} {method}", leave=False, unit="pair")
            rows += run_method(eval_set, method, fuse, args.limit, bar, args.metrics)
        rows = [r for r in kept if r.set_name == eval_set.name and r.method not in methods] + rows
        all_rows += rows
        table = markdown_table(rows, metric_names(eval_set))
        n_items = min(len(eval_set.items), args.limit or len(eval_set.items))
        text = f"### {eval_set.name} ({n_items} of {len(eval_set.items)} items, task {eval_set.task})\n\n{table}\n"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{eval_set.name.replace('/', '_')}.md").write_text(text)
        print(text, flush=True)
    done = {r.set_name for r in all_rows}
    write_csv([r for r in kept if r.set_name not in done] + all_rows, args.out / "results.csv")
    print(f"wrote {args.out}/*.md and {args.out / 'results.csv'}")


def _baseline(name: str, sources: list[np.ndarray], eval_set: EvalSet) -> np.ndarray:
    return run_baseline(name, sources, get_preset(eval_set.task).router)
