"""The bounded token path (tcmoa/fuse/runner.py): the budget is honoured, the full-resolution output is
exact in size and place, it looks like the working-resolution fusion, and every runtime agrees with eager."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmoa.fuse.pipeline import Fuser
from tcmoa.fuse.runner import round_up, token_path_size
from tcmoa.imaging import image_files, read_image, resize_to, to_uint8
from tcmoa.model.checkpoint import load_model

from .conftest import REPO

MSRS = REPO / "demo" / "examples" / "vif" / "msrs_00047N"


@pytest.fixture(scope="module")
def model(single_thread):
    return load_model(None)


@pytest.fixture(scope="module")
def msrs() -> list[np.ndarray]:
    return [read_image(p) for p in sorted(image_files(MSRS).values())]


def scaled(images: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    return [resize_to(im, size) for im in images]


@pytest.mark.parametrize("size", [(1000, 700), (333, 1500), (90, 2000)])
def test_the_token_path_size_fits_the_budget_and_keeps_the_aspect(size):
    budget, m = 300_000, 64
    h, w = token_path_size(size[0], size[1], budget, m)
    assert round_up(h, m) * round_up(w, m) <= budget
    assert abs(h / w - size[0] / size[1]) < 0.02 * size[0] / size[1] + 1 / w
    # the largest such size: 2% more would not fit
    bigger = (int(h * 1.02) + 1, int(w * 1.02) + 1)
    assert round_up(bigger[0], m) * round_up(bigger[1], m) > budget or bigger[0] > size[0]


def test_the_token_path_never_sees_more_than_the_budget(model, msrs):
    seen: list[tuple[int, ...]] = []
    hook = model.patch_embed.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        budget = 96_000
        sources = scaled(msrs, (700, 900))  # 0.63 MP: scaled down to the budget for the token path
        result = Fuser(model, device="cpu", token_pixels=budget).fuse(sources, "vif", maps=True)
    finally:
        hook.remove()
    assert seen and all(h * w <= budget for _, _, h, w in seen), seen
    assert result.image.shape[:2] == (700, 900) and result.settings.token_pixels == budget
    assert result.maps is not None and result.maps.at_image_size(result.maps.prompt_a).shape == (3, 700, 900)
    assert result.maps.source_weight is not None and result.maps.source_weight.shape == (700, 900)


@pytest.mark.parametrize("task", ["vif", "mef"])
def test_the_full_resolution_output_is_exact_in_size_and_place(model, task):
    # Fusing an image with itself gives it back exactly only if every band of both sources lines up:
    # any shift, crop or scale of the head's strips or padding would show.
    rng = np.random.default_rng(3)
    image = resize_to(rng.random((60, 80, 3), dtype=np.float32), (450, 610))  # smooth, odd sizes
    image[100:140, 200:260] = 1.0  # a clipped patch (the clip terms)
    source = image if task == "mef" else image.mean(axis=2)
    fuser = Fuser(model, device="cpu", token_pixels=64 * 64 * 8)  # bounded: 2 extra levels at this size
    out = fuser.fuse([source, source.copy()], task).image
    assert out.shape == source.shape
    np.testing.assert_allclose(out, source, atol=2e-5, rtol=0)


def test_full_resolution_looks_like_the_working_resolution(model, msrs):
    # The app's promise: the download, scaled down, is what the page showed. A bundled pair scaled up
    # 2.5x (1600x1200) against the same pair fused at the working size (640x480 here), both under one
    # token budget, as the app fuses them. docs/BENCHMARKS.md measures every preset at 12 MP.
    fuser = Fuser(model, device="cpu", token_pixels=640 * 512)
    full = fuser.fuse(scaled(msrs, (1200, 1600)), "vif").image
    working = fuser.fuse(msrs, "vif").image
    diff = np.abs(to_uint8(resize_to(full, working.shape[:2])).astype(int) - to_uint8(working).astype(int))
    assert diff.mean() <= 2.0 and np.percentile(diff, 95) <= 8, (diff.mean(), np.percentile(diff, 95))


def test_int8_agrees_with_eager(model, msrs):
    eager = Fuser(model, device="cpu", runtime="eager").fuse(msrs, "vif").image
    int8 = Fuser(model, device="cpu", runtime="int8").fuse(msrs, "vif").image
    diff = np.abs(to_uint8(int8).astype(int) - to_uint8(eager).astype(int))
    assert diff.mean() <= 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))
    assert not torch.equal(torch.from_numpy(int8), torch.from_numpy(eager))  # it is another computation


def test_unknown_runtime_and_bad_budgets_are_clear_errors(model):
    assert Fuser(model, device="cpu").runtime == "int8"  # auto, on the CPU, for a model with an output head
    assert Fuser(load_model("official-tiny"), device="cpu").runtime == "eager"  # official numbers stay exact
    with pytest.raises(ValueError, match="runtime must be one of auto, eager, int8"):
        Fuser(model, device="cpu", runtime="onnx")
    for bad in (100, True, 2.5e6):
        with pytest.raises(ValueError, match="token_pixels must be a whole number of pixels"):
            Fuser(model, device="cpu", token_pixels=bad)  # type: ignore[arg-type]
