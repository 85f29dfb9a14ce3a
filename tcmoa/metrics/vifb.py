"""Image-fusion quality metrics in the VIFB conventions (vectorised numpy/OpenCV ports).

Metric functions take 2-D float64 arrays on the 0..255 scale (``fused`` first, then ``a, b``
or a list of sources); tcmoa.metrics.scores.evaluate takes whole uint8 / 0..255 images, picks grey or
VIFB per-channel mode and returns ``{name: value}``. Definitions follow VIFB's MATLAB code
(MI in nats and SSIM summed over both sources, SF on the H x 3W colour layout, VIFB's odd
PSNR/RMSE), Tang's ``vifp_mscale`` (VIF) and ``analysis_nabf`` (Nabf), and MEFB's
``metricsMEF_SSIM``. docs/CONVENTIONS.md sets these conventions beside the training losses' ones.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from . import matlab as mf

if TYPE_CHECKING:
    import torch

__all__ = [
    "entropy", "standard_deviation", "spatial_frequency", "average_gradient", "edge_intensity",
    "mutual_information", "psnr", "rmse", "qabf", "vifb_ssim", "vifb_ssim_each", "cross_entropy", "qcb", "qcv",
    "vifp", "vif", "nabf", "mef_ssim_scales", "mefb_mef_ssim", "reference_psnr",
]

_EPS = np.finfo(np.float64).eps
_SOBEL_X = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])  # VIFB h3 / Qcv flt1
_SOBEL_Y = np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])  # VIFB h1 / fspecial('sobel')


# ----------------------------------------------------------------------------- no-reference


def entropy(fused: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of the 256-bin histogram of floor(fused)."""
    (f,) = mf.check_2d(fused)
    p = mf.hist256(f)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # no -0.0 for flat images


def standard_deviation(fused: np.ndarray) -> float:
    """SD: population standard deviation (VIFB's "Variance")."""
    (f,) = mf.check_2d(fused)
    return float(np.sqrt(((f - f.mean()) ** 2).sum() / f.size))


def spatial_frequency(fused: np.ndarray) -> float:
    """SF: sqrt(RF^2 + CF^2), both sums divided by M*N (VIFB); colour callers pass H x 3W."""
    (f,) = mf.check_2d(fused)
    rf = (np.diff(f, axis=1) ** 2).sum() / f.size
    cf = (np.diff(f, axis=0) ** 2).sum() / f.size
    return float(np.sqrt(rf + cf))


def average_gradient(fused: np.ndarray) -> float:
    """AG: sum of sqrt((gx^2 + gy^2)/2) with MATLAB ``gradient``, over (M-1)(N-1)."""
    (f,) = mf.check_2d(fused)
    if min(f.shape) < 2:
        raise ValueError("average_gradient needs at least 2 rows and 2 columns")
    gy, gx = np.gradient(f)
    return float(np.sqrt((gx * gx + gy * gy) / 2.0).sum() / ((f.shape[0] - 1) * (f.shape[1] - 1)))


def edge_intensity(fused: np.ndarray) -> float:
    """EI: mean Sobel magnitude, ``imfilter(.., fspecial('sobel'), 'replicate')``."""
    (f,) = mf.check_2d(fused)
    gx = mf.corr_same(f, _SOBEL_Y, cv2.BORDER_REPLICATE)
    gy = mf.corr_same(f, _SOBEL_Y.T, cv2.BORDER_REPLICATE)
    return float(np.sqrt(gx * gx + gy * gy).mean())


# ----------------------------------------------------------------------------- information


