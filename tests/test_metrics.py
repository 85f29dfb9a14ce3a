"""Tests for tcmoa.metrics: VIFB conformance fixture plus behavioural checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tcmoa.imaging import MIN_SIDE
from tcmoa.metrics import matlab as mf
from tcmoa.metrics import scores
from tcmoa.metrics import vifb as M

from .conftest import MEF_SSIM_FIXTURE, REPO, VIFB_FIXTURE, fixture_file

FIXTURE = VIFB_FIXTURE
ENTRIES = json.loads(fixture_file(FIXTURE, "expected.json").read_text())
MEF_SSIM_CASES = json.loads(fixture_file(MEF_SSIM_FIXTURE, "expected.json").read_text())["cases"]
VIFB_NAMES = ["EN", "SD", "SF", "AG", "MI", "PSNR", "RMSE", "Qabf", "SSIM", "CE", "EI", "Qcb", "Qcv"]


def _load(rel: str) -> np.ndarray:
    im: Image.Image = Image.open(FIXTURE / rel)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    return np.asarray(im)


def printed_half_unit(value: float) -> float:
    """Half a unit in the 5th significant digit: VIFB's values are printed to 5 digits."""
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - 4)


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e['scene']}-{e['method']}" for e in ENTRIES])
def test_vifb_fixture(entry: dict) -> None:
    """Every VIFB metric rounds to the value VIFB's MATLAB toolbox printed.

    The tolerance is the printing's own: half a unit in the 5th significant digit (2% slack for float
    rounding), i.e. 5e-6 to 5e-5 relative. Observed on all 20 entries: at most 1.00 half-units (MI)
    and 4.3e-5 relative (Qcv). A 1% change of one constant (VIFB SSIM's C2 0.03 -> 0.0302) moves
    SSIM by ~1e-3 relative, 25-30 half-units.
    """
    fused, vi, ir = _load(entry["fused"]), _load(entry["vi"]), _load(entry["ir"])
    got = scores.evaluate(fused, [vi, ir], list(entry["expected"]))
    assert set(got) == set(VIFB_NAMES)
    bad = {k: (got[k], v) for k, v in entry["expected"].items() if abs(got[k] - v) > 1.02 * printed_half_unit(v)}
    assert not bad, f"metric mismatches (got, expected): {bad}"


def test_the_minimum_side_is_the_smallest_every_metric_is_defined_for() -> None:
    """tcmoa.imaging.MIN_SIDE (the one minimum of the library, the CLI and the app) is what the metrics need."""
    side = MIN_SIDE
    a = 128 + 90 * _texture((side, side), 1)
    b = 128 + 90 * _texture((side, side), 2)
    res = scores.evaluate((a + b) / 2, [a, b])
    assert list(res) == list(scores.METRICS) and all(math.isfinite(v) for v in res.values())
    assert M.MEF_SSIM_MIN_SIDE == MIN_SIDE  # the largest of the metrics' minimums (VIF needs 41)
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE}x{MIN_SIDE} pixels"):
        scores.evaluate((a + b)[1:, 1:] / 2, [a[1:, 1:], b[1:, 1:]], ["MEF-SSIM"])


# ----------------------------------------------------------------------------- synthetic data


def _texture(shape: tuple[int, int], seed: int, blur: float = 2.0) -> np.ndarray:
    """Smooth random texture in [-1, 1]."""
    n = np.random.default_rng(seed).standard_normal(shape)
    t = cv2.GaussianBlur(n, (0, 0), blur)
    return t / np.abs(t).max()


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey sources A, B and their average F, float 0..255, 96 x 112."""
    a = 128 + 90 * _texture((96, 112), 1)
    b = 128 + 90 * _texture((96, 112), 2, 4.0)
    return a, b, (a + b) / 2


@pytest.fixture(scope="module")
def exposure_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(full-detail scene, under-exposed, over-exposed), 96 x 128.

    Stylised exposure pair: the dark exposure keeps the scene detail only on the right
    (its shadows on the left are crushed to 10% contrast), the bright one only on the left,
    with a smooth transition. The full-detail scene is the ideal fusion.
    """
    detail = 60 * _texture((96, 128), 3, 1.5)
    m = 0.1 + 0.8 / (1 + np.exp(-(np.arange(128) - 64) / 8.0))[None, :]
    return np.round(128 + detail), np.round(70 + m * detail), np.round(190 + (1 - m) * detail)


# ----------------------------------------------------------------------------- registry / API


