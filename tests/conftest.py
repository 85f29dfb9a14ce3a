"""Shared test helpers: where the reference fixtures and data live.

The conformance fixtures are vendored in tests/fixtures/ (see its README), so a fresh clone checks
every claim against the official code and VIFB; a missing fixture is an error, never a skip. Only
tests that need a GPU or the large data sets (DATA, `$TCMOA_DATA`, default ../shared/data) skip.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tcmoa.data_root import DATA_ROOT

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def fixture_file(folder: Path, name: str) -> Path:
    """A file of a vendored fixture; raises (failing collection) when it is missing."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"conformance fixture {path} is missing: tests/fixtures/ is part of the repository")
    return path


def fixture_dir(env_var: str, default: str) -> Path:
    """A fixture folder, tests/fixtures/<default> unless an environment variable names another."""
    return Path(os.environ.get(env_var) or FIXTURES / default)


OFFICIAL_FIXTURE = fixture_dir("TCMOA_OFFICIAL_FIXTURE", "official_tiny")
VIFB_FIXTURE = fixture_dir("TCMOA_VIFB_FIXTURE", "vifb_metrics")
MEF_SSIM_FIXTURE = FIXTURES / "mef_ssim_octave"  # its cases name files of the repository (tests/data, demo/examples)
DATA = DATA_ROOT  # $TCMOA_DATA, else ../shared/data


def official_cases() -> list[Path]:
    """Every case_*.npz of the official conformance fixture (both must be there)."""
    return [fixture_file(OFFICIAL_FIXTURE, f"case_{name}.npz") for name in ("vif112", "mef224")]


def needs_data(path: Path):
    """Skip marker for tests that read the data root (DATA)."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not available")


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for modules of many tiny ops: as fast on free cores, far faster on shared
    ones (no OpenMP barrier waits), and deterministic; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
