"""Registration benchmark: synthetic warps of registered pairs, the registered pairs themselves, and calibration.

    python -m benchmarks.registration                          # every eval set, every strength
    python -m benchmarks.registration --sets vif/tno25 --limit 10 --strengths medium
    python -m benchmarks.registration --strengths medium --fuse --fuse-limit 20   # + Qabf after alignment vs on the truth
    python -m benchmarks.registration --registered-only        # the must: auto leaves every eval source as given
    python -m benchmarks.registration --split train --calibrate --limit 40   # the numbers the rules were chosen on
    python -m benchmarks.registration --speed 5                # seconds on a 640×480 and a 12 MP pair (no data needed)

Per set and strength (benchmarks/registration_protocol.py): the mean corner error (reference px)
of the recovered transform against the truth, the share under 2 px, and the median seconds per
pair, for `auto` (ours), no alignment, OpenCV ECC and SIFT + RANSAC on raw intensities. "vs own"
measures ours against its own estimate of the unwarped pair moved by the truth: how well the
warp is recovered whatever small offset the dataset's own registration carries (it does: several
px on Harvard, LLVIP and MSRS). train/vif/msrs30 is skipped: its infrared frames are deformed
(SuperFusion's registration training data), not registered.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.data import need_data
from benchmarks.registration_protocol import OTHER_CAMERA, STRENGTHS, ecc_baseline, edge_overlay, random_warp, sift_baseline
from tcmoa.align import align_sources, default_reference
from tcmoa.align.estimate import frame_fit
from tcmoa.align.transforms import corner_error
from tcmoa.data_root import DATA_ROOT
from tcmoa.imaging import read_image, save_image
from tcmoa.metrics.evaluation import EvalSet, discover_sets

SKIP = {"vif/msrs30": "infrared frames deformed on purpose (SuperFusion's training data)"}
METHODS = ("ours", "none", "ecc", "sift")


def pairs(eval_set: EvalSet, limit: int | None) -> list[tuple[str, list[np.ndarray]]]:
    """The set's two-source items (read), evenly thinned to `limit`."""
    items = [(i, p) for i, p in eval_set.items if len(p) == 2]
    if limit and len(items) > limit:
        items = [items[k] for k in np.linspace(0, len(items) - 1, limit).round().astype(int)]
    return [(i, [read_image(x) for x in p]) for i, p in items]


def registered_check(eval_set: EvalSet) -> dict:
    """auto on every item as given: how many non-reference sources were left as the very objects given."""
    counts = {"items": 0, "sources": 0, "as_given": 0}
    statuses: defaultdict[str, int] = defaultdict(int)
    changed: list[str] = []
    for item, paths in eval_set.items:
        sources = [read_image(p) for p in paths]
        result = align_sources(sources, "auto", task=eval_set.task)
        counts["items"] += 1
        for rec, given, image in zip(result.sources, sources, result.images):
            if rec.status == "reference":
                continue
            counts["sources"] += 1
            statuses[rec.status] += 1
            if image is given:
                counts["as_given"] += 1
            else:
                changed.append(f"{item}: {rec.note}")
    return {**counts, "statuses": statuses, "changed": changed}


def one_warp(sources: list[np.ndarray], task: str, strength: str, rng: np.random.Generator,
             own: np.ndarray) -> tuple[dict[str, tuple[float, float]], float, dict]:
    """Errors {method: (corner error px, seconds)}, ours against its own estimate, and what the fuse step needs."""
    ref_index = default_reference(sources, task)
    mov_index = 1 - ref_index
    ref = sources[ref_index]
    warp = random_warp(sources[mov_index], strength, rng)
    shape = warp.image.shape[:2]
    given = list(sources)
    given[mov_index] = warp.image
    found: dict[str, tuple[np.ndarray, float]] = {}
    start = time.perf_counter()
    result = align_sources(given, "auto", reference=ref_index, task=task)
    found["ours"] = (result.sources[mov_index].matrix, time.perf_counter() - start)
    found["none"] = (frame_fit(shape, ref.shape[:2]), 0.0)
    for name, run in (("ecc", lambda: ecc_baseline(ref, warp.image, strength == "large")),
                      ("sift", lambda: sift_baseline(ref, warp.image))):
        start = time.perf_counter()
        found[name] = (run(), time.perf_counter() - start)
    errors = {m: (corner_error(mat, warp.truth, *shape), sec) for m, (mat, sec) in found.items()}
    versus_own = corner_error(found["ours"][0], own @ warp.truth, *shape)
    return errors, versus_own, {"result": result, "warp": warp, "ref": ref_index, "mov": mov_index}


