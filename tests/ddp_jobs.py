"""Run training commands one after another in every rank of a torchrun job (for the data-parallel tests).

    torchrun --standalone --nproc-per-node 2 tests/ddp_jobs.py '[["pretrain", ["--pack", ...]], ...]'
"""
from __future__ import annotations

import json
import sys

import torch

from tcmoa.train_cli import pretrain_main, train_main
from tcmoa.distributed import process_group

if __name__ == "__main__":
    torch.set_num_threads(1)  # as the single-process reference (tests' single_thread fixture)
    with process_group("cpu"):  # one group for all jobs; each command's own process_group joins it
        for command, argv in json.loads(sys.argv[1]):
            {"pretrain": pretrain_main, "train": train_main}[command](argv)
