"""Where the research data sets live: `$TCMOA_DATA`, else shared/data beside a source checkout.

It holds pretrain/, train/ and eval/ (README, "Data and credits"); they are not in the repository, and
every command that reads them takes `--root` for another place.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT = Path(os.environ.get("TCMOA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
