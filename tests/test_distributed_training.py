"""Data-parallel training on the CPU: 2 gloo ranks at batch b/2 equal 1 process at batch b (2 micro-batches of b/2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tcmoa.model.checkpoint import load_model
from tcmoa.distributed import micro_batch_plan
from tcmoa.train.losses import task_loss
from tcmoa.model.network import normalize
from tcmoa.train.pretrain_stage import reconstruction_loss
from tcmoa.train.loop import read_state
from tests.test_training import COMMON, losses, run_pretrain, run_train, workdir  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("single_thread")
HALF = ["--batch", "2"]  # per micro-batch; COMMON's --batch 4 is the global batch b


def torchrun(args: list[str], ranks: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """`torchrun --standalone` (a free port) with `ranks` processes of 1 thread each, from the repo root."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def train_on_ranks(jobs: list[tuple[str, list[str]]], ranks: int = 2) -> float:
    """Run training commands one after another in `ranks` gloo processes; returns seconds."""
    t0 = time.monotonic()
    done = torchrun([str(REPO / "tests" / "ddp_jobs.py"), json.dumps(jobs)], ranks)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return time.monotonic() - t0


def max_difference(a: Path, b: Path) -> float:
    """The largest absolute parameter difference of two saved models."""
    sa, sb = load_model(a).state_dict(), load_model(b).state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


@pytest.fixture(scope="module")
def runs(workdir):  # noqa: F811
    """The same runs as 2 ranks x 1 micro-batch (torchrun) and as 1 process x 2 micro-batches of b/2."""
    w = workdir / "ddp"
    pack = ["--pack", str(workdir / "pack.safetensors")]
    pre = [*pack, "--config", str(workdir / "tiny.json"), "--lr", "3e-3", *COMMON, *HALF, "--steps", "4"]
    tc = [*pack, "--lr", "2e-3", *COMMON, *HALF, "--steps", "2"]
    one = ["--accumulate", "2"]
    run_pretrain(workdir, w / "pre1_half", *HALF, "--steps", "4", "--chunk-steps", "2", *one)
    run_pretrain(workdir, w / "pre1", *HALF, "--steps", "4", *one)
    run_train(workdir, w / "tc1", *HALF, "--backbone", str(w / "pre1"), "--steps", "2", *one)
    run_train(workdir, w / "med1", *HALF, "--init", str(w / "tc1"), "--router-only", "medical", "--steps", "2", *one)
    seconds = train_on_ranks([
        ("pretrain", [*pre, "--chunk-steps", "2", "--out", str(w / "pre2_half")]),
        ("train", [*tc, "--backbone", str(w / "pre1"), "--out", str(w / "tc2")]),
        ("train", [*tc, "--init", str(w / "tc1"), "--router-only", "medical", "--out", str(w / "med2")]),
    ])
    print(f"torchrun, 2 ranks, 3 commands: {seconds:.1f} s")
    return w


# Measured: 0, bit-identical. Each rank runs the same 1-thread kernels on the same shapes as a micro-batch
# of the single process, and halving a gradient and summing two is exact in binary floating point.
# Other thread counts or more than 2 ranks reorder float sums: expect ~1e-7 relative there.
TOLERANCE = 0.0


@pytest.mark.parametrize("one, two", [("pre1_half", "pre2_half"), ("tc1", "tc2"), ("med1", "med2")])
def test_two_ranks_equal_one_process_with_two_micro_batches(runs, one, two):
    assert max_difference(runs / one, runs / two) <= TOLERANCE
    # Rank 0 alone wrote the log: one record per step, the mean loss over both ranks.
    assert losses(runs / two) == pytest.approx(losses(runs / one), rel=1e-5)
    assert [c["ranks"] for c in read_state(runs / two)["chunks"]] == [2]


def test_resume_on_another_rank_count_is_the_same_run(runs, workdir):  # noqa: F811
    # 2 steps on 2 ranks, then 2 more in one process: it runs 2 micro-batches per step by itself.
    rest = run_pretrain(workdir, runs / "pre2_rest", "--resume", str(runs / "pre2_half"))
    assert [(c["ranks"], c["micro_batches"]) for c in rest.summary["chunks"]] == [(2, 2), (1, 2)]
    assert max_difference(runs / "pre1", runs / "pre2_rest") <= TOLERANCE


def test_micro_batch_plan():
    assert micro_batch_plan(None, None, 4) == (4, 1, None)  # new run: ranks x accumulate
    assert micro_batch_plan(None, 3, 2) == (6, 3, None)
    assert micro_batch_plan(8, None, 2) == (8, 4, None)  # resume: the same global batch
    g, k, note = micro_batch_plan(2, None, 3)  # 3 ranks cannot split 2 micro-batches
    assert (g, k) == (3, 1) and note is not None and "changes from 2 to 3" in note
    assert micro_batch_plan(8, 2, 2)[2] is not None  # an explicit --accumulate that changes G says so


def test_which_losses_are_per_sample_means():
    """Where 2 micro-batches of b/2 make the gradient of one batch of b: losses that are means over samples."""
    g = torch.Generator().manual_seed(0)
    a, b, fused = (torch.rand(4, 3, 32, 32, generator=g) for _ in range(3))
    enc, dec = ([(torch.rand(4, 16, 1, generator=g), torch.rand(4, 16, 1, generator=g))] for _ in range(2))
    halves = (slice(0, 2), slice(2, 4))
    whole = float(reconstruction_loss(normalize(fused), a)["loss"])
    assert whole == pytest.approx(sum(float(reconstruction_loss(normalize(fused[h]), a[h])["loss"]) for h in halves) / 2,
                                  rel=1e-5)
    for task in range(3):
        for epoch in (0, 5):  # warm-up and main phase
            full = task_loss(task, fused, a, b, enc, dec, 0.0, epoch)
            parts = [task_loss(task, fused[h], a[h], b[h], [(p[h], q[h]) for p, q in enc],
                               [(p[h], q[h]) for p, q in dec], 0.0, epoch) for h in halves]
            for name, value in full.items():
                mean = (parts[0][name] + parts[1][name]) / 2
                # MEF-SSIM (official): the batch is one tall image with batch-wide luminance weights.
                batch_wide = name == "MEF_SSIM_loss" or (name == "loss" and "MEF_SSIM_loss" in full)
                assert (abs(float(value - mean)) > 1e-3) == batch_wide, (task, epoch, name)