def _ent(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mi(x: np.ndarray, f: np.ndarray) -> float:
    a, b = mf.stretch_round(x).ravel(), mf.stretch_round(f).ravel()
    joint = np.bincount(a * 256 + b, minlength=65536)
    return _ent(np.bincount(a, minlength=256)) + _ent(np.bincount(b, minlength=256)) - _ent(joint)


def mutual_information(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """MI (nats): MI(A,F) + MI(B,F) on min-max stretched, rounded images (VIFB)."""
    f, a, b = mf.check_2d(fused, a, b)
    return _mi(a, f) + _mi(b, f)


def cross_entropy(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """CE (bits): mean over sources of sum p_X log2(p_X/p_F) over bins where both are nonzero."""
    f, a, b = mf.check_2d(fused, a, b)
    pf = mf.hist256(f)

    def ce(x: np.ndarray) -> float:
        px = mf.hist256(x)
        m = (px > 0) & (pf > 0)
        return float((px[m] * np.log2(px[m] / pf[m])).sum())

    return (ce(a) + ce(b)) / 2.0


def _vifb_mse(x: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(((x - f) ** 2).sum()) / f.size)


def rmse(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """RMSE as VIFB computes it: mean over sources of sqrt(sum((X-F)^2))/(M*N)."""
    f, a, b = mf.check_2d(fused, a, b)
    return (_vifb_mse(a, f) + _vifb_mse(b, f)) / 2.0


def psnr(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """PSNR as VIFB computes it: 20*log10(255/sqrt(rmse)) with VIFB's non-MSE "mse"."""
    v = rmse(fused, a, b)
    return math.inf if v == 0 else 20.0 * math.log10(255.0 / math.sqrt(v))


def reference_psnr(image: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB of an image against its ground truth, both float [0, 1] (arrays or tensors, not moved)."""
    mse = float(((image - reference) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


# ----------------------------------------------------------------------------- structural


def vifb_ssim(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SSIM(A,F) + SSIM(B,F): 11x11 Gaussian (sigma 1.5), 'valid', standard constants (VIFB)."""
    ssim_a, ssim_b = vifb_ssim_each(fused, a, b)
    return ssim_a + ssim_b


def vifb_ssim_each(fused: np.ndarray, *refs: np.ndarray) -> list[float]:
    """SSIM(R,F) for every reference R, as `vifb_ssim` computes it (F's local statistics shared)."""
    f, *planes = mf.check_2d(fused, *refs)
    g = mf.gaussian_1d(11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    muf = mf.sep_filter_valid(f, g)
    muf2 = muf * muf
    sff = mf.sep_filter_valid(f * f, g) - muf2
    out = []
    for x in planes:
        mux = mf.sep_filter_valid(x, g)
        mux2, muxf = mux * mux, mux * muf
        sxx = mf.sep_filter_valid(x * x, g) - mux2
        sxf = mf.sep_filter_valid(x * f, g) - muxf
        m = ((2 * muxf + c1) * (2 * sxf + c2)) / ((mux2 + muf2 + c1) * (sxx + sff + c2))
        out.append(float(m.mean()))
    return out


def _qabf_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx, sy = mf.conv2_same(x, _SOBEL_X), mf.conv2_same(x, _SOBEL_Y)
    g = np.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    alpha = np.where(zero, np.pi / 2, np.arctan(sy / np.where(zero, 1.0, sx)))
    return g, alpha


def _qabf_q(gx: np.ndarray, ax: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
    safe_gx, safe_gf = np.where(gx == 0, 1.0, gx), np.where(gf == 0, 1.0, gf)
    # g_F when the strengths are equal: a bug of the original code, kept for parity.
    G = np.where(gx > gf, gf / safe_gx, np.where(gx == gf, gf, gx / safe_gf))
    A = 1.0 - np.abs(ax - af) / (np.pi / 2)
    qg = 0.9994 / (1.0 + np.exp(-15.0 * (G - 0.5)))
    qa = 0.9879 / (1.0 + np.exp(-22.0 * (A - 0.8)))
    return qg * qa


def qabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf (Xydeas-Petrovic) with VIFB's conv2 Sobel, atan orientation and 255x input scale."""
    f, a, b = mf.check_2d(fused, a, b)
    # VIFB scores 255*im2double(double(x)), i.e. 255x the 0..255 image; only the equal-strength
    # bug branch (G = g_F) notices the scale.
    (ga, aa), (gb, ab), (gf, af) = (_qabf_grad(255.0 * x) for x in (a, b, f))
    den = (ga + gb).sum()
    num = (_qabf_q(ga, aa, gf, af) * ga + _qabf_q(gb, ab, gf, af) * gb).sum()
    return float(num / den) if den > 0 else math.nan


def _nabf_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gv = mf.corr_same(x, _SOBEL_X / 8.0, cv2.BORDER_REFLECT_101)
    gh = mf.corr_same(x, -_SOBEL_Y / 8.0, cv2.BORDER_REFLECT_101)
    g = np.sqrt(gh * gh + gv * gv)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))
    return g, alpha, np.where(g >= 2.0, g ** 1.5, 0.001)


def _nabf_q(gx: np.ndarray, ax: np.ndarray, gf: np.ndarray, af: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        G = np.where((gx == 0) | (gf == 0), 0.0, np.minimum(gx, gf) / np.maximum(gx, gf))
    A = np.abs(np.abs(ax - af) - np.pi / 2) * 2 / np.pi
    qg = 0.9999 / (1.0 + np.exp(-19.0 * (G - 0.5)))
    qa = 0.9995 / (1.0 + np.exp(-22.0 * (A - 0.5)))
    return np.sqrt(qg * qa)


def nabf(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nabf: Shreyamsha Kumar's modified fusion-artefact measure (lower is better)."""
    f, a, b = mf.check_2d(fused, a, b)
    (ga, aa, wa), (gb, ab, wb), (gf, af, _) = (_nabf_grad(x) for x in (a, b, f))
    na = (gf > ga) & (gf > gb)
    num = (na * ((1 - _nabf_q(ga, aa, gf, af)) * wa + (1 - _nabf_q(gb, ab, gf, af)) * wb)).sum()
    return float(num / (wa + wb).sum())


# ----------------------------------------------------------------------------- perceptual


def qcb(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qcb (Chen-Blum): CSF-filtered local-contrast preservation, higher is better (VIFB)."""
    f, a, b = (mf.normalize1(x) for x in mf.check_2d(fused, a, b))
    h, w = f.shape
    r = mf.freq_radius(h, w, 30.0)
    csf = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    t = np.arange(-15, 16, dtype=np.float64)
    g2, g4 = (np.exp(-(t * t) / (2 * s * s)) for s in (2.0, 4.0))

    def masked_contrast(x: np.ndarray) -> np.ndarray:
        y = mf.freq_filter(x, csf)  # unnormalised Gaussians, zero-padded 'same' correlation:
        with np.errstate(divide="ignore", invalid="ignore"):  # flat images give NaN, as MATLAB
            c = np.abs(mf.sep_filter_same_zero(y, g2, g2 / (8 * np.pi))
                       / mf.sep_filter_same_zero(y, g4, g4 / (32 * np.pi)) - 1.0)
        c2 = c * c
        return c2 * c / (c2 + 1e-4)

    ca, cb, cf = (masked_contrast(x) for x in (a, b, f))
    with np.errstate(divide="ignore", invalid="ignore"):
        qaf = np.where(ca < cf, ca / cf, cf / ca)
        qbf = np.where(cb < cf, cb / cf, cf / cb)
        lam = ca * ca / (ca * ca + cb * cb)
    return float((lam * qaf + (1 - lam) * qbf).mean())


def qcv(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qcv (Chen-Varshney): saliency-weighted CSF-filtered difference, lower is better (VIFB)."""
    f, a, b = (mf.normalize1(x) for x in mf.check_2d(fused, a, b))
    r = mf.freq_radius(f.shape[0], f.shape[1], 8.0)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    lam, dis = [], []
    for x in (a, b):
        gx, gy = mf.corr_same(x, _SOBEL_X), mf.corr_same(x, _SOBEL_X.T)
        g2 = gx * gx + gy * gy
        lam.append(mf.block_reduce_sum(g2 * g2 * np.sqrt(g2), 16))  # sum of g^5 per block
        d = mf.freq_filter(x - f, csf)  # MATLAB's tiny imaginary part is rounding noise
        dis.append(mf.block_reduce_sum(d * d, 16) / 256.0)
    den = (lam[0] + lam[1]).sum()  # 0 for flat sources (MATLAB: NaN)
    return float((lam[0] * dis[0] + lam[1] * dis[1]).sum() / den) if den > 0 else math.nan


def vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Sheikh-Bovik multiscale pixel-domain VIFp(ref, dist) (``vifp_mscale``, sigma_n^2 = 2)."""
    ref, dist = mf.check_2d(ref, dist)
    if min(ref.shape) < 41:
        raise ValueError(f"VIF needs images of at least 41x41 pixels, got {ref.shape}")
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = mf.gaussian_1d(n, n / 5.0)
        if scale > 1:
            ref = mf.sep_filter_valid(ref, win)[::2, ::2]
            dist = mf.sep_filter_valid(dist, win)[::2, ::2]
        mu1, mu2 = mf.sep_filter_valid(ref, win), mf.sep_filter_valid(dist, win)
        s1 = np.maximum(mf.sep_filter_valid(ref * ref, win) - mu1 * mu1, 0.0)
        s2 = np.maximum(mf.sep_filter_valid(dist * dist, win) - mu2 * mu2, 0.0)
        s12 = mf.sep_filter_valid(ref * dist, win) - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        low1 = s1 < 1e-10
        g[low1], sv[low1], s1[low1] = 0.0, s2[low1], 0.0
        low2 = s2 < 1e-10
        g[low2], sv[low2] = 0.0, 0.0
        neg = g < 0
        sv[neg], g[neg] = s2[neg], 0.0
        sv[sv <= 1e-10] = 1e-10
        num += np.log10(1.0 + g * g * s1 / (sv + 2.0)).sum()
        den += np.log10(1.0 + s1 / 2.0).sum()
    return float(num / den) if den > 0 else 1.0  # 0/0 (flat reference) -> 1, as CDDFuse


def vif(fused: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """VIF as in VIF-task papers: VIFp(A,F) + VIFp(B,F)."""
    return vifp(a, fused) + vifp(b, fused)


# Ma, Zeng and Wang's mef_ms_ssim with its defaults, as MEFB runs it. The training form
# (tcmoa.train.multiscale_losses.differentiable_mefb_mef_ssim) reads these same constants.
MEF_SSIM_PATCH = 11  # side of the square patches and of the Gaussian window, in pixels
MEF_SSIM_WINDOW = mf.gaussian_1d(MEF_SSIM_PATCH, 1.5)  # 1-D factor of fspecial('gaussian', 11, 1.5)
MEF_SSIM_C = (0.03 * 255) ** 2  # K = 0.03 on the 0..255 scale
MEF_SSIM_CONTRAST_FLOOR = 0.001  # added to each patch's contrast so flat patches do not divide by 0
MEF_SSIM_MAX_EXPONENT = 10.0  # cap of the structure weights' exponent: 10 already acts as a maximum
_MEF_SSIM_RAW_WEIGHTS = (0.0448, 0.2856, 0.3001)  # MS-SSIM's first 3 scale weights, finest first
MEF_SSIM_SCALE_WEIGHTS = tuple(w / sum(_MEF_SSIM_RAW_WEIGHTS) for w in _MEF_SSIM_RAW_WEIGHTS)  # sum 1
MEF_SSIM_MIN_SIDE = MEF_SSIM_PATCH * 2 ** (len(MEF_SSIM_SCALE_WEIGHTS) - 1)  # the coarsest scale holds a patch


def _mef_ssim_level(seq: list[np.ndarray], f: np.ndarray) -> float:
    """One scale of Ma et al.'s ``mef_ssim`` (11x11 windows), vectorised over patch positions."""
    n, k_n = MEF_SSIM_PATCH, len(seq)
    nn = float(n * n)
    s1 = [mf.box_sum_valid(x, n) for x in seq]
    mu = [s / nn for s in s1]
    prod = {(k, l): mf.box_sum_valid(seq[k] * seq[l], n) for k in range(k_n) for l in range(k, k_n)}
    cov = {kl: p - s1[kl[0]] * s1[kl[1]] / nn for kl, p in prod.items()}  # <x_k - mu_k, x_l - mu_l>
    norms = [np.sqrt(np.maximum(cov[(k, k)], 0.0)) for k in range(k_n)]
    ed = [v + MEF_SSIM_CONTRAST_FLOOR for v in norms]
    ysq = sum(cov[(k, l)] * (1.0 if k == l else 2.0) for k, l in cov)  # ||sum_k x_k - mean||^2
    R = (np.sqrt(np.maximum(ysq, 0.0)) + _EPS) / (sum(norms) + _EPS)
    R = np.where(R > 1, 1 - _EPS, np.where(R < 0, _EPS, R))
    p = np.minimum(np.tan(np.pi / 2 * R), MEF_SSIM_MAX_EXPONENT)
    wts = [(e / n) ** p + _EPS for e in ed]
    wsum = sum(wts)
    coef = [wk / wsum / e for wk, e in zip(wts, ed)]  # r = sum_k coef_k (x_k - mu_k)
    rnorm = np.sqrt(np.maximum(sum(coef[k] * coef[l] * c * (1.0 if k == l else 2.0)
                                   for (k, l), c in cov.items()), 0.0))
    scale = np.where(rnorm > 0, np.maximum.reduce(ed) / np.where(rnorm > 0, rnorm, 1.0), 1.0)
    g = MEF_SSIM_WINDOW
    gx = [mf.sep_filter_valid(x, g) for x in seq]
    gf = mf.sep_filter_valid(f, g)
    mu1 = scale * sum(c * (gk - m) for c, gk, m in zip(coef, gx, mu))
    er2 = 0.0
    for k, l in cov:
        gkl = mf.sep_filter_valid(seq[k] * seq[l], g) - mu[l] * gx[k] - mu[k] * gx[l] + mu[k] * mu[l]
        er2 = er2 + coef[k] * coef[l] * gkl * (1.0 if k == l else 2.0)
    sig1 = scale * scale * er2 - mu1 * mu1
    sig2 = mf.sep_filter_valid(f * f, g) - gf * gf
    erf = scale * sum(c * (mf.sep_filter_valid(x * f, g) - m * gf) for c, x, m in zip(coef, seq, mu))
    sig12 = erf - mu1 * gf
    return float(((2 * sig12 + MEF_SSIM_C) / (sig1 + sig2 + MEF_SSIM_C)).mean())


def mef_ssim_scales(fused: np.ndarray, sources: Sequence[np.ndarray]) -> list[float]:
    """MEF-SSIM at each of ``mef_ms_ssim``'s 3 scales, finest first (grey 0..255 images)."""
    if len(sources) < 2:
        raise ValueError("MEF-SSIM needs at least 2 source images")
    f, *seq = mf.check_2d(fused, *sources)
    if min(f.shape) < MEF_SSIM_MIN_SIDE:
        raise ValueError(f"MEF-SSIM needs images of at least {MEF_SSIM_MIN_SIDE}x{MEF_SSIM_MIN_SIDE} pixels, got {f.shape}")
    q = []
    for level in range(len(MEF_SSIM_SCALE_WEIGHTS)):
        if level:
            seq, f = [mf.half_downsample(x) for x in seq], mf.half_downsample(f)
        q.append(_mef_ssim_level(seq, f))
    return q


def mefb_mef_ssim(fused: np.ndarray, sources: Sequence[np.ndarray]) -> float:
    """MEF-SSIM (Ma, Zeng, Wang 2015): 3-scale ``mef_ms_ssim`` on grey 0..255 images (MEFB)."""
    return float(np.prod(np.asarray(mef_ssim_scales(fused, sources)) ** np.asarray(MEF_SSIM_SCALE_WEIGHTS)))
