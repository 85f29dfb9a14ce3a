"""Command line: `tcmoa fuse A B [C ...] --task vif -o out.png`, folder mode, model info, training
(`tcmoa pack | pretrain | train`) and evaluation (`tcmoa evaluate`). `python -m tcmoa ...` is the same.

Exit codes: 0 success; 1 some pairs of a folder run failed (the rest were written);
2 bad usage or bad input (nothing written); 3 the model could not be loaded; 130 interrupted
(Ctrl-C: what was written is listed, and whole: outputs are written atomically); 141 the output
pipe was closed (`tcmoa info | head`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .model.checkpoint import CheckpointError, load_model
from .distributed import process_group, rank_device
from .device import pick_device, reuse_freed_memory
from .imaging import SAVE_FORMATS, ImageError, image_files, name_clashes, probe_image, save_image
from .model.moa import ALPHA_RANGE, BETA_RANGE
from .colour import SizeMismatchError, check_source_count
from .fuse.pipeline import Fuser, FusionResult, parse_route
from .cli_options import DELEGATED_COMMANDS, FuseOptions, ModelOptions, build_parser
from .tasks import Route

if TYPE_CHECKING:
    from .fuse.folder_queue import PairQueue

EXIT_OK, EXIT_PARTIAL, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # as the shell reports SIGINT and SIGPIPE




class CliError(Exception):
    """A failure to report in one line with an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def parse_router(text: str | None, routers: tuple[str, ...]) -> Route | None:
    """'mff' -> 'mff'; 'vif=0.7,mff=0.3' -> weights in the model's router order (tcmoa.fuse.pipeline.parse_route)."""
    try:
        return parse_route(text, routers)
    except ValueError as exc:
        raise CliError(f"--router: {exc}", EXIT_INPUT) from None


def check_output(path: Path, folder: bool, option: str = "-o") -> None:
    """Fail before any fusion, with exit 2, when `path` (a file, or a folder) cannot be written."""
    if not folder:
        if path.is_dir():
            raise CliError(f"{option} {path} is a folder; give an output file name such as {path / 'fused.png'}",
                           EXIT_INPUT)
        if path.suffix.lower() not in SAVE_FORMATS:
            raise CliError(f"{option} {path}: unknown image extension; use one of {', '.join(sorted(SAVE_FORMATS))}",
                           EXIT_INPUT)
    elif path.exists() and not path.is_dir():
        raise CliError(f"{option} {path} is a file; give a folder", EXIT_INPUT)
    existing = path if folder else path.parent
    while not existing.exists():  # the folders still to create go into the nearest existing one
        existing = existing.parent
    if not existing.is_dir():
        raise CliError(f"{option} {path}: {existing} is a file, not a folder", EXIT_INPUT)
    try:  # permissions, read-only file systems, /proc: only trying tells
        with tempfile.TemporaryFile(dir=existing, prefix=".tcmoa-write-test-"):
            pass
    except OSError as exc:
        raise CliError(f"{option} {path}: cannot write into {existing} ({exc.strerror or exc})", EXIT_INPUT) from None


def _load(opts: ModelOptions):
    try:
        return load_model(opts.model, device="cpu")
    except (FileNotFoundError, CheckpointError, KeyError) as exc:
        raise CliError(f"cannot load the model: {exc}", EXIT_MODEL) from None


