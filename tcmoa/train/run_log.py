"""The record of a training run: log.jsonl (one JSON object per line) and its plot, loss.png."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence


class RunLog:
    """log.jsonl of the whole run: earlier chunks' lines are copied in, new ones appended as they come."""

    def __init__(self, path: Path, previous: Path | None = None, active: bool = True):
        old = previous.read_text().splitlines() if active and previous is not None and previous.is_file() else []
        self.records = [json.loads(line) for line in old if line.strip()]
        self.path, self.active = path, active  # inactive (ranks > 0): writes and prints nothing
        if active:
            path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (flushed at once, so a killed chunk still leaves its log)."""
        self.records.append(record)
        if self.active:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def say(self, line: str) -> None:
        """Print a progress line (rank 0 only)."""
        if self.active:
            print(line, flush=True)


def plot_log(records: Sequence[dict[str, Any]], path: Path, title: str, series: Sequence[str]) -> None:
    """loss.png: loss curves (log scale), the learning rate, and the held-out metrics."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures stay as they are

    steps = [r for r in records if "lr" in r]
    evals = [r for r in records if r.get("event") == "eval"]
    metrics = sorted({k for r in evals for k in r if k not in ("event", "step", "seconds")})
    fig = Figure(figsize=(15 if metrics else 10, 4))
    axes = fig.subplots(1, 3 if metrics else 2)
    for key in series:
        pts = [(r["step"], r[key]) for r in steps if key in r and r[key] > 0]
        if pts:
            axes[0].plot(*zip(*pts), label=key, lw=1)
    axes[0].set(yscale="log", xlabel="step", title="training loss")
    if axes[0].lines:
        axes[0].legend(fontsize=8)
    if steps:
        axes[1].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[1].set(xlabel="step", title="learning rate")
    for key in metrics:
        pts = [(r["step"], r[key]) for r in evals if key in r]
        axes[2].plot(*zip(*pts), marker=".", label=key)
    if metrics:
        axes[2].set(xlabel="step", title="held-out")
        axes[2].legend(fontsize=8)
    for r in records:  # chunk boundaries
        if r.get("event") == "chunk":
            for ax in axes:
                ax.axvline(r["last_step"], color="grey", lw=0.5, ls=":")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
