"""The README's unaligned example: the bundled thermal-camera pair fused on the page as given and aligned.

    python -m benchmarks.unaligned_example            # shipped model -> docs/unaligned_example.png

demo/examples/unaligned/tno_18_thermal_camera is the registered TNO pair demo/examples/vif/tno_18 with its
infrared re-shot by a second camera (zoomed, turned, offset; demo/examples/README.md gives the true
transform). It is fused as the page does it (demo.callbacks.fuse_steps): as given (alignment off, the
thermal frame resized onto the visible one) and with "Align sources: auto". Prints the recovered
transform's corner error against the true one, the time alignment took, and Qabf and SSIM of each
fusion against the registered original pair (as a fusion of that pair would be scored), beside the
fusion of the registered pair itself.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from demo import callbacks as cb
from demo.analysis import luma8
from demo.engine import load_engine
from demo.sources import AlignOptions
from tcmoa.align import align_sources
from tcmoa.fuse.figures import figure_to_array
from tcmoa.imaging import read_image, to_uint8
from tcmoa.metrics.scores import evaluate

EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"
CAMERAS = EXAMPLES / "unaligned" / "tno_18_thermal_camera"
REGISTERED = EXAMPLES / "vif" / "tno_18"
# The thermal frame's pixels -> the visible frame's (demo/examples/README.md).
TRUE_MATRIX = np.array([[1.2483, -0.0654, 72.3727], [0.0654, 1.2483, 27.5494], [0.0, 0.0, 1.0]])


def corner_error(matrix: np.ndarray, truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Distance (px of the reference) between where `matrix` and `truth` put each corner of an image of `shape`."""
    h, w = shape[:2]
    box = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64).T
    found, true = matrix @ box, truth @ box
    return np.linalg.norm(found[:2] / found[2] - true[:2] / true[2], axis=0)


def side_by_side(panels: list[tuple[str, np.ndarray]], width_px: int = 1200) -> np.ndarray:
    """Images in one row, each titled, on a shared height, as RGB uint8."""
    fig = Figure(figsize=(width_px / 100, width_px / 100 / len(panels) * 372 / 512 + 0.45), dpi=100)
    for k, (title, image) in enumerate(panels):
        ax = fig.add_axes((k / len(panels) + 0.004, 0.02, 1 / len(panels) - 0.008, 0.84))
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(title, fontsize=9, pad=4)
        ax.set_axis_off()
    return figure_to_array(fig)


def main() -> None:
    """Fuse the pair as given and aligned, print what was measured, and draw the four panels."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder / preset (default: the shipped model)")
    ap.add_argument("--out", type=Path, default=Path("docs/unaligned_example.png"))
    args = ap.parse_args()
    engine = load_engine(args.model, "cpu")
    files = [str(CAMERAS / "1_visible.png"), str(CAMERAS / "2_infrared.png")]
    visible, thermal = (read_image(f) for f in files)
    start = time.perf_counter()
    alignment = align_sources([visible, thermal], "auto", None, "vif")
    seconds = time.perf_counter() - start
    errors = corner_error(alignment.sources[1].matrix, TRUE_MATRIX, thermal.shape)
    print(f"{alignment.sources[1].note}\ncorner error vs the true transform: mean {errors.mean():.2f} px, "
          f"max {errors.max():.2f} px; alignment {seconds:.2f} s")

    def fused(slots: list[str], align: str, resize: bool = False) -> np.ndarray:
        view = cb.final_view(cb.fuse_steps(engine, slots, "vif", 1.0, 0.0, align=AlignOptions(align), resize=resize))
        assert isinstance(view.fused, np.ndarray), view.status
        return view.fused

    as_given, aligned = fused(files, "off", resize=True), fused(files, "auto")
    originals = [str(REGISTERED / "1_visible.png"), str(REGISTERED / "2_infrared.png")]
    truth = [luma8(read_image(f)) for f in originals]
    print(f"scored against the registered pair ({REGISTERED.relative_to(EXAMPLES.parent.parent)}), model "
          f"{engine.model_label}:")
    for name, image in (("fused as given", as_given), ("fused aligned", aligned),
                        ("the registered pair fused", fused(originals, "off"))):
        scores = evaluate(luma8(image), truth, ["Qabf", "SSIM"])
        print(f"  {name:26s} Qabf {scores['Qabf']:.3f}  SSIM {scores['SSIM']:.3f}")
    h, w = thermal.shape[:2]
    panels = [(f"visible camera ({visible.shape[1]}×{visible.shape[0]})", to_uint8(visible)),
              (f"thermal camera ({w}×{h})", to_uint8(thermal)),
              ("fused as given (thermal resized): doubled", as_given),
              ("fused with Align sources: auto", aligned)]
    Image.fromarray(side_by_side(panels)).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
