"""Training data: pack round trip, batched paired crops, exposure/focus synthesis, task batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tcmoa.train.data import (
    ImageBank, discover, load_pack, pack, read_meta, reconstruction_batch, split_counts, training_batch,
)
from tcmoa.train.synthesis import synthesize_exposure_pair, synthesize_focus_pair
from tcmoa.tasks import ROUTERS, VIF, Router

from .conftest import DATA, needs_data


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """A (h, w[, c]) uint8 image with structure at several scales (plus a bright patch)."""
    coarse = torch.from_numpy(rng.random((1, c, 4, 4), dtype=np.float32))
    img = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)[0]
    img = 0.7 * img + 0.3 * torch.from_numpy(rng.random((c, h, w), dtype=np.float32))
    img[:, : h // 4, : w // 4] = 0.95
    a = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return a[..., 0] if c == 1 else a


def write(path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A tiny data root: natural images and vif / mef / medical (ct, pet) pairs, as lossless PNG."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    src: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = {}
    for i, (h, w) in enumerate([(40, 56), (56, 40), (48, 48)]):
        img = smooth_image(rng, h, w, 3)
        src[f"natural/{i}"] = img
        write(root / f"pretrain/natural/n{i}.png", img)
    layout = {"vif/rs": ("vi", 3, "ir", 1), "mef/dn": ("over", 3, "under", 3),
              "medical/harvard_ct": ("mri", 1, "ct", 1), "medical/harvard_pet": ("mri", 1, "pet", 3)}
    for d, (ra, ca, rb, cb) in layout.items():
        for i, (h, w) in enumerate([(36, 50), (44, 32)]):
            a, b = smooth_image(rng, h, w, ca), smooth_image(rng, h, w, cb)
            src[f"{d}/{i}"] = (a, b)
            write(root / f"train/{d}/{ra}/p{i}.png", a)
            write(root / f"train/{d}/{rb}/p{i}.png", b)
    return root, src


@pytest.fixture(scope="module")
def banks(tree, tmp_path_factory):
    root, _ = tree
    out = tmp_path_factory.mktemp("pack") / "pack.safetensors"
    pack(out, root / "pretrain/natural", root / "train", max_side=1000, codec="png", workers=1, verbose=False)
    return load_pack(out, "cpu", workers=1)


def rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a


def test_pack_round_trip(tree, banks):
    _, src = tree
    assert sorted(banks) == ["medical_ct", "medical_pet", "mef", "natural", "vif"]
    assert banks["natural"].channels == 3 and banks["vif"].channels == 6
    for i in range(3):
        np.testing.assert_array_equal(banks["natural"].image(i).permute(1, 2, 0).numpy(), src[f"natural/{i}"])
    for group, d in [("vif", "vif/rs"), ("mef", "mef/dn"), ("medical_ct", "medical/harvard_ct"),
                     ("medical_pet", "medical/harvard_pet")]:
        for i in range(2):
            a, b = src[f"{d}/{i}"]  # A then B, grey replicated to RGB
            got = banks[group].image(i).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(got, np.concatenate([rgb(a), rgb(b)], 2))


def test_pack_metadata_downscale_jpeg(tree, tmp_path):
    root, src = tree
    out = tmp_path / "small.safetensors"
    pack(out, root / "pretrain/natural", root / "train", max_side=28, mef_max_side=28, quality=95,
         workers=1, verbose=False)
    meta = read_meta(out)
    g = meta["groups"]
    assert g["vif"]["roles"] == ["vi", "ir"] and g["mef"]["roles"] == ["over", "under"]
    assert g["medical_pet"]["roles"] == ["mri", "pet"] and g["natural"]["count"] == 3
    assert g["vif"]["sources"] == {"train/vif/rs": 2}
    bk = load_pack(out, "cpu", groups=["natural"], workers=1)["natural"]
    assert len(bk) == 3
    assert bk.sizes.tolist() == [[20, 28], [28, 20], [28, 28]]  # longest side 28, aspect kept
    ref = np.asarray(Image.fromarray(src["natural/0"]).resize((28, 20), Image.Resampling.LANCZOS), np.float32)
    err = bk.image(0).permute(1, 2, 0).numpy() - ref  # JPEG (q95, 4:2:0) of the same resize
    assert np.abs(err).mean() < 10 and abs(err.mean()) < 2


def test_pack_refuses_eval(tmp_path):
    with pytest.raises(ValueError, match="eval"):
        discover(tmp_path / "pretrain/natural", tmp_path / "eval")


def test_a_new_router_task_is_packed_from_its_vocabulary_entry(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(2):
        write(tmp_path / f"train/nir/rgbnir/vi/p{i}.png", smooth_image(rng, 32, 40, 3))
        write(tmp_path / f"train/nir/rgbnir/nir/p{i}.png", smooth_image(rng, 32, 40, 1))
    monkeypatch.setitem(ROUTERS, "nir", Router("nir", VIF, ("vi", "nir"), (0.81, 1.0), 4.0, True))
    groups = discover(tmp_path / "pretrain/natural", tmp_path / "train")
    assert list(groups) == ["nir"] and groups["nir"]["task"] == "nir" and groups["nir"]["roles"] == ["vi", "nir"]
    assert [p.parent.name for p in groups["nir"]["items"][0]] == ["vi", "nir"]
    write(tmp_path / "train/nir/broken/vi/p0.png", smooth_image(rng, 32, 40, 3))
    with pytest.raises(ValueError, match="needs two of the source folders vi, nir"):
        discover(tmp_path / "pretrain/natural", tmp_path / "train")


def pair_bank(n: int = 3) -> tuple[ImageBank, list[np.ndarray]]:
    """Pairs whose B is a fixed affine colour map of A, so aligned crops satisfy b = a/2 + 0.25."""
    rng = np.random.default_rng(1)
    imgs = []
    for h, w in [(30, 45), (50, 34), (40, 40)][:n]:
        a = smooth_image(rng, h, w, 3)
        imgs.append(np.concatenate([a, (a.astype(np.float32) / 2 + 63.75).round().astype(np.uint8)], 2))
    return ImageBank.from_arrays(imgs), imgs


def test_crops_shape_range_and_alignment():
    bank, _ = pair_bank()
    x = bank.sample(12, 24, scale=(0.2, 1.0), generator=0)
    assert x.shape == (12, 6, 24, 24) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    # Bilinear sampling is linear: same crop position for A and B keeps b = a/2 + 0.25 (up to rounding).
    assert (x[:, 3:] - (x[:, :3] / 2 + 0.25)).abs().max() < 1.5 / 255


def test_full_crop_is_exact_and_antialiased_halving():
    img = smooth_image(np.random.default_rng(2), 32, 32, 3)
    bank = ImageBank.from_arrays([img])
    ref = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    x = bank.sample(2, 32, scale=(1, 1), ratio=(1, 1), hflip=False, generator=0)
    assert (x - ref).abs().max() < 1e-6
    x = bank.sample(1, 16, scale=(1, 1), ratio=(1, 1), hflip=False, generator=0)  # 2× supersampled
    assert (x - F.avg_pool2d(ref, 2)).abs().max() < 1e-6


def test_hflip_flips_both_sources():
    bank, _ = pair_bank()
    plain = bank.sample(16, 20, hflip=False, generator=3)
    flipped = bank.sample(16, 20, hflip=True, generator=3)  # same images and boxes, flips drawn after
    same = (flipped - plain).abs().amax((1, 2, 3)) < 1e-6
    mirrored = (flipped - plain.flip(-1)).abs().amax((1, 2, 3)) < 1e-6
    assert bool((same | mirrored).all()) and same.any() and mirrored.any() and not (same & mirrored).any()


def test_exposure_pair():
    bank = ImageBank.from_arrays([smooth_image(np.random.default_rng(4), 48, 48, 3)])
    img = bank.sample(8, 32, generator=0)
    over, under = synthesize_exposure_pair(img, 0)
    assert over.shape == under.shape == img.shape
    assert over.min() >= 0 and over.max() <= 1 and under.min() >= 0 and under.max() <= 1
    m, mo, mu = img.mean((1, 2, 3)), over.mean((1, 2, 3)), under.mean((1, 2, 3))
    assert bool((mo > m).all() and (mu < m).all())
    assert ((over == 1).float().mean((1, 2, 3)) > 0.02).all()  # saturated highlights in every sample


def grad_energy(x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean squared horizontal+vertical differences over a (B,1,H,W) boolean region, per sample."""
    gx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(1, keepdim=True)[..., :-1, :]
    gy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(1, keepdim=True)[..., :, :-1]
    r = region[..., :-1, :-1].float()
    return ((gx + gy) * r).sum((1, 2, 3)) / r.sum((1, 2, 3)).clamp(min=1)


