"""The numbers tcmoa.align's decision rules were chosen on: training pairs as given, and warped.

    python -m benchmarks.registration --split train --calibrate --limit 40

For each training set (and synthetic focal pairs made from pretrain/natural, as training makes
them: there is no real multi-focus training set), on the pairs as given and on medium and large
warps: what `auto` decided, the quantiles of the numbers it decided on (the corner shift of the
similarity estimate, the relative rise of the edge agreement, the tile consensus), the corner
error of what it applied, and how often misalignment_hint spoke. A rule is good when every pair
as given is left alone and every warped pair is aligned.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from benchmarks.registration import pairs
from benchmarks.registration_protocol import random_warp
from tcmoa.align import POLICIES, default_reference, misalignment_hint
from tcmoa.align.register import decide
from tcmoa.align.structure import Pyramid
from tcmoa.align.transforms import corner_error
from tcmoa.metrics.evaluation import EvalSet


def _quantiles(values: list[float]) -> str:
    if not values:
        return "—"
    q = np.percentile(values, [0, 50, 90, 100])
    return "/".join(f"{v:.2f}" for v in q)


def _case(sources: list[np.ndarray], task: str, strength: str | None, rng: np.random.Generator) -> dict:
    ref_index = default_reference(sources, task)
    mov = 1 - ref_index
    given = list(sources)
    truth = np.eye(3)
    if strength:
        warp = random_warp(sources[mov], strength, rng)
        given[mov], truth = warp.image, warp.truth
    d = decide(Pyramid.of(given[ref_index]), Pyramid.of(given[mov]), "auto", POLICIES[task])
    applied = d.estimate.matrix if d.status == "aligned" and d.estimate is not None else np.eye(3)
    return {"status": d.status, "shift": d.shift, "gain": d.gain, "consensus": d.consensus,
            "error": corner_error(applied, truth, *given[mov].shape[:2]), "hint": misalignment_hint(given, task) is not None}


def _report(name: str, label: str, cases: list[dict]) -> None:
    statuses = Counter(c["status"] for c in cases)
    errors = np.array([c["error"] for c in cases])
    print(f"| {name} | {label} | {len(cases)} | " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
          + f" | {_quantiles([c['shift'] for c in cases])} | {_quantiles([c['gain'] for c in cases])} | "
          f"{_quantiles([c['consensus'] for c in cases])} | {100 * np.mean(errors < 2):.0f}% | "
          f"{100 * np.mean([c['hint'] for c in cases]):.0f}% |", flush=True)


def _focal_pairs(root, n: int) -> list[tuple[str, list[np.ndarray]]]:
    from benchmarks.data import training_pairs
    return [(f"synthetic-{i}", p) for i, p in enumerate(training_pairs(root, "mff", n, max_side=512))]


def calibrate(sets: list[EvalSet], args: argparse.Namespace) -> None:
    """Print the calibration table (quantiles are min/median/90th/max)."""
    print("| set | pairs | n | statuses | shift px | gain | consensus | err < 2 px | hint |")
    print("|---|---|---:|---|---|---|---|---:|---:|")
    groups = [(s.name, s.task, pairs(s, args.limit)) for s in sets]
    if args.split == "train":
        groups.append(("mff/synthetic (pretrain)", "mff", _focal_pairs(args.root, args.limit or 20)))
    for name, task, items in groups:
        for k, strength in enumerate((None, "medium", "large")):
            rng = np.random.default_rng([args.seed, 100 + k])
            cases = [_case(sources, task, strength, rng) for _, sources in items]
            _report(name, strength or "as given", cases)
