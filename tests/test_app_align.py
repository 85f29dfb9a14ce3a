"""Alignment on the page and in /fuse, without a browser: the controls' wiring, the notes, the alignment tab and
/fuse's report (untrained compact model; the bundled unaligned example at half size, synthetic stacks)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pytest
from gradio.components import Component

from demo import analysis
from demo import callbacks as cb
from demo.alignment_view import checkerboard, marked, page_note
from demo.api import api_fuse
from demo.control_events import reference_update
from demo.engine import DEFAULT_ALIGN, load_engine
from demo.example_sets import find_examples
from demo.fusion_events import control_inputs, final_actions, read_controls
from demo.layout import page_layout
from demo.opening import opening_view
from demo.page import build_demo
from demo.sources import AlignOptions, InputError, check_align, scaled_to
from tcmoa.align import ALIGN_MODES
from tcmoa.imaging import read_image, shrink_to

EXAMPLES = Path(__file__).resolve().parents[1] / "demo" / "examples"
AUTO, OFF = AlignOptions("auto"), AlignOptions("off")


@pytest.fixture(scope="module")
def engine():
    return load_engine("compact", "cpu")


@pytest.fixture(scope="module")
def cameras():
    """The bundled unaligned example at half size: a visible frame and a thermal one zoomed, turned and offset."""
    folder = EXAMPLES / "unaligned" / "tno_18_thermal_camera"
    visible, thermal = (read_image(folder / name) for name in ("1_visible.png", "2_infrared.png"))
    return shrink_to(visible, 256), shrink_to(thermal, 179)


@pytest.fixture(scope="module")
def registered():
    """The registered TNO pair at half size."""
    folder = EXAMPLES / "vif" / "tno_18"
    return [shrink_to(read_image(folder / name), 256) for name in ("1_visible.png", "2_infrared.png")]


def fuse(engine, slots, task="vif", **kw):
    return cb.final_view(cb.fuse_steps(engine, slots, task, 1.0, 0.0, **kw))


# ------------------------------------------------------------------------------ the controls
def test_the_controls_reach_every_fusion(engine):
    with gr.Blocks():
        page = page_layout(engine, opening_view(engine, sets=[]))
    i = page.inputs
    assert [m for _, m in i.align.choices] == list(ALIGN_MODES) and i.align.value == DEFAULT_ALIGN
    assert i.reference.value == 0 and [v for _, v in i.reference.choices] == [0, 1, 2]
    assert i.crop.value is False and i.deghost.value is True and not i.deghost.visible  # vif: no exposures
    assert {i.align, i.reference, i.crop, i.deghost} <= control_inputs(i)
    values: dict[Component, Any] = {c: getattr(c, "value") for c in control_inputs(i) if isinstance(c, Component)}
    values.update({i.align: "homography", i.reference: 2, i.crop: True, i.deghost: False})
    assert read_controls(i, values).align == AlignOptions("homography", 2, True, False)
    assert read_controls(i, {**values, i.reference: 0}).align.reference is None  # 0: the task's choice
    # each of them runs the one final fusion on the user's own change
    actions = {(id(a.__self__), a.event_name) for a in final_actions(page)}
    for control, event in ((i.align, "select"), (i.reference, "select"), (i.crop, "input"), (i.deghost, "input")):
        assert (id(control), event) in actions, control.elem_id


def test_reference_choices_follow_the_task_and_the_open_slots():
    assert cb.reference_choices("vif", 2)[0] == ("the task's choice: source 1 (visible)", 0)
    assert cb.reference_choices("mef", 3) == [("the task's choice: the middle exposure", 0), ("source 1", 1),
                                              ("source 2", 2), ("source 3", 3)]
    assert reference_update("mff", 3, 3)["value"] == 3  # kept while its source is open
    assert reference_update("mff", 2, 3)["value"] == 0  # its slot closed: the task's choice


def test_task_and_example_events_set_the_alignment_controls(engine):
    demo = build_demo(engine)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    on_task, on_example = fns["on_task"], fns["on_example"]
    assert on_task.fn is not None and on_example.fn is not None
    changes = on_task.fn({block: getattr(block, "value") for block in on_task.inputs} | {by_id["task"]: "mef"})
    assert changes[by_id["deghost"]]["visible"] is True  # exposure stacks only
    assert changes[by_id["reference"]]["choices"][0] == ("the task's choice: the middle exposure", 0)
    sets = find_examples()
    index = next(k for k, s in enumerate(sets) if s.unaligned)
    changes = on_example.fn({block: getattr(block, "value") for block in on_example.inputs}
                            | {by_id["examples"]: index})
    assert changes[by_id["align"]] == "auto" and changes[by_id["crop"]] is False  # opens with alignment on
    assert changes[by_id["reference"]]["value"] == 0 and changes[by_id["task"]] == "vif"


def test_the_unaligned_example_is_listed_as_infrared_visible_with_alignment_on():
    unaligned = [s for s in find_examples() if s.unaligned]
    assert [(s.task, s.name, s.align) for s in unaligned] == [("vif", "tno_18_thermal_camera", "auto")]
    assert unaligned[0].label == "Infrared + visible: tno 18 thermal camera (unaligned)"
    assert all(s.align == DEFAULT_ALIGN for s in find_examples() if not s.unaligned)


@pytest.mark.parametrize("options, message", [
    (AlignOptions("sideways"), "align must be one of off, auto, translation, similarity, affine, homography, "
                               "got 'sideways'"),
    (AlignOptions(None), "align must be one of"),
    (AlignOptions("auto", 3), "reference must be a source number from 1 to 2 (0 or none: the task's choice), got 3"),
    (AlignOptions("auto", True), "reference must be a source number from 1 to 2"),
    (AlignOptions("auto", 1.5), "got 1.5"),
    (AlignOptions("auto", crop="maybe"), "crop must be true or false, got 'maybe'"),
    (AlignOptions("auto", deghost=2), "deghost must be true or false, got 2"),
])
def test_bad_alignment_options_are_one_clear_message(options, message):
    with pytest.raises(InputError) as caught:
        check_align(options, 2)
    assert message in str(caught.value)


def test_alignment_options_as_given():
    checked = check_align(AlignOptions(" Homography ", 2.0, "true", 0), 3)
    assert (checked.align, checked.reference, checked.crop, checked.deghost) == ("homography", 1, True, False)
    assert check_align(AlignOptions("off", 0), 2).reference is None


def test_sources_of_different_sizes_scale_by_one_factor():
    big, small = np.zeros((1200, 1600), np.float32), np.zeros((400, 500), np.float32)
    scaled = scaled_to([big, small], 480_000)
    assert scaled[0].shape == (600, 800) and scaled[1].shape == (200, 250)  # the reference within the budget
    scaled = scaled_to([small, big], 480_000, reference=1)
    assert scaled[1].shape == (600, 800) and scaled[0].shape == (200, 250)


# ------------------------------------------------------------------------------ the page's words and view
def test_unaligned_sources_are_aligned_and_the_page_says_how(engine, cameras):
    view = fuse(engine, list(cameras), align=AUTO, open_tab="alignment")
    assert view.fused is not None and view.fused.shape[:2] == cameras[0].shape[:2]  # the reference's frame
    assert "Note: source 2: " in view.status and "(similarity, confidence" in view.status, view.status
    assert "- **source 1**: the reference frame" in view.alignment_report
    assert "- **source 2**: placed with its centre" in view.alignment_report, view.alignment_report
    assert view.alignment is not None and view.alignment.dtype == np.uint8 and view.alignment.shape[1] == 760
    shown = view.shown
    assert shown.alignment.records[1].status == "aligned" and shown.alignment.uncovered[1].any()
    # everything beside the image is computed on the aligned sources: they have the fused image's size
    assert view.comparison[0].shape[:2] == view.comparison[1].shape[:2] and "Qabf" in view.metrics
    assert all(s.shape[:2] == shown.fused.shape[:2] for s in shown.sources)


def test_different_sizes_with_alignment_off_point_at_the_control(engine, cameras):
    view = fuse(engine, list(cameras), align=OFF)
    assert view.fused is None and "set “Align sources” to auto" in view.status


def test_misaligned_sources_with_alignment_off_get_a_suggestion_not_an_error(engine, registered):
    shifted = [registered[0], np.roll(registered[1], (6, 12), axis=(0, 1))]
    view = fuse(engine, shifted, align=OFF, open_tab="alignment")
    assert view.fused is not None and "Cannot fuse" not in view.status
    assert "💡 **Suggestion:** the sources look misaligned by about" in view.status, view.status
    assert "set **Align sources** to *auto*" in view.status or "**Align sources: auto**" in view.status
    assert view.alignment_report.startswith("**Alignment off**") and view.alignment is not None
    registered_view = fuse(engine, registered, align=AUTO)
    assert "Suggestion" not in registered_view.status
    assert "source 2: already aligned with the reference (left as given)" in registered_view.status


def test_library_notes_in_the_pages_words():
    hint = page_note("alignment off, but the sources look misaligned by about 16 px; try align=auto")
    assert hint == "💡 **Suggestion:** the sources look misaligned by about 16 px; try **Align sources: auto**"
    failed = page_note("source 2: left as given: ...; choose a transform (align=similarity) and check the overlay")
    assert failed == ("Note: source 2: left as given: ...; choose a transform (**Align sources: similarity**) and "
                      "check the **Alignment** tab")


def test_checkerboard_and_marks():
    dark, bright = np.zeros((40, 80), np.float32), np.ones((40, 80), np.float32)
    board = checkerboard(dark, bright, cells=4)  # squares of 20 px
    assert board[5, 5] == 0.0 and board[5, 25] == 1.0 and board[25, 5] == 1.0 and board[25, 25] == 0.0
    with pytest.raises(ValueError, match="one size"):
        checkerboard(dark, bright[:20])
    mask = np.zeros((40, 80), np.float32)
    mask[:, 40:] = 1
    rgb = marked(np.full((40, 80), 0.5, np.float32), mask, (1.0, 0.0, 0.0), hatch=True)
    assert rgb.shape == (40, 80, 3) and np.all(rgb[:, :40] == 0.5)  # unmarked pixels as they were
    assert 0 < np.mean(rgb[:, 40:, 0] > 0.5) < 1  # stripes: some of the masked half tinted, not all


def test_the_alignment_tab_shows_moving_content_of_exposure_stacks(engine, registered):
    under = np.clip(registered[0] * 0.5, 0, 1)
    over = np.clip(registered[0] * 1.6, 0, 1)
    over[40:90, 60:120] = 0.05  # something dark moved into the bright exposure
    view = fuse(engine, [over, under], task="mef", align=AlignOptions("auto", deghost=True), open_tab="alignment")
    moving = view.shown.alignment.moving
    assert moving is not None and any(m.any() for m in moving), view.status
    assert "moving content" in view.status and view.alignment is not None
    off = fuse(engine, [over, under], task="mef", align=AlignOptions("auto", deghost=False))
    assert off.shown.alignment.moving is None


def test_every_tab_is_empty_before_a_fusion():
    assert analysis.render_tab("alignment", None) is None


# ------------------------------------------------------------------------------ /fuse
def test_fuse_reports_every_transform(engine, cameras):
    image, report = api_fuse(engine, list(cameras), "vif", 1.0, 0.0, align="auto")
    assert image.shape[:2] == cameras[0].shape[:2] and report["align"] == "auto" and report["reference"] == 1
    alignment = report["alignment"]
    assert alignment["reference"] == 1 and [s["source"] for s in alignment["sources"]] == [1, 2]  # 1-based
    moved = alignment["sources"][1]
    assert moved["status"] == "aligned" and moved["model"] == "similarity" and 0.3 <= moved["confidence"] <= 1
    matrix = np.array(moved["matrix"])
    assert matrix.shape == (3, 3) and 1.15 < np.hypot(matrix[0, 0], matrix[1, 0]) < 1.35  # the thermal's zoom
    assert moved["note"].startswith("source 2: ") and moved["note"] in report["notes"]
    assert report["motion_share"] is None  # not an exposure stack
    _, cropped = api_fuse(engine, list(cameras), "vif", 1.0, 0.0, align="auto", crop=True)
    top, left, height, width = cropped["alignment"]["crop"]
    assert cropped["size"] == [width, height] and width < cameras[0].shape[1]


def test_fuse_reports_alignment_off_and_motion(engine, registered):
    _, report = api_fuse(engine, registered, "vif", 1.0, 0.0, align="off")
    assert report["align"] == "off" and report["alignment"] is None and report["reference"] == 1
    under = np.clip(registered[0] * 0.5, 0, 1)
    _, report = api_fuse(engine, [registered[0], under, registered[0]], "mef", 1.0, 0.0, align="auto", reference=2)
    assert report["reference"] == 2 and len(report["motion_share"]) == 3
    assert all(0 <= share <= 1 for share in report["motion_share"])


def test_a_plain_http_call_may_leave_out_the_alignment_arguments(engine):
    demo = build_demo(engine)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    inputs: list[Any] = [None, "vif", 1.0, 0.0, "", False]  # a call written before the alignment arguments
    demo.validate_inputs(fns["fuse"], inputs)
    assert inputs[6:] == [DEFAULT_ALIGN, 0, False, True]  # their defaults
    with pytest.raises(ValueError, match="didn't receive enough input values"):
        demo.validate_inputs(fns["sweep"], [None])  # the page's own events: checked as Gradio does


@pytest.mark.parametrize("kwargs, message", [
    (dict(align="sideways"), "align must be one of off, auto, translation, similarity, affine, homography, "
                             "got 'sideways'"),
    (dict(align="auto", reference=5), "reference must be a source number from 1 to 2"),
    (dict(align="auto", crop="maybe"), "crop must be true or false, got 'maybe'"),
])
def test_fuse_refuses_bad_alignment_options(engine, registered, kwargs, message):
    with pytest.raises(gr.Error) as caught:
        api_fuse(engine, registered, "vif", 1.0, 0.0, **kwargs)
    assert message in str(caught.value)
