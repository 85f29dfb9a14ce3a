"""The README's Python and command-line examples run exactly as written, on the shipped model."""
from __future__ import annotations

import re
import shlex
import shutil

import pytest
from PIL import Image

from tcmoa.cli import main as cli_main

from .conftest import DATA, REPO, needs_data

README = (REPO / "README.md").read_text()
EVAL = DATA / "eval"


def small_copy(src, dst, size=(160, 128)) -> None:
    """The README names files like vis.jpg; give it small real ones (keeps the test fast)."""
    Image.open(src).resize(size).save(dst)


@pytest.fixture()
def readme_files(tmp_path, monkeypatch, single_thread):
    vif, pet = EVAL / "vif" / "roadscene50", EVAL / "medical" / "harvard_pet"
    for name, src in {"vis.jpg": vif / "vi" / "FLIR_00211.jpg", "visible.jpg": vif / "vi" / "FLIR_00211.jpg",
                      "ir.png": vif / "ir" / "FLIR_00211.jpg", "infrared.png": vif / "ir" / "FLIR_00211.jpg",
                      "mri.png": pet / "mri" / "25015.png", "pet.png": pet / "pet" / "25015.png"}.items():
        small_copy(src, tmp_path / name)
    for i, plane in enumerate("abc", start=1):
        small_copy(EVAL / "mff" / "lytro_triples" / "lytro-01" / f"{plane}.jpg", tmp_path / f"e{i}.jpg")
    for folder, plane in (("DIR_A", "a"), ("DIR_B", "b")):
        (tmp_path / folder).mkdir()
        small_copy(EVAL / "mff" / "lytro_triples" / "lytro-02" / f"{plane}.jpg", tmp_path / folder / "s1.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@needs_data(EVAL)
def test_python_api_example(readme_files):
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", README, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (our own README)
    assert Image.open(readme_files / "fused.png").size == (160, 128)


@needs_data(EVAL)
def test_command_line_examples(readme_files):
    block = re.search(r"## Command line\n.*?```bash\n(.*?)```", README, re.S).group(1)
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("python -m tcmoa ")]
    assert len(lines) >= 5
    for line in lines:
        for variant in {re.sub(r"\[[^]]*\]", "", line), line.replace("[", "").replace("]", "")}:  # without/with [..]
            assert cli_main(shlex.split(variant)[3:]) == 0, variant
    assert (readme_files / "fused.png").is_file() and (readme_files / "hdr.png").is_file()
    assert (readme_files / "f.png").is_file() and (readme_files / "out" / "s1.png").is_file()
    assert any((readme_files / "maps").iterdir())
    shutil.rmtree(readme_files / "out")