def test_focus_pair():
    img = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # sharp texture everywhere
    far, near, mask = synthesize_focus_pair(img, 5)
    assert far.shape == near.shape == img.shape and mask.shape == (6, 1, 64, 64)
    assert mask.min() >= 0 and mask.max() <= 1
    inside, outside = mask > 0.99, mask < 0.01
    assert (inside.float().mean((1, 2, 3)) > 0.05).all() and (outside.float().mean((1, 2, 3)) > 0.05).all()
    assert bool((grad_energy(near, inside) > 3 * grad_energy(far, inside)).all())
    assert bool((grad_energy(far, outside) > 3 * grad_energy(near, outside)).all())


def test_task_batches_shapes_and_determinism(banks):
    tasks: list[int | str] = [0, 1, 2, 3, "vif", "medical"]
    for task in tasks:
        a, b = training_batch(banks, task, 5, 16, torch.Generator().manual_seed(7))
        assert a.shape == b.shape == (5, 3, 16, 16)
        assert a.min() >= 0 and a.max() <= 1 and b.min() >= 0 and b.max() <= 1
        a2, b2 = training_batch(banks, task, 5, 16, torch.Generator().manual_seed(7))
        assert torch.equal(a, a2) and torch.equal(b, b2)
        a3, _ = training_batch(banks, task, 5, 16, torch.Generator().manual_seed(8))
        assert not torch.equal(a, a3)
    a, b = training_batch(banks, "vif", 4, 16, 0)
    assert torch.equal(b[:, 0], b[:, 1]) and torch.equal(b[:, 1], b[:, 2])  # infrared is grey
    x = reconstruction_batch(banks, 7, 16, 3)
    assert x.shape == (7, 3, 16, 16) and torch.equal(x, reconstruction_batch(banks, 7, 16, 3))