def fused_qabf(fuser, sources: list[np.ndarray], info: dict, task: str) -> tuple[float, float, float]:
    """Qabf of the fusion after our alignment, scored against the truly aligned sources and against the sources
    it fused (as the product reports it), and of the fusion on the true alignment."""
    from tcmoa.align.warp import warp_into
    from tcmoa.imaging import to_uint8
    from tcmoa.metrics.scores import evaluate

    ref = sources[info["ref"]]
    truth, _ = warp_into(info["warp"].image, info["warp"].truth, ref)
    ours = info["result"].images[info["mov"]]
    order = [info["ref"], info["mov"]] if info["ref"] == 0 else [info["mov"], info["ref"]]

    def fused(moved: np.ndarray) -> np.ndarray:
        pair = {info["ref"]: ref, info["mov"]: moved}
        return to_uint8(fuser.fuse([pair[i] for i in order], task).image)

    def qabf(image: np.ndarray, scored_on: np.ndarray) -> float:
        metric_sources = [ref if i == info["ref"] else scored_on for i in order]
        return float(evaluate(image, [to_uint8(s) for s in metric_sources], ["Qabf"])["Qabf"])

    after_ours = fused(ours)
    return qabf(after_ours, truth), qabf(after_ours, ours), qabf(fused(truth), truth)


def run_set(eval_set: EvalSet, args: argparse.Namespace, fuser) -> list[dict]:
    """Every strength on the set's pairs: one row per strength with each method's numbers."""
    rows = []
    strengths = [s for s in args.strengths if s not in OTHER_CAMERA or eval_set.task == "vif"]
    items = pairs(eval_set, args.limit)
    own = {i: align_sources(s, "similarity", task=eval_set.task) for i, s in items}
    for strength in strengths:
        rng = np.random.default_rng([args.seed, STRENGTHS.index(strength)])
        errors, seconds, versus_own, qabf = defaultdict(list), defaultdict(list), [], []
        for n, (item, sources) in enumerate(items):
            mov = 1 - default_reference(sources, eval_set.task)
            own_matrix = own[item].sources[mov].matrix if own[item].sources[mov].status == "aligned" else np.eye(3)
            errs, vs_own, info = one_warp(sources, eval_set.task, strength, rng, own_matrix)
            for m, (e, sec) in errs.items():
                errors[m].append(e)
                seconds[m].append(sec)
            versus_own.append(vs_own)
            if fuser is not None and n < args.fuse_limit:
                qabf.append(fused_qabf(fuser, sources, info, eval_set.task))
            if args.overlays and n == 0:
                _save_overlays(args.overlays, eval_set.name, strength, sources, info)
        rows.append({"set": eval_set.name, "strength": strength, "n": len(items), "errors": errors,
                     "seconds": seconds, "own": versus_own, "qabf": qabf})
        print(_row(rows[-1]), flush=True)
    return rows


def _save_overlays(folder: Path, name: str, strength: str, sources: list[np.ndarray], info: dict) -> None:
    ref = sources[info["ref"]]
    before = info["warp"].image
    if before.shape[:2] != ref.shape[:2]:
        from tcmoa.imaging import resize_to
        before = resize_to(before, ref.shape[:2])
    after = info["result"].images[info["mov"]]
    sheet = np.hstack([edge_overlay(ref, before), np.full((ref.shape[0], 8, 3), 255, np.uint8), edge_overlay(ref, after)])
    folder.mkdir(parents=True, exist_ok=True)
    save_image(folder / f"{name.replace('/', '_')}_{strength}.png", sheet.astype(np.float32) / 255)


