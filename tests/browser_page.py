"""How the browser tests look at the page: a session that logs its status line, what lies in the window, scrolling
and a held drag (playwright's sync API, on Debian's chromium; see test_app_e2e.py)."""
from __future__ import annotations

SOURCES = ("#source-1", "#source-2")
KNOBS = ("#alpha input[type=range]", "#beta input[type=range]")
IMAGE = "#fused img"


def status_log(page) -> list[list[str]]:
    """[status text, source 1's image URL] at every change of the page since the last call."""
    return page.evaluate("() => { const log = window.__log; window.__log = []; return log; }")


def open_page(browser, url: str, viewport: dict[str, int]):
    """A fresh session at `viewport`, opened and logging the status line's changes (status_log)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport)
    page.goto(url)
    expect(page.locator("#status")).to_contain_text("Fused 2 sources")  # the opening example, fused at start-up
    page.evaluate("""() => { window.__log = [];
        new MutationObserver(() => {
            const s = document.querySelector('#status'), img = document.querySelector('#source-1 img');
            window.__log.push([s ? s.innerText : '', img ? img.src : '']);
        }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    }""")
    return page


# In the page: for each selector not wholly inside the window or not on top at its centre, why.
NOT_IN_VIEW = """(selectors) => selectors.map((selector) => {
    const element = document.querySelector(selector);
    if (!element) return `${selector}: absent`;
    const r = element.getBoundingClientRect();
    if (r.top < -1 || r.left < -1 || r.bottom > innerHeight + 1 || r.right > innerWidth + 1)
        return `${selector}: at x ${Math.round(r.left)}..${Math.round(r.right)}, y ${Math.round(r.top)}..${Math.round(r.bottom)}`;
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (hit && (element.contains(hit) || hit.contains(element))) return '';
    return `${selector}: under ${hit ? hit.tagName + '.' + hit.className + '#' + hit.id : 'nothing'}`;
}).filter(Boolean)"""


def outside_window(page, *selectors: str) -> list[str]:
    """Why each element that is not wholly inside the window, or is under another one (the sticky result), is not."""
    return page.evaluate(NOT_IN_VIEW, list(selectors))


def assert_in_view(page, *selectors: str, timeout_ms: float = 10_000) -> None:
    """Every element wholly in the window and on top (nothing covers its centre), within `timeout_ms`: the page's
    own loading veil covers everything for a moment after it opens."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"(selectors) => ({NOT_IN_VIEW})(selectors).length === 0", arg=list(selectors),
                               timeout=timeout_ms)
    except PlaywrightTimeout:
        reasons = outside_window(page, *selectors)
        raise AssertionError(f"not in view at {page.viewport_size}, scrolled {page.evaluate('scrollY')}: {reasons}") \
            from None


def scroll_to(page, y: float) -> None:
    """Scroll the window to `y` px from the page's top, as a visitor's wheel would."""
    page.evaluate("(y) => window.scrollTo(0, y)", y)


def assert_in_view_from(page, top: str, *selectors: str, timeout_ms: float = 10_000) -> None:
    """With `top` scrolled to the window's top, every element wholly in the window and on top, within
    `timeout_ms`. The scroll is made again at every check: for a moment after the page opens the layout
    above `top` may still change (a fresh clone's CI saw the sources 209 and 380 px off after one scroll)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    check = f"""([top, selectors]) => {{
        const e = document.querySelector(top);
        if (!e) return false;
        window.scrollTo(0, e.getBoundingClientRect().top + scrollY);
        return ({NOT_IN_VIEW})(selectors).length === 0;
    }}"""
    try:
        page.wait_for_function(check, arg=[top, list(selectors)], timeout=timeout_ms)
    except PlaywrightTimeout:
        reasons = outside_window(page, *selectors)
        raise AssertionError(f"not in view at {page.viewport_size} with {top} at the top, scrolled "
                             f"{page.evaluate('scrollY')}: {reasons}") from None


def page_y(page, selector: str) -> float:
    """An element's top, in px from the page's top."""
    return page.evaluate("(s) => document.querySelector(s).getBoundingClientRect().top + scrollY", selector)


def hold_on_knob(page, knob: str, start: float, stop: float) -> float:
    """Press the mouse on a knob's track at `start` (a fraction of it), drag to `stop` and keep it pressed:
    returns the value under the mouse."""
    track = page.locator(f"#{knob} input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    for k in range(1, 7):
        page.mouse.move(box["x"] + box["width"] * (start + (stop - start) * k / 6), y, steps=3)
    return float(track.input_value())
