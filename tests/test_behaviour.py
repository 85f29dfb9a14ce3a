"""What a person sees, on the shipped model: glare, clipped exposures, and no token grid.

The pairs are vendored crops of training pairs (tests/data: MSRS 00014N, FusionDN 15; see its
README), so these run in a plain clone. A per-pixel source-weight head ("source_weights") fails all
three: glare ratio 0.17, block-step ratio up to 1.52 at alpha 2 (docs/BENCHMARKS.md, "Behaviour").
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.pixel_replication import replication_factor, smooth_resample
from demo.example_sets import find_examples
from tcmoa.metrics.artifacts import (block_step_ratio, erode, gradient_ratio, grid_prominence, isolated_blocks,
                                     local_contrast, with_glare)
from tcmoa.metrics.baselines import average_fusion, laplacian_pyramid_fusion
from tcmoa.model.checkpoint import load_model
from tcmoa.imaging import bt601_luma, read_image
from tcmoa.fuse.pipeline import Fuser

VENDORED = Path(__file__).resolve().parent / "data"
# The registered examples (the unaligned one needs alignment first: tests/test_prepare.py covers it).
EXAMPLES = [e for e in find_examples() if not e.unaligned]


@pytest.fixture(scope="module")
def fuser(single_thread) -> Fuser:
    model = load_model()
    assert model.info.get("trained"), "the shipped model must be a trained one"
    return Fuser(model)



def test_glare_keeps_the_infrared_structure(fuser):
    ir = read_image(VENDORED / "vif_ir.png")
    vi, core = with_glare(read_image(VENDORED / "vif_vi.png"), bt601_luma(ir))
    fused = fuser.fuse([vi, ir], "vif").image
    assert gradient_ratio(bt601_luma(fused), bt601_luma(ir), core) >= 0.8


def test_a_clipped_exposure_gives_way_to_the_other(fuser):
    over, under = read_image(VENDORED / "mef_over.png"), read_image(VENDORED / "mef_under.png")
    clipped = erode(bt601_luma(over) >= 0.96, 7)
    assert clipped.sum() > 2000  # the crop has a large blown-out region
    fused = fuser.fuse([over, under], "mef").image
    assert gradient_ratio(bt601_luma(fused), bt601_luma(under), clipped) >= 0.8
    assert local_contrast(bt601_luma(fused)) >= local_contrast(bt601_luma(average_fusion([over, under])))


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.task}-{e.name}" for e in EXAMPLES])
def test_no_token_grid_at_any_alpha(fuser, example):
    sources = [read_image(f) for f in example.files]
    # Sources bring block steps of their own, which any fusion that keeps their detail inherits: the
    # Harvard PET/SPECT are 2x nearest-neighbour upsampled (ratio 2.3), the Lytro originals are JPEG. So
    # the ratio's bar is 1.05, or where the sources are blockier, the Laplacian pyramid's ratio on the same
    # sources (it has no token grid) + 5%, capped by the blockiest source's own ratio. The prominence bar
    # asks that no border offset stand out from every other offset (the per-pixel model: up to 1.38).
    own = max(block_step_ratio(bt601_luma(s)) for s in sources)
    bar = max(1.05, min(own, 1.05 * block_step_ratio(bt601_luma(laplacian_pyramid_fusion(sources)))))
    prominence_bar = max(1.03, *(grid_prominence(bt601_luma(s)) for s in sources))
    for alpha in (0.0, 1.0, 2.0, 3.0):  # the whole range (tcmoa.moa.ALPHA_RANGE)
        fused = bt601_luma(fuser.fuse(sources, example.task, alpha=alpha).image)
        assert block_step_ratio(fused) <= bar, (alpha, block_step_ratio(fused), bar)
        assert grid_prominence(fused) <= prominence_bar, (alpha, grid_prominence(fused), prominence_bar)
        assert isolated_blocks(fused, [bt601_luma(s) for s in sources]) == 0, alpha


def test_the_measures_see_what_they_should():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.random((128, 128)), (0, 0), 3)
    assert abs(block_step_ratio(smooth) - 1) < 0.05
    blocky = smooth + np.kron(rng.random((16, 16)), np.ones((8, 8))) * 0.05  # an 8-px grid of offsets
    assert block_step_ratio(blocky) > 1.5 and grid_prominence(blocky) > 1.5
    assert abs(grid_prominence(smooth) - 1) < 0.05
    doubled = np.repeat(np.repeat(smooth[::2, ::2], 2, axis=0), 2, axis=1)  # 2x nearest upsampling, like the PET
    assert block_step_ratio(doubled) > 1.5 and grid_prominence(doubled) < 1.05
    dark = smooth.copy()
    dark[64:72, 64:72] = 0.0
    assert isolated_blocks(dark, [smooth, smooth]) == 1 and isolated_blocks(smooth, [smooth]) == 0
    mask = np.ones_like(smooth, bool)
    assert gradient_ratio(smooth, smooth, mask) == pytest.approx(1.0)
    assert gradient_ratio(np.full_like(smooth, 0.5), smooth, mask) == 0.0
    assert local_contrast(np.full_like(smooth, 0.5)) < 1e-6 < local_contrast(smooth)


def test_pixel_replication_is_found_and_smoothed():
    """benchmarks.pixel_replication's detector: exact k x k replications only; its re-sampling drops the 2-px steps."""
    rng = np.random.default_rng(1)
    native = cv2.GaussianBlur(rng.random((32, 24, 3)), (0, 0), 1.5)
    doubled = np.repeat(np.repeat(native, 2, axis=0), 2, axis=1)
    assert replication_factor(doubled) == 2 and replication_factor(native) == 1
    assert replication_factor(np.repeat(np.repeat(native, 4, axis=0), 4, axis=1)) == 4
    nearly = doubled.copy()
    nearly[5, 5, 0] += 0.01  # one pixel off: not a replication
    assert replication_factor(nearly) == 1
    smooth = smooth_resample(doubled, 2)
    assert smooth.shape == doubled.shape and 0.0 <= smooth.min() <= smooth.max() <= 1.0
    assert block_step_ratio(bt601_luma(doubled)) > 1.5 > 1.1 > block_step_ratio(bt601_luma(smooth))
