"""Training data: a one-file image pack, device-resident image banks, batched crops and task batches.

Pack (`python -m tcmoa pack --out PATH`): all training images, longest side <= max_side, as JPEG
bytes in ONE safetensors file (uint8 tensors + JSON metadata, no pickle): raw pixels cannot fit ~45 MiB
at a useful size (the medical pairs alone are 172 MiB raw), so `load_pack` decodes once into banks.
A bank holds a group's images back to back as (P, 4|8) uint8 rows on the training device (pairs: A RGB
then B RGB, grey replicated, padded to 8 bytes), so one gather crops both sources at the same place.
Roles (as the model): vif A=visible B=infrared; mef A=over B=under; mff A=far B=near; medical A=MRI
B=CT/PET/SPECT. Only pretrain/natural and train/ are read, never eval/.
"""
from __future__ import annotations

import functools
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..imaging import image_files
from ..data_root import DATA_ROOT
from .synthesis import as_generator, rand, synthesize_exposure_pair, synthesize_focus_pair
from ..tasks import ROUTERS, ROUTER_NAMES

FORMAT = "tcmoa-pack/1"
TASK_SCALE = {t.name: t.crop_scale for t in ROUTERS.values()}  # RandomResizedCrop area ranges
RECON_SCALE = (0.2, 1.0)  # MAE-style pre-training crops
GREY_MODES = ("L", "I", "I;16", "1")  # stored as one-channel (greyscale) images


# --- packing ---------------------------------------------------------------------------------
def discover(natural_dir: Path, train_dir: Path) -> dict[str, dict]:
    """Groups to pack: {name: {task, roles, items: [(path_a[, path_b])], sources: {folder: count}}}."""
    for d in (natural_dir, train_dir):
        if "eval" in Path(d).resolve().parts:
            raise ValueError(f"refusing to pack from an eval folder: {d}")
    groups: dict[str, dict] = {}
    if natural_dir.is_dir():
        items = [(p,) for p in image_files(natural_dir).values()]
        groups["natural"] = {"task": None, "roles": ["image"], "items": items,
                             "sources": {f"{natural_dir.parent.name}/{natural_dir.name}": len(items)}}
    for task in ROUTERS.values():  # MFF has no real training pairs: no train/mff folder
        for set_dir in sorted(d for d in (train_dir / task.name).glob("*") if d.is_dir()):
            present = [f for f in task.folders if (set_dir / f).is_dir()]
            if len(present) < 2:
                raise ValueError(f"{set_dir}: needs two of the source folders {', '.join(task.folders)}")
            a, b = present[:2]
            # Tasks with several kinds of source B (medical: ct, pet, spect) get a group per kind.
            name = task.name if len(task.folders) == 2 else f"{task.name}_{b}"
            fa, fb = image_files(set_dir / a), image_files(set_dir / b)
            stems = sorted(fa.keys() & fb.keys())
            if len(stems) != max(len(fa), len(fb)):
                print(f"warning: {set_dir}: {len(fa)} {a} / {len(fb)} {b} files, {len(stems)} pairs")
            grp = groups.setdefault(name, {"task": task.name, "roles": [a, b], "items": [], "sources": {}})
            grp["items"] += [(fa[s], fb[s]) for s in stems]
            grp["sources"][f"{train_dir.name}/{task.name}/{set_dir.name}"] = len(stems)
    return groups


def _encode_item(paths: tuple[Path, ...], max_side: int, quality: int, codec: str, subsampling: int):
    """Encoded bytes of one image or pair (same size, longest side <= max_side), its (h, w) and modes."""
    ims: list[Image.Image] = [Image.open(p) for p in paths]
    w, h = ims[0].size
    r = min(1.0, max_side / max(w, h))
    size = (max(1, round(w * r)), max(1, round(h * r)))
    out, modes = [], ["L" if im.mode in GREY_MODES else "RGB" for im in ims]  # grey stays one channel
    for p, im, mode in zip(paths, ims, modes):
        keep = codec == "jpeg" and im.format == "JPEG" and im.mode == mode and im.size == size
        if keep:  # already a JPEG at the right size: the original bytes, no second generation of loss
            out.append(p.read_bytes())
            continue
        im = im.convert(mode)
        if im.size != size:
            im = im.resize(size, Image.Resampling.LANCZOS)  # antialiased downscale
        buf = io.BytesIO()
        if codec == "jpeg":
            im.save(buf, "JPEG", quality=quality, subsampling=subsampling)
        else:
            im.save(buf, "PNG", compress_level=6)
        out.append(buf.getvalue())
    return out, (size[1], size[0]), modes