def _row(r: dict) -> str:
    e, s = r["errors"], r["seconds"]
    cells = [f"{r['set']}", r["strength"], str(r["n"])]
    for m in METHODS:
        vals = np.array(e[m])
        cells.append(f"{vals.mean():.2f} / {100 * np.mean(vals < 2):.0f}%")
    own = np.array(r["own"])
    cells.append(f"{own.mean():.2f} / {100 * np.mean(own < 2):.0f}%" if len(own) else "—")
    cells.append(f"{np.median(s['ours']):.2f}")
    if r["qabf"]:
        q = np.array(r["qabf"])
        truth = q[:, 2].mean()
        cells.append(f"{q[:, 0].mean():.4f} / {q[:, 1].mean():.4f} vs {truth:.4f} "
                     f"({q[:, 0].mean() - truth:+.4f} / {q[:, 1].mean() - truth:+.4f}, n={len(q)})")
    return "| " + " | ".join(cells) + " |"


def speed(runs: int) -> None:
    """Seconds (wall and CPU, median of `runs`) of auto on a 640×480 pair and a 12 MP pair, and of off."""
    import cv2

    from benchmarks.registration_protocol import random_warp as warp_of
    folder = Path(__file__).resolve().parents[1] / "demo" / "examples" / "vif" / "tno_18"
    vi, ir = (read_image(folder / name) for name in ("1_visible.png", "2_infrared.png"))
    print("| pair | as given | warped (medium) | off |\n|---|---:|---:|---:|")
    for label, size in (("640×480", (640, 480)), ("4000×3000 (12 MP)", (4000, 3000))):
        a, b = (cv2.resize(x, size, interpolation=cv2.INTER_CUBIC).clip(0, 1) for x in (vi, ir))
        moved = warp_of(b, "medium", np.random.default_rng(0)).image
        cells = []
        for mode, given in (("auto", [a, b]), ("auto", [a, moved]), ("off", [a, moved])):
            walls, cpus = [], []
            for _ in range(runs):
                w0, c0 = time.perf_counter(), time.process_time()
                align_sources(given, mode)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            cells.append(f"{np.median(walls):.3f} s (CPU {np.median(cpus):.3f} s)")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    """Parse the options and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DATA_ROOT)
    ap.add_argument("--split", default="eval", choices=("eval", "train"))
    ap.add_argument("--sets", nargs="*", help="task/set names (default: all)")
    ap.add_argument("--limit", type=int, help="pairs per set, taken evenly")
    ap.add_argument("--strengths", nargs="+", default=list(STRENGTHS), choices=STRENGTHS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fuse", action="store_true", help="also fuse with the shipped model and compare Qabf")
    ap.add_argument("--fuse-limit", type=int, default=5, help="pairs per set and strength that are fused")
    ap.add_argument("--overlays", type=Path, help="write before/after edge overlays of each set's first pair here")
    ap.add_argument("--registered-only", action="store_true")
    ap.add_argument("--calibrate", action="store_true", help="the decision numbers on registered and warped pairs")
    ap.add_argument("--speed", type=int, metavar="RUNS", help="only time auto and off on a 640×480 and a 12 MP pair")
    args = ap.parse_args()
    if args.speed:
        speed(args.speed)
        return
    sets = [s for s in discover_sets(need_data(args.root / args.split, "registration"), args.sets or None)
            if s.name not in SKIP]
    if args.calibrate:
        from benchmarks.registration_calibrate import calibrate
        calibrate(sets, args)
        return
    print("| set | items | sources left as given | statuses |\n|---|---:|---:|---|")
    for s in sets:
        c = registered_check(s)
        print(f"| {s.name} | {c['items']} | {c['as_given']} / {c['sources']} | "
              + ", ".join(f"{k} {v}" for k, v in sorted(c["statuses"].items())) + " |", flush=True)
        for line in c["changed"]:
            print(f"    changed: {line}")
    if args.registered_only:
        return
    fuser = None
    if args.fuse:
        import tcmoa
        fuser = tcmoa.Fuser(tcmoa.load_model())
    print("\n| set | strength | pairs | ours: err px / <2 px | none | ECC | SIFT+RANSAC | ours vs own | s/pair |"
          + (" Qabf aligned (on the true sources / on its own) vs on the truth |" if args.fuse else ""))
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if args.fuse else ""))
    for s in sets:
        if any(len(p) == 2 for _, p in s.items):  # scenes of three focal planes are checked above only
            run_set(s, args, fuser)


if __name__ == "__main__":
    main()
