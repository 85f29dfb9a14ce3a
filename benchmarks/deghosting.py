"""Moving content in exposure stacks: ghost energy with and without tcmoa.align.deghost, and its masks' quality.

    python -m benchmarks.deghosting                       # MEFB (reported): 10 stacks, Mertens + Laplacian
    python -m benchmarks.deghosting --fusion model mertens --stacks 6 --static 20   # the shipped model
    python -m benchmarks.deghosting --split train         # FusionDN + synthetic brackets: what was tuned on
    python -m benchmarks.deghosting --speed               # mask time, 640x480 and 12 MP pairs

**Moving stacks.** A person-shaped object (a crop of a pretrain/natural image under a soft alpha: head
and body ellipses, edges blurred) is pasted into every exposure of a stack, at a different place in each
(walking sideways by 18-30% of the width between shots). Its brightness is the reference exposure's: the
crop is histogram-matched to the reference, and mapped into each other exposure by histogram matching of
the reference to that exposure (the scene's own exposure relation; tcmoa's exposure_map is not used to
build the data). The **consistent stack** is the same with the object at the reference's place in every
exposure: what a fusion should show. Real stacks: two-exposure pairs (under, over), each exposure the
reference in turn. Synthetic brackets (`--split train`): a natural image as radiance (sRGB^2.2) seen at
1/4, 1 and 4 times (gamma 1/2.2, clipped, noise sigma 0.01, 8-bit, a random 0.5 px residual shift),
the object pasted in radiance, the middle exposure the reference.

**Ghost energy.** E = mean over the pixels of G, and over the channels, of (F(S) - F(C))^2, where F is a
fusion, C the consistent stack, S the moving stack (E none) or the de-ghosted moving stack
deghost(S, ref, motion_masks(S, ref)) (E deghost), and G the union of the object's footprints (alpha >
0.05) in all exposures. Reduction = 1 - E deghost / E none, over the summed energies of all cases; "oracle"
de-ghosts with the true masks (the footprints, feathered) and bounds what filling alone can do.

**Mask quality.** Pixel precision and recall of mask > 0.5 against the true region of each non-reference
image: its own footprint or the reference's (alpha > 0.5), the pixels where it must give way.
**Static stacks.** The stacks as they are: share of pixels with mask > 0.5, and the change of MEF-SSIM
(tcmoa.metrics, MEFB's definition, against the original sources) that deghosting makes to the fusion.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import cv2
import numpy as np
import torch

from benchmarks.data import evenly, need_data
from tcmoa.align.deghost import deghost, motion_masks
from tcmoa.data_root import DATA_ROOT
from tcmoa.imaging import bt601_luma, image_files, read_image, save_image, shrink_to
from tcmoa.metrics.baselines import laplacian_pyramid_fusion, mertens_fusion, mertens_weights
from tcmoa.metrics.evaluation import discover_sets
from tcmoa.metrics.scores import evaluate

Fusion = Callable[[list[np.ndarray]], np.ndarray]
GROUPS = ("better-exposed reference", "other reference", "synthetic bracket", "all")
T = TypeVar("T")


@dataclass
class MovingStack:
    """A stack with a moving object, its consistent twin, and the object's alpha in every exposure."""

    name: str
    moving: list[np.ndarray]
    consistent: list[np.ndarray]
    alphas: list[np.ndarray]  # (H, W) float32 in [0, 1]: the object's footprint in each moving exposure
    reference: int
    group: str  # how the reference was chosen: "better-exposed reference", "other reference", "synthetic bracket"


