"""Shared test helpers: where the reference fixtures and data live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def fixture_dir(env_var: str, default: str) -> Path:
    """A fixture folder, overridable by an environment variable."""
    return Path(os.environ.get(env_var) or SHARED / "fixtures" / default)


OFFICIAL_FIXTURE = fixture_dir("TCMOA_OFFICIAL_FIXTURE", "official_tiny")
VIFB_FIXTURE = fixture_dir("TCMOA_VIFB_FIXTURE", "vifb_metrics")
DATA = SHARED / "data"


def official_cases() -> list[Path]:
    """Every case_*.npz of the official conformance fixture."""
    return sorted(OFFICIAL_FIXTURE.glob("case_*.npz"))


def needs_data(path: Path):
    """Skip marker for tests that read ../shared/data."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not available")