def _pairs(dir_a: Path, dir_b: Path) -> list[tuple[str, Path, Path]]:
    for d in (dir_a, dir_b):
        if not d.is_dir():
            raise CliError(f"--pairs: {d} is not a folder", EXIT_INPUT)
        clashes = name_clashes(d)
        if clashes:  # pairs are matched by name: x.jpg and x.png would silently make one pair of two
            listed = "; ".join(" and ".join(names) for names in list(clashes.values())[:5])
            raise CliError(f"--pairs: {d} has {len(clashes)} name(s) used by several images ({listed}); pairs are "
                           "matched by name, so rename them to give each pair one name", EXIT_INPUT)
    a, b = image_files(dir_a), image_files(dir_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise CliError(f"--pairs: no file names in common between {dir_a} and {dir_b}", EXIT_INPUT)
    unmatched = sorted(set(a) ^ set(b))
    if unmatched:
        print(f"warning: skipped, no partner in the other folder: {', '.join(unmatched[:5])}"
              + (" ..." if len(unmatched) > 5 else ""), file=sys.stderr)
    return [(stem, a[stem], b[stem]) for stem in common]


def _write(result: FusionResult, out: Path, maps_dir: Path | None) -> None:
    save_image(out, result.image)
    if maps_dir is not None and result.maps is not None and result.mapped_pair is not None:
        from .fuse.figures import save_map_images  # matplotlib only when maps are asked for

        save_map_images(result.maps, maps_dir, result.mapped_pair[0], result.settings.preset.roles)


# The library's messages name its keyword arguments; on the command line they are options.
FLAG_WORDS = (("device='cpu'", "--device cpu"), ("precision='fp32'", "--precision fp32"),
              ("raise max_pixels", "raise --max-pixels"), ("tile_size", "--tile-size"),
              ("token_pixels", "--token-pixels"), ("runtime 'int8'", "--runtime int8"))


def in_flags(message: str) -> str:
    """A library message in the command line's words."""
    for python, option in FLAG_WORDS:
        message = message.replace(python, option)
    return message


def check_options(opts: ModelOptions) -> None:
    """Options that need no model: the device and a fusion's pixel limit (exit 2 before the model loads)."""
    try:
        pick_device(opts.device)
    except ValueError as exc:
        raise CliError(f"--device: {in_flags(str(exc))}", EXIT_INPUT) from None
    if isinstance(opts, FuseOptions) and opts.max_pixels <= 0:
        raise CliError(f"--max-pixels must be a positive number of pixels, got {opts.max_pixels}", EXIT_INPUT)


def check_sources(args: FuseOptions) -> None:
    """The source files, from their headers, and the output against them: exit 2 before the model loads."""
    if args.pairs:
        for folder in args.pairs:
            if args.output.resolve() == folder.resolve():
                raise CliError(f"-o {args.output} is a source folder; its fused PNGs would replace sources of "
                               "the same name: give another folder", EXIT_INPUT)
        return
    try:
        check_source_count(args.sources)
    except ImageError as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    sizes = []
    for i, src in enumerate(args.sources, start=1):
        if args.output.resolve() == src.resolve():
            raise CliError(f"-o {args.output} is source {i}; give another output file (the source would be "
                           "overwritten)", EXIT_INPUT)
        try:
            sizes.append(probe_image(src, max_pixels=args.max_pixels))
        except ImageError as exc:
            raise CliError(f"source {i}: {in_flags(str(exc))}", EXIT_INPUT) from None
    if args.reference is not None and not 1 <= args.reference <= len(sizes):
        raise CliError(f"--reference {args.reference}: there are {len(sizes)} sources (1 to {len(sizes)})", EXIT_INPUT)
    if args.resize is None and args.align == "off":
        for i, size in enumerate(sizes[1:], start=2):
            if size != sizes[0]:
                raise CliError(SizeMismatchError(i, size, sizes[0]).explain("or --align auto, or --resize first"),
                               EXIT_INPUT)


def _as_typed(text: str) -> float | str:
    """A knob's text as a number when it reads as one (the message then shows the number), else as typed."""
    try:
        return float(text)
    except ValueError:
        return text


def fuse_options(parsed: argparse.Namespace) -> FuseOptions:
    """`fuse`'s parsed command line as options: sources or --pairs, α and β within range (exit 2 otherwise)."""
    if bool(parsed.sources) == bool(parsed.pairs):
        raise CliError("give either two or more source images, or --pairs DIR_A DIR_B", EXIT_INPUT)
    try:  # the library's ranges, checked before the model loads
        alpha, beta = (None if value is None else knob.check(_as_typed(value))
                       for knob, value in ((ALPHA_RANGE, parsed.alpha), (BETA_RANGE, parsed.beta)))
    except ValueError as exc:
        raise CliError(str(exc), EXIT_INPUT) from None
    given = {k: v for k, v in vars(parsed).items() if k != "command"}
    return FuseOptions(**{**given, "alpha": alpha, "beta": beta, "pairs": tuple(parsed.pairs) if parsed.pairs else None})


def run_fuse(args: FuseOptions) -> int:
    """The `fuse` command."""
    check_options(args)
    check_output(args.output, folder=bool(args.pairs))  # before any fusion: a failed write would waste it
    if args.maps is not None:
        check_output(args.maps, folder=True, option="--maps")
    check_sources(args)
    jobs = _pairs(*args.pairs) if args.pairs else [("", *args.sources)]
    model = _load(args)
    try:
        fuser = Fuser(model, device=rank_device(args.device), precision=args.precision, tile_size=args.tile_size,
                      max_pixels=args.max_pixels, fit=args.fit, token_pixels=args.token_pixels, runtime=args.runtime)
    except ValueError as exc:
        raise CliError(in_flags(str(exc)), EXIT_INPUT) from None
    route = parse_router(args.router, model.config.routers)
    options = dict(task=args.task, alpha=args.alpha, beta=args.beta, route=route, colour=args.colour,
                   resize=args.resize, align=args.align, reference=None if args.reference is None else args.reference - 1,
                   crop=args.crop, deghost=not args.no_deghost, check_alignment=True, maps=args.maps is not None)
    from .fuse.folder_queue import PairQueue  # tqdm and the job store only when fusing

    # Under torchrun the ranks share the folder's pairs; rank 0 alone reports (tcmoa/fuse/folder_queue.py).
    queue = PairQueue(jobs, quiet=args.quiet, shard=bool(args.pairs))
    args = replace(args, quiet=args.quiet or not queue.world.is_main)
    if not model.info.get("trained") and not args.quiet:
        print(f"warning: {model.info['name']} is untrained: the output is not a meaningful fusion", file=sys.stderr)
    written: list[Path] = []
    try:
        fuse_jobs(queue, fuser, options, args, written)
    except KeyboardInterrupt:  # outputs are written atomically: what is listed is whole, nothing else exists
        queue.bar.close()
        where = f" to {args.output}" if args.pairs else ""
        print(f"interrupted: wrote {len(written)} of {len(jobs)} fused image(s){where}"
              + (f" (the last: {written[-1]})" if written else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    failures = queue.finish()
    if not queue.world.is_main:
        return EXIT_OK  # the job's outcome is rank 0's exit code
    if args.pairs and not args.quiet:
        print(f"wrote {len(jobs) - len(failures)} of {len(jobs)} fused images to {args.output}")
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return EXIT_PARTIAL if failures else EXIT_OK


def fuse_jobs(queue: PairQueue, fuser: Fuser, options: dict[str, Any], args: FuseOptions,
              written: list[Path]) -> None:
    """Fuse and write each job of the queue; `written` grows with every output in place."""
    for stem, *sources in queue:
        out = args.output / f"{stem}.png" if stem else args.output
        maps_dir = (args.maps / stem if stem else args.maps) if args.maps else None
        try:
            result = fuser.fuse(sources, **options)
            _write(result, out, maps_dir)
        except (ImageError, ValueError, OSError) as exc:  # OSError: the disk filled or a folder vanished
            message = exc.explain("or --resize first") if isinstance(exc, SizeMismatchError) else str(exc)
            if not stem:
                raise CliError(message, EXIT_INPUT) from None
            queue.failed(f"{stem}: {message}")
            continue
        written.append(out)
        if not args.quiet and not stem:
            print(f"wrote {out} ({result.image.shape[1]}x{result.image.shape[0]}, {result.seconds:.2f} s on "
                  f"{result.device}, task {result.settings.preset.key}, alpha {result.settings.alpha:g}, "
                  f"beta {result.settings.beta:g})")
            for note in result.notes:
                print(f"note: {note}")


def run_info(args: ModelOptions) -> int:
    """The `info` command: what the model is and where it came from."""
    check_options(args)
    model = _load(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {model.info.get('name')}  source: {model.info.get('source')}  trained: {model.info.get('trained')}")
    print(f"parameters: {n_params / 1e6:.2f}M ({sum(p.numel() for p in model.tcmoa_parameters()) / 1e6:.2f}M TC-MoA)")
    print(f"routers: {', '.join(model.config.routers)}")
    print(model.config.to_json())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED_COMMANDS:
        module, function = DELEGATED_COMMANDS[argv[0]][0].split(":")
        getattr(importlib.import_module(module), function)(["pack", *argv[1:]] if argv[0] == "pack" else argv[1:])
        return EXIT_OK
    args = build_parser().parse_args(argv)
    reuse_freed_memory()  # this process is the CLI's: tensors reuse freed memory (tcmoa.device)
    try:
        with process_group(args.device, backend="gloo"):  # under torchrun
            code = run_fuse(fuse_options(args)) if args.command == "fuse" else run_info(ModelOptions(args.model, args.device))
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
        return code
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # before any fusion (e.g. while the model loads)
        print("interrupted: nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tcmoa info | head -2`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own advice: no error at exit
        return EXIT_BROKEN_PIPE
