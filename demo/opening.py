"""The page as it opens: a bundled example fused once at start-up, so a first visit shows a result, not empty boxes.

Computed when the page is built (one fusion, its metrics and the open map tab: about a second on two
cores), so page loads cost nothing; every visitor starts from the same, immutable opening. On ZeroGPU
the page opens empty: there the GPU exists only inside a request (demo.gpu), and start-up is not one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from . import callbacks as cb
from . import gpu
from .analysis import TABS, Shown
from .downloads import named_view
from .engine import DEFAULT_ALIGN, Engine
from .example_sets import ExampleSet, find_examples
from .sources import AlignOptions

log = logging.getLogger("tcmoa.demo")
OPENING_EXAMPLE = ("vif", "msrs_00047N")  # a night street: the pedestrian only the infrared shows
OPENING_NOTE = "A bundled example, fused when the app started: your first upload replaces its sources."
EMPTY_STATUS = "**Upload two sources** to fuse, or click an example."


@dataclass(frozen=True)
class Opening:
    """What the page shows when it opens: an example fused with its task's defaults, or nothing."""

    task: str
    example: ExampleSet | None  # None: the page opens empty
    view: cb.FuseView  # fused: the named PNG's path; the open tab's figure drawn
    seconds: float  # what the opening fusion cost at start-up

    @property
    def align(self) -> str:
        """"Align sources" as the page opens (the opening example's)."""
        return self.example.align if self.example else DEFAULT_ALIGN

    @property
    def files(self) -> list[str]:
        """The opening example's sources, in slot order (none without an example)."""
        return [str(f) for f in self.example.files] if self.example else []


def opening_view(engine: Engine, sets: list[ExampleSet] | None = None) -> Opening:
    """Fuse the opening example (OPENING_EXAMPLE, else the first one) as the page's first view."""
    if gpu.ZERO_GPU:  # no GPU outside a request: open empty
        sets = []
    elif sets is None:
        sets = find_examples()
    task, name = OPENING_EXAMPLE
    example = next((s for s in sets if (s.task, s.name) == (task, name)), sets[0] if sets else None)
    if example is None:
        return Opening("vif", None, cb.waiting_view(EMPTY_STATUS), 0.0)
    start = time.perf_counter()
    alpha, beta, _ = cb.task_defaults(engine, example.task)
    view = cb.final_view(cb.fuse_steps(engine, [str(f) for f in example.files], example.task, alpha, beta,
                                       align=AlignOptions(example.align), open_tab=TABS[0]))
    if not isinstance(view.shown, Shown):  # never expected of a bundled example: open empty
        log.warning("the opening example %s did not fuse: %s", example.label, view.status)
        return Opening(example.task, None, cb.waiting_view(EMPTY_STATUS), 0.0)
    view = named_view(view)._replace(status=f"{view.status}\n\n{OPENING_NOTE}")
    return Opening(example.task, example, view, time.perf_counter() - start)
