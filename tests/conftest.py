"""Shared test helpers: where the reference fixtures and data live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tcmoa.train.data import DATA_ROOT

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def fixture_dir(env_var: str, default: str) -> Path:
    """A fixture folder, overridable by an environment variable."""
    return Path(os.environ.get(env_var) or SHARED / "fixtures" / default)


OFFICIAL_FIXTURE = fixture_dir("TCMOA_OFFICIAL_FIXTURE", "official_tiny")
VIFB_FIXTURE = fixture_dir("TCMOA_VIFB_FIXTURE", "vifb_metrics")
DATA = DATA_ROOT  # $TCMOA_DATA, else ../shared/data


def official_cases() -> list[Path]:
    """Every case_*.npz of the official conformance fixture."""
    return sorted(OFFICIAL_FIXTURE.glob("case_*.npz"))


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
