"""Folder fusion over several processes: the ranks of a torchrun job share one queue of pairs.

    torchrun --nproc_per_node=8 -m tcmoa fuse --pairs vi/ ir/ --task vif -o out/    # one GPU per rank
    torchrun --standalone --nproc_per_node=2 -m tcmoa fuse --pairs vi/ ir/ -o out/   # 2 CPU processes

Ranks claim pairs from one queue, an atomic counter in the job's key-value store (the TCPStore
torchrun's rendezvous already runs). So every pair is fused exactly once, by the rank that claimed
it, which writes it; and a slow pair holds nobody up. Rank 0 shows one progress bar for all ranks
(the store's count of finished pairs) and, at the end, one summary with every rank's failures, in
folder order, as one process would. A failed pair is reported and skipped, as in one process.

Rank 0 returns the exit code one process would (0, 1 when some pairs failed, 2, 3); the other ranks
return 0 once their pairs are done. torchrun exits with 1 when any rank fails, and names the rank
and its code. (A `--workers N` option that started local ranks itself was measured and left out:
docs/SCALING.md.)
"""
from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Iterator, Sequence

import torch.distributed as dist
from tqdm import tqdm

from ..distributed import World, current_world

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
        # The ranks share the jobs through the job store; None: this process runs them all (or none).
        self.store = job_store() if shard and self.world.size > 1 else None
        self.bar = tqdm(total=len(self.jobs), disable=quiet or len(self.jobs) < 2 or not self.world.is_main,
                        unit="pair")
        self._failures: list[tuple[int, str]] = []
        self._current = -1

    def _claims(self) -> Iterator[int]:
        if self.store is None:  # one process, or a single fusion under torchrun: rank 0 runs it all
            yield from (range(len(self.jobs)) if self.world.is_main else ())
            return
        store = self.store
        while (i := store.add("claimed", 1) - 1) < len(self.jobs):
            yield i

    def __iter__(self) -> Iterator[Job]:
        for i in self._claims():
            self._current = i
            yield self.jobs[i]
            self._advance(self.store.add("done", 1) if self.store is not None else self.bar.n + 1)

    def _advance(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def failed(self, message: str) -> None:
        """Record a failure of the current job."""
        self._failures.append((self._current, message))

    def finish(self) -> list[str]:
        """Every rank's failures in job order (on every rank), once every rank is done; closes the bar."""
        if self.store is not None and self.world.is_main:
            while (done := self.store.add("done", 0)) < len(self.jobs):
                self._advance(done)
                time.sleep(POLL_S)
            self._advance(len(self.jobs))
        self.bar.close()
        every = self.world.gather(self._failures) if self.store is not None else [self._failures]
        return [message for _, message in sorted(f for failures in every for f in failures)]