def test_registry() -> None:
    """METRICS is ordered, complete and carries the direction / source flags."""
    assert list(scores.METRICS) == VIFB_NAMES + ["VIF", "MEF-SSIM", "Nabf"]
    lower = {n for n, info in scores.METRICS.items() if not info.higher_is_better}
    assert lower == {"RMSE", "CE", "Qcv", "Nabf"}
    no_src = {n for n, info in scores.METRICS.items() if not info.needs_sources}
    assert no_src == {"EN", "SD", "SF", "AG", "EI"}
    assert all(info.name == n and callable(info.func) for n, info in scores.METRICS.items())


def test_evaluate_returns_all_metrics(pair) -> None:
    """Default names give every metric, as finite floats."""
    a, b, f = pair
    res = scores.evaluate(f, [a, b])
    assert list(res) == list(scores.METRICS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())


def test_uint8_and_float_agree(pair) -> None:
    """uint8 input and the same values as float64 give identical scores."""
    a, b, f = (np.clip(np.round(x), 0, 255).astype(np.uint8) for x in pair)
    r8 = scores.evaluate(f, [a, b])
    rf = scores.evaluate(f.astype(np.float64), [a.astype(np.float32), b.astype(np.float64)])
    assert r8 == pytest.approx(rf, rel=1e-12)


# ----------------------------------------------------------------------------- MATLAB idioms


def test_matlab_helpers() -> None:
    """rgb2gray weights/rounding, round-half-away, freqspace grids, blkproc and 2x2 decimation."""
    assert mf.RGB2GRAY_COEF == pytest.approx([0.298936021293775, 0.587043074451121,
                                              0.114020904255103], abs=1e-12)
    assert mf.rgb2gray(np.array([[[255.0, 0, 0], [0, 255, 0], [0, 0, 255]]])).tolist() == [[76, 150, 29]]
    assert mf.matlab_round(np.array([0.5, 1.5, 2.5, -0.5])).tolist() == [1, 2, 3, -1]
    assert mf.freqspace_1d(4).tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert mf.freqspace_1d(5) == pytest.approx([-0.8, -0.4, 0.0, 0.4, 0.8])
    assert mf.block_reduce_sum(np.ones((17, 33)), 16).tolist() == [[256, 256, 16], [16, 16, 1]]
    x = np.arange(1.0, 10.0).reshape(3, 3)
    assert mf.half_downsample(x).tolist() == [[3.0, 4.5], [7.5, 9.0]]
    for shape in [(9, 12), (10, 7), (8, 8)]:  # odd and even sizes: MATLAB's fftshift round trip
        img = np.random.default_rng(0).uniform(0, 255, shape)
        s = np.exp(-mf.freq_radius(*shape, 2.0))
        ref = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(img)) * s))
        assert np.abs(ref.imag).max() < 1e-9
        assert mf.freq_filter(img, s) == pytest.approx(ref.real, abs=1e-9)


def test_qabf_keeps_equal_strength_bug() -> None:
    """F = A = B: equal strengths take G = g_F (VIFB scales by 255), so Qg saturates at 0.9994."""
    a = 128 + 90 * _texture((40, 44), 5)
    qa_max = 0.9879 / (1 + math.exp(-22 * 0.2))
    assert M.qabf(a, a, a) == pytest.approx(0.9994 * qa_max, rel=1e-9)


# ----------------------------------------------------------------------------- VIF


def _vifp_literal(ref: np.ndarray, dist: np.ndarray) -> float:
    """Direct port of vifp_mscale.m with 2-D windows and sliding-window 'valid' filtering."""
    def filt(x, w):
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(x, w.shape), w)

    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        t = np.arange(n) - (n - 1) / 2
        w = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * (n / 5) ** 2))
        w /= w.sum()
        if scale > 1:
            ref, dist = filt(ref, w)[::2, ::2], filt(dist, w)[::2, ::2]
        mu1, mu2 = filt(ref, w), filt(dist, w)
        s1 = np.maximum(filt(ref * ref, w) - mu1 ** 2, 0)
        s2 = np.maximum(filt(dist * dist, w) - mu2 ** 2, 0)
        s12 = filt(ref * dist, w) - mu1 * mu2
        g = s12 / (s1 + 1e-10)
        sv = s2 - g * s12
        g[s1 < 1e-10], sv[s1 < 1e-10], s1[s1 < 1e-10] = 0, s2[s1 < 1e-10], 0
        g[s2 < 1e-10], sv[s2 < 1e-10] = 0, 0
        sv[g < 0], g[g < 0] = s2[g < 0], 0
        sv[sv <= 1e-10] = 1e-10
        num += np.log10(1 + g ** 2 * s1 / (sv + 2)).sum()
        den += np.log10(1 + s1 / 2).sum()
    return num / den