def histogram_match(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """values mapped per channel by target's quantile at source's CDF of them (monotone; keeps clipping)."""
    out = np.empty_like(values)
    for c in range(values.shape[-1]):
        s, t = np.sort(source[..., c].ravel()), np.sort(target[..., c].ravel())
        cdf = np.searchsorted(s, values[..., c], side="right") / s.size  # share of source <= value
        out[..., c] = np.interp(cdf, np.linspace(1 / t.size, 1.0, t.size), t)
    return out


def person_alpha(height: int, rng: np.random.Generator) -> np.ndarray:
    """A soft person-like footprint (head and body ellipses) `height` px tall, edges blurred."""
    width = max(4, int(height * rng.uniform(0.35, 0.5)))
    a = np.zeros((height, width), np.uint8)
    head = max(2, height // 8)
    cv2.ellipse(a, (width // 2, head + 1), (max(1, int(head * 0.8)), head), 0, 0, 360, 1, -1)
    cv2.ellipse(a, (width // 2, int(height * 0.6)), (width // 2 - 1, int(height * 0.4) - 1), 0, 0, 360, 1, -1)
    return cv2.GaussianBlur(a.astype(np.float32), (0, 0), max(1.0, height / 80))


def object_patch(path: Path, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random (h, w, 3) crop of an image (resized up when it is smaller)."""
    img = read_image(path, collapse_grey=False)
    h, w = shape
    scale = max(h / img.shape[0], w / img.shape[1], 1.0)
    if scale > 1:
        img = cv2.resize(img, (int(np.ceil(img.shape[1] * scale)), int(np.ceil(img.shape[0] * scale))))
    y, x = rng.integers(0, img.shape[0] - h + 1), rng.integers(0, img.shape[1] - w + 1)
    return img[y : y + h, x : x + w]


def walk_positions(shape: tuple[int, int], obj: tuple[int, int], n: int, reference: int,
                   rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of an object walking sideways: a step of 18-30% of the width between exposures."""
    h, w = shape
    oh, ow = obj
    step = int(w * rng.uniform(0.18, 0.3)) * (1 if rng.random() < 0.5 else -1)
    y = int(rng.integers(max(1, h - oh - h // 10), max(2, h - oh)))  # standing near the bottom
    x0 = (w - ow) // 2 - step * reference
    return [(y, int(np.clip(x0 + step * k, 0, w - ow))) for k in range(n)]


def paste(image: np.ndarray, patch: np.ndarray, alpha: np.ndarray, at: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """image with patch blended in at top-left `at` under alpha; and the full-size alpha."""
    out, full = image.copy(), np.zeros(image.shape[:2], np.float32)
    y, x = at
    h, w = alpha.shape
    full[y : y + h, x : x + w] = alpha
    a = full[..., None] if image.ndim == 3 else full
    src = np.zeros_like(image)
    src[y : y + h, x : x + w] = patch if image.ndim == 3 else patch[..., 0]
    return out * (1 - a) + src * a, full


def better_exposed(stack: list[np.ndarray]) -> int:
    """The exposure with the most pixels neither crushed nor blown (luma in (0.02, 0.98)); the first of a tie."""
    lumas = [bt601_luma(im) if im.ndim == 3 else im for im in stack]
    return int(np.argmax([((y > 0.02) & (y < 0.98)).mean() for y in lumas]))


def moving_real(name: str, stack: list[np.ndarray], reference: int, patch_path: Path, seed: int) -> MovingStack:
    """A real exposure stack with a walking object at the reference's brightness (module docstring)."""
    rng = np.random.default_rng(seed)
    h, w = stack[0].shape[:2]
    alpha = person_alpha(int(h * rng.uniform(0.35, 0.5)), rng)
    ref = np.atleast_3d(stack[reference])
    crop = object_patch(patch_path, alpha.shape, rng)[..., : ref.shape[2]]
    look = histogram_match(crop, crop, ref)  # the crop at the reference's brightness
    places = walk_positions((h, w), alpha.shape, len(stack), reference, rng)
    moving, consistent, alphas = [], [], []
    for k, img in enumerate(stack):
        seen = look if k == reference else histogram_match(look, ref, np.atleast_3d(img))
        m, a = paste(img, seen, alpha, places[k])
        c, _ = paste(img, seen, alpha, places[reference])
        moving.append(m.astype(np.float32))
        consistent.append(c.astype(np.float32))
        alphas.append(a)
    group = "better-exposed reference" if reference == better_exposed(stack) else "other reference"
    return MovingStack(name, moving, consistent, alphas, reference, group)


def camera(radiance: np.ndarray, exposure: float, rng: np.random.Generator, shift: tuple[float, ...]) -> np.ndarray:
    """An 8-bit exposure of a radiance image: gamma 1/2.2, clipped, noise 0.01, shifted by `shift` px."""
    m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
    r = cv2.warpAffine(radiance, m, radiance.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    v = np.clip(r * exposure, 0, 1) ** (1 / 2.2) + rng.normal(0, 0.01, np.shape(r)).astype(np.float32)
    return (np.round(np.clip(v, 0, 1) * 255) / 255).astype(np.float32)


def moving_synthetic(name: str, scene_path: Path, patch_path: Path, seed: int) -> MovingStack:
    """A 3-exposure bracket (1/4, 1, 4) of a natural image, an object walking in its radiance; reference: middle."""
    rng = np.random.default_rng(seed)
    radiance = shrink_to(read_image(scene_path, collapse_grey=False), 512) ** 2.2
    h, w = radiance.shape[:2]
    alpha = person_alpha(int(h * rng.uniform(0.35, 0.5)), rng)
    look = object_patch(patch_path, alpha.shape, rng) ** 2.2
    places = walk_positions((h, w), alpha.shape, 3, 1, rng)
    stack = MovingStack(name, [], [], [], 1, "synthetic bracket")
    for k, exposure in enumerate((0.25, 1.0, 4.0)):
        shift = (0.0, 0.0) if k == 1 else tuple(rng.uniform(-0.5, 0.5, 2))
        noise = int(rng.integers(1 << 30))
        scene, a = paste(radiance, look, alpha, places[k])
        still = paste(radiance, look, alpha, places[1])[0]
        stack.moving.append(camera(scene, exposure, np.random.default_rng(noise), shift))
        stack.consistent.append(camera(still, exposure, np.random.default_rng(noise), shift))
        stack.alphas.append(a)
    return stack


def fusions(names: list[str]) -> dict[str, Fusion]:
    """The fusion functions by name: mertens, laplacian (tcmoa.metrics.baselines), model (the shipped one)."""
    table: dict[str, Fusion] = {
        "mertens": lambda s: mertens_fusion(s, *mertens_weights("mef")),
        "laplacian": lambda s: laplacian_pyramid_fusion(s),
    }
    if "model" in names:
        from tcmoa.fuse.pipeline import Fuser
        from tcmoa.model.checkpoint import load_model

        fuser = Fuser(load_model())
        table["model"] = lambda s: fuser.fuse(s, "mef").image
    return {n: table[n] for n in names}


def true_masks(stack: MovingStack) -> list[np.ndarray]:
    """The region each image must give up (its footprint or the reference's), slightly grown and feathered."""
    ref = stack.alphas[stack.reference]
    out = []
    for k, a in enumerate(stack.alphas):
        region = np.zeros_like(a) if k == stack.reference else cv2.dilate(np.maximum(a, ref), np.ones((5, 5), np.uint8))
        out.append(np.clip(cv2.GaussianBlur(region, (0, 0), 2.0), 0, 1))
    return out


def squared_error(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> tuple[float, int]:
    """Sum over region of the channel-mean squared difference, and the region's pixel count."""
    d = (np.atleast_3d(a) - np.atleast_3d(b)) ** 2
    return float(d.mean(axis=2)[region].sum()), int(region.sum())


@dataclass
class Tally:
    """Ghost energies summed over cases."""

    none: float = 0.0
    deghost: float = 0.0
    oracle: float = 0.0
    pixels: int = 0
    halved: int = 0  # cases whose own reduction is >= 50%
    cases: int = 0

    def add(self, none: float, deghost: float, oracle: float, pixels: int) -> None:
        """Count one case."""
        self.none, self.deghost, self.oracle = self.none + none, self.deghost + deghost, self.oracle + oracle
        self.pixels += pixels
        self.halved += int(deghost <= 0.5 * none)
        self.cases += 1

    def row(self) -> str:
        """The table's cells: energies per pixel of the region, reductions, cases halved."""
        px, none = max(self.pixels, 1), max(self.none, 1e-12)
        return (f"{self.cases} | {self.none / px:.5f} | {self.deghost / px:.5f} | {self.oracle / px:.5f} | "
                f"{1 - self.deghost / none:.1%} | {1 - self.oracle / none:.1%} | {self.halved}/{self.cases}")


def mask_counts(stack: MovingStack, masks: list[np.ndarray]) -> np.ndarray:
    """(true positives, predicted, truly moving) pixels over the non-reference images."""
    counts = np.zeros(3)
    ref = stack.alphas[stack.reference] > 0.5
    for k, (m, a) in enumerate(zip(masks, stack.alphas)):
        if k == stack.reference:
            continue
        pred, truth = m > 0.5, (a > 0.5) | ref
        counts += (np.sum(pred & truth), pred.sum(), truth.sum())
    return counts


def evaluate_moving(stacks: list[MovingStack], methods: dict[str, Fusion], png: Path | None) -> None:
    """Print the masks' precision / recall and the ghost energy per fusion, per kind of case and over all."""
    tallies: dict[tuple[str, str], Tally] = {}
    counts: dict[str, np.ndarray] = {}
    for i, st in enumerate(stacks):
        masks = motion_masks(st.moving, st.reference)
        for group in (st.group, "all"):
            counts[group] = counts.get(group, np.zeros(4)) + (*mask_counts(st, masks), 1)
        cleaned, oracle = deghost(st.moving, st.reference, masks), deghost(st.moving, st.reference, true_masks(st))
        region = np.max(st.alphas, axis=0) > 0.05
        for name, fuse in methods.items():
            truth, plain, fixed = fuse(st.consistent), fuse(st.moving), fuse(cleaned)
            e_none, n = squared_error(plain, truth, region)
            energies = (e_none, squared_error(fixed, truth, region)[0], squared_error(fuse(oracle), truth, region)[0])
            for group in (st.group, "all"):
                tallies.setdefault((name, group), Tally()).add(*energies, n)
            if png is not None and i < 6 and name == next(iter(methods)):
                contact(png / f"deghost_{i}_{st.name.replace('/', '_')}_ref{st.reference}.png", st, masks, plain, fixed)
    groups = [g for g in GROUPS if g in counts]
    print("| cases | masks | precision | recall |\n|---|---:|---:|---:|")
    for group in groups:
        tp, predicted, moving, cases = counts[group]
        print(f"| {group} | {cases:.0f} | {tp / max(predicted, 1):.3f} | {tp / max(moving, 1):.3f} |")
    print("\n| fusion | cases | n | ghost energy, none | deghost | oracle masks | reduction | oracle reduction | cases >= 50% |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in methods:
        for group in groups:
            print(f"| {name} | {group} | {tallies[(name, group)].row()} |")


def evaluate_static(stacks: list[tuple[str, list[np.ndarray]]], methods: dict[str, Fusion]) -> None:
    """Print the masks' coverage on stacks without moving objects, and what deghosting does to MEF-SSIM."""
    shares, changes = [], {n: [] for n in methods}  # type: ignore[var-annotated]
    names = []
    for name, stack in stacks:
        for reference in range(len(stack)):
            names.append(f"{name.split('/')[-1]} ref {reference}")
            masks = motion_masks(stack, reference)
            shares.append(max(float((m > 0.5).mean()) for m in masks))
            cleaned = deghost(stack, reference, masks)
            if all(c is s or np.array_equal(c, s) for c, s in zip(cleaned, stack)):
                for n in methods:
                    changes[n].append(0.0)
                continue
            for n, fuse in methods.items():
                changes[n].append(mef_ssim(fuse(cleaned), stack) - mef_ssim(fuse(stack), stack))
    s = np.asarray(shares)
    print(f"{len(stacks)} static stacks x each reference: mask > 0.5 on {s.mean():.2%} of pixels on average, "
          f"{s.max():.2%} at most; {int((s > 0).sum())} of {s.size} masks not empty")
    print("| fusion | MEF-SSIM change, mean | largest |change| |")
    print("|---|---:|---:|")
    for n, c in changes.items():
        a = np.asarray(c)
        print(f"| {n} | {a.mean():+.5f} | {np.abs(a).max():.5f} |")
    worst = np.argsort(np.abs(np.sum(list(changes.values()), axis=0)))[::-1][:5]
    print("largest changes: " + ", ".join(f"{names[i]} (mask {shares[i]:.1%}: "
                                           + " ".join(f"{changes[n][i]:+.4f}" for n in methods) + ")" for i in worst))


def mef_ssim(fused: np.ndarray, stack: list[np.ndarray]) -> float:
    """MEF-SSIM (MEFB's definition) of a fusion against its sources, all through 8 bits as saved results are."""
    def to255(img: np.ndarray) -> np.ndarray:
        return np.round(np.clip(img, 0, 1) * 255.0)

    return evaluate(to255(fused), [to255(s) for s in stack], ["MEF-SSIM"])["MEF-SSIM"]


def contact(path: Path, stack: MovingStack, masks: list[np.ndarray], plain: np.ndarray, fixed: np.ndarray) -> None:
    """One PNG: the moving stack (top), its masks (middle), the fusion without and with deghosting (bottom)."""
    def rgb(x: np.ndarray) -> np.ndarray:
        return np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x

    rows = [np.concatenate([rgb(x) for x in stack.moving], 1), np.concatenate([rgb(m) for m in masks], 1)]
    bottom = np.concatenate([rgb(plain), rgb(fixed)], 1)
    width = rows[0].shape[1]
    pad = np.zeros((bottom.shape[0], max(0, width - bottom.shape[1]), 3), np.float32)
    rows.append(np.concatenate([bottom, pad], 1)[:, :width])
    save_image(path, np.concatenate(rows, 0))


def real_stacks(root: Path, name: str, n: int | None, max_side: int) -> list[tuple[str, list[np.ndarray]]]:
    """n exposure stacks of a set (all with n None), evenly through it, shrunk to max_side."""
    (eval_set,) = discover_sets(root, [name])
    items = eval_set.items if n is None else evenly(eval_set.items, n)
    return [(f"{name}/{key}", [shrink_to(read_image(p), max_side) for p in paths]) for key, paths in items]


def moving_cases(root: Path, split: str, n: int, synthetic: int, max_side: int) -> list[MovingStack]:
    """The moving stacks of a split: its real pairs with each exposure the reference, plus synthetic brackets."""
    patches = list(image_files(root / "pretrain" / "natural").values())
    name = "mef/mefb100" if split == "eval" else "mef/fusiondn27"
    cases = []
    for i, (key, stack) in enumerate(real_stacks(root / split, name, n, max_side)):
        for reference in range(len(stack)):
            seed = 1000 * i + reference
            cases.append(moving_real(key, stack, reference, patches[(7 * seed + 3) % len(patches)], seed))
    scenes = evenly(patches, 2 * synthetic)
    for i in range(synthetic):
        cases.append(moving_synthetic(f"synthetic/{scenes[2 * i].stem}", scenes[2 * i], scenes[2 * i + 1], i))
    return cases


def timed(fn: Callable[[], T], repeats: int = 3) -> tuple[float, float, T]:
    """The best wall and CPU seconds of `repeats` calls, and the last result (CPU time: the machine is shared)."""
    wall, cpu = [], []
    result = fn()
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu), result


def speed(root: Path) -> None:
    """Print the mask and deghost times of a 640x480 and a 12 MP pair (a FusionDN pair resized, an object pasted)."""
    (_, pair), = real_stacks(root / "train", "mef/fusiondn27", 1, 4000)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    for w, h in ((640, 480), (4000, 3000)):
        stack = [cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) for x in pair]
        stack[1] = paste(stack[1], stack[0][: h // 3, : w // 8], np.ones((h // 3, w // 8), np.float32), (h // 2, w // 2))[0]
        wall, cpu, masks = timed(lambda s=stack: motion_masks(s, 0))  # type: ignore[misc]
        dwall, dcpu, _ = timed(lambda s=stack, m=masks: deghost(s, 0, m))  # type: ignore[misc]
        print(f"{w}x{h} pair: motion_masks {wall:.3f} s wall, {cpu:.3f} s CPU; deghost {dwall:.3f} s wall, {dcpu:.3f} s CPU "
              "(best of 3, after one warm-up)")


def main() -> None:
    """Run the chosen tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DATA_ROOT)
    ap.add_argument("--split", choices=("eval", "train"), default="eval",
                    help="eval: MEFB (report); train: FusionDN + synthetic brackets (tune)")
    ap.add_argument("--stacks", type=int, default=10, help="real stacks with a moving object")
    ap.add_argument("--synthetic", type=int, default=None, help="synthetic brackets (default: 20 on train, 0 on eval)")
    ap.add_argument("--static", type=int, default=None, help="static stacks (default: all of the set)")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--fusion", nargs="+", default=["mertens", "laplacian"], choices=("mertens", "laplacian", "model"))
    ap.add_argument("--png", type=Path, default=None, help="write a few stacks, masks and fusions here")
    ap.add_argument("--speed", action="store_true", help="only the timing")
    args = ap.parse_args()
    root = need_data(args.root, "benchmarks.deghosting")
    if args.speed:
        speed(root)
        return
    methods = fusions(args.fusion)
    synthetic = args.synthetic if args.synthetic is not None else (20 if args.split == "train" else 0)
    if args.png is not None:
        args.png.mkdir(parents=True, exist_ok=True)
    evaluate_moving(moving_cases(root, args.split, args.stacks, synthetic, args.max_side), methods, args.png)
    name = "mef/mefb100" if args.split == "eval" else "mef/fusiondn27"
    evaluate_static(real_stacks(root / args.split, name, args.static, args.max_side), methods)


if __name__ == "__main__":
    main()
