"""MATLAB-compatible filtering helpers shared by :mod:`tcmoa.metrics`.

Every helper works on 2-D float64 arrays and reproduces one MATLAB idiom exactly
(up to floating-point rounding): ``round``, ``rgb2gray``, ``fspecial('gaussian')``,
``filter2``/``conv2`` with ``'same'`` (zero padding) or ``'valid'``, ``freqspace``
and the ``fft2``/``fftshift`` frequency-domain filtering used by Qcb/Qcv.
"""

from __future__ import annotations

import cv2
import numpy as np

# MATLAB rgb2gray weights: first row of inv of the NTSC YIQ matrix (not 0.299/0.587/0.114).
RGB2GRAY_COEF = np.linalg.inv(
    np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
)[0]


def matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, like MATLAB ``round`` and integer casts."""
    if x.size and x.min() >= 0:
        return np.floor(x + 0.5)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` on uint8 data: weighted sum, rounded and saturated to 0..255."""
    g = rgb[..., 0] * RGB2GRAY_COEF[0] + rgb[..., 1] * RGB2GRAY_COEF[1] + rgb[..., 2] * RGB2GRAY_COEF[2]
    return np.clip(matlab_round(g), 0.0, 255.0)


def gaussian_1d(n: int, sigma: float) -> np.ndarray:
    """1-D factor of ``fspecial('gaussian', n, sigma)`` (the 2-D window is its outer product)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _sep(img: np.ndarray, kx: np.ndarray, ky: np.ndarray, border: int) -> np.ndarray:
    return cv2.sepFilter2D(
        np.ascontiguousarray(img, dtype=np.float64), cv2.CV_64F,
        np.asarray(kx, np.float64), np.asarray(ky, np.float64), borderType=border,
    )


def sep_filter_valid(img: np.ndarray, kx: np.ndarray, ky: np.ndarray | None = None) -> np.ndarray:
    """``filter2(ky' * kx, img, 'valid')`` for a separable odd-sized window (correlation)."""
    ky = kx if ky is None else ky
    hy, hx = (len(ky) - 1) // 2, (len(kx) - 1) // 2
    h, w = img.shape
    if h < len(ky) or w < len(kx):
        raise ValueError(f"image {img.shape} is smaller than the {len(ky)}x{len(kx)} window")
    out = _sep(img, kx, ky, cv2.BORDER_REFLECT_101)
    return out[hy:h - hy, hx:w - hx]


def sep_filter_same_zero(img: np.ndarray, kx: np.ndarray, ky: np.ndarray | None = None) -> np.ndarray:
    """``filter2(ky' * kx, img, 'same')``: correlation with zero padding, odd window."""
    return _sep(img, kx, kx if ky is None else ky, cv2.BORDER_CONSTANT)


def corr_same(img: np.ndarray, kernel: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """3x3 (odd) correlation, output the size of ``img``; zero padding by default."""
    return cv2.filter2D(
        np.ascontiguousarray(img, dtype=np.float64), cv2.CV_64F,
        np.asarray(kernel, np.float64), borderType=border,
    )


def conv2_same(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``conv2(img, kernel, 'same')``: true convolution (flipped kernel), zero padding."""
    return corr_same(img, np.asarray(kernel)[::-1, ::-1])


def box_sum_valid(img: np.ndarray, n: int) -> np.ndarray:
    """Sum over every n x n window ('valid'), via an integral image (exact for dyadic data)."""
    c = np.zeros((img.shape[0] + 1, img.shape[1] + 1))
    c[1:, 1:] = np.cumsum(np.cumsum(img, axis=0), axis=1)
    return c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n]


def freqspace_1d(n: int) -> np.ndarray:
    """One axis of MATLAB ``freqspace``: (-n+1:2:n-1)/n if n is odd, (-n:2:n-2)/n if even."""
    return (np.arange(n, dtype=np.float64) - n // 2) * (2.0 / n)  # freqspace.m's own formula


def freq_radius(h: int, w: int, div: float) -> np.ndarray:
    """r = sqrt(u^2 + v^2) on the ``freqspace`` meshgrid with u scaled by w/div, v by h/div."""
    u = freqspace_1d(w) * (w / div)
    v = freqspace_1d(h) * (h / div)
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)


def freq_filter(img: np.ndarray, response_centered: np.ndarray) -> np.ndarray:
    """Real part of ``ifft2(ifftshift(fftshift(fft2(img)) .* S))`` for a real image.

    ``S`` depends on u^2 + v^2 on the freqspace grid, so it is even modulo the image size and
    MATLAB's complex result is real up to rounding noise; a real FFT pair gives that real part.
    """
    h, w = img.shape
    s = np.fft.ifftshift(response_centered)[:, : w // 2 + 1]
    return np.fft.irfft2(np.fft.rfft2(img) * s, s=(h, w))


def block_reduce_sum(x: np.ndarray, block: int) -> np.ndarray:
    """Per-block sums over non-overlapping block x block tiles, partial tiles zero-padded (blkproc)."""
    h, w = x.shape
    hp, wp = -(-h // block) * block, -(-w // block) * block
    pad = np.zeros((hp, wp), dtype=x.dtype)
    pad[:h, :w] = x
    return pad.reshape(hp // block, block, wp // block, block).sum(axis=(1, 3))


def half_downsample(img: np.ndarray) -> np.ndarray:
    """``imfilter(img, ones(2)/4, 'symmetric', 'same')`` then keep every 2nd pixel (MATLAB anchor)."""
    p = np.pad(img, ((0, 1), (0, 1)), mode="symmetric")
    m = (p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]) * 0.25
    return m[::2, ::2]


def check_2d(*arrays: np.ndarray) -> list[np.ndarray]:
    """Convert to 2-D float64 and check equal shapes and finiteness (ValueError otherwise)."""
    out = [np.asarray(x, dtype=np.float64) for x in arrays]
    for x in out:
        if x.ndim != 2:
            raise ValueError(f"metric functions take 2-D arrays, got shape {x.shape}")
        if not np.isfinite(x.sum()):
            raise ValueError("image contains NaN or infinite values")
    if any(x.shape != out[0].shape for x in out):
        raise ValueError(f"image shapes differ: {[x.shape for x in out]}")
    return out


def hist256(x: np.ndarray) -> np.ndarray:
    """Normalised 256-bin histogram of floor(x) (VIFB's ``X(floor(v)+1)`` indexing, clipped)."""
    idx = np.clip(np.floor(x), 0, 255).astype(np.intp).ravel()
    return np.bincount(idx, minlength=256) / idx.size


def stretch_round(x: np.ndarray) -> np.ndarray:
    """VIFB MI preprocessing: min-max to 0..1 (zeros if flat), then ``int16(x*255)`` as ints."""
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros(x.shape, dtype=np.intp)
    return np.floor((x - lo) / (hi - lo) * 255.0 + 0.5).astype(np.intp)  # MATLAB's op order


def normalize1(x: np.ndarray) -> np.ndarray:
    """Liu's ``normalize1`` (Qcb/Qcv): min-max to 0..255 and round; flat images give zeros, not NaN."""
    lo, hi = x.min(), x.max()
    if hi == lo:
        return x if hi == 0 else np.zeros_like(x)
    return np.floor((x - lo) / (hi - lo) * 255.0 + 0.5)  # MATLAB's operation order
