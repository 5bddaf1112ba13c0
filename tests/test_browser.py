"""The rendered book in a real browser (Debian's chromium, driven by Playwright), with no network.

Every page of the tiny-profile book is served on 127.0.0.1 and loaded: no request may leave
localhost, no console error beyond the allow-list below, every altair chart must render, a chart
slider or selection must change the rendering, embedded widgets must render. Screenshots and a report
(pages, charts, external requests, page weight) are written to `_build/test-artifacts/`.
"""
import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "_build" / "test-artifacts"
# Messages every Jupyter Book 1 page prints, unrelated to our content (book/references.md: stack-browser).
ALLOWED = (
    "Identifier 'THEBE_JS_URL' has already been declared",  # sphinx-thebe emits its config twice
    "Got invalid theme mode",                                 # pydata-sphinx-theme on first load
    "strict mode: use allowUnionTypes",                        # ajv inside the widget manager
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tiny_book):
    if not Path(CHROMIUM).exists():
        why = "chromium is not installed (Debian: apt-get install chromium; `make test` does it where it can)"
        if os.environ.get("CI"):
            pytest.fail(why)  # CI must check the rendered book
        pytest.skip(why)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_book["html"]))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", tiny_book["html"]
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def visit(browser, url):
    """Load a page with every non-local request blocked and recorded; returns the page and a log."""
    log = {"external": [], "errors": [], "bytes": 0, "requests": []}
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def route(r):
        host = urlsplit(r.request.url).hostname
        if host in {"127.0.0.1", "localhost"} or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            log["external"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and log["errors"].append(m.text))
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    def finished(req):
        log["requests"].append(req.url)
        log["bytes"] += req.sizes()["responseBodySize"] or 0
    page.on("requestfinished", finished)
    page.goto(url, wait_until="load")
    page.wait_for_timeout(2500)
    return page, context, log


def pages(html: Path) -> list[str]:
    return ["index.html"] + sorted(str(p.relative_to(html)) for p in (html / "book").glob("*.html"))


def rendered_charts(page) -> tuple[int, int]:
    total = page.eval_on_selector_all(".vega-embed", "els => els.length")
    ok = page.eval_on_selector_all(".vega-embed", "els => els.filter(e => e.querySelector('svg.marks, canvas')).length")
    return total, ok


def chart_state(page) -> str:
    return page.eval_on_selector_all(".vega-embed", """els => els.map(e => {
        const c = e.querySelector('canvas'); if (c) return c.toDataURL();
        const s = e.querySelector('svg.marks'); return s ? s.innerHTML : ''; }).join('|')""")


def interact(page) -> bool:
    """Move a chart's slider or pick a select option or click a legend entry; True if the drawing changed."""
    before = chart_state(page)
    for sel, action in (
        (".vega-embed .vega-bind input[type=range]",
         "e => { e.value = e.min; e.dispatchEvent(new Event('input', {bubbles: true})); }"),
        (".vega-embed .vega-bind select",
         "e => { e.selectedIndex = e.options.length - 1; e.dispatchEvent(new Event('change', {bubbles: true})); }"),
    ):
        for el in page.query_selector_all(sel):
            el.evaluate(action)
            page.wait_for_timeout(300)
            if chart_state(page) != before:
                return True
    for sym in page.query_selector_all(".vega-embed g.role-legend-symbol path")[:3]:
        sym.click(force=True)
        page.wait_for_timeout(300)
        if chart_state(page) != before:
            return True
    return False


def test_every_page_renders_offline_and_interactively(server, browser, tiny_book):
    base, html = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = []
    for rel in pages(html):
        page, context, log = visit(browser, f"{base}/{rel}")
        total, ok = rendered_charts(page)
        body = (html / rel).read_text()
        has_widgets = "application/vnd.jupyter.widget-state+json" in body
        widgets = page.eval_on_selector_all(".widget-slider, .widget-vbox, .jupyter-widgets", "e => e.length")
        changed = interact(page) if total else None
        name = Path(rel).stem
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        vega_loads = sum("vega-bundle.js" in u for u in log["requests"])
        errors = [e for e in log["errors"] if not any(a in e for a in ALLOWED)]
        report.append({"page": rel, "charts": total, "charts_rendered": ok, "interaction_changes_chart": changed,
                       "widgets_rendered": widgets, "has_widget_state": has_widgets,
                       "external_requests": log["external"], "console_errors": errors,
                       "kilobytes": round(log["bytes"] / 1024, 1), "vega_bundle_loads": vega_loads})
        context.close()
    (ARTIFACTS / "browser_report.json").write_text(json.dumps(report, indent=1))
    print("\npage, charts rendered/total, KB transferred, external requests")
    for r in report:
        print(f"  {r['page']}: {r['charts_rendered']}/{r['charts']}, {r['kilobytes']} KB, "
              f"{len(r['external_requests'])}")
    for r in report:
        assert r["external_requests"] == [], r
        assert r["console_errors"] == [], r
        assert r["charts_rendered"] == r["charts"], r
        assert r["vega_bundle_loads"] == (1 if r["charts"] else 0), r
        if r["charts"]:
            assert r["interaction_changes_chart"], f"no slider, select or legend changed a chart on {r['page']}"
        if r["has_widget_state"]:
            assert r["widgets_rendered"] > 0, f"widget state on {r['page']} did not render"
    chapters = [r for r in report if re.match(r"book/\d\d_", r["page"])]
    assert chapters and all(r["charts"] > 0 for r in chapters)


def test_the_status_page_lists_every_chapter(server, browser, tiny_book):
    base, html = server
    page, context, _ = visit(browser, f"{base}/book/status.html")
    text = page.inner_text("main")
    for name in (p.stem for p in (html / "book").glob("0*.html")):
        assert name in text
    assert "torch" in text and "diffusers" in text and "tiny" in text
    context.close()
