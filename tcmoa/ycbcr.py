"""BT.601 full-range colour conversions (JPEG/JFIF): RGB <-> YCbCr and luma, on float [0, 1] arrays."""
from __future__ import annotations

import numpy as np

# BT.601 full-range (JPEG/JFIF) coefficients; the inverse is derived from the same constants
# so that rgb -> ycbcr -> rgb is exact up to float rounding.
_KR, _KG, _KB = 0.299, 0.587, 0.114
BT601_WEIGHTS = (_KR, _KG, _KB)  # luma = their dot product with (R, G, B); the torch losses and head use them too
_CB_SCALE = 2.0 * (1.0 - _KB)  # 1.772
_CR_SCALE = 2.0 * (1.0 - _KR)  # 1.402



def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 full-range RGB [0,1] -> (Y, Cb, Cr), each (H,W) float32, chroma centred at 0.5."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_ycbcr expects an (H, W, 3) array, got shape {rgb.shape}")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / _CB_SCALE + 0.5
    cr = (r - y) / _CR_SCALE + 0.5
    return tuple(p.astype(np.float32, copy=False) for p in (y, cb, cr))  # type: ignore[return-value]


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, *, clip: bool = True) -> np.ndarray:
    """Inverse of rgb_to_ycbcr; (H,W,3) float32, clipped to [0,1] unless clip=False."""
    y = np.asarray(y, dtype=np.float32)
    dcb = np.asarray(cb, dtype=np.float32) - 0.5
    dcr = np.asarray(cr, dtype=np.float32) - 0.5
    if not (y.shape == dcb.shape == dcr.shape) or y.ndim != 2:
        raise ValueError(
            f"ycbcr_to_rgb expects three equal (H, W) planes, got {y.shape}, {dcb.shape}, {dcr.shape}"
        )
    # Written into the output's channels in place, the same operations in the same order as
    # r = y + CR*dcr; b = y + CB*dcb; g = (y - KR*r - KB*b) / KG, with no full-size temporaries beyond
    # dcb and dcr (at 24 MP, three planes and a stacked copy were 0.6 GB).
    out = np.empty((*y.shape, 3), np.float32)
    r, g, b = out[..., 0], out[..., 1], out[..., 2]
    np.add(y, np.multiply(dcr, _CR_SCALE, out=dcr), out=r)
    np.add(y, np.multiply(dcb, _CB_SCALE, out=dcb), out=b)
    np.subtract(y, np.multiply(r, _KR, out=g), out=g)  # solves Y = KR*R + KG*G + KB*B exactly
    np.subtract(g, np.multiply(b, _KB, out=dcb), out=g)
    np.divide(g, _KG, out=g)
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


def bt601_luma(img: np.ndarray) -> np.ndarray:
    """Luma (BT.601 Y) of an (H,W,3) image; an (H,W) image is returned as a float32 copy."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 2:
        return a.copy()
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0].copy()
    return rgb_to_ycbcr(a[..., :3])[0]
