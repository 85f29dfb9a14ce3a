"""The whole page: the layout (demo.layout) wired by its events (demo.events), and how to launch it."""
from __future__ import annotations

from typing import Any

import gradio as gr

from .api import DemoBlocks
from .engine import QUEUE_SIZE, Engine
from .events import wire_events
from .example_sets import EXAMPLES_DIR
from .layout import CSS, KEY_RELEASE, page_layout
from .opening import opening_view


def build_demo(engine: Engine) -> gr.Blocks:
    """The whole page for one loaded model, opening on a bundled example fused at start-up (demo.opening)."""
    opening = opening_view(engine)
    # delete_cache: every 10 minutes, Gradio's copies of uploads and results older than an hour go.
    with DemoBlocks(title="TC-MoA image fusion", delete_cache=(600, 3600)) as demo:
        wire_events(engine, page_layout(engine, opening))
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def launch_options(engine: Engine) -> dict[str, Any]:
    """Keyword arguments for demo.launch() that belong to the page (style, upload limit)."""
    return {"css": CSS, "head": KEY_RELEASE, "max_file_size": f"{int(engine.max_file_mb)}mb",
            "allowed_paths": [str(EXAMPLES_DIR)]}
