"""The page's events: which user action runs which callback (one function per kind of event).

One user action gives exactly one fusion. Fusions run only on *user* events (`.input`, `.select`,
`.upload`, `.clear`, clicks), never on `.change`, which also fires when a callback sets a value. Actions
that set several inputs at once (a task change, an example, swap, reset, removing a filled slot)
update them without a fusion and bump `session.request`, whose change runs the one fusion with the new
values. Every fusion goes through one event with trigger_mode="always_last": while one runs, only
the latest request waits, and results arrive in order.

Where things go: an event that fuses is in demo.fusion_events; one that sets inputs or redraws a view
is in demo.control_events; the /fuse endpoints are demo.api. A new control is a field of
components.Inputs, built in demo.layout; if fusions read it, a field of fusion_events.Controls.
"""
from __future__ import annotations

from .api import wire_api
from .components import Page
from .control_events import wire_controls, wire_examples, wire_sources, wire_sweep, wire_tabs, wire_task
from .engine import Engine
from .fusion_events import wire_full_resolution, wire_fusion


def wire_events(engine: Engine, page: Page) -> None:
    """Connect the page's components (call inside the Blocks)."""
    wire_fusion(engine, page)
    wire_full_resolution(engine, page)
    wire_examples(engine, page)
    wire_task(engine, page)
    wire_controls(engine, page)
    wire_sources(page)
    wire_tabs(page)
    wire_sweep(engine, page)
    wire_api(engine)
