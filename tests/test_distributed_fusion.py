"""Folder fusion over torchrun ranks on the CPU: the same files as one process, each pair fused once."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from PIL import Image

from benchmarks.app_process import free_port
from tcmoa.fuse.folder_queue import PairQueue
from tcmoa.cli import main
from tcmoa.distributed import World
from tests.test_cli import write
from tests.test_distributed_training import torchrun

pytestmark = pytest.mark.usefixtures("single_thread")


def pairs_folder(root: Path, n: int) -> tuple[Path, Path]:
    """n pairs of small images plus one broken pair ('broken'), in two folders."""
    a, b = root / "a", root / "b"
    a.mkdir()
    b.mkdir()
    for i in range(n):
        write(a / f"{i:02d}.png", i, size=(48 + 8 * (i % 3), 44))
        write(b / f"{i:02d}.png", 100 + i, size=(48 + 8 * (i % 3), 44), mode="L")
    (a / "broken.png").write_bytes(b"not an image")
    write(b / "broken.png", 7)
    return a, b


def same_images(one: Path, other: Path) -> None:
    """The same file names with the same pixels."""
    first, second = sorted(one.iterdir()), sorted(other.iterdir())
    assert [p.name for p in second] == [p.name for p in first] == [f"{i:02d}.png" for i in range(7)]
    for p, q in zip(first, second):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q))), p.name


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """7 good pairs and a broken one, and what one process (1 thread) writes for them: exit code 1."""
    root = tmp_path_factory.mktemp("pairs")
    a, b = pairs_folder(root, 7)
    common = ["fuse", "--pairs", str(a), str(b), "--model", "compact", "--task", "vif"]
    assert main([*common, "-o", str(root / "one"), "--quiet"]) == 1  # exit 1: one pair failed
    return root, common


def test_torchrun_ranks_write_what_one_process_writes(folder):
    root, common = folder
    done = torchrun(["-m", "tcmoa", *common, "-o", str(root / "two")])
    assert done.returncode == 1, done.stderr[-3000:]  # torchrun reports rank 0's exit code 1 as its own 1
    same_images(root / "one", root / "two")
    # Rank 0 alone reports: one summary, one error line for the broken pair, one bar.
    assert done.stdout.count("wrote 7 of 8 fused images") == 1
    assert done.stderr.count("error: broken:") == 1 and done.stderr.count("untrained") == 1
    assert done.stderr.count("8/8") >= 1


def test_ranks_claim_every_pair_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    server = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # what torchrun serves
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    jobs = [(f"{i}",) for i in range(200)]
    claimed: list[list[str]] = [[], [], []]

    def rank(r: int) -> None:
        for stem, in PairQueue(jobs, quiet=True, world=World(rank=r, size=3)):
            claimed[r].append(stem)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(s for c in claimed for s in c) == sorted(s for s, in jobs)  # all, none twice
    assert server.add("tcmoa-pairs-0/done", 0) == len(jobs)
