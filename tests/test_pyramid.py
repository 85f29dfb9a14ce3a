"""The Laplacian pyramid (tcmoa/model/pyramid.py) is Burt and Adelson's, with the documented kernel.

These pin the numbers, not only the properties: a pyramid with any other kernel still collapses back
to its input exactly, so the reconstruction tests in test_fusion_head.py cannot see a changed kernel.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tcmoa.model import pyramid

BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16  # the module docstring's (1, 4, 6, 4, 1) / 16


def impulse(size: int = 32, at: tuple[int, int] = (16, 16)) -> torch.Tensor:
    """A (1, 1, size, size) float64 image: 1 at `at`, 0 elsewhere."""
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    x[0, 0, at[0], at[1]] = 1.0
    return x


def reference_blur(x: np.ndarray) -> np.ndarray:
    """The documented blur written out in numpy: BINOMIAL_5 along each axis, mirrored (reflect) borders."""
    p = np.pad(x, 2, mode="reflect")
    h, w = x.shape
    rows = sum(k * p[i:i + h, :] for i, k in enumerate(BINOMIAL_5))
    return sum(k * rows[:, j:j + w] for j, k in enumerate(BINOMIAL_5))


def reference_finest_band(x: np.ndarray) -> np.ndarray:
    """x - up(down(x)) written out: blur, keep even pixels, put them back on a zero grid, 4x blur."""
    low = reference_blur(x)[::2, ::2]
    z = np.zeros_like(x)
    z[::2, ::2] = low
    return x - 4 * reference_blur(z)


def test_the_blur_of_an_impulse_is_the_binomial_kernel():
    # Away from the borders the response to a unit impulse is the kernel itself: its 5 x 5 taps.
    response = pyramid.blur(impulse())[0, 0].numpy()
    np.testing.assert_allclose(response[14:19, 14:19], np.outer(BINOMIAL_5, BINOMIAL_5), rtol=0, atol=1e-15)
    assert abs(response.sum() - 1) < 1e-12 and np.count_nonzero(response) == 25


def test_the_finest_band_of_an_impulse_has_the_binomial_values():
    # By hand: down keeps k(a)k(b) at even offsets a, b in {-2, 0, 2}; up spreads each back with 4 k k,
    # so up(down(x)) at the impulse is 4 (k(-2)^2 + k(0)^2 + k(2)^2)^2 = 4 (38/256)^2, with k = BINOMIAL_5.
    band = pyramid.laplacian(impulse(), 2)[0][0, 0].numpy()
    assert band[16, 16] == pytest.approx(1 - 4 * (38 / 256) ** 2, abs=1e-15)  # 0.911865...
    # A 3-tap (1, 2, 1) / 4 kernel would give 1 - 4 (4/16)^2 = 0.75 here.


def test_one_band_of_a_known_image_matches_the_written_out_pyramid():
    # A smooth ramp plus a checkerboard and an impulse near a border: every pixel of the finest band,
    # borders included, is the documented algorithm's.
    yy, xx = np.mgrid[0:24, 0:36].astype(np.float64)
    image = 0.01 * xx + 0.02 * yy + 0.1 * ((xx + yy) % 2)
    image[1, 2] += 1.0
    band = pyramid.laplacian(torch.from_numpy(image)[None, None], 3)[0][0, 0].numpy()
    np.testing.assert_allclose(band, reference_finest_band(image), rtol=0, atol=1e-12)
