"""Quality of the bounded token path and of the faster runtimes, on every eval set, in one run.

    python -m benchmarks.token_budget [--root DATA/eval] [--sets vif/tno25 ...] [--limit N] [--out runs/budget]

Variants (Fuser settings): the token path unbounded (token_pixels=None: every eval image runs whole),
bounded at 1, 0.5 and 0.25 MP, and the int8 runtime at 1 MP (the library's default on the CPU). Each fuses every pair of
every set with the shipped model and scores Qabf and VIF (and MEF-SSIM on exposure sets), as
`tcmoa evaluate` does (uint8 results). A pair whose padded size fits a budget runs exactly as
unbounded, so its scores are taken from the unbounded run rather than fused again; the table says
how many pairs each budget changed. "stored" is the shipped model's row in docs/eval/results.csv
(today's published table): the first column checks that the unbounded run reproduces it.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from tcmoa.data_root import DATA_ROOT
from tcmoa.fuse.pipeline import Fuser
from tcmoa.metrics.evaluation import Row, discover_sets, read_csv, run_method, write_csv
from tcmoa.model.checkpoint import load_model

METRICS = ("Qabf", "VIF", "MEF-SSIM")
VARIANTS = {  # label: (token_pixels, runtime)
    "unbounded": (None, "eager"),
    "1 MP": (1 << 20, "eager"),
    "0.5 MP": (1 << 19, "eager"),
    "0.25 MP": (1 << 18, "eager"),
    "int8, 1 MP": (1 << 20, "int8"),  # the library's default on the CPU (DEFAULT_TOKEN_PIXELS, runtime "auto")
}


def affected(fuser: Fuser, sources: list[Path]) -> bool:
    """Whether this fuser's token budget scales the pair down (else it runs exactly as unbounded)."""
    from PIL import Image
    with Image.open(sources[0]) as im:
        w, h = im.size
    return fuser.runner.token_size(h, w, fuser.token_pixels) != (h, w)


def run_variant(label: str, fuser: Fuser, eval_set, unbounded: dict[str, Row] | None, limit: int | None
                ) -> tuple[list[Row], int]:
    """Score one variant on one set, and count the pairs it fused; pairs the budget does not touch reuse
    the unbounded rows."""
    items = eval_set.items[:limit]
    redo = [it for it in items if unbounded is None or fuser.runtime != "eager" or affected(fuser, it[1])]
    rows = run_method(dataclasses.replace(eval_set, items=redo), label, lambda s, e: fuser.fuse(s, e.task).image,
                      None, metrics=METRICS) if redo else []
    done = {r.item for r in rows}
    kept = [dataclasses.replace(unbounded[i], method=label) for i, _ in items if i not in done and unbounded]
    return rows + kept, len(rows)


def table(rows: list[Row], stored: list[Row], sets: list[str], changed: dict[tuple[str, str], int], metric: str) -> str:
    """Per set: the metric's mean for the stored rows (the same items) and each variant, and the pairs each budget fused."""
    labels = list(VARIANTS)
    head = ["set", "stored", *labels, "pairs changed (1 / 0.5 / 0.25 MP)"]
    lines = [f"{metric}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def mean(method_rows: list[Row]) -> str:
        values = [r.scores[metric] for r in method_rows if metric in r.scores]
        return f"{np.mean(values):.4f}" if values else "—"

    for name in sets:
        mine = {v: [r for r in rows if r.set_name == name and r.method == v] for v in labels}
        items = {r.item for r in mine["unbounded"]}
        kept = [r for r in stored if r.set_name == name and r.method.startswith("TC-MoA") and r.item in items]
        counts = " / ".join(str(changed[name, v]) for v in labels[1:4])
        lines.append("| " + " | ".join([name, mean(kept), *(mean(mine[v]) for v in labels), counts]) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run every variant on every set and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=DATA_ROOT / "eval")
    ap.add_argument("--sets", nargs="*", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/token_budget"))
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                    help="which to run besides unbounded (the others' columns stay empty)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(None)
    fusers = {label: Fuser(model, device="cpu", token_pixels=pixels, runtime=runtime)
              for label, (pixels, runtime) in VARIANTS.items()}
    stored = read_csv(Path("docs/eval/results.csv"))
    rows: list[Row] = []
    changed: dict[tuple[str, str], int] = {}
    sets = [s for s in discover_sets(args.root, args.sets) if s.name != "mff/lytro_triples"]  # 3-source scenes: no scores
    for eval_set in sets:
        unbounded, _ = run_variant("unbounded", fusers["unbounded"], eval_set, None, args.limit)
        by_item = {r.item: r for r in unbounded}
        rows += unbounded
        for label in list(VARIANTS)[1:]:
            if label not in args.variants:
                changed[eval_set.name, label] = 0
                continue
            variant_rows, changed[eval_set.name, label] = run_variant(label, fusers[label], eval_set, by_item, args.limit)
            rows += variant_rows
        print(f"{eval_set.name} done", flush=True)
        write_csv(rows, args.out / "rows.csv")
    for metric in METRICS:
        print(table(rows, stored, [s.name for s in sets], changed, metric), end="\n\n")


if __name__ == "__main__":
    main()