def test_vifp_matches_literal_port(pair) -> None:
    """Separable/cropped filtering equals the literal 2-D 'valid' implementation."""
    a, b, f = pair
    assert M.vifp(a, f) == pytest.approx(_vifp_literal(a, f), rel=1e-10)
    assert M.vif(f, a, b) == pytest.approx(_vifp_literal(a, f) + _vifp_literal(b, f), rel=1e-10)


def test_vif_properties(pair) -> None:
    """VIFp(A,A)=1, drops monotonically with noise, exceeds 1 for contrast enhancement."""
    a = pair[0]
    noise = np.random.default_rng(7).standard_normal(a.shape)
    assert M.vifp(a, a) == pytest.approx(1.0, abs=1e-9)
    v5, v10 = M.vifp(a, a + 5 * noise), M.vifp(a, a + 10 * noise)
    assert 1.0 > v5 > v10 > 0.0
    assert M.vifp(a, 1.3 * (a - a.mean()) + a.mean()) > 1.05
    assert M.vif(a, a, a) == pytest.approx(2.0, abs=1e-9)


# ----------------------------------------------------------------------------- MEF-SSIM


def _mef_level_literal(seq: list[np.ndarray], f: np.ndarray) -> float:
    """Patch-loop port of mef_ssim.m (one scale)."""
    eps, bd, n = np.finfo(float).eps, 5, 11
    t = np.arange(n) - 5.0
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / 4.5)
    win /= win.sum()
    q = []
    for i in range(bd, f.shape[0] - bd):
        for j in range(bd, f.shape[1] - bd):
            blocks = [x[i - bd:i + bd + 1, j - bd:j + bd + 1] for x in seq]
            mu = [blk.mean() for blk in blocks]
            ed = [math.sqrt(max(n * n * ((blk * blk).mean() - m * m), 0)) + 0.001
                  for blk, m in zip(blocks, mu)]
            den = sum(np.linalg.norm(blk - m) for blk, m in zip(blocks, mu))
            tot = np.sum(blocks, axis=0)
            r = (np.linalg.norm(tot - tot.mean()) + eps) / (den + eps)
            r = 1 - eps if r > 1 else r
            p = min(math.tan(math.pi / 2 * r), 10.0)
            w = np.array([(e / n) ** p + eps for e in ed])
            w /= w.sum()
            rb = sum(wk * (blk - m) / e for wk, blk, m, e in zip(w, blocks, mu, ed))
            if np.linalg.norm(rb) > 0:
                rb = rb / np.linalg.norm(rb) * max(ed)
            fb = f[i - bd:i + bd + 1, j - bd:j + bd + 1]
            m1, m2 = (win * rb).sum(), (win * fb).sum()
            s1, s2 = (win * (rb - m1) ** 2).sum(), (win * (fb - m2) ** 2).sum()
            s12 = (win * (rb - m1) * (fb - m2)).sum()
            q.append((2 * s12 + 58.5225) / (s1 + s2 + 58.5225))
    return float(np.mean(q))


def test_mef_ssim_level_matches_patch_loop(exposure_pair) -> None:
    """The vectorised scale equals the literal patch loop, here with 3 sources and a flat area."""
    good, under, over = (x[20:44, 50:78] for x in exposure_pair)
    seq = [under, over, np.full_like(good, 200.0)]
    f = np.clip(good + 7 * _texture(good.shape, 9), 0, 255)
    assert M._mef_ssim_level(seq, f) == pytest.approx(_mef_level_literal(seq, f), rel=1e-10)


def test_mef_ssim_properties(exposure_pair) -> None:
    """A structure-preserving fusion beats the plain average; a single source scores < 1."""
    good, under, over = exposure_pair
    q_good = M.mefb_mef_ssim(good, [under, over])  # ~0.974
    q_avg = M.mefb_mef_ssim((under + over) / 2, [under, over])  # ~0.93: half the detail contrast
    q_under, q_over = M.mefb_mef_ssim(under, [under, over]), M.mefb_mef_ssim(over, [under, over])  # ~0.84
    assert 1.0 > q_good > 0.96 > q_avg > 0.9 > max(q_under, q_over)
    assert M.mefb_mef_ssim(good, [over, under]) == pytest.approx(q_good, rel=1e-12)
    assert M.mefb_mef_ssim(good, [good, good]) > 0.999


