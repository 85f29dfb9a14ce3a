"""The command line: single fusions, folder mode, exit codes and messages."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from tcmoa.model import checkpoint
from tcmoa.cli import main, parse_router, CliError
from tcmoa.tasks import UnknownPresetError

from .conftest import REPO


def write(path, seed, size=(56, 48), mode="RGB"):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(path)
    return path


def test_fuse_two_files(tmp_path, capsys):
    a, b = write(tmp_path / "vis.png", 0), write(tmp_path / "ir.png", 1, mode="L")
    out = tmp_path / "out" / "fused.png"
    assert main(["fuse", str(a), str(b), "--model", "compact", "-o", str(out), "--alpha", "1.5"]) == 0
    assert Image.open(out).size == (56, 48)
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "alpha 1.5" in printed.out
    assert "untrained" in printed.err


def test_three_sources_and_router_blend(tmp_path):
    srcs = [str(write(tmp_path / f"e{i}.png", i)) for i in range(3)]
    out = tmp_path / "hdr.png"
    assert main(["fuse", *srcs, "--task", "mef", "--router", "mef=0.7,mff=0.3", "--model", "compact",
                 "-o", str(out), "--quiet"]) == 0
    assert out.exists()


def test_folder_mode_reports_failures_and_writes_the_rest(tmp_path, capsys):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    for i in range(2):
        write(tmp_path / "a" / f"{i}.png", i)
        write(tmp_path / "b" / f"{i}.png", 10 + i)
    (tmp_path / "a" / "2.png").write_bytes(b"broken")
    write(tmp_path / "b" / "2.png", 3)
    write(tmp_path / "a" / "lonely.png", 4)
    for d in ("a", "b"):  # hidden files (macOS's ._x.png beside x.png) are not images to fuse
        (tmp_path / d / "._0.png").write_bytes(b"AppleDouble metadata")
        write(tmp_path / d / ".hidden.png", 5)
    code = main(["fuse", "--pairs", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out"),
                 "--model", "compact", "--task", "mff"])
    assert code == 1  # the broken 2.png alone
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]
    err = capsys.readouterr().err
    assert "error: 2:" in err and "no partner" in err and "lonely" in err


@pytest.mark.parametrize("args, code, message", [
    (["fuse", "only.png", "-o", "x.png", "--model", "compact"], 2, "at least 2 source images, got 1"),
    (["fuse", "-o", "x.png", "--model", "compact"], 2, "either two or more source images"),
    (["fuse", "missing1.png", "missing2.png", "-o", "x.png", "--model", "compact"], 2, "no such file"),
    (["fuse", "a.png", "b.png", "-o", "x.png", "--model", "nowhere/model"], 3, "cannot load the model"),
    (["fuse", "a.png", "b.png", "-o", "x.png", "--model", "compact", "--router", "pan=1"], 2, "unknown router"),
])
def test_errors_have_exit_codes_and_one_line_messages(tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.png", 0)
    write(tmp_path / "b.png", 1)
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_task_is_case_insensitive_with_the_one_unknown_preset_message(tmp_path, capsys):
    a, b = write(tmp_path / "a.png", 0), write(tmp_path / "b.png", 1)
    out = tmp_path / "f.png"
    assert main(["fuse", str(a), str(b), "--task", "VIF", "--model", "compact", "-o", str(out), "--quiet"]) == 0
    assert out.is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", str(a), str(b), "--task", "Sonar", "-o", str(out)])
    assert exit_info.value.code == 2
    assert str(UnknownPresetError("Sonar")) in capsys.readouterr().err


def test_default_model_missing_is_exit_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint, "REPO_CHECKPOINTS", tmp_path)
    assert main(["info"]) == 3
    assert "no trained model is shipped" in capsys.readouterr().err


def test_info_describes_the_model(capsys):
    assert main(["info", "--model", "compact"]) == 0
    out = capsys.readouterr().out
    assert "routers: vif, mef, mff, medical" in out and "trained: False" in out


@pytest.mark.parametrize("option, message", [
    (["--precision", "fp16"], "error: reduced precision (bf16/fp16) is for GPUs; use --precision fp32 on the CPU"),
    (["--tile-size", "10"], "error: --tile-size must be at least 64 px for this model"),
    (["--max-pixels", "1000"], "= 4,800 px, above the limit of 1,000 px; downscale it (or raise --max-pixels)"),
])
def test_errors_name_the_options_not_python_arguments(tmp_path, capsys, option, message):
    a, b = write(tmp_path / "a.png", 0, size=(80, 60)), write(tmp_path / "b.png", 1, size=(80, 60))
    assert main(["fuse", str(a), str(b), "--model", "compact", "-o", str(tmp_path / "f.png"), *option]) == 2
    err = capsys.readouterr().err
    assert message in err and "=" not in err.replace("= 4,800", ""), err


def test_parse_router():
    names = ("vif", "mef", "mff", "medical")
    assert parse_router("mff", names) == "mff"
    assert parse_router("vif=0.25, medical=0.75", names) == [0.25, 0.0, 0.0, 0.75]
    with pytest.raises(CliError, match="not a number"):
        parse_router("vif=lots", names)
    assert parse_router("MFF", names) == "mff" and parse_router("VIF=1,Medical=3", names) == [1.0, 0.0, 0.0, 3.0]
    with pytest.raises(CliError, match="router 'vif' is weighted twice"):
        parse_router("vif=1,vif=1", names)
    for bad in ("vif=-1,mff=2", "vif=0", "vif=nan,mff=1"):  # named in the message as typed, not as a list
        with pytest.raises(CliError, match=f"--router: router weights must be finite and non-negative.*'{bad}'"):
            parse_router(bad, names)


def test_maps_are_written_as_images(tmp_path):
    a, b = write(tmp_path / "vis.png", 0, size=(64, 64)), write(tmp_path / "ir.png", 1, size=(64, 64), mode="L")
    maps = tmp_path / "maps"
    assert main(["fuse", str(a), str(b), "--model", "compact", "-o", str(tmp_path / "f.png"),
                 "--maps", str(maps), "--quiet"]) == 0
    written = sorted(p.name for p in maps.iterdir())
    assert written and all(name.endswith(".png") for name in written)


@pytest.mark.parametrize("tile", ["64", "96", "128"])
def test_tiles_no_bigger_than_the_overlap_work(tmp_path, tile):
    a, b = write(tmp_path / "a.png", 0, size=(200, 150)), write(tmp_path / "b.png", 1, size=(200, 150))
    out = tmp_path / "f.png"
    assert main(["fuse", str(a), str(b), "--model", "compact", "-o", str(out), "--tile-size", tile, "--quiet"]) == 0
    assert Image.open(out).size == (200, 150)


@pytest.mark.parametrize("knob, value, message", [
    ("--alpha", "1e9", "alpha must be a number in [0, 3], got 1000000000.0"),
    ("--alpha", "-1", "alpha must be a number in [0, 3], got -1.0"),
    ("--beta", "-50", "beta must be a number in [-0.5, 0.5], got -50.0"),
    ("--alpha", "nan", "alpha must be a number in [0, 3], got nan"),
    ("--beta", "abc", "beta must be a number in [-0.5, 0.5], got 'abc'"),  # not argparse's usage block
])
def test_knobs_out_of_range_are_refused_before_loading(tmp_path, monkeypatch, capsys, knob, value, message):
    from tcmoa import cli
    from tcmoa.model.moa import ALPHA_RANGE, BETA_RANGE

    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("the model loaded despite bad input"))
    a, b = write(tmp_path / "a.png", 0), write(tmp_path / "b.png", 1)
    assert main(["fuse", str(a), str(b), "-o", str(tmp_path / "f.png"), knob, value]) == 2
    assert f"error: {message}\n" == capsys.readouterr().err
    knob_range = ALPHA_RANGE if knob == "--alpha" else BETA_RANGE
    with pytest.raises(ValueError) as library:  # the same words as the library (and so the app and /fuse)
        knob_range.check(value if value == "abc" else float(value))
    assert str(library.value) == message


def unwritable_outputs(tmp_path):
    blocker = write(tmp_path / "a_file.png", 5)
    yield "under a file", blocker / "fused.png", "is a file, not a folder"
    yield "in /proc", "/proc/fused.png", "cannot write into /proc"
    yield "an existing folder", tmp_path, "is a folder; give an output file name"
    yield "unknown extension", tmp_path / "fused.xyz", "unknown image extension"
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        yield "a read-only folder", locked / "f.png", "cannot write into"


def test_unwritable_output_fails_before_fusing(tmp_path, monkeypatch, capsys):
    from tcmoa import cli

    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("the model loaded despite an unwritable output"))
    a, b = write(tmp_path / "a.png", 0), write(tmp_path / "b.png", 1)
    for what, out, message in unwritable_outputs(tmp_path):
        assert main(["fuse", str(a), str(b), "-o", str(out)]) == 2, what
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "unknown extension" not in err.replace(
            "unknown image extension", ""), (what, err)
    assert main(["fuse", "--pairs", str(tmp_path), str(tmp_path), "-o", str(a)]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
    assert main(["fuse", str(a), str(b), "-o", str(tmp_path / "f.png"), "--maps", "/proc/maps_here"]) == 2
    assert "--maps /proc/maps_here: cannot write into /proc" in capsys.readouterr().err


def test_mismatched_sizes_name_the_cli_option(tmp_path, capsys):
    a, b = write(tmp_path / "a.png", 0, size=(56, 48)), write(tmp_path / "b.png", 1, size=(48, 48))
    assert main(["fuse", str(a), str(b), "--model", "compact", "-o", str(tmp_path / "f.png")]) == 2
    assert "(or --align auto, or --resize first)" in capsys.readouterr().err


UNALIGNED = REPO / "demo" / "examples" / "unaligned" / "tno_18_thermal_camera"


def test_unaligned_sources_are_aligned_with_a_note(tmp_path, capsys):
    sources = [str(p) for p in sorted(UNALIGNED.glob("*.png"))]
    out = tmp_path / "f.png"
    assert main(["fuse", *sources, "-o", str(out)]) == 2  # of different sizes: alignment is asked for
    assert "--align auto" in capsys.readouterr().err
    assert main(["fuse", *sources, "--align", "auto", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "note: source 2: placed with its centre at" in printed.out and "confidence" in printed.out
    assert Image.open(out).size == Image.open(sources[0]).size  # the reference's frame (the visible image)
    assert main(["fuse", *sources, "--align", "auto", "--reference", "2", "-o", str(out)]) == 0
    assert Image.open(out).size == Image.open(sources[1]).size


def test_alignment_options_are_checked(tmp_path, capsys):
    a, b = write(tmp_path / "a.png", 0), write(tmp_path / "b.png", 1)
    command = ["fuse", str(a), str(b), "--model", "compact", "-o", str(tmp_path / "f.png")]
    with pytest.raises(SystemExit) as stopped:
        main([*command, "--align", "sideways"])
    assert stopped.value.code == 2 and "invalid choice: 'sideways'" in capsys.readouterr().err
    for reference in ("3", "0"):
        assert main([*command, "--align", "auto", "--reference", reference]) == 2
        assert f"--reference {reference}: there are 2 sources (1 to 2)" in capsys.readouterr().err


def test_maps_are_drawn_over_source_a_whatever_the_upload_order(tmp_path):
    # mef is order-free: the pipeline puts the brightest exposure first (source A). The prompt maps
    # must be drawn over that source, so both upload orders give the same images (the CLI passed
    # no order and drew them over whichever file came first).
    rng = np.random.default_rng(0)
    scene = rng.random((64, 64, 3))
    dark = write_array(tmp_path / "dark.png", 0.05 + 0.3 * scene)
    bright = write_array(tmp_path / "bright.png", 0.6 + 0.4 * scene)
    written = {}
    for name, order in (("db", [dark, bright]), ("bd", [bright, dark])):
        assert main(["fuse", *map(str, order), "--task", "mef", "--model", "compact", "-o", str(tmp_path / f"{name}.png"),
                     "--maps", str(tmp_path / name), "--quiet"]) == 0
        written[name] = {p.name: np.asarray(Image.open(p)) for p in sorted((tmp_path / name).iterdir())}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "db.png")), np.asarray(Image.open(tmp_path / "bd.png")))
    assert written["db"].keys() == written["bd"].keys() and "prompts.png" in written["db"]
    for file in written["db"]:
        assert np.array_equal(written["db"][file], written["bd"][file]), file


def write_array(path, image):
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path
