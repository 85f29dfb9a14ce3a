"""Files the page hands out: PNGs named for what they hold, the full-resolution fusion, and a PNG copy of
an upload the browser cannot show (TIFF).

A download is named by what it is (`fused_vif_a1.00_b+0.00.png`, `fused_full_vif_...png`), not
Gradio's `image.png`. Files are written to a folder of their own under the temporary directory,
one sub-folder per file (so two users' files of one name never meet); folders older than KEEP_S
are removed at every write, and Gradio's copies in its cache by `delete_cache` (demo.layout).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from tcmoa.imaging import save_image

from .analysis import Shown
from .callbacks import BAD_INPUT, FuseView, log, next_step, page_request
from .engine import Engine
from .sources import AlignOptions, TooFewSources, user_message

OUTPUT_DIR = Path(tempfile.gettempdir()) / "tcmoa-demo-outputs"
KEEP_S = 3600  # an hour: long enough to click a download link, short enough to keep the disk bounded
_sweep_lock = threading.Lock()
BROWSER_FORMATS = frozenset({"PNG", "JPEG", "GIF", "WEBP", "BMP"})  # what a browser's <img> shows
# Modes PNG stores exactly, so the copy fuses bit-identically to the upload (float and 32-bit do not).
PNG_EXACT_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})


class Cancelled(Exception):
    """The user pressed Cancel: the fusion stops after its current tile."""


def result_name(kind: str, task: str, alpha: float, beta: float) -> str:
    """'fused_vif_a1.00_b+0.00.png': what the file is and the settings it was fused with."""
    return f"{kind}_{task}_a{alpha:.2f}_b{beta:+.2f}.png"


def remove_old(now: float | None = None, folder: Path = OUTPUT_DIR, keep_s: float = KEEP_S) -> None:
    """Remove this demo's output folders older than keep_s."""
    now = time.time() if now is None else now
    with _sweep_lock:
        for child in folder.glob("*"):
            try:
                if now - child.stat().st_mtime > keep_s:
                    shutil.rmtree(child, ignore_errors=True)
            except FileNotFoundError:  # removed by another request meanwhile
                pass


def fresh_path(name: str, folder: Path = OUTPUT_DIR) -> Path:
    """Where to write a file called `name`: a fresh sub-folder of `folder` (the old ones cleared first)."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_old(folder=folder)
    return Path(tempfile.mkdtemp(dir=folder)) / name


def named_png(image: np.ndarray, name: str, folder: Path = OUTPUT_DIR) -> str:
    """Write `image` as PNG called `name` in a fresh sub-folder; returns its path."""
    path = fresh_path(name, folder)
    save_image(path, image)
    return str(path)


def named_view(view: FuseView) -> FuseView:
    """The view with its fused image as a PNG named for what it is (its download name)."""
    if isinstance(view.fused, np.ndarray) and isinstance(view.shown, Shown):
        name = result_name("fused", view.shown.task, view.shown.alpha, view.shown.beta)
        view = view._replace(fused=named_png(view.fused, name))
    return view


def browser_copy(source: object, folder: Path = OUTPUT_DIR) -> str | None:
    """A PNG copy of an upload the browser cannot show (e.g. TIFF) holding the same pixels, or None
    (shown as it is, not exactly storable as PNG, or unreadable: the fusion explains that one)."""
    if not isinstance(source, (str, Path)):
        return None
    try:
        with Image.open(source) as opened:
            if opened.format in BROWSER_FORMATS or opened.mode not in PNG_EXACT_MODES:
                return None
            image = ImageOps.exif_transpose(opened)  # as read_image orients it: the copy has no EXIF
            path = fresh_path(f"{Path(source).stem}.png", folder)
            image.save(path, format="PNG")
    except Exception:  # noqa: BLE001 (whatever Pillow refuses stays as uploaded; the fusion says why)
        return None
    return str(path)


def full_view(engine: Engine, slots: Sequence[object], task: str, alpha: object, beta: object, *,
              blend: bool = False, router_weights: Sequence[object] = (), resize: bool = False,
              align: AlignOptions = AlignOptions(), progress: Callable[[float], None] | None = None
              ) -> tuple[str | None, str]:
    """The "Full resolution" action: (path of the named PNG or None, a status line); problems in the status."""
    start = time.perf_counter()
    try:
        request = page_request(engine, slots, task, alpha, beta, blend=blend, router_weights=router_weights,
                               resize=resize, align=align)
        result = engine.fuse(list(request.images), [request.settings], progress=progress)[0]
        path = named_png(result.image, result_name("fused_full", request.preset.key, result.settings.alpha, result.settings.beta))
    except Cancelled:
        return None, "Full-resolution fusion cancelled."
    except TooFewSources:
        return None, next_step(slots, task)
    except BAD_INPUT as exc:
        return None, f"⚠️ **Cannot fuse:** {user_message(exc)}"
    except Exception as exc:  # noqa: BLE001 (a bug, not bad input: logged, one line shown)
        log.exception("full-resolution fusion failed")
        return None, f"⚠️ **Cannot fuse:** internal error ({type(exc).__name__}); the server log has the details"
    h, w = result.image.shape[:2]
    return path, (f"**Full resolution** {w}×{h} px in {time.perf_counter() - start:.1f} s · α = {result.settings.alpha:.2f}, "
                  f"β = {result.settings.beta:+.2f}: the PNG is below")