def pack(
    out: str | Path, natural_dir: str | Path = DATA_ROOT / "pretrain" / "natural",
    train_dir: str | Path = DATA_ROOT / "train", max_side: int = 1280, mef_max_side: int = 1280,
    quality: int = 85, codec: str = "jpeg", workers: int | None = None, verbose: bool = True,
) -> dict:
    """Pack natural images and train pairs into one safetensors file; returns the metadata dict."""
    from tqdm import tqdm

    groups = discover(Path(natural_dir), Path(train_dir))
    tensors: dict[str, Tensor] = {}
    meta: dict = {"format": FORMAT, "codec": codec, "quality": quality, "groups": {}}
    workers = workers or min(4, os.cpu_count() or 1)
    for name, grp in groups.items():
        side = mef_max_side if name == "mef" else max_side  # few real MEF pairs, small crops (scale 0.2)
        sub = 0 if name.startswith("medical") else 2  # 4:4:4 keeps pseudo-colour PET/SPECT edges crisp
        with ThreadPoolExecutor(workers) as ex:  # PIL releases the GIL while coding
            encode = functools.partial(_encode_item, max_side=side, quality=quality, codec=codec, subsampling=sub)
            res = list(tqdm(ex.map(encode, grp["items"]),
                            total=len(grp["items"]), desc=name, disable=not verbose, leave=False))
        nbytes = 0
        for r, role in enumerate(("a", "b")[: len(grp["roles"])]):
            blobs = [np.frombuffer(enc[r], np.uint8) for enc, _, _ in res]
            offs = np.cumsum([0] + [len(b) for b in blobs])
            tensors[f"{name}.{role}.bytes"] = torch.from_numpy(np.concatenate(blobs))
            tensors[f"{name}.{role}.offsets"] = torch.from_numpy(offs.astype(np.int64))
            nbytes += int(offs[-1])
        sizes = np.array([hw for _, hw, _ in res], np.int32).reshape(-1, 2)
        tensors[f"{name}.sizes"] = torch.from_numpy(sizes)  # (N, 2) (h, w)
        meta["groups"][name] = {
            "task": grp["task"], "roles": grp["roles"], "modes": res[0][2] if res else [], "count": len(res),
            "max_side": side,
            "sources": grp["sources"], "mib": round(nbytes / 2**20, 2),
            "max_hw": sizes.max(0).tolist(), "megapixels": round(float(sizes.prod(1).sum()) / 1e6, 2),
        }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"tcmoa_pack": json.dumps(meta)})
    if verbose:
        print(f"{'group':<15}{'task':<9}{'roles':<12}{'count':>6}{'max h×w':>10}{'Mpx':>8}{'MiB':>8}")
        for name, g in meta["groups"].items():
            print(f"{name:<15}{g['task'] or '-':<9}{'+'.join(g['roles']):<12}{g['count']:>6}"
                  f"{'%d×%d' % tuple(g['max_hw']):>10}{g['megapixels']:>8.1f}{g['mib']:>8.2f}")
        print(f"{out}: {Path(out).stat().st_size / 2**20:.2f} MiB")
    return meta


def read_meta(path: str | Path) -> dict:
    """The JSON metadata of a pack."""
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["tcmoa_pack"])


def load_pack(path: str | Path, device: str | torch.device = "cpu", groups: Sequence[str] | None = None,
              workers: int | None = None) -> dict[str, ImageBank]:
    """Decode a pack once into device-resident banks: {group: ImageBank} (natural 3 channels, pairs 6)."""
    meta, tensors = read_meta(path), load_file(str(path))
    workers = workers or min(16, os.cpu_count() or 1)
    return {name: _decode_group(tensors, name, info, workers, device, str(path))
            for name, info in meta["groups"].items() if groups is None or name in groups}


