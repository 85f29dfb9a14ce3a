"""The training pack: every training image in one safetensors file, and decoding it into image banks.

`python -m tcmoa pack --out PATH` packs pretrain/natural and train/ (never eval/): each image, longest
side <= max_side, as JPEG (or PNG) bytes in ONE safetensors file (uint8 tensors + JSON metadata, no
pickle). Raw pixels cannot fit ~45 MiB at a useful size (the medical pairs alone are 172 MiB raw), so
`load_pack` decodes once into device-resident banks (tcmoa.train.image_bank). Grey images stay one
channel in the pack. Roles (as the model): vif A=visible B=infrared; mef A=over B=under; mff A=far
B=near; medical A=MRI B=CT/PET/SPECT.
"""
from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..data_root import DATA_ROOT
from ..imaging import image_files
from ..tasks import ROUTERS
from .image_bank import ImageBank

FORMAT = "tcmoa-pack/1"
GREY_MODES = ("L", "I", "I;16", "1")  # stored as one-channel (greyscale) images


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
