"""The demo served on localhost: the /fuse API through gradio_client, and a real browser session.

The browser test drives Debian's chromium through Python playwright (`apt-get install -y
chromium`; `playwright install` needs downloads and is not used). Without chromium it is skipped,
except under CI=true, where it fails: CI must run it. It saves a full-page screenshot: to
docs/app_screenshot.png when TCMOA_UPDATE_SCREENSHOT=1 (then look at it), otherwise to the test's
temporary folder, so a test run leaves the tree clean.
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
from demo import build_demo, launch_options, load_engine  # noqa: E402
from tcmoa import Fuser  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "app_screenshot.png"
EXAMPLES = REPO / "demo" / "examples"
TNO = EXAMPLES / "vif" / "tno_18"
TRIPLE = EXAMPLES / "mff" / "lytro_triple_02"
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),  # inside gradio's queue (pandas 3)
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


class CountingFuser:
    """The engine's Fuser, counting fusions: one user action must run exactly one."""

    def __init__(self, fuser):
        self.fuser, self.count, self.running, self.lock = fuser, 0, 0, threading.Lock()

    def fuse(self, *args, **kwargs):
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
    bad_calls = [
        (([handle_file(str(TNO / "1_visible.png")), handle_file(str(small))], "vif", 1.0, 0.0),
         "source 2 is 64x64 but source 1 is 512x372 (width x height); fusion needs registered sources of one size "
         "(or pass resize=True)"),
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


def status_log(page) -> list[list[str]]:
    """[status text, source 1's image URL] at every change of the page since the last call."""
    return page.evaluate("() => { const log = window.__log; window.__log = []; return log; }")


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


def test_browser_controls_metrics_maps_and_sweep(app, tmp_path):
    need_chromium()
    url, counter, trained = app
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    expect.set_options(timeout=30_000)  # a fusion, not the page, sets the pace: 5 s is short on a busy CPU

    def fusions_after(action, wait_for: str, where: str = "#status") -> int:
        """Run a user action, wait for `where` to say `wait_for`, and count the fusions it ran."""
        counter.settle()
        before = counter.count
        action()
        expect(page.locator(where)).to_contain_text(wait_for, timeout=90_000)
        counter.settle()  # a second, unwanted fusion would start within this
        return counter.count - before

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url)
            page.evaluate("""() => { window.__log = [];
                new MutationObserver(() => {
                    const s = document.querySelector('#status'), img = document.querySelector('#source-1 img');
                    window.__log.push([s ? s.innerText : '', img ? img.src : '']);
                }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
            }""")
            # one click on an example loads and fuses it: exactly one fusion
            assert fusions_after(lambda: page.get_by_text("Multi-focus: lytro triple 02").click(),
                                 "Fused 3 sources") == 1
            if not trained:
                expect(page.locator("#untrained-banner")).to_contain_text("Untrained model")
            status_log(page)
            assert fusions_after(lambda: page.get_by_text("Infrared + visible: tno 18").click(),
                                 "Fused 2 sources") == 1
            log = status_log(page)
            new_source = log[-1][1]
            assert new_source and not any(src == new_source and "3 sources" in text for text, src in log), \
                "the 2-source example's images were shown beside the 3-source status"
            expect(page.locator("#metrics")).to_contain_text("Qabf")
            assert "Sources or task changed" not in page.locator("#sweep-status").inner_text()  # no sweep yet
            before = page.locator("#fused img").get_attribute("src")

            alpha = page.locator("#alpha input[type=number]")
            # typed + Enter: a preview while typing, the final fusion on Enter (a release)
            assert fusions_after(lambda: (alpha.fill("2.5"), alpha.press("Enter")), "Fused 2 sources") <= 2
            expect(page.locator("#status")).to_contain_text("α = 2.50")
            after = page.locator("#fused img").get_attribute("src")
            assert after and after != before
            assert page.request.get(after).body() != page.request.get(before).body()
            assert unquote(after).endswith("/fused_vif_a2.50_b+0.00.png")  # the download says what it is

            # a typed value out of range: one message, the slider back to the fused value, the image kept
            before = counter.count
            alpha.fill("9")
            expect(page.locator("#status")).to_contain_text("Value refused", timeout=30_000)
            expect(page.locator("#status")).to_contain_text("alpha must be a number in [0, 3], got 9")
            # the line goes with the next fusion; the toast stays to be read
            expect(page.locator(".toast-body").first).to_contain_text("got 9")
            expect(alpha).to_have_value("2.5")
            assert page.locator("#fused img").get_attribute("src") == after
            assert page.locator(".error").count() == 0  # no red badges over the outputs
            alpha.press("Enter")  # the release of the refused value: nothing new to fuse
            counter.settle()
            assert counter.count - before <= 1

            # a mouse drag: previews follow it, the release fuses the final value
            track = page.locator("#alpha input[type=range]")
            box = track.bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * 0.5, y)
            page.mouse.down()
            for k in range(1, 7):
                page.mouse.move(box["x"] + box["width"] * (0.5 + 0.04 * k), y, steps=3)
            expect(page.locator("#status")).to_contain_text("Preview", timeout=60_000)  # while the mouse is held
            dragged = float(track.input_value())
            page.mouse.up()
            expect(page.locator("#status")).to_contain_text("Fused 2 sources", timeout=60_000)
            expect(page.locator("#status")).to_contain_text(f"α = {dragged:.2f}")
            counter.settle()  # no late preview replaces the final
            assert "Fused 2 sources" in page.locator("#status").inner_text()
            slider = page.locator("#alpha input[type=range]")  # keyboard: five steps of 0.05, then the final
            assert fusions_after(lambda: [slider.press("ArrowRight") for _ in range(5)],
                                 f"α = {dragged + 0.25:.2f}") <= 10
            expect(page.locator("#status")).to_contain_text("Fused 2 sources")

            # a task change sets its defaults and fuses once
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
            shot = SCREENSHOT if os.environ.get("TCMOA_UPDATE_SCREENSHOT") == "1" else tmp_path / "app.png"
            time.sleep(1.0)  # let the images paint before the screenshot
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000  # a real page with images, not a blank one

            # the full resolution, on request: a PNG named for what it is
            page.locator("#full").click()
            expect(page.locator("#full-status")).to_contain_text("Full resolution", timeout=120_000)
            expect(page.locator("#full-file")).to_contain_text("fused_full_mef_a")
            page.locator("#cancel").click()  # nothing runs now: it says so, and the file stays
            expect(page.locator("#full-status")).to_contain_text("Nothing to cancel")
            expect(page.locator("#full-file")).to_contain_text("fused_full_mef_a")

            # another example: the sweep strip, its curve and the full-resolution file of the old sources go
            page.get_by_text("Infrared + visible: tno 18").click()
            expect(page.locator("#sweep-status")).to_contain_text("Sources or task changed")
            expect(page.locator("#sweep-strip img")).to_have_count(0)
            expect(page.locator("#sweep-curve img")).to_have_count(0)
            expect(page.locator("#full-file")).not_to_contain_text("fused_full_mef_a")
        finally:
            browser.close()
