"""The evaluation harness on a tiny eval tree made on the fly."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from tcmoa.cli import main as cli_main
from tcmoa.fuse import evaluate
from tcmoa.metrics.baselines import run_baseline
from tcmoa.metrics.evaluation import Row, discover_sets, markdown_table, metric_names, run_method, write_csv


@pytest.fixture()
def eval_root(tmp_path):
    rng = np.random.default_rng(0)
    def img(path, grey=False):
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (64, 72) if grey else (64, 72, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(path)
    for i in ("1", "2"):
        img(tmp_path / "vif/tiny/vi" / f"{i}.png")
        img(tmp_path / "vif/tiny/ir" / f"{i}.png", grey=True)
        img(tmp_path / "mef/bracket/over" / f"{i}.jpg")
        img(tmp_path / "mef/bracket/under" / f"{i}.jpg")
    img(tmp_path / "vif/tiny/ir/unpaired.png", grey=True)
    for k in "abc":
        img(tmp_path / "mff/triples/scene1" / f"{k}.jpg")
    img(tmp_path / "medical/harvard_pet/mri/7.png", grey=True)
    img(tmp_path / "medical/harvard_pet/pet/7.png")
    return tmp_path


def test_discovery_pairs_files_by_id_in_role_order(eval_root):
    sets = {s.name: s for s in discover_sets(eval_root)}
    assert list(sets) == ["medical/harvard_pet", "mef/bracket", "mff/triples", "vif/tiny"]
    vif = sets["vif/tiny"]
    assert vif.task == "vif" and [i for i, _ in vif.items] == ["1", "2"]
    assert [p.parent.name for p in vif.items[0][1]] == ["vi", "ir"]  # visible is source A
    assert [p.parent.name for p in sets["mef/bracket"].items[0][1]] == ["over", "under"]
    assert sets["medical/harvard_pet"].task == "mri-pet"
    assert len(sets["mff/triples"].items[0][1]) == 3
    assert "MEF-SSIM" in metric_names(sets["mef/bracket"]) and "MEF-SSIM" not in metric_names(vif)
    with pytest.raises(ValueError, match="no such eval set"):
        discover_sets(eval_root, ["vif/nope"])


def test_run_tabulate_and_write(eval_root, tmp_path):
    mef, triples = discover_sets(eval_root, ["mef/bracket", "mff/triples"])
    rows = run_method(mef, "average", lambda src, s: run_baseline("average", src, "mef"))
    rows += run_method(mef, "laplacian", lambda src, s: run_baseline("laplacian", src, "mef"), limit=1)
    assert [r.method for r in rows] == ["average", "average", "laplacian"]
    assert set(rows[0].scores) == set(metric_names(mef)) and np.isfinite(rows[0].scores["Qabf"])
    table = markdown_table(rows, metric_names(mef)).splitlines()
    assert table[0].startswith("| method | n | EN ↑") and "Qcv ↓" in table[0] and "MEF-SSIM ↑" in table[0]
    assert table[2].startswith("| average | 2 |") and table[3].startswith("| laplacian | 1 |")
    scene_rows = run_method(triples, "average", lambda src, s: run_baseline("average", src, "mff"))
    assert scene_rows[0].scores == {} and "EN" not in markdown_table(scene_rows, metric_names(triples))
    write_csv(rows, tmp_path / "out" / "results.csv")
    with open(tmp_path / "out" / "results.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 3 and lines[0]["set"] == "mef/bracket" and float(lines[0]["Qabf"]) > 0


def test_table_of_timed_only_items_has_no_empty_metric_column():
    # Scenes of 3+ sources are timed, not scored: the table must stay a well-formed markdown table.
    table = markdown_table([Row("mff/lytro_triples", "average", "lytro-01", 0.25, {})], ["Qabf", "VIF"])
    assert table.splitlines() == ["| method | n | s/pair |", "|---|---|---|", "| average | 1 | 0.250 |"]


def test_tcmoa_evaluate_writes_a_table_per_set_and_the_csv(eval_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.delenv("TCMOA_DATA", raising=False)
    assert cli_main(["evaluate", "--root", str(eval_root), "--sets", "vif/tiny", "--model", "compact",
                     "--baselines", "average", "--metrics", "Qabf", "SSIM", "--limit", "1", "--threads", "1",
                     "--out", str(out)]) == 0
    table = (out / "vif_tiny.md").read_text()
    assert "### vif/tiny (1 of 2 items" in table and "average" in table and "TC-MoA (compact, untrained)" in table
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"average", "TC-MoA (compact, untrained)"}
    assert all(0 < float(r["Qabf"]) < 1 for r in rows)
    # No --root: the data root's eval/ ($TCMOA_DATA, else ../shared/data); where there is none, one line says so.
    monkeypatch.setattr(evaluate, "DATA_ROOT", tmp_path / "nowhere")
    with pytest.raises(SystemExit) as stop:
        cli_main(["evaluate", "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"no eval sets at {tmp_path / 'nowhere' / 'eval'}" in err, err
    assert "Traceback" not in err and "set $TCMOA_DATA or pass --root" in err