def test_mef_ssim_in_evaluate_uses_rgb2gray(exposure_pair) -> None:
    """evaluate() scores MEF-SSIM on rounded rgb2gray images and accepts more than two sources."""
    good, under, over = exposure_pair
    tint = np.array([1.0, 0.9, 0.8])
    col = [np.clip(np.round(x[..., None] * tint), 0, 255).astype(np.uint8) for x in (good, under, over)]
    grey = [mf.rgb2gray(c.astype(np.float64)) for c in col]
    got = scores.evaluate(col[0], col[1:] + [col[0]], ["MEF-SSIM"])["MEF-SSIM"]
    assert got == pytest.approx(M.mefb_mef_ssim(grey[0], grey[1:] + [grey[0]]), rel=1e-12)
    with pytest.raises(ValueError, match="need exactly 2 sources"):
        scores.evaluate(col[0], col, ["Qabf"])


@pytest.mark.parametrize("case", MEF_SSIM_CASES, ids=[c["name"] for c in MEF_SSIM_CASES])
def test_mef_ssim_matches_the_authors_code_under_octave(case: dict) -> None:
    """MEF-SSIM equals Ma, Zeng and Wang's mef_ms_ssim.m run under GNU Octave (tests/fixtures/mef_ssim_octave).

    Tolerance 1e-10 absolute, per scale and overall; observed at most 1.6e-14 (the summation order of
    the filters). Scale weights of 1 (instead of 0.0448, 0.2856, 0.3001) move the overall score by
    4e-5 to 1.1e-2 on these cases; the window, C or the downsampling move the per-scale values.
    """
    fused = _load_rgb(REPO / case["fused"])
    sources = [_load_rgb(REPO / name) for name in case["sources"]]
    grey = [mf.rgb2gray(x.astype(np.float64)) for x in (fused, *sources)]
    assert M.mef_ssim_scales(grey[0], grey[1:]) == pytest.approx(case["scales"], abs=1e-10)
    assert scores.evaluate(fused, sources, ["MEF-SSIM"])["MEF-SSIM"] == pytest.approx(case["mef_ssim"], abs=1e-10)


def _load_rgb(path: Path) -> np.ndarray:
    """An 8-bit RGB image file as uint8 (H, W, 3)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------- Nabf


def _nabf_literal(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """analysis_nabf.m with per_extn_im_fn mirror padding, written out with slices."""
    def grads(x):
        p = np.pad(x, 1, mode="reflect")
        s = lambda di, dj: p[1 + di:p.shape[0] - 1 + di, 1 + dj:p.shape[1] - 1 + dj]  # noqa: E731
        gv = (-s(-1, -1) + s(-1, 1) - 2 * s(0, -1) + 2 * s(0, 1) - s(1, -1) + s(1, 1)) / 8
        gh = (-s(-1, -1) - 2 * s(-1, 0) - s(-1, 1) + s(1, -1) + 2 * s(1, 0) + s(1, 1)) / 8
        with np.errstate(all="ignore"):
            ang = np.where((gv == 0) & (gh == 0), 0, np.arctan(gv / gh))
        return np.sqrt(gh ** 2 + gv ** 2), ang

    (ga, aa), (gb, ab), (gf, af) = grads(a), grads(b), grads(f)

    def q(gx, ax):
        with np.errstate(all="ignore"):
            g = np.where((gx == 0) | (gf == 0), 0, np.where(gx > gf, gf / gx, gx / gf))
        aq = np.abs(np.abs(ax - af) - np.pi / 2) * 2 / np.pi
        return np.sqrt(0.9999 / (1 + np.exp(-19 * (g - 0.5))) * 0.9995 / (1 + np.exp(-22 * (aq - 0.5))))

    wa = np.where(ga >= 2, ga ** 1.5, 0.001)
    wb = np.where(gb >= 2, gb ** 1.5, 0.001)
    na = (gf > ga) & (gf > gb)
    return float((na * ((1 - q(ga, aa)) * wa + (1 - q(gb, ab)) * wb)).sum() / (wa + wb).sum())


def test_nabf(pair) -> None:
    """Matches a slice-based port; F = A has no artefacts; added noise raises Nabf."""
    a, b, f = pair
    noisy = f + 25 * np.random.default_rng(3).standard_normal(f.shape)
    assert M.nabf(f, a, b) == pytest.approx(_nabf_literal(f, a, b), rel=1e-12)
    assert M.nabf(noisy, a, b) == pytest.approx(_nabf_literal(noisy, a, b), rel=1e-12)
    assert M.nabf(a, a, b) == 0.0  # g_F > max(g_A, g_B) never holds when F = A
    assert M.nabf(np.maximum(a, b), a, b) > 0.0  # a max-select creates some stronger edges
    assert 0.0 <= M.nabf(f, a, b) < M.nabf(noisy, a, b) <= 1.0


# ----------------------------------------------------------------------------- colour modes


@pytest.fixture(scope="module")
def colour_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour visible image, grey IR (2-D) and a colour fused image, uint8 64 x 72."""
    rgb = np.stack([128 + 80 * _texture((64, 72), s) for s in (11, 12, 13)], axis=-1)
    ir = 128 + 90 * _texture((64, 72), 14, 3.0)
    vi = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    ir8 = np.clip(np.round(ir), 0, 255).astype(np.uint8)
    fused = np.clip(np.round(0.6 * rgb + 0.4 * ir[..., None]), 0, 255).astype(np.uint8)
    return vi, ir8, fused


