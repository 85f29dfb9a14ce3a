"""What 16-bit samples hold: 16-bit data, or 8-14 bits in a 16-bit container (thermal cameras), and its scale."""
from __future__ import annotations

import numpy as np

PNG_HEAD_BYTES = 1 << 16  # the chunks before the pixel data (sBIT among them) fit in far less


def png_sbit(head: bytes) -> int | None:
    """The significant bits of a grey PNG's samples (its sBIT chunk), from the file's first bytes; else None.

    Thermal cameras store 12- or 14-bit data in 16-bit PNGs and say so here; Pillow does not read it.
    """
    if not head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos = 8
    while pos + 9 <= len(head):
        length, kind = int.from_bytes(head[pos:pos + 4], "big"), head[pos + 4:pos + 8]
        if kind == b"sBIT":
            return head[pos + 8] or None
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


LOW_DEPTHS = (8, 10, 12, 14)  # bits that cameras store in 16-bit files


def scale_16bit(a: np.ndarray, label: str, sbit: int | None, notes: list[str] | None,
                container: str = "a 16-bit file") -> np.ndarray:
    """16-bit samples to [0, 1]: by the PNG's significant bits when it states them, else by the smallest
    common depth (8, 10, 12, 14 bits) that holds every value, else by 65535; a note says which.

    `container` names what held them in the note (whole numbers in a float file are scaled alike)."""
    peak = int(a.max()) if a.size else 0
    if sbit is not None and 1 <= sbit < 16:
        bits, why = sbit, "the PNG's sBIT chunk"
    else:
        bits = next((b for b in LOW_DEPTHS if peak < 1 << b), 16)
        why = f"every value is at most {peak}"
    if bits < 16 and peak > 0:
        if notes is not None:
            notes.append(f"{label}: {bits}-bit data in {container} ({why}): scaled by 1/{(1 << bits) - 1}, "
                         "not 1/65535")
        return np.clip(a / float((1 << bits) - 1), 0.0, 1.0).astype(np.float32)
    return (a / 65535.0).astype(np.float32)