def _decode_group(tensors: dict[str, Tensor], name: str, info: dict, workers: int, device: str | torch.device,
                  path: str) -> ImageBank:
    """Decode one group of a pack (images in parallel threads) into a bank on `device`."""
    sizes = tensors[f"{name}.sizes"].numpy().astype(np.int64)  # (N, 2)
    roles = ("a", "b")[: len(info["roles"])]
    blobs = [(tensors[f"{name}.{r}.bytes"].numpy(), tensors[f"{name}.{r}.offsets"].numpy()) for r in roles]
    hw = sizes.prod(1)
    start = np.concatenate([[0], np.cumsum(hw)])
    pixels = np.zeros((int(start[-1]), 4 * len(roles)), np.uint8)  # (P, 4|8): the bank's padded rows

    def decode(i: int) -> None:
        for r, (blob, off) in enumerate(blobs):
            a = np.asarray(Image.open(io.BytesIO(blob[off[i]: off[i + 1]].tobytes())))
            if a.shape[:2] != tuple(sizes[i]):
                raise ValueError(f"{path}: {name}[{i}] decodes to {a.shape}, expected {sizes[i]}")
            # (h*w, 1) grey broadcasts into the 3 channels of its role.
            pixels[start[i]: start[i + 1], 3 * r: 3 * r + 3] = a.reshape(int(hw[i]), -1)

    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(decode, range(len(sizes))))
    return ImageBank(torch.from_numpy(pixels).to(device), torch.from_numpy(sizes), name, info, channels=3 * len(roles))


