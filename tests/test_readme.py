"""The README's Python and command-line examples run exactly as written, on the shipped model."""
from __future__ import annotations

import re
import shlex
import shutil

import pytest
from PIL import Image

from tcmoa.cli import main as cli_main

from .conftest import REPO

README = (REPO / "README.md").read_text()
EXAMPLES = REPO / "demo" / "examples"  # bundled, so the README's commands are checked in a fresh clone too


def small_copy(src, dst, size=(160, 128)) -> None:
    """The README names files like vis.jpg; give it small real ones (keeps the test fast)."""
    Image.open(src).resize(size).save(dst)


@pytest.fixture()
def readme_files(tmp_path, monkeypatch, single_thread):
    vif, pet = EXAMPLES / "vif" / "msrs_00047N", EXAMPLES / "mri-pet" / "harvard_30057"
    triple = EXAMPLES / "mff" / "lytro_triple_02"
    for name, src in {"vis.jpg": vif / "1_visible.png", "visible.jpg": vif / "1_visible.png",
                      "ir.png": vif / "2_infrared.png", "infrared.png": vif / "2_infrared.png",
                      "mri.png": pet / "1_mri.png", "pet.png": pet / "2_pet.png"}.items():
        small_copy(src, tmp_path / name)
    for i, plane in enumerate("abc", start=1):
        small_copy(triple / f"{i}_{plane}.png", tmp_path / f"e{i}.jpg")
    for folder, plane in (("DIR_A", "1_far"), ("DIR_B", "2_near")):
        (tmp_path / folder).mkdir()
        small_copy(EXAMPLES / "mff" / "lytro_09" / f"{plane}.png", tmp_path / folder / "s1.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_python_api_example(readme_files):
    found = re.search(r"## Python API\n.*?```python\n(.*?)```", README, re.S)
    assert found, "README.md has no ```python block under ## Python API"
    block = found.group(1)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (our own README)
    assert Image.open(readme_files / "fused.png").size == (160, 128)


def test_command_line_examples(readme_files):
    found = re.search(r"## Command line\n.*?```bash\n(.*?)```", README, re.S)
    assert found, "README.md has no ```bash block under ## Command line"
    block = found.group(1)
    lines = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("python -m tcmoa ")]
    assert len(lines) >= 5
    for line in lines:
        for variant in {re.sub(r"\[[^]]*\]", "", line), line.replace("[", "").replace("]", "")}:  # without/with [..]
            assert cli_main(shlex.split(variant)[3:]) == 0, variant
    assert (readme_files / "fused.png").is_file() and (readme_files / "hdr.png").is_file()
    assert (readme_files / "f.png").is_file() and (readme_files / "out" / "s1.png").is_file()
    assert any((readme_files / "maps").iterdir())
    shutil.rmtree(readme_files / "out")
