"""Tiles: every tile size the Fuser accepts covers any image with the promised overlap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmoa import Fuser, get_config
from tcmoa.model.network import TCMoA
from tcmoa.fuse.tiling import Tile, TileBlender, plan_tiles, tile_starts


def check_cover(length: int, tile: int, overlap: int, align: int) -> None:
    starts = tile_starts(length, tile, overlap, align)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length  # both edges reached, nothing past them
    assert starts == sorted(set(starts))
    assert all(s % align == 0 for s in starts[:-1])  # whole tokens (the last tile is edge-anchored)
    for left, right in zip(starts, starts[1:]):
        assert right - left <= tile - overlap, (length, tile, overlap, starts)  # overlap kept, no gap


@pytest.mark.parametrize("align", [8, 16])
def test_starts_cover_every_length_with_the_overlap(align):
    rng = np.random.default_rng(0)
    for _ in range(3000):  # property-style: random lengths, tiles and overlaps the Fuser can produce
        tile = int(rng.integers(1, 160)) * align
        overlap = int(rng.integers(0, tile // 2 // align + 1)) * align
        check_cover(int(rng.integers(1, 5000)), tile, overlap, align)


def test_impossible_tiles_are_a_clear_error():
    with pytest.raises(ValueError, match="cannot overlap its neighbour by 128 px"):
        tile_starts(500, 128, 128, 8)
    with pytest.raises(ValueError, match="must be positive"):
        tile_starts(500, 0, 0, 8)


def test_every_accepted_tile_size_plans_valid_tiles():
    config = get_config("compact")
    m, patch = config.size_multiple, int(config.pixel_patch)
    for requested in range(m, 1300, 8):  # every size validation accepts, from the smallest up
        fuser_tile = requested // m * m
        overlap = min(128 // patch, fuser_tile // 2 // patch) * patch
        for height, width in ((fuser_tile + 1, 3 * fuser_tile + 5), (2000, 37), (fuser_tile, fuser_tile)):
            tiles = plan_tiles(height, width, fuser_tile ** 2, overlap, patch, m)
            covered = np.zeros((height, width), bool)
            for t in tiles:
                covered[t.top:t.top + t.height, t.left:t.left + t.width] = True
            assert covered.all()
    blender = TileBlender(1, 300, 300, 1.0, 32, torch.device("cpu"))
    for t in plan_tiles(300, 300, 64 * 64, 32, 8, 64):
        blender.add(t, torch.ones(1, t.height, t.width))
    assert torch.allclose(blender.result(), torch.ones(1, 300, 300))  # weights normalise everywhere


@pytest.mark.parametrize("tile_size", [64, 96, 128])
def test_small_tiles_fuse(tile_size, single_thread):
    """The reported crash: tiles no bigger than the default 128-px overlap."""
    rng = np.random.default_rng(1)
    pair = [rng.random((150, 200, 3), dtype=np.float32), rng.random((150, 200), dtype=np.float32)]
    fuser = Fuser(TCMoA(get_config("compact")), device="cpu", tile_size=tile_size)
    assert fuser.tile_overlap <= fuser.tile_size // 2
    result = fuser.fuse(pair, "vif", maps=True)
    assert result.image.shape == (150, 200, 3) and np.isfinite(result.image).all()
    assert result.maps is not None
    assert result.maps.prompt_a.shape[-2:] == (19, 25)


@pytest.mark.parametrize("width,height", [(640, 480), (1280, 1024), (1088, 1088), (1632, 1224), (2304, 1728),
                                          (3264, 2448), (4608, 3456), (4000, 4000)])
def test_tiles_cost_what_they_cover(width, height):
    """The reported defect: 1280x1024 ran as two 1024-px tiles, twice the work of one. Now every size up to
    16 MP computes at most 10% more pixels than the image padded to whole windows (the untiled cost)."""
    config = get_config("compact")
    m, patch = config.size_multiple, int(config.pixel_patch)
    fuser = Fuser(TCMoA(config), device="cpu")
    tiles = plan_tiles(height, width, fuser.tile_size ** 2, fuser.tile_overlap, patch, m)
    assert len({(t.height, t.width) for t in tiles}) == 1  # equal tiles: one batch shape, one cost each
    assert all(t.padded_area(m) <= fuser.tile_size ** 2 for t in tiles)  # within the memory budget
    untiled = Tile(0, 0, height, width).padded_area(m)
    assert sum(t.padded_area(m) for t in tiles) <= 1.10 * untiled
    if width * height <= fuser.tile_size ** 2:
        assert len(tiles) == 1
