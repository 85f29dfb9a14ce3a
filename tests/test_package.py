"""The package as others use it: one task vocabulary, light imports, the installed console script."""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions

import pytest

import tcmoa
from tcmoa.model.config import CONFIGS
from tcmoa.tasks import UnknownPresetError, get_preset, OBJECTIVES, ROUTERS, ROUTER_NAMES, PRESETS, VIF

from .conftest import REPO


def run_python(*args: str) -> subprocess.CompletedProcess:
    """A fresh interpreter in the repository root (so `tcmoa` is this checkout), output captured."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def loaded_after(*modules: str) -> set[str]:
    """Which top-level packages and tcmoa modules a fresh interpreter holds after importing `modules`."""
    code = f"import sys; import {', '.join(modules)}; print(' '.join(sys.modules))"
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_numpy_only_modules_import_without_torch():
    loaded = loaded_after("tcmoa", "tcmoa.metrics.vifb", "tcmoa.metrics.scores", "tcmoa.imaging", "tcmoa.metrics.baselines",
                          "tcmoa.metrics.evaluation", "tcmoa.tasks", "tcmoa.model.config")
    assert not loaded & {"torch", "timm", "gradio", "matplotlib"}


def test_training_commands_import_neither_the_pipeline_nor_each_other():
    loaded = loaded_after("tcmoa.train.fusion_stage")
    assert "torch" in loaded and not loaded & {"tcmoa.fuse.pipeline", "tcmoa.train.pretrain_stage"}
    assert "tcmoa.fuse.pipeline" not in loaded_after("tcmoa.train.pretrain_stage")


def test_public_names_load_lazily_from_their_modules():
    for name in tcmoa.__all__:
        module = importlib.import_module(f"tcmoa.{tcmoa._MODULE_OF[name]}")
        assert getattr(tcmoa, name) is getattr(module, name)
    assert set(tcmoa.__all__) <= set(dir(tcmoa))
    with pytest.raises(AttributeError, match="no attribute 'Fusr'"):
        _ = tcmoa.Fusr


def test_router_order_is_the_checkpoint_format():
    # Router indices are stored in checkpoints: a reorder would silently swap trained routers.
    assert ROUTER_NAMES == ("vif", "mef", "mff", "medical")
    assert ROUTER_NAMES[:len(OBJECTIVES)] == OBJECTIVES
    assert all(cfg.routers == ROUTER_NAMES[:cfg.num_routers] for cfg in CONFIGS.values())


def test_every_preset_borrows_a_known_router():
    assert {p.router for p in PRESETS.values()} <= set(ROUTERS)
    assert ROUTERS["medical"].objective == VIF  # the official zero-shot medical route is VIF's
    assert all(t.objective in range(len(OBJECTIVES)) and len(t.folders) >= 2 for t in ROUTERS.values())


def test_python_m_tcmoa_runs_the_cli():
    result = run_python("-m", "tcmoa", "info", "--model", "official-tiny")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout[result.stdout.index("{"):])["routers"] == ["vif", "mef", "mff"]


def test_pip_install_gives_the_tcmoa_command(tmp_path):
    # The wheel `pip install .` builds (no isolation, so no download), installed into a bare folder.
    built = run_python("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), ".")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("tcmoa-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {f"tcmoa/{p.name}" for p in (REPO / "tcmoa").glob("*.py")} <= names
    assert not [n for n in names if n.startswith(("tests/", "demo/", "benchmarks/"))]
    shipped = [p.name for p in (REPO / "checkpoints").glob("*.safetensors")]
    assert {f"tcmoa/checkpoints/{name}" for name in shipped} <= names
    site = tmp_path / "site"
    installed = run_python("-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel))
    assert installed.returncode == 0, installed.stderr
    # Away from the checkout, the console script runs the installed package's CLI on its shipped model.
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([str(site / "bin" / "tcmoa"), "info", *([] if shipped else ["--model", "compact"])],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = json.loads((REPO / "checkpoints" / "config.json").read_text())["name"] if shipped else "compact"
    assert json.loads(result.stdout[result.stdout.index("{"):])["name"] == expected
    assert not shipped or f"source: {site / 'tcmoa' / 'checkpoints'}" in result.stdout
    where = subprocess.run([sys.executable, "-c", "import tcmoa; print(tcmoa.__file__, tcmoa.__version__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.split() == [str(site / "tcmoa" / "__init__.py"), tcmoa.__version__]


def test_presets_are_case_insensitive_and_unknown_ones_have_one_message():
    assert get_preset("VIF") is get_preset("vif") is PRESETS["vif"]
    assert get_preset(" Medical ") is PRESETS["mri-pet"] and get_preset("MULTI-FOCUS") is PRESETS["mff"]
    with pytest.raises(UnknownPresetError, match=r"unknown task 'Sonar'; choose one of vif, mef, mff") as raised:
        get_preset("Sonar")
    assert isinstance(raised.value, ValueError)  # callers that catch ValueError keep working


def pinned(requirements: str) -> set[str]:
    """Distribution names pinned in a requirements file (lower case)."""
    lines = (REPO / requirements).read_text().splitlines()
    return {m.group(1).lower() for ln in lines if (m := re.match(r"([A-Za-z0-9_.-]+)==", ln))}


def test_requirements_txt_is_what_the_app_imports_and_the_dev_list_adds_the_tools():
    # A Space installs requirements.txt alone: every installed distribution the app's code imports is pinned there.
    imported = set()
    for path in [REPO / "app.py", *(REPO / "tcmoa").rglob("*.py"), *(REPO / "demo").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    providers = packages_distributions()  # `spaces` exists only on Spaces: not installed here, not pinned
    needed = {providers[name][0].lower() for name in imported - set(sys.stdlib_module_names) if name in providers}
    runtime = pinned("requirements.txt")
    assert needed and needed <= runtime, needed - runtime
    assert {"torch", "gradio", "opencv-python-headless"} <= needed
    dev = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev[:3]
    tools = pinned("requirements-dev.txt")
    assert {"pytest", "playwright", "mypy", "ruff", "hatchling"} <= tools and not tools & runtime
