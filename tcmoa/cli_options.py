"""The command line's options: `tcmoa fuse` and `tcmoa info` as typed dataclasses, and the parser that
makes them (tcmoa/cli.py runs them). The defaults and the help live here, once."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .align import ALIGN_MODES
from .fuse.pipeline import COLOURS, DEFAULT_ALIGN, FITS, PRECISIONS
from .fuse.runner import DEFAULT_TOKEN_PIXELS
from .fuse.runtime import RUNTIMES
from .fuse.tiling import DEFAULT_TILE_SIZE
from .imaging import DEFAULT_MAX_PIXELS
from .model.moa import ALPHA_RANGE, BETA_RANGE
from .tasks import PRESETS, UnknownPresetError, preset_key

# Commands whose module owns their parser ("module:function" of argv); imported only when the command runs
# (torch, the pack, tqdm).
DELEGATED_COMMANDS = {
    "pack": ("tcmoa.train_cli:pack_main", "pack the training images into one safetensors file"),
    "pretrain": ("tcmoa.train_cli:pretrain_main", "stage 1: pre-train the backbone as an autoencoder"),
    "train": ("tcmoa.train_cli:train_main", "stage 2: train TC-MoA on the frozen, pre-trained backbone"),
    "evaluate": ("tcmoa.fuse.evaluate:main", "score a model and the classical baselines on the eval sets"),
}


@dataclass
class ModelOptions:
    """Which model on which device: what `fuse` and `info` share (build_parser holds the defaults and help)."""

    model: str | None  # model folder, official .pth or preset; None: the shipped checkpoint
    device: str | None  # cpu, cuda, cuda:N; None: the GPU when present


@dataclass
class FuseOptions(ModelOptions):
    """`tcmoa fuse`'s options, typed and checked: what the command passes down instead of argparse's namespace."""

    sources: list[Path]  # source images in role order (empty with pairs)
    pairs: tuple[Path, Path] | None  # two folders of same-named sources
    output: Path  # output image, or folder with pairs
    task: str  # preset key
    alpha: float | None  # within ALPHA_RANGE; None: the task's
    beta: float | None  # within BETA_RANGE; None: the task's
    router: str | None  # a router name or weights as typed (parse_router reads it against the model)
    colour: str
    resize: str | None
    align: str  # one of ALIGN_MODES
    reference: int | None  # 1-based source whose frame the output keeps (the CLI counts sources from 1)
    crop: bool
    no_deghost: bool
    maps: Path | None  # folder for prompt/routing heatmaps
    precision: str
    tile_size: int
    token_pixels: int
    runtime: str
    fit: str
    max_pixels: int
    quiet: bool


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the `fuse` and `info` commands."""
    parser = argparse.ArgumentParser(prog="tcmoa", description="TC-MoA general image fusion.")
    commands = parser.add_subparsers(dest="command", required=True)
    fuse = commands.add_parser("fuse", help="fuse two or more source images (or folders of pairs)",
                               description="Fuse sources of one scene. Give the sources in role order: "
                               + "; ".join(f"{k}: {' + '.join(t.roles)}" for k, t in PRESETS.items()))
    fuse.add_argument("sources", nargs="*", type=Path, help="source images, in role order")
    fuse.add_argument("--pairs", nargs=2, type=Path, metavar=("DIR_A", "DIR_B"),
                      help="fuse every pair of same-named files in two folders")
    fuse.add_argument("-o", "--output", type=Path, required=True, help="output image (or folder with --pairs)")
    fuse.add_argument("--task", default="vif", type=_preset_key, metavar="TASK",
                      help=f"fusion task preset, any case: {', '.join(PRESETS)} (default: vif)")
    # Read as text: the library's check gives every entry point's one message, for 'abc' as for 9.
    fuse.add_argument("--alpha", default=None, help=f"prompt scale alpha in [{ALPHA_RANGE.low:g}, {ALPHA_RANGE.high:g}] "
                      "(Eq. 8; default: the task's)")
    fuse.add_argument("--beta", default=None, help=f"prompt shift beta in [{BETA_RANGE.low:g}, {BETA_RANGE.high:g}] "
                      "(> 0 favours source A; default: the task's)")
    fuse.add_argument("--router", type=str, default=None,
                      help="router to use instead of the task's: a name, or weights like 'vif=0.7,mff=0.3'")
    fuse.add_argument("--colour", choices=COLOURS, default="auto",
                      help="'auto': the colour rule (fuse luminance, keep the colour source's chroma); 'grey': a grey "
                           "result; 'rgb': the official path (RGB in, grey replicated, RGB out)")
    fuse.add_argument("--resize", choices=("first",), default=None, help="resize other sources to the first's size")
    fuse.add_argument("--align", choices=ALIGN_MODES, default=DEFAULT_ALIGN,
                      help="put the sources into one frame first: auto detects registered sources and leaves them as "
                           "given; or force a transform model (default: %(default)s)")
    fuse.add_argument("--reference", type=int, default=None, metavar="N",
                      help="with --align: the source (1 = the first) whose frame and size the output keeps "
                           "(default: the task's: the visible image, the middle exposure, the sharpest plane, the MRI)")
    fuse.add_argument("--crop", action="store_true", help="with --align: crop to the area every source covers")
    fuse.add_argument("--no-deghost", action="store_true",
                      help="exposure stacks: keep moving content as it is (by default it is taken from the reference)")
    fuse.add_argument("--maps", type=Path, default=None, metavar="DIR", help="also save prompt/routing heatmaps here")
    _model_args(fuse)
    fuse.add_argument("--precision", choices=PRECISIONS, default="auto",
                      help="auto: bf16 on a GPU, fp32 on the CPU (reduced precision is for GPUs only)")
    fuse.add_argument("--token-pixels", type=int, default=DEFAULT_TOKEN_PIXELS,
                      help="the token path runs on the sources scaled to at most this many pixels; the output keeps "
                           "full resolution (default %(default)s)")
    fuse.add_argument("--runtime", choices=RUNTIMES, default="auto",
                      help="how the token path runs: auto (int8 on the CPU for the shipped model, else eager), eager "
                           "PyTorch, or int8 linear layers (CPU) (default %(default)s)")
    fuse.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                      help="memory budget where a model still tiles (official checkpoints): tiles of at most "
                           "TILE_SIZE² px (default %(default)s)")
    fuse.add_argument("--fit", choices=FITS, default="pad",
                      help="reach whole attention windows by mirror padding, or by the official resize path "
                           "(use 'resize' with official checkpoints to reproduce official numbers)")
    fuse.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger sources")
    fuse.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    info = commands.add_parser("info", help="describe a model")
    _model_args(info)
    for name, (_, help_text) in DELEGATED_COMMANDS.items():  # listed here; main() hands them their arguments
        commands.add_parser(name, help=f"{help_text} (see `tcmoa {name} --help`)", add_help=False)
    return parser


def _preset_key(name: str) -> str:
    """--task: a preset key or alias in any case; argparse reports the one unknown-preset message."""
    try:
        return preset_key(name)
    except UnknownPresetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model folder, official .pth, or preset name (default: the shipped checkpoint)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU when present)")
