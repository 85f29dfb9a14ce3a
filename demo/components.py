"""The page's components by name: demo.layout builds a `Page`, demo.events wires it; neither imports the other.

Events read their inputs by component (inputs given as a set arrive as one {component: value} dict)
and answer by component ({component: value}), so no list order can mis-wire the page.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .example_sets import ExampleSet


class SourceImage(gr.Image):
    """gr.Image whose upload handling never fails: an unreadable file reaches the callback, which explains it."""

    is_template = True  # rendered by gr.Image's front end

    def preprocess(self, payload: Any) -> Any:
        """The uploaded file's path; a file Pillow cannot open is passed through for a clear message later."""
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 (whatever Pillow refuses, the callback explains)
            return str(payload.path) if payload is not None and getattr(payload, "path", None) else None


class KnobSlider(gr.Slider):
    """gr.Slider that hands a typed out-of-range value to the callback, which refuses it with one message and
    puts the slider back to the fused value (gr.Slider's own check would put Gradio's error on every output)."""

    is_template = True  # rendered by gr.Slider's front end

    def preprocess(self, payload: Any) -> Any:
        """The value as typed: the callback checks it against the library's range."""
        return payload


@dataclass
class Inputs:
    """What the user sets: the task, the sources, the knobs, the options and the buttons."""

    task: gr.Dropdown
    info: gr.Markdown
    slots: list[SourceImage]
    add: gr.Button
    remove: gr.Button
    swap: gr.Button
    alpha: gr.Slider
    beta: gr.Slider
    fuse: gr.Button
    reset: gr.Button
    full: gr.Button  # the full resolution, as a named PNG
    cancel: gr.Button
    resize: gr.Checkbox
    show_baselines: gr.Checkbox
    blend: gr.Checkbox
    routers: list[gr.Slider]
    align: gr.Dropdown  # "Align sources": tcmoa.align.ALIGN_MODES
    reference: gr.Dropdown  # the source whose frame the output keeps: 0 = the task's choice, else 1-based
    crop: gr.Checkbox  # crop to the area every source covers
    deghost: gr.Checkbox  # exposure stacks: remove moving content (shown for the mef task only)
    examples: gr.Dataset  # clicking one loads its sources, task and settings in one update
    example_sets: list[ExampleSet]  # the Dataset's rows, by index


@dataclass
class Outputs:
    """What the page shows: the fused image and everything computed from it."""

    status: gr.Markdown
    fused: gr.Image
    comparison: gr.ImageSlider
    compare_with: gr.Radio
    metrics: gr.Markdown
    baselines: gr.Gallery
    tabs: dict[str, gr.Tab]  # analysis.TABS keys
    figures: dict[str, gr.Image]
    alignment_report: gr.Markdown  # the alignment tab's words: what was done to each source
    sweep_knob: gr.Radio
    sweep_metric: gr.Dropdown
    sweep: gr.Button
    sweep_strip: gr.Gallery
    sweep_curve: gr.Image
    sweep_status: gr.Markdown
    full_file: gr.File
    full_status: gr.Markdown


@dataclass
class Session:
    """Per-session values the events share (gr.State: each browser tab has its own)."""

    n_sources: gr.State  # the open source slots
    request: gr.State  # bumped by actions that set several inputs at once: its change runs the one fusion
    open_tab: gr.State  # the map tab in view: only its figure is drawn after a fusion
    shown: gr.State  # analysis.Shown of the last fusion (tabs, before/after, a refused value's sliders)
    from_example: gr.State  # the slots hold an example's sources: an upload into one starts a new set
    sweep: gr.State  # the last analysis.SweepResult, for re-plotting another metric


@dataclass
class Page:
    """Every component the events wire, by name."""

    inputs: Inputs
    outputs: Outputs
    session: Session