# --- device-resident crops -------------------------------------------------------------------
class ImageBank:
    """Variable-size uint8 images on one device, stored back to back as (P, 4|8) rows for batched gathers."""

    antialias = True  # default of sample(); False is ~4x cheaper (CPU smoke runs), aliasing downscaled crops

    def __init__(self, pixels: Tensor, sizes: Tensor, name: str = "", info: dict | None = None,
                 channels: int | None = None):
        self.channels = channels or pixels.shape[1]  # 3 for single images, 6 for pairs
        width = 4 if self.channels <= 4 else 8
        if pixels.shape[1] != width:  # zero-pad each pixel to 4/8 bytes: one int32/int64 word per gather
            pixels = torch.cat([pixels, pixels.new_zeros(pixels.shape[0], width - pixels.shape[1])], 1)
        self.pixels = pixels.contiguous()  # (P, 4|8) uint8: image i is rows offsets[i] .. +h*w, row-major
        self._words = self.pixels.view(torch.int32 if width == 4 else torch.int64).view(-1)  # (P,)
        self.sizes = sizes.to(pixels.device, torch.int64)  # (N, 2) (h, w)
        hw = self.sizes.prod(1)
        self.offsets = torch.cumsum(hw, 0) - hw  # (N,)
        self.name, self.info = name, info or {}
        s = sizes.cpu().long()  # host copies of the bounds: no device sync per batch
        self.max_h, self.max_w, self.max_area = int(s[:, 0].max()), int(s[:, 1].max()), int(s.prod(1).max())

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], device: str | torch.device = "cpu",
                    name: str = "") -> ImageBank:
        """A bank from (h, w, C) uint8 arrays (all with the same C)."""
        rows = [np.asarray(a, np.uint8).reshape(-1, a.shape[2]) for a in images]
        sizes = torch.tensor([a.shape[:2] for a in images], dtype=torch.int64)
        return cls(torch.from_numpy(np.concatenate(rows)).to(device), sizes, name)

    def __len__(self) -> int:
        return self.sizes.shape[0]

    @property
    def device(self) -> torch.device:
        """The device holding the pixels."""
        return self.pixels.device

    def image(self, i: int) -> Tensor:
        """Image i as (C, h, w) uint8."""
        h, w = self.sizes[i].tolist()
        o = int(self.offsets[i])
        return self.pixels[o: o + h * w, : self.channels].reshape(h, w, -1).permute(2, 0, 1)

    def sample(
        self, batch: int, size: int, scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = True,
        generator: torch.Generator | int | None = None, antialias: bool | None = None, index: Tensor | None = None,
        zoom: tuple[float, float] | None = None,
    ) -> Tensor:
        """Random resized crops of random images (or `index`), (B, C, size, size) float in [0, 1].

        `scale`: crop area / image area (RandomResizedCrop). `zoom` replaces it: crop side / `size` in
        image pixels (capped by the image), so crops show scenes at about the scale they are fused at.
        """
        dev = self.device
        g = as_generator(generator, dev)
        if index is None:
            index = (rand(g, (batch,), dev) * len(self)).long().clamp_(max=len(self) - 1)
        idx = index.to(dev)
        h, w = self.sizes[idx, 0], self.sizes[idx, 1]  # (B,)
        area = (h * w).float()[:, None]  # zoom -> per-image area fractions (B, 1)
        box_scale = scale if zoom is None else tuple(((size * z) ** 2 / area).clamp(max=1.0) for z in zoom)
        x0, y0, cw, ch = _crop_boxes(h.float(), w.float(), box_scale, ratio, g)
        # Supersample k× and box-filter down: antialiasing for downscaled crops, bounded statically.
        widest = max(ratio[1], 1 / ratio[0])
        longest = (size * zoom[1] * math.sqrt(widest) if zoom is not None
                   else min(max(self.max_h, self.max_w), math.sqrt(scale[1] * self.max_area * widest)))
        aa = self.antialias if antialias is None else antialias
        k = max(1, min(4, math.ceil(longest / size - 0.05))) if aa else 1
        n = size * k
        t = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) / n  # (n,) cell centres in [0, 1]
        xs = x0[:, None] + t * cw[:, None] - 0.5  # (B, n) source pixel coordinates (pixel centres at .0)
        ys = y0[:, None] + t * ch[:, None] - 0.5
        if hflip:
            flip = rand(g, (batch, 1), dev) < 0.5
            xs = torch.where(flip, xs.flip(1), xs)  # mirrored sampling grid = flipped crop, all channels
        out = self._bilinear(idx, h, w, ys, xs)  # (B, C, n, n) in [0, 255]
        if k > 1:
            out = F.avg_pool2d(out, k)
        return out.div_(255)

    def _bilinear(self, idx: Tensor, h: Tensor, w: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
        """Bilinear samples (B, C, ny, nx) of images idx at ys (B, ny) × xs (B, nx), edges clamped."""
        b, ny, nx, c = idx.shape[0], ys.shape[1], xs.shape[1], self.channels

        def axis(v: Tensor, n: Tensor):
            f = v.floor()
            i0 = f.long().clamp(min=0)
            top = (n - 1)[:, None]
            return torch.minimum(i0, top), torch.minimum((f.long() + 1).clamp(min=0), top), v - f

        y0, y1, fy = axis(ys, h)
        x0, x1, fx = axis(xs, w)
        base, wb = self.offsets[idx][:, None, None], w[:, None, None]

        def gather(yi: Tensor, xi: Tensor) -> Tensor:
            rows = (base + yi[:, :, None] * wb + xi[:, None, :]).reshape(-1)
            words = self._words.index_select(0, rows)  # one word = one pixel, all channels
            return words.view(torch.uint8).view(b, ny, nx, -1)[..., :c].float()

        fx, fy = fx[:, None, :, None], fy[:, :, None, None]
        top = torch.lerp(gather(y0, x0), gather(y0, x1), fx)
        bot = torch.lerp(gather(y1, x0), gather(y1, x1), fx)
        return torch.lerp(top, bot, fy).permute(0, 3, 1, 2)


def _crop_boxes(h: Tensor, w: Tensor, scale: tuple, ratio: tuple[float, float],
                g: torch.Generator | None, tries: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RandomResizedCrop boxes (x0, y0, cw, ch), each (B,), for images h × w (B,); scale bounds: floats or (B, 1)."""
    b, dev = h.shape[0], h.device
    area = (h * w)[:, None]
    target = area * (scale[0] + (scale[1] - scale[0]) * rand(g, (b, tries), dev))
    lr = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lr[0] + (lr[1] - lr[0]) * rand(g, (b, tries), dev))
    cw, ch = torch.sqrt(target * aspect), torch.sqrt(target / aspect)  # (B, tries)
    ok = (cw <= w[:, None]) & (ch <= h[:, None])
    first = ok.int().argmax(1, keepdim=True)  # first valid try, like torchvision's loop
    cw, ch = cw.gather(1, first)[:, 0], ch.gather(1, first)[:, 0]
    # Fallback (no valid try): the whole image, cut to the nearest allowed aspect ratio.
    fw = torch.minimum(w, h * ratio[1])
    fh = torch.minimum(h, w / ratio[0])
    found = ok.any(1)
    cw, ch = torch.where(found, cw, fw), torch.where(found, ch, fh)
    pos = rand(g, (b, 2), dev)
    return pos[:, 0] * (w - cw), pos[:, 1] * (h - ch), cw, ch


# --- task batches ----------------------------------------------------------------------------
def split_counts(batch: int, weights: Sequence[float]) -> list[int]:
    """Deterministic largest-remainder split of `batch` by weights (no random draw, so no device sync)."""
    total = float(sum(weights))
    quota = [batch * wt / total for wt in weights]
    counts = [int(q) for q in quota]
    for i in sorted(range(len(quota)), key=lambda i: counts[i] - quota[i])[: batch - sum(counts)]:
        counts[i] += 1
    return counts


def _mixed(banks: Sequence[ImageBank], weights: Sequence[float], batch: int, size: int, scale, g,
           zoom: tuple[float, float] | None = None) -> Tensor:
    """Crops from several banks of the same channel count, split by weights, concatenated: (B, C, S, S)."""
    parts = [bk.sample(n, size, scale, generator=g, zoom=zoom) for bk, n in zip(banks, split_counts(batch, weights)) if n]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _device(banks: dict[str, ImageBank]) -> torch.device:
    """The device the banks live on."""
    return next(iter(banks.values())).device


def training_batch(
    banks: dict[str, ImageBank], task: int | str, batch: int, size: int,
    generator: torch.Generator | int | None = None, mef_real_frac: float = 0.5,
    scale: tuple[float, float] | None = None, zoom: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """A fusion batch (A, B) for a task (index or name): each (B, 3, size, size) in [0, 1], model role order."""
    name = ROUTER_NAMES[task] if isinstance(task, int) else task
    g = as_generator(generator, _device(banks))
    sc = scale or TASK_SCALE[name]
    if name == "mef":  # real pairs + exposures synthesised from natural images
        n_real = round(batch * mef_real_frac) if "mef" in banks else 0
        a, b = [], []
        if n_real:
            x = banks["mef"].sample(n_real, size, sc, generator=g, zoom=zoom)
            a.append(x[:, :3])
            b.append(x[:, 3:])
        if batch - n_real:
            nat = banks["natural"].sample(batch - n_real, size, sc, generator=g, zoom=zoom)
            over, under = synthesize_exposure_pair(nat, g)
            a.append(over)
            b.append(under)
        return torch.cat(a), torch.cat(b)
    if name == "mff":  # no real training pairs: complementary defocus of natural images
        far, near, _ = synthesize_focus_pair(banks["natural"].sample(batch, size, sc, generator=g, zoom=zoom), g)
        return far, near
    # Every other task: its real pairs; several groups (medical: CT, PET, SPECT) in proportion to their sizes.
    pairs = [banks[k] for k in sorted(banks) if k == name or k.startswith(f"{name}_")]
    if not pairs:
        raise KeyError(f"no training pairs for task {name!r} in the banks ({', '.join(banks)})")
    x = _mixed(pairs, [len(bk) for bk in pairs], batch, size, sc, g, zoom)
    return x[:, :3], x[:, 3:]


def reconstruction_batch(
    banks: dict[str, ImageBank], batch: int, size: int, generator: torch.Generator | int | None = None,
    natural_frac: float = 0.5, scale: tuple[float, float] = RECON_SCALE,
) -> Tensor:
    """Single images (B, 3, size, size) in [0, 1] for backbone pre-training: natural + frames of train pairs."""
    dev = _device(banks)
    g = as_generator(generator, dev)
    pairs = [banks[k] for k in sorted(banks) if banks[k].channels == 6]
    nat = banks.get("natural")
    n_nat = batch if not pairs else (round(batch * natural_frac) if nat is not None else 0)
    parts = [nat.sample(n_nat, size, scale, generator=g)] if n_nat and nat is not None else []
    if batch - n_nat:
        x = _mixed(pairs, [len(bk) for bk in pairs], batch - n_nat, size, scale, g)  # (n, 6, S, S)
        pick_a = rand(g, (x.shape[0], 1, 1, 1), dev) < 0.5  # either source of the pair
        parts.append(torch.where(pick_a, x[:, :3], x[:, 3:]))
    return torch.cat(parts)


# --- timing ----------------------------------------------------------------------------------
def bench(path: str | Path, device: str = "cpu", batches: int = 100, batch: int = 16, size: int = 224) -> None:
    """Time loading a pack and drawing batches of every kind."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    t0 = time.perf_counter()
    banks = load_pack(path, device)
    sync()
    print(f"load: {time.perf_counter() - t0:.2f} s, " + ", ".join(f"{k} {len(b)}" for k, b in banks.items()))
    g = torch.Generator(device=device).manual_seed(0)
    kinds: list[tuple[str, Callable[[], object]]] = [(t, functools.partial(training_batch, banks, t, batch, size, g))
                                                     for t in ROUTER_NAMES]
    kinds.append(("recon", functools.partial(reconstruction_batch, banks, batch, size, g)))
    for name, fn in kinds:
        fn()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(batches):
            fn()
        sync()
        wall, cpu = (time.perf_counter() - t0) / batches, (time.process_time() - c0) / batches
        print(f"{name:>8}: {1e3 * wall:.1f} ms per {batch}×{size}² batch (process CPU time {1e3 * cpu:.1f} ms)")