def test_colour_mode_is_per_channel(colour_pair) -> None:
    """Colour F: per-channel scores averaged, grey source replicated, SF on the H x 3W layout."""
    vi, ir, fused = colour_pair
    res = scores.evaluate(fused, [vi, ir])
    for name in ("Qabf", "MI", "VIF", "Nabf", "SSIM", "EN"):
        info = scores.METRICS[name]
        chans = [fused[..., k].astype(float) for k in range(3)]
        if info.needs_sources:
            vals = [info.func(chans[k], vi[..., k].astype(float), ir.astype(float)) for k in range(3)]
        else:
            vals = [info.func(c) for c in chans]
        assert res[name] == pytest.approx(np.mean(vals), rel=1e-12), name
    wide = np.concatenate([fused[..., k] for k in range(3)], axis=1).astype(float)
    assert res["SF"] == pytest.approx(M.spatial_frequency(wide), rel=1e-12)
    assert res == pytest.approx(scores.evaluate(fused, [vi, np.repeat(ir[..., None], 3, axis=2)]), rel=1e-12)


def test_grey_mode_selection(colour_pair) -> None:
    """R=G=B fused counts as grey; colour sources then go through rounded rgb2gray."""
    vi, ir, fused = colour_pair
    grey = mf.rgb2gray(fused.astype(float)).astype(np.uint8)
    grey3 = np.repeat(grey[..., None], 3, axis=2)
    vi_grey = mf.rgb2gray(vi.astype(float))
    res3 = scores.evaluate(grey3, [vi, ir])
    assert res3 == pytest.approx(scores.evaluate(grey, [vi, ir]), rel=1e-12)
    assert res3 == pytest.approx(scores.evaluate(grey, [vi_grey, ir[..., None]]), rel=1e-12)
    assert res3["Qabf"] == pytest.approx(M.qabf(grey.astype(float), vi_grey, ir), rel=1e-12)
    # and the colour image itself is scored differently (per channel)
    assert scores.evaluate(fused, [vi, ir], ["Qabf"])["Qabf"] != pytest.approx(res3["Qabf"], rel=1e-6)


# ----------------------------------------------------------------------------- validation


def test_validation_errors(colour_pair) -> None:
    """Clear ValueErrors for bad shapes, counts, NaN, 0..1 floats, ranges and names."""
    vi, ir, fused = colour_pair
    with pytest.raises(ValueError, match="size"):
        scores.evaluate(fused, [vi, ir[:-1]])
    with pytest.raises(ValueError, match="at least 2"):
        scores.evaluate(fused, [vi])
    with pytest.raises(ValueError, match="at least 2"):
        M.mefb_mef_ssim(ir.astype(float), [ir.astype(float)])
    bad = fused.astype(float)
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scores.evaluate(bad, [vi, ir])
    with pytest.raises(ValueError, match="0..1"):
        scores.evaluate(fused / 255.0, [vi, ir])
    with pytest.raises(ValueError, match="0..255"):
        scores.evaluate(fused.astype(float) * 2, [vi, ir])
    with pytest.raises(ValueError, match="shape"):
        scores.evaluate(np.zeros((64, 72, 4), np.uint8), [vi, ir])
    with pytest.raises(ValueError, match="unknown metric"):
        scores.evaluate(fused, [vi, ir], ["PSNR", "FMI"])
    with pytest.raises(ValueError, match="shapes differ"):
        M.qabf(ir.astype(float), ir.astype(float), ir[:, :-1].astype(float))
    with pytest.raises(ValueError, match="NaN"):
        M.vifb_ssim(np.full((20, 20), np.nan), np.zeros((20, 20)), np.zeros((20, 20)))
    with pytest.raises(ValueError, match="41x41"):
        M.vifp(np.zeros((30, 60)), np.zeros((30, 60)))
