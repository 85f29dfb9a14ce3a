"""The demo served on localhost: the /fuse API through gradio_client, and a real browser session.

The browser test drives Debian's chromium through Python playwright (`apt-get install -y
chromium`; `playwright install` needs downloads and is not used) and is skipped without it.
It saves a full-page screenshot: to docs/app_screenshot.png when TCMOA_UPDATE_SCREENSHOT=1
(then look at it), otherwise to the test's temporary folder, so a test run leaves the tree clean.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
from PIL import Image

from demo import build_demo, launch_options, load_engine

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "docs" / "app_screenshot.png"
TNO = REPO / "demo" / "examples" / "vif" / "tno_18"
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),  # inside gradio's queue (pandas 3)
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    engine = load_engine("compact", "cpu")
    demo = build_demo(engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(engine))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def test_fuse_endpoint_with_gradio_client(app_url, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    out = client.predict(handle_file(str(TNO / "1_visible.png")), handle_file(str(TNO / "2_infrared.png")),
                         "vif", 1.5, 0.1, api_name="/fuse")
    with Image.open(out) as fused:
        assert fused.format == "PNG" and fused.size == (512, 372)
    small = tmp_path / "small.png"
    Image.new("L", (64, 64)).save(small)
    with pytest.raises(Exception, match="source 2 is 64x64 but source 1 is 512x372"):
        client.predict(handle_file(str(TNO / "1_visible.png")), handle_file(str(small)), "vif", 1.0, 0.0,
                       api_name="/fuse")


def test_browser_example_alpha_and_maps(app_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(app_url)
            page.get_by_text("Infrared + visible: tno 18").click()  # one click loads and fuses
            status = page.locator("#status")
            sync_api.expect(status).to_contain_text("Fused 2 sources", timeout=60_000)
            sync_api.expect(page.locator("#untrained-banner")).to_contain_text("Untrained model")
            before = page.locator("#fused img").get_attribute("src")

            alpha = page.locator("#alpha input[type=number]")
            alpha.fill("2.5")
            alpha.press("Enter")
            sync_api.expect(status).to_contain_text("α = 2.50", timeout=60_000)
            after = page.locator("#fused img").get_attribute("src")
            assert after and after != before
            assert page.request.get(after).body() != page.request.get(before).body()
            slider = page.locator("#alpha input[type=range]")  # drag-like: five quick steps of 0.05
            for _ in range(5):
                slider.press("ArrowRight")
            sync_api.expect(status).to_contain_text("α = 2.75", timeout=60_000)  # the last value wins
            for shown in ("#prompt-maps img", "#comparison img"):
                sync_api.expect(page.locator(shown).first).to_be_visible()
            page.get_by_role("tab", name="Routing").click()
            sync_api.expect(page.locator("#routing-maps img")).to_be_visible()
            page.get_by_role("tab", name="Prompt maps").click()
            time.sleep(0.5)  # let the images paint before the screenshot
            shot = SCREENSHOT if os.environ.get("TCMOA_UPDATE_SCREENSHOT") == "1" else tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 50_000  # a real page with images, not a blank one
        finally:
            browser.close()