def test_split_counts():
    assert split_counts(16, [160, 245, 333]) == [4, 5, 7]
    assert split_counts(5, [1, 1]) in ([3, 2], [2, 3]) and sum(split_counts(7, [0.2, 0.3, 0.5])) == 7
    assert split_counts(3, [1, 0]) == [3, 0]


@needs_data(DATA / "train")
def test_real_data_smoke(tmp_path):
    """A few real train files: pack, load, one batch per task and a reconstruction batch."""
    def link(rel: str, n: int) -> None:
        for p in sorted((DATA / rel).iterdir())[:n]:
            (tmp_path / rel).mkdir(parents=True, exist_ok=True)
            (tmp_path / rel / p.name).symlink_to(p)

    link("pretrain/natural", 2)
    for rel in ["train/vif/msrs30/vi", "train/vif/msrs30/ir", "train/mef/fusiondn27/over",
                "train/mef/fusiondn27/under", "train/medical/harvard_pet/mri", "train/medical/harvard_pet/pet"]:
        link(rel, 1)
    out = tmp_path / "real.safetensors"
    meta = pack(out, tmp_path / "pretrain/natural", tmp_path / "train", max_side=96, mef_max_side=96,
                workers=1, verbose=False)
    assert {k: g["count"] for k, g in meta["groups"].items()} == {
        "natural": 2, "vif": 1, "mef": 1, "medical_pet": 1}
    banks = load_pack(out, "cpu", workers=1)
    for task in range(4):
        a, b = training_batch(banks, task, 4, 32, task)
        assert a.shape == b.shape == (4, 3, 32, 32) and 0 <= float(a.min()) and float(b.max()) <= 1
    a, b = training_batch(banks, "medical", 2, 32, 0)
    assert torch.equal(a[:, 0], a[:, 2])  # MRI grey, PET colour
    assert reconstruction_batch(banks, 4, 32, 0).shape == (4, 3, 32, 32)


def test_zoom_crops_show_the_scene_at_its_own_scale():
    # A horizontal ramp of 0.25 grey levels per pixel over 1024 px: a zoom-1 crop keeps that slope,
    # a zoom-2 crop doubles it (two image pixels per crop pixel), whatever the image's size.
    ramp = np.tile((np.arange(1024) / 4).astype(np.uint8)[None, :, None], (600, 1, 3))
    bank = ImageBank.from_arrays([ramp])
    for zoom, slope in ((1.0, 0.25), (2.0, 0.5)):
        crops = bank.sample(8, 64, zoom=(zoom, zoom), ratio=(1.0, 1.0), hflip=False, generator=0) * 255
        measured = float(crops[..., 8:-8].diff(dim=-1).mean())
        assert abs(measured - slope) < 0.03, (zoom, measured)
    # A zoom range wider than the image falls back to the whole image.
    small = ImageBank.from_arrays([ramp[:40, :40]])
    assert small.sample(2, 64, zoom=(2.0, 3.0), generator=0).shape == (2, 3, 64, 64)
