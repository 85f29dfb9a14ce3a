"""The demo served on localhost: the /fuse API through gradio_client, and real browser sessions.

The browser tests drive Debian's chromium through Python playwright (`apt-get install -y
chromium`; `playwright install` needs downloads and is not used). Without chromium they are skipped,
except under CI=true, where they fail: CI must run them. They run the page at a laptop's window
(1440×900) and a phone's (390×844) and check that the fused image stays in view (wholly inside the
window, nothing over it) where the issue found it off-screen. They wait for states (a status line, the
fusion counter falling quiet), never for fixed times. The wide test saves a 1440×900 screenshot of the
first view: to docs/app_screenshot.png when TCMOA_UPDATE_SCREENSHOT=1 (then look at it), otherwise to
the test's temporary folder, so a test run leaves the tree clean.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import cast
from urllib.parse import unquote

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.app_process import free_port  # noqa: E402
from tests.browser_page import (IMAGE, KNOBS, SOURCES, assert_in_view, assert_in_view_from, hold_on_knob, open_page,  # noqa: E402
                                outside_window, page_y, scroll_to, status_log)
from demo import build_demo, launch_options, load_engine  # noqa: E402
from tcmoa import Fuser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "app_screenshot.png"
EXAMPLES = REPO / "demo" / "examples"
TNO = EXAMPLES / "vif" / "tno_18"
TRIPLE = EXAMPLES / "mff" / "lytro_triple_02"
CAMERAS = EXAMPLES / "unaligned" / "tno_18_thermal_camera"
WIDE, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}  # a laptop's window, a phone's
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),  # inside gradio's queue (pandas 3)
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


class CountingFuser:
    """The engine's Fuser, counting fusions: one user action must run exactly one."""

    def __init__(self, fuser):
        self.fuser, self.count, self.running, self.lock = fuser, 0, 0, threading.Lock()
        self.full_gate = threading.Event()  # cleared: a full-resolution fusion waits (its progress is on view)
        self.full_gate.set()

    def fuse(self, *args, **kwargs):
        if kwargs.get("progress") is not None:  # only the full resolution reports progress
            self.full_gate.wait(timeout=120)
        with self.lock:
            self.count += 1
            self.running += 1
        try:
            return self.fuser.fuse(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1

    def settle(self, quiet: float = 1.5, timeout: float = 120.0) -> None:
        """Until no fusion has run or started for `quiet` seconds (a busy CPU stretches the gaps between them)."""
        end, count, since = time.monotonic() + timeout, self.count, time.monotonic()
        while time.monotonic() < end:
            if self.running or self.count != count:
                count, since = self.count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until no fusion runs: the process must not exit under one (torch's threads abort it, exit code 134)."""
        end = time.monotonic() + timeout
        while self.running and time.monotonic() < end:
            time.sleep(0.1)

    def __getattr__(self, name):
        return getattr(self.fuser, name)


@pytest.fixture(scope="module")
def app():
    """(url, the CountingFuser, whether the model is trained) of the demo served in this process."""
    engine = load_engine(os.environ.get("TCMOA_E2E_MODEL") or None, "cpu")  # as app.py: the shipped model
    counter = CountingFuser(engine.fuser)
    engine = dataclasses.replace(engine, fuser=cast(Fuser, counter))  # a stand-in: it delegates to the Fuser
    demo = build_demo(engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(engine))
    try:
        yield f"http://127.0.0.1:{port}/", counter, engine.trained
    finally:
        counter.wait_idle()  # the last click's fusion may still run
        demo.close()


def test_fuse_endpoint_with_gradio_client(app, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app[0], verbose=False)
    fused, report = client.predict(  # as the README shows it
        sources=[handle_file(str(TNO / "1_visible.png")), handle_file(str(TNO / "2_infrared.png"))],
        task="vif", alpha=1.5, beta=0.1, router="", resize=False, api_name="/fuse")
    with Image.open(fused) as image:
        assert image.format == "PNG" and image.size == (512, 372)
    assert report["size"] == [512, 372] and report["router"] == "vif" and report["alpha"] == 1.5
    assert set(report["metrics"]) == {"Qabf", "VIF", "SSIM", "EN", "SD"} and report["device"].startswith("CPU")
    three = [handle_file(str(p)) for p in sorted(TRIPLE.iterdir())]
    fused, report = client.predict(three, "mff", 1.0, 0.0, "mff=0.5,vif=0.5", False, api_name="/fuse")
    assert report["sources"] == 3 and report["router"]["mff"] == 0.5 and Image.open(fused).size == (512, 512)
    small = tmp_path / "small.png"
    Image.new("L", (64, 64)).save(small)
    cameras = [handle_file(str(CAMERAS / name)) for name in ("1_visible.png", "2_infrared.png")]
    fused, report = client.predict(cameras, "vif", 1.0, 0.0, "", False, "auto", 0, False, True, api_name="/fuse")
    moved = report["alignment"]["sources"][1]
    assert moved["source"] == 2 and moved["status"] == "aligned" and len(moved["matrix"]) == 3, report
    assert Image.open(fused).size == (512, 372)  # the visible frame
    bad_calls = [
        (([handle_file(str(TNO / "1_visible.png")), handle_file(str(small))], "vif", 1.0, 0.0, "", False, "off"),
         "source 2 is 64x64 but source 1 is 512x372 (width x height); fusion needs registered sources of one size "
         "(pass align='auto' if they come from different cameras, or resize=True)"),
        ((cameras, "vif", 1.0, 0.0, "", False, "sideways"),
         "align must be one of off, auto, translation, similarity, affine, homography, got 'sideways'"),
        ((three, "mff", "abc", 0.0), "alpha must be a number in [0, 3], got 'abc'"),
        ((three, "mff", None, 0.0), "alpha must be a number in [0, 3], got None"),
        ((three, "mff", True, 0.0), "alpha must be a number in [0, 3], got True"),  # JSON true is not 1.0
        ((three, "mff", 1.0, 7), "beta must be a number in [-0.5, 0.5], got 7"),
        ((three[:1], "mff", 1.0, 0.0), "/fuse needs at least 2 source images, got 1"),
    ]
    for args, message in bad_calls:
        with pytest.raises(Exception) as caught:
            client.predict(*args, api_name="/fuse")
        assert message in str(caught.value), str(caught.value)


def test_fuse_refuses_a_server_path_in_one_line(app, tmp_path, capfd):
    """A call that names a file on the server (not an upload) got {"error": null} and a traceback in the log."""
    import httpx

    from demo.api import SERVER_PATH_REFUSED

    on_server = tmp_path / "on_server.png"  # a readable image, but never uploaded
    Image.new("L", (64, 64)).save(on_server)
    named = {"path": str(on_server), "meta": {"_type": "gradio.FileData"}}
    call = f"{app[0]}gradio_api/call/fuse"
    event = httpx.post(call, json={"data": [[named, named], "vif", 1.0, 0.0, "", False]}).json()["event_id"]
    answer = httpx.get(f"{call}/{event}", timeout=60).text
    assert "event: error" in answer and SERVER_PATH_REFUSED in answer, answer
    log = capfd.readouterr()
    assert "Traceback" not in log.err + log.out and "InvalidPathError" not in log.err + log.out


def need_chromium(chromium: Path = CHROMIUM) -> None:
    """Skip without chromium, except under CI=true, where the browser test must run: fail instead."""
    if not chromium.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {chromium} is missing: the browser test must run in CI")
        pytest.skip(f"{chromium} is absent (apt-get install -y chromium)")


def test_ci_never_skips_the_browser_test(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        need_chromium(tmp_path / "chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        need_chromium(tmp_path / "chromium")


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by playwright."""
    need_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    sync_api.expect.set_options(timeout=30_000)  # a fusion, not the page, sets the pace: 5 s is short on a busy CPU
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_browser_wide_screen_controls_metrics_maps_and_sweep(app, browser, tmp_path):
    from playwright.sync_api import expect

    url, counter, trained = app

    def fusions_after(action, wait_for: str, where: str = "#status") -> int:
        """Run a user action, wait for `where` to say `wait_for`, and count the fusions it ran."""
        counter.settle()
        before = counter.count
        action()
        expect(page.locator(where)).to_contain_text(wait_for, timeout=90_000)
        counter.settle()  # a second, unwanted fusion would start within this
        return counter.count - before

    page = open_page(browser, url, WIDE)
    # The first view: an example fused at start-up, its sources, the knobs and the image in one view.
    expect(page.locator("#status")).to_contain_text("A bundled example")
    assert_in_view(page, *SOURCES, *KNOBS, IMAGE, "#examples")
    if not trained:
        expect(page.locator("#untrained-banner")).to_contain_text("Untrained model")
    # Uploading over the example starts a new set: a step on the way in, not an error; then one fusion.
    upload = page.locator("#source-1 input[type=file]")
    assert fusions_after(lambda: upload.set_input_files(str(TNO / "1_visible.png")), "Add a second source") == 0
    expect(page.locator("#status")).to_have_text("Add a second source to fuse: upload Source 2: infrared (B).")
    expect(page.locator("#source-2 img")).to_have_count(0)  # the example's infrared went with it
    assert fusions_after(lambda: page.locator("#source-2 input[type=file]").set_input_files(str(TNO / "2_infrared.png")),
                         "Fused 2 sources · 512×372") == 1
    assert not [text for text, _ in status_log(page) if "⚠" in text or "Cannot" in text]

    # One click on an example loads and fuses it (exactly one fusion), with the image in view.
    assert fusions_after(lambda: page.get_by_text("Multi-focus: lytro triple 02").click(), "Fused 3 sources") == 1
    assert_in_view(page, IMAGE, "#status")
    status_log(page)
    assert fusions_after(lambda: page.get_by_text("Infrared + visible: tno 18", exact=True).click(), "Fused 2 sources") == 1
    log = status_log(page)
    new_source = log[-1][1]
    assert new_source and not any(src == new_source and "3 sources" in text for text, src in log), \
        "the 2-source example's images were shown beside the 3-source status"
    expect(page.locator("#metrics")).to_contain_text("Qabf")
    assert "Sources or task changed" not in page.locator("#sweep-status").inner_text()  # no sweep yet
    knobs_and_refusals(page, counter, fusions_after)

    # A drag after scrolling down (the sources out of view): previews follow it with the image in view,
    # the release fuses the final value.
    scroll_to(page, page_y(page, "#alpha") - 40)
    assert outside_window(page, "#source-1") and not outside_window(page, KNOBS[0])
    dragged = hold_on_knob(page, "alpha", 0.5, 0.74)
    expect(page.locator("#status")).to_contain_text("Preview", timeout=60_000)  # while the mouse is held
    assert_in_view(page, IMAGE, KNOBS[0])
    page.mouse.up()
    expect(page.locator("#status")).to_contain_text("Fused 2 sources", timeout=60_000)
    expect(page.locator("#status")).to_contain_text(f"α = {dragged:.2f}")
    counter.settle()  # no late preview replaces the final
    assert "Fused 2 sources" in page.locator("#status").inner_text()
    assert_in_view(page, IMAGE)
    slider = page.locator(KNOBS[0])  # keyboard: five steps of 0.05, then the final
    assert fusions_after(lambda: [slider.press("ArrowRight") for _ in range(5)],
                         f"α = {dragged + 0.25:.2f}") <= 10
    expect(page.locator("#status")).to_contain_text("Fused 2 sources")
    task_baselines_maps_and_sweep(page, counter, fusions_after)
    shot = SCREENSHOT if os.environ.get("TCMOA_UPDATE_SCREENSHOT") == "1" else tmp_path / "app.png"
    scroll_to(page, 0)  # the first view, as a visitor sees it
    expect(page.locator(IMAGE)).to_be_visible()
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000  # a real page with images, not a blank one
    full_resolution(page, counter)

    # another example: the sweep strip, its curve and the full-resolution file of the old sources go
    page.get_by_text("Infrared + visible: tno 18", exact=True).click()
    expect(page.locator("#sweep-status")).to_contain_text("Sources or task changed")
    expect(page.locator("#sweep-strip img")).to_have_count(0)
    expect(page.locator("#sweep-curve img")).to_have_count(0)
    expect(page.locator("#full-file")).to_be_hidden()
    counter.settle()
    unaligned_example(page, fusions_after)


def unaligned_example(page, fusions_after) -> None:
    """The unaligned example opens with alignment on and says what it did; the Alignment tab shows it; turning
    alignment off says what to do; choosing a transform fuses once."""
    from playwright.sync_api import expect

    expect(page.locator("#align")).to_be_visible()
    assert fusions_after(lambda: page.get_by_text("Infrared + visible: tno 18 thermal camera (unaligned)").click(),
                         "Fused 2 sources · 512×372") == 1
    expect(page.locator("#status")).to_contain_text("source 2: placed with its centre")
    expect(page.locator("#align input")).to_have_value("auto: detect and align")
    page.get_by_role("tab", name="Alignment").click()
    expect(page.locator("#alignment-map img")).to_be_visible(timeout=30_000)
    expect(page.locator("#alignment-report")).to_contain_text("similarity")

    def choose(option: str):
        page.locator("#align input").click()
        page.get_by_role("option", name=option).click()

    # off: sources of two sizes are refused before any fusion, with the way out
    assert fusions_after(lambda: choose("off: fuse as given"), "Cannot fuse") == 0
    expect(page.locator("#status")).to_contain_text("set “Align sources” to auto")
    assert fusions_after(lambda: choose("similarity (shift, turn, zoom)"), "Fused 2 sources") == 1
    expect(page.locator("#status")).to_contain_text("(similarity, confidence")


def knobs_and_refusals(page, counter, fusions_after) -> None:
    """A typed α fuses once on Enter; a value out of range is refused in one message, the image kept."""
    from playwright.sync_api import expect

    before = page.locator(IMAGE).get_attribute("src")
    alpha = page.locator("#alpha input[type=number]")
    # typed + Enter: a preview while typing, the final fusion on Enter (a release)
    assert fusions_after(lambda: (alpha.fill("2.5"), alpha.press("Enter")), "Fused 2 sources") <= 2
    expect(page.locator("#status")).to_contain_text("α = 2.50")
    after = page.locator(IMAGE).get_attribute("src")
    assert after and after != before
    assert page.request.get(after).body() != page.request.get(before).body()
    assert unquote(after).endswith("/fused_vif_a2.50_b+0.00.png")  # the download says what it is
    # a typed value out of range: one message, the slider back to the fused value, the image kept
    before_count = counter.count
    alpha.fill("9")
    expect(page.locator("#status")).to_contain_text("Value refused", timeout=30_000)
    expect(page.locator("#status")).to_contain_text("alpha must be a number in [0, 3], got 9")
    # the line goes with the next fusion; the toast stays to be read
    expect(page.locator(".toast-body").first).to_contain_text("got 9")
    expect(alpha).to_have_value("2.5")
    assert page.locator(IMAGE).get_attribute("src") == after
    assert page.locator(".error").count() == 0  # no red badges over the outputs
    alpha.press("Enter")  # the release of the refused value: nothing new to fuse
    counter.settle()
    assert counter.count - before_count <= 1
    # Leaving the number box is a release too (Gradio's slider): the fusion it runs is over before the next step.
    alpha.blur()
    counter.settle()


def task_baselines_maps_and_sweep(page, counter, fusions_after) -> None:
    """A task change fuses once; the baselines, every map tab and the sweep (five fusions, re-plotted free)."""
    from playwright.sync_api import expect

    def pick_task():
        page.locator("#task input").click()
        page.get_by_role("option", name="Multi-exposure").click()

    assert fusions_after(pick_task, "α = 1.00") == 1
    expect(page.locator("#metrics")).to_contain_text("MEF-SSIM")
    assert fusions_after(lambda: page.get_by_text("Multi-exposure: mefb chinese garden").click(),
                         "Fused 2 sources") == 1  # the screenshot's example
    assert fusions_after(lambda: page.get_by_label("Show classical baselines").check(), "Laplacian pyramid",
                         where="#metrics") == 1
    expect(page.locator("#baselines img").first).to_be_visible()
    for tab, shown in (("Routing", "#routing-map img"), ("Source weight", "#weight-map img"),
                       ("Difference", "#difference-map img"), ("Prompt maps", "#prompts-map img")):
        page.get_by_role("tab", name=tab).click()
        expect(page.locator(shown)).to_be_visible(timeout=30_000)
    expect(page.locator("#comparison img").first).to_be_visible()
    before = counter.count
    page.locator("#sweep").click()
    expect(page.locator("#sweep-status")).to_contain_text("5 fusions", timeout=120_000)
    assert counter.count - before == 5
    expect(page.locator("#sweep-strip img")).to_have_count(5)
    expect(page.locator("#sweep-curve img")).to_be_visible()
    curve = page.locator("#sweep-curve img").get_attribute("src")
    page.locator("#sweep-metric input").click()
    page.get_by_role("option", name="Qabf").click()  # re-plots without fusing again
    expect(page.locator("#sweep-curve img")).not_to_have_attribute("src", curve)
    assert counter.count - before == 5


def full_resolution(page, counter) -> None:
    """The full resolution, on request: its progress in view beside the image, then a PNG named for what it is."""
    from playwright.sync_api import expect

    counter.full_gate.clear()  # the fusion waits until the progress has been seen, however fast the CPU
    try:
        page.locator("#full").click()
        expect(page.locator("#full-status .progress-text")).to_be_visible()
        assert_in_view(page, "#full-status .progress-text", IMAGE)
    finally:
        counter.full_gate.set()
    expect(page.locator("#full-status")).to_contain_text("Full resolution", timeout=120_000)
    expect(page.locator("#full-file")).to_contain_text("fused_full_mef_a")
    page.locator("#cancel").click()  # nothing runs now: it says so, and the file stays
    expect(page.locator("#full-status")).to_contain_text("Nothing to cancel")
    expect(page.locator("#full-file")).to_contain_text("fused_full_mef_a")


def test_browser_phone_keeps_the_image_in_view(app, browser):
    """At 390×844 the result sits under the sources and sticks while the knobs below it are in view."""
    from playwright.sync_api import expect

    url, counter, _ = app
    page = open_page(browser, url, PHONE)
    assert_in_view_from(page, "#source-1", *SOURCES, *KNOBS, IMAGE)  # the sources at the top: all in one view
    # An example from the strip at the top: it fuses, and the image is scrolled into view.
    scroll_to(page, 0)
    page.get_by_text("Infrared + visible: tno 18", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Fused 2 sources · 512×372", timeout=90_000)
    assert_in_view(page, IMAGE)
    # Scrolled so that α just shows at the bottom, and then so far that the image is pinned at the top:
    # wherever α can be seen, the image can be seen too.
    height = page.viewport_size["height"]
    for y in (page_y(page, "#beta") + 80 - height, page_y(page, "#alpha") - page.locator("#result").bounding_box()["height"]):
        scroll_to(page, y)
        assert_in_view(page, IMAGE, KNOBS[0])
    counter.settle()
    dragged = hold_on_knob(page, "alpha", 0.3, 0.55)
    expect(page.locator("#status")).to_contain_text("Preview", timeout=60_000)
    assert_in_view(page, IMAGE, KNOBS[0])
    page.mouse.up()
    expect(page.locator("#status")).to_contain_text(f"α = {dragged:.2f}", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("Fused 2 sources")
    assert_in_view(page, IMAGE)
