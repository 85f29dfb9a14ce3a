"""Folder fusion over several processes: the ranks of a torchrun job share one queue of pairs.

    torchrun --nproc_per_node=8 -m tcmoa fuse --pairs vi/ ir/ --task vif -o out/    # one GPU per rank
    python -m tcmoa fuse --pairs vi/ ir/ --task vif -o out/ --workers 2              # 2 CPU processes

Ranks claim pairs from one queue, an atomic counter in the job's key-value store (the TCPStore
torchrun's rendezvous already runs). So every pair is fused exactly once, by the rank that claimed
it, which writes it; and a slow pair holds nobody up. Rank 0 shows one progress bar for all ranks
(the store's count of finished pairs) and, at the end, one summary with every rank's failures, in
folder order, as one process would. A failed pair is reported and skipped, as in one process.

`--workers N` starts the N ranks on this machine itself (rank 0 serves the store), each with
cores / N threads, and exits with rank 0's exit code, so the codes mean what they mean in one
process (torchrun reports any failure as its own exit code 1).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from typing import Iterator, Sequence

import torch.distributed as dist
from tqdm import tqdm

from .distributed import World, current_world

Job = tuple  # (stem, source path, source path, ...) as cli builds them
POLL_S = 0.2  # how often rank 0 refreshes the bar while it waits for the other ranks


def job_store(timeout_s: float = 300.0) -> dist.Store:
    """A client of the job's TCPStore (torchrun's agent, or rank 0, serves it at MASTER_ADDR:MASTER_PORT)."""
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(seconds=timeout_s))
    # A restarted job (torchrun --max-restarts) starts a fresh queue.
    return dist.PrefixStore(f"tcmoa-pairs-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


class PairQueue:
    """The jobs this process runs: all of them in one process; under torchrun, the ones this rank claims."""

    def __init__(self, jobs: Sequence[Job], quiet: bool, shard: bool = True, world: World | None = None):
        self.jobs, self.world = list(jobs), world or current_world()
        self.shared = shard and self.world.size > 1
        self.store = job_store() if self.shared else None
        self.bar = tqdm(total=len(self.jobs), disable=quiet or len(self.jobs) < 2 or not self.world.is_main,
                        unit="pair")
        self._failures: list[tuple[int, str]] = []
        self._current = -1

    def _claims(self) -> Iterator[int]:
        if not self.shared:  # one process, or a single fusion under torchrun: rank 0 runs it all
            yield from (range(len(self.jobs)) if self.world.is_main else ())
            return
        while (i := self.store.add("claimed", 1) - 1) < len(self.jobs):
            yield i

    def __iter__(self) -> Iterator[Job]:
        for i in self._claims():
            self._current = i
            yield self.jobs[i]
            self._advance(self.store.add("done", 1) if self.shared else self.bar.n + 1)

    def _advance(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def failed(self, message: str) -> None:
        """Record a failure of the current job."""
        self._failures.append((self._current, message))

    def finish(self) -> list[str]:
        """Every rank's failures in job order (on every rank), once every rank is done; closes the bar."""
        if self.shared and self.world.is_main:
            while (done := self.store.add("done", 0)) < len(self.jobs):
                self._advance(done)
                time.sleep(POLL_S)
            self._advance(len(self.jobs))
        self.bar.close()
        every = self.world.gather(self._failures) if self.shared else [self._failures]
        return [message for _, message in sorted(f for failures in every for f in failures)]


def free_port() -> int:
    """A TCP port that was free a moment ago (for rank 0's store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(argv: Sequence[str], workers: int) -> int:
    """`python -m tcmoa <argv>` as `workers` local ranks of cores/workers threads; returns rank 0's exit code."""
    threads = max(1, (os.cpu_count() or workers) // workers)
    ranks = {"WORLD_SIZE": str(workers), "LOCAL_WORLD_SIZE": str(workers), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-m", "tcmoa", *argv],
                              env={**os.environ, **ranks, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in range(workers)]
    try:
        while procs[0].poll() is None:
            crashed = [p.returncode for p in procs[1:] if p.poll() not in (None, 0)]
            if crashed:  # rank 0 would wait for its pairs forever: stop everyone, as torchrun does
                return crashed[0]
            time.sleep(POLL_S)
        return procs[0].returncode  # rank 0 finishes last: it waits for every rank's pairs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait()
