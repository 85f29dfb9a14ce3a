"""Scaling benchmark: 1 process against 2 torchrun ranks, for training steps and for folder fusion.

    python -m benchmarks.scaling                     # ~15 min on 2 busy cores; docs/SCALING.md
    python -m benchmarks.scaling --repeats 2 --steps 12

Every configuration runs the real command line in fresh processes, alternated `--repeats` times,
and the best (least disturbed) run of each is reported, with the machine's load average.
- Training (`compact`, crops of --size, a global batch of --batch crops per step): 1 process with
  all threads (the default), 1 process of 1 thread with --accumulate 2 (the same computation as 2
  ranks, one after the other), and torchrun with 2 ranks of 1 thread each. Steps/s from
  log.jsonl's clock over the steps after the first two.
- Folder fusion (eval/vif/msrs20, 20 pairs of 640x480, random `compact` weights): 1 process with
  all threads, 1 process with 1 thread, 2 ranks of 1 thread each (torchrun). (Commit 3e92df6 also
  had `fuse --workers 2`, local ranks started by the command itself; measured, then left out.)
  Pairs/s from the output files' times: 19 / (last written - first written), which leaves out the
  start-up (imports, model; reported as the time to the first file).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
# A small training root: a few images of every group the pack needs (symlinks into shared/data).
SMALL_ROOT = {"pretrain/natural": 40, "train/vif/msrs30": 10, "train/mef/fusiondn27": 6, "train/medical/harvard_ct": 10}


def small_pack(work: Path) -> Path:
    """Pack a few images of each group (seconds), so the measurement does not wait on data."""
    root = work / "root"
    for group, n in SMALL_ROOT.items():
        src = DATA / group
        roles = sorted(d for d in src.iterdir() if d.is_dir()) or [src]
        names = sorted(p.name for p in roles[0].iterdir())[:n]
        for role in roles:
            dst = root / group / (role.name if role != src else "")
            dst.mkdir(parents=True, exist_ok=True)
            for name in names:
                (dst / name).symlink_to(role / name)
    pack = work / "pack.safetensors"
    run([sys.executable, "-m", "tcmoa", "pack", "--root", str(root), "--out", str(pack)], threads=2)
    return pack


def run(cmd: list[str], threads: int, ranks: int = 1, ok: tuple[int, ...] = (0,)) -> float:
    """Run a command (under torchrun with `ranks` > 1) with `threads` per process; returns wall seconds."""
    if ranks > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *cmd[1:]]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.monotonic() - t0


def steps_per_second(out: Path) -> float:
    """From log.jsonl: steps after the first two over the clock they took."""
    steps = [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "lr" in r]
    first, last = steps[1], steps[-1]
    return (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])


def load() -> str:
    """The 1-minute load average, and the core count."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def main() -> None:
    """Measure, print a markdown table and the JSON of every run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", choices=("train", "fuse"), help="measure only training or only fusion")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4, help="global batch (crops per optimiser step)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads of a lone process")
    o = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tcmoa_scaling_"))
    rows: list[dict] = []
    try:
        pack = small_pack(work)
        common = ["--pack", str(pack), "--size", str(o.size), "--steps", str(o.steps), "--log-every", "1",
                  "--eval-every", "0", "--device", "cpu"]
        half = str(o.batch // 2)
        training = {  # name: (extra args, threads per process, ranks)
            "1 process": (["--batch", str(o.batch)], o.threads, 1),
            "1 process x 1 thread, --accumulate 2": (["--batch", half, "--accumulate", "2"], 1, 1),
            "2 ranks x 1 thread": (["--batch", half], 1, 2),
        }
        backbone = work / "backbone"
        run([sys.executable, "-m", "tcmoa", "pretrain", *common, "--steps", "1", "--out", str(backbone)], o.threads)
        pairs = DATA / "eval" / "vif" / "msrs20"
        fusion: dict[str, tuple[int, int, list[str]]] = {  # threads, ranks, extra CLI arguments
            "1 process": (o.threads, 1, []), "1 process x 1 thread": (1, 1, []), "2 ranks x 1 thread (torchrun)": (1, 2, [])}
        for rep in range(o.repeats):
            for stage, command, extra in (() if o.only == "fuse" else (
                    ("pretrain", "pretrain", []), ("tcmoa", "train", ["--backbone", str(backbone)]))):
                for name, (args, threads, ranks) in training.items():
                    out = work / f"{stage}_{rep}_{len(rows)}"
                    before = load()
                    cmd = [sys.executable, "-m", "tcmoa", command, *common, *extra, *args, "--out", str(out)]
                    wall = run(cmd, threads, ranks)
                    rows.append({"kind": f"train {stage}", "config": name, "steps_per_s": steps_per_second(out),
                                 "wall_s": wall, "load": before})
                    print(json.dumps(rows[-1]), flush=True)
            for name, (threads, ranks, extra) in ({} if o.only == "train" else fusion).items():
                out = work / f"fused_{rep}_{len(rows)}"
                cmd = [sys.executable, "-m", "tcmoa", "fuse", "--pairs", str(pairs / "vi"), str(pairs / "ir"),
                       "--task", "vif", "--model", "compact", "--quiet", "-o", str(out), *extra]
                before, started = load(), time.time()
                wall = run(cmd, threads, ranks)
                written = sorted(f.stat().st_mtime for f in out.iterdir())
                shutil.rmtree(out)
                rows.append({"kind": "fuse msrs20", "config": name, "wall_s": wall, "startup_s": written[0] - started,
                             "pairs_per_s": (len(written) - 1) / (written[-1] - written[0]), "load": before})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| what | configuration | best rate | wall s (best) | load before |\n|---|---|---|---|---|")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        for config in dict.fromkeys(r["config"] for r in rows if r["kind"] == kind):
            mine = [r for r in rows if r["kind"] == kind and r["config"] == config]
            key = "steps_per_s" if "steps_per_s" in mine[0] else "pairs_per_s"
            best = max(mine, key=lambda r: r[key])
            unit = "steps/s" if key == "steps_per_s" else "pairs/s"
            print(f"| {kind} | {config} | {best[key]:.3g} {unit} | {best['wall_s']:.1f} | {best['load']} |")


if __name__ == "__main__":
    main()
