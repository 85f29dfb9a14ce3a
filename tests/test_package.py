"""The package as others use it: one task vocabulary, light imports, the installed console script."""
from __future__ import annotations

from tcmoa.config import PRESETS
from tcmoa.tasks import OFFICIAL_TASKS, ROUTER_TASKS, TASK_NAMES, TASKS, VIF


def test_router_order_is_the_checkpoint_format():
    # Router indices are stored in checkpoints: a reorder would silently swap trained routers.
    assert TASK_NAMES == ("vif", "mef", "mff", "medical")
    assert TASK_NAMES[:len(OFFICIAL_TASKS)] == OFFICIAL_TASKS
    assert all(cfg.task_names == TASK_NAMES[:cfg.num_tasks] for cfg in PRESETS.values())


def test_every_preset_borrows_a_known_router():
    assert {p.router for p in TASKS.values()} <= set(ROUTER_TASKS)
    assert ROUTER_TASKS["medical"].loss == VIF  # the official zero-shot medical route is VIF's
    assert all(t.loss in range(len(OFFICIAL_TASKS)) and len(t.folders) >= 2 for t in ROUTER_TASKS.values())
