"""Odd inputs a user meets (issue 16, item 5): each gets a clear message or a correct result, and the
command line leaves no partial file behind when interrupted."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tcmoa import cli
from tcmoa.cli import main
from tcmoa.imaging import read_image, save_image

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, seed: int, size=(56, 48), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(path)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: the input must be refused before that 5-s step."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(cli, "load_model", refuse)


# ------------------------------------------------------------------------------ 12-bit data in 16-bit files
def thermal_png(path: Path, peak: int, sbit: int | None = None) -> np.ndarray:
    values = (np.linspace(0, 1, 48 * 56).reshape(48, 56) * peak).astype(np.uint16)
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(values).save(path, pnginfo=info)
    return values


def test_twelve_bit_data_in_a_sixteen_bit_png_is_scaled_with_a_note(tmp_path: Path) -> None:
    """The reported defect: 12-bit thermal data read /65535 came out nearly black (max 0.06)."""
    values = thermal_png(tmp_path / "ir12.png", 4095)
    notes: list[str] = []
    image = read_image(tmp_path / "ir12.png", notes=notes)
    np.testing.assert_allclose(image, values / 4095.0, atol=1e-6)
    assert image.max() == 1.0 and "12-bit data in a 16-bit file (every value is at most 4095)" in notes[0]


def test_the_png_sbit_chunk_decides_when_present(tmp_path: Path) -> None:
    values = thermal_png(tmp_path / "ir.png", 3000, sbit=12)  # a cool scene: the data never reaches 4095
    notes: list[str] = []
    np.testing.assert_allclose(read_image(tmp_path / "ir.png", notes=notes), values / 4095.0, atol=1e-6)
    assert "sBIT" in notes[0]
    full = thermal_png(tmp_path / "ir16.png", 60000)  # real 16-bit data: as before, no note
    notes.clear()
    np.testing.assert_allclose(read_image(tmp_path / "ir16.png", notes=notes), full / 65535.0, atol=1e-7)
    assert notes == []


def test_twelve_bit_counts_in_a_float_tiff_are_scaled_alike(tmp_path: Path) -> None:
    """Whole-number 12-bit counts saved as float32 (0-2370 here) were read /65535: max 0.036, no note."""
    counts = (np.linspace(0, 1, 48 * 56).reshape(48, 56) * 2370).round().astype(np.float32)
    Image.fromarray(counts).save(tmp_path / "ir.tif")
    notes: list[str] = []
    np.testing.assert_allclose(read_image(tmp_path / "ir.tif", notes=notes), counts / 4095.0, atol=1e-6)
    assert len(notes) == 1 and "12-bit data in a float file (every value is at most 2370)" in notes[0]
    full = (np.linspace(0, 1, 48 * 56).reshape(48, 56) * 60000).round().astype(np.float32)  # 16-bit: no note
    Image.fromarray(full).save(tmp_path / "ir16.tif")
    notes.clear()
    np.testing.assert_allclose(read_image(tmp_path / "ir16.tif", notes=notes), full / 65535.0, atol=1e-6)
    assert notes == []


def test_the_cli_says_when_it_scaled_low_bit_data(tmp_path, capsys):
    thermal_png(tmp_path / "ir.png", 4095)
    visible = write(tmp_path / "vis.png", 0)
    assert main(["fuse", str(visible), str(tmp_path / "ir.png"), "--model", "compact", "-o",
                 str(tmp_path / "f.png")]) == 0
    assert "note: " in capsys.readouterr().out


# ------------------------------------------------------------------------------ CLI: refused before the model loads
@pytest.mark.parametrize("argv, message", [
    (["fuse", "{a}", "{b}", "-o", "{out}", "--device", "tpu"], "--device: unknown device 'tpu'"),
    (["info", "--device", "tpu"], "--device: unknown device 'tpu'"),
    (["fuse", "{a}", "{b}", "-o", "{out}", "--max-pixels", "-1"], "--max-pixels must be a positive number"),
    (["fuse", "{a}", "{b}", "-o", "{a}"], "is source 1; give another output file"),
    (["fuse", "{a}", "{missing}", "-o", "{out}"], "source 2: "),
    (["fuse", "{a}", "{small}", "-o", "{out}"], "source 2 is 44x44 but source 1 is 56x48"),
    (["fuse", "{a}", "{tiny}", "-o", "{out}"], "source 2: '{tiny}': image is 1x1 px; fusion needs at least 44 px on each side"),
])
def test_bad_options_and_inputs_exit_2_before_the_model_loads(tmp_path, capsys, no_model_load, argv, message):
    files = {"a": write(tmp_path / "a.png", 0), "b": write(tmp_path / "b.png", 1),
             "small": write(tmp_path / "s.png", 2, size=(44, 44)), "tiny": write(tmp_path / "t.png", 3, size=(1, 1)),
             "missing": tmp_path / "nope.png", "out": tmp_path / "f.png"}
    assert main([arg.format(**files) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**files) in err and "Traceback" not in err


def test_pairs_report_name_clashes_and_refuse_a_source_folder_as_output(tmp_path, capsys, no_model_load):
    """The reported defect: x.jpg and x.png in both folders said 'wrote 1 of 1' and dropped a pair."""
    for d in ("vi", "ir"):
        (tmp_path / d).mkdir()
        write(tmp_path / d / "x.png", 0)
        write(tmp_path / d / "x.jpg", 1)
    assert main(["fuse", "--pairs", str(tmp_path / "vi"), str(tmp_path / "ir"), "-o", str(tmp_path / "out")]) == 2
    assert "x.jpg and x.png" in capsys.readouterr().err
    (tmp_path / "vi" / "x.jpg").unlink()
    (tmp_path / "ir" / "x.jpg").unlink()
    assert main(["fuse", "--pairs", str(tmp_path / "vi"), str(tmp_path / "ir"), "-o", str(tmp_path / "vi")]) == 2
    assert "is a source folder" in capsys.readouterr().err


def test_a_closed_pipe_is_quiet():
    """The reported defect: `tcmoa info | head -2` ended in a BrokenPipeError traceback."""
    run = subprocess.run(f"{sys.executable} -m tcmoa info --model compact | head -1", shell=True, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.stdout.startswith("model: compact") and run.stderr == "", run.stderr


# ------------------------------------------------------------------------------ atomic outputs, Ctrl-C
def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "f.png"
    save_image(out, np.zeros((8, 8), np.float32))
    before = out.read_bytes()

    def interrupted(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half a file")  # what Pillow had written when Ctrl-C came
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(out, np.ones((8, 8), np.float32))
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no partial file


@pytest.mark.parametrize("pairs", [False, True])
def test_ctrl_c_leaves_no_partial_file_says_what_was_written_and_exits_130(tmp_path, monkeypatch, capsys, pairs):
    """The reported defect: a 33-byte unreadable PNG at the final path, and no summary."""
    real_save = Image.Image.save
    saves = []

    def save(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 2 or not pairs:
            Path(fp).write_bytes(b"\x89PNG" + b"\0" * 29)
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    if pairs:
        for d in ("vi", "ir"):
            (tmp_path / d).mkdir()
            for k in range(3):
                write(tmp_path / d / f"{k}.png", k)
        argv = ["fuse", "--pairs", str(tmp_path / "vi"), str(tmp_path / "ir"), "-o", str(tmp_path / "out")]
        expected, outputs = "interrupted: wrote 1 of 3 fused image(s) to", ["0.png"]
    else:
        argv = ["fuse", str(write(tmp_path / "a.png", 0)), str(write(tmp_path / "b.png", 1)), "-o",
                str(tmp_path / "out" / "f.png")]
        expected, outputs = "interrupted: wrote 0 of 1 fused image(s)", []
    monkeypatch.setattr(Image.Image, "save", save)  # the sources are written: now Ctrl-C comes while saving
    assert main([*argv, "--model", "compact", "--quiet"]) == 130
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == outputs  # whole files only, no partial one


# ------------------------------------------------------------------------------ app.py
def test_app_refuses_an_unknown_device_and_a_busy_port_in_one_line():
    run = subprocess.run([sys.executable, "app.py", "--device", "tpu"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "unknown device 'tpu'" in run.stderr and "Traceback" not in run.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([sys.executable, "app.py", "--port", str(port)], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert run.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [["-m", "benchmarks.controllability"], ["-m", "tcmoa", "evaluate"]])
def test_benchmarks_without_data_say_where_it_goes(tmp_path, command):
    """The reported defect: without ../shared, evaluate and controllability ended in a traceback."""
    env = {**os.environ, "TCMOA_DATA": str(tmp_path / "none")}  # as a clone without ../shared beside it
    run = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode in (1, 2) and "Traceback" not in run.stderr
    assert "TCMOA_DATA" in run.stderr or "--root" in run.stderr, run.stderr
