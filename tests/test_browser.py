"""The built website as a reader sees it: every page loaded in headless Chromium.

Run by ``bash .ci/run`` as its own stage, after the site build; skipped by a plain ``pytest tests``.
By hand, after ``bash .ci/run book``::

    TVLIB_BROWSER=1 .venv/bin/python -m pytest tests/test_browser.py

It serves ``_build/html`` on 127.0.0.1 (a free port) and opens every page in Debian's ``chromium``
(or ``TVLIB_CHROMIUM``), driven by Playwright; requests to any other host are blocked and reported,
because the site must work offline. Per page it checks: no console or page errors; every formula
typeset (no MathJax error, no raw ``$...$`` or ``\\(``); no raw ``{doc}``/``{eq}``/``{numref}``
roles or ``((``; author-year bibliography labels, each arXiv id once; every image with alt text in a numbered, captioned figure; no code or output block
wider than the column at 1400 px and no horizontal scrolling at 420 px; at most 5 MB per page (text gzipped, as static hosts serve it); no
ipywidgets (dead controls without a kernel); on explorer pages (a Vega/Vega-Lite view with bound
inputs, or a Plotly figure with sliders or buttons), every control changes the figure.

At the phone width it also checks that no display formula is cut off (it must fit or scroll in a visible
box), that figure text is shown at least 9 px tall (the style's smallest font at the PNG's dpi, scaled by the
displayed width) and that explorers are drawn no wider than the column; at 1400 px that table cells have
room (4 px padding or more) and no Markdown table is left as raw ``|`` text, and that no TeX command or
``((`` shows outside a formula. Pages with a known failure of one of these checks are listed in ``KNOWN``
with the reason: they warn instead of failing.

``TVLIB_BROWSER_LENIENT=1`` turns the figure and width checks into warnings. Screenshots of every page
at 1400 and 420 px land in ``_build/screens/<page>-1400.png`` / ``-420.png``, and the findings of every
check in ``_build/screens/report.json``.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENS = ROOT / "_build" / "screens"
JS = Path(__file__).resolve().parent / "browser"
ENABLED = os.environ.get("TVLIB_BROWSER") == "1"
LENIENT = os.environ.get("TVLIB_BROWSER_LENIENT") == "1"
WIDE, NARROW = 1400, 420
MAX_PAGE_BYTES = 5_000_000
# A full-page screenshot of the API page (about 100,000 px tall at 1400 px) takes ~30 s on a busy 2-core machine.
SHOT_TIMEOUT_MS = 180_000
# Figure text on a phone: the book style's smallest font (tvlib.style.MIN_FONT_PT, in points at the PNG's
# own dpi, read from its pHYs chunk, else tvlib.style.DPI), scaled by displayed / natural width, must be
# shown at least this many CSS pixels tall.
MIN_FIGURE_TEXT_PX = 9
MIN_FONT_PT, FIGURE_DPI = 7, 150  # tvlib.style.MIN_FONT_PT and DPI (tests/test_style.py checks they agree)

# Pages that fail a check for a known reason that their chapter must fix: the check reports them as a
# warning, by name, instead of failing. An entry whose page passes is reported too (remove it then).
KNOWN: dict[str, dict[str, str]] = {}

pytestmark = pytest.mark.skipif(
    not ENABLED, reason="browser test of the built site: run by bash .ci/run, or set TVLIB_BROWSER=1"
)


def _pages() -> list[str]:
    """Every HTML page of the build, as a path relative to _build/html (redirect stubs left out)."""
    if not HTML.is_dir():
        return []
    pages = []
    for path in sorted(HTML.rglob("*.html")):
        rel = path.relative_to(HTML).as_posix()
        if rel.split("/")[0] in {"_static", "_sources", "_images"}:
            continue
        head = path.read_text(encoding="utf-8", errors="replace")[:2000].lower()
        if 'http-equiv="refresh"' in head:
            continue
        pages.append(rel)
    return pages


PAGES = _pages() if ENABLED else []


def _name(rel: str) -> str:
    return rel.removesuffix(".html").removeprefix("book/").replace("/", "-")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - keep the test output readable
        pass


@pytest.fixture(scope="session")
def site_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(HTML)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    exe = os.environ.get("TVLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail(
            "no Chromium found: bash .ci/run installs Debian's (apt-get install -y chromium); "
            "elsewhere set TVLIB_CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True)
        yield browser
        browser.close()


_REPORTS: dict[str, dict] = {}


@pytest.fixture(scope="session")
def reports():
    for stale in [*SCREENS.glob("*.png"), SCREENS / "report.json"]:
        stale.unlink(missing_ok=True)
    yield _REPORTS
    if _REPORTS:
        SCREENS.mkdir(parents=True, exist_ok=True)
        (SCREENS / "report.json").write_text(json.dumps(_REPORTS, indent=1, ensure_ascii=False))


SETTLE = """async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const t0 = Date.now();
  while (Date.now() - t0 < 20000) {            // MathJax: wait for its first typesetting pass
    if (!document.querySelector(".math")) break;
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; break; }
    await sleep(100);
  }
  while (Date.now() - t0 < 20000) {            // Vega views: wait until each has drawn
    const views = [...document.querySelectorAll(".vega-embed")];
    if (views.every((v) => v.querySelector("canvas, svg.marks"))) break;
    await sleep(100);
  }
  await sleep(300);
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return entries.map((e) => [e.name, e.decodedBodySize || 0]);
}"""
COMPRESSIBLE = {".html", ".js", ".css", ".json", ".svg", ".txt", ".map", ".woff", ".ttf", ".otf"}


def _weight(resources: list) -> int:
    """Bytes a reader downloads for one page from a static host that gzips text (as most do)."""
    total = 0
    for url, size in resources:
        path = HTML / urlparse(url).path.lstrip("/")
        if path.is_file() and path.suffix in COMPRESSIBLE:
            total += len(gzip.compress(path.read_bytes(), compresslevel=6))
        else:
            total += size
    return total


def _visit(browser, base: str, rel: str) -> dict:
    """Load one page at 1400 and 420 px; collect what every check needs and save screenshots."""
    checks_js = (JS / "page_checks.js").read_text()
    explorers_js = (JS / "explorers.js").read_text()
    report: dict = {"console": [], "external": [], "explorers": []}
    context = browser.new_context(viewport={"width": WIDE, "height": 900}, device_scale_factor=1)

    def route(r):
        url = r.request.url
        if urlparse(url).scheme in ("http", "https") and urlparse(url).hostname != "127.0.0.1":
            report["external"].append(url)
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: report["console"].append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: report["console"].append(f"uncaught: {e}"))
    try:
        page.goto(f"{base}/{rel}", wait_until="load")
        report["bytes"] = _weight(page.evaluate(SETTLE))
        report.update(page.evaluate(checks_js))
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / f"{_name(rel)}-{WIDE}.png"), full_page=True, timeout=SHOT_TIMEOUT_MS)
        for ex in report["explorers"]:
            report["explorers_moved"] = report.get("explorers_moved", []) + _move_controls(page, ex, explorers_js)
        page.set_viewport_size({"width": NARROW, "height": 900})
        page.reload(wait_until="load")
        page.evaluate(SETTLE)
        report["narrow_scroll_width"] = page.evaluate("() => document.documentElement.scrollWidth")
        report["split_words"] = page.evaluate((JS / "split_words.js").read_text())
        report.update(page.evaluate((JS / "narrow_checks.js").read_text(),
                                    {"minFontPt": MIN_FONT_PT, "defaultDpi": FIGURE_DPI, "minPx": MIN_FIGURE_TEXT_PX}))
        page.screenshot(path=str(SCREENS / f"{_name(rel)}-{NARROW}.png"), full_page=True, timeout=SHOT_TIMEOUT_MS)
    finally:
        context.close()
    return report


def _move_controls(page, ex: dict, explorers_js: str) -> list[list]:
    """Move each control of one explorer; return [description, figure changed?] per control."""
    ref = {"kind": ex["kind"], "index": ex["index"]}

    def signature():
        return page.evaluate(explorers_js, {**ref, "action": "signature"})

    def changed_from(before):
        for _ in range(20):
            page.wait_for_timeout(100)
            if signature() != before:
                page.wait_for_timeout(400)  # let a transition finish before the next move
                return True
        return False

    out = []
    where = f"{ex['kind']} explorer #{ex['index']}"
    if ex["kind"] == "vega":
        for j in range(ex["controls"]):
            before = signature()
            what = page.evaluate(explorers_js, {**ref, "action": "move", "control": j})
            out.append([f"{where}, control {j} ({what})", changed_from(before)])
    else:  # Plotly: click each slider near both ends and each menu button; one change is enough
        page.locator(".js-plotly-plot").nth(ex["index"]).scroll_into_view_if_needed()
        moved: dict[str, bool] = {}
        for target in page.evaluate(explorers_js, {**ref, "action": "targets"}) or []:
            before = signature()
            page.mouse.click(target["x"], target["y"])
            moved[target["control"]] = moved.get(target["control"], False) | changed_from(before)
        out += [[f"{where}, {control}", changed] for control, changed in moved.items()]
    return out


@pytest.fixture
def report(request, browser, site_url, reports):
    rel = request.param
    if rel not in reports:
        try:
            reports[rel] = _visit(browser, site_url, rel)
        except Exception as exc:  # noqa: BLE001 - one broken page must not hide the others
            reports[rel] = {"fatal": f"{type(exc).__name__}: {exc}"}
    if "fatal" in reports[rel]:
        pytest.fail(f"could not load {rel}: {reports[rel]['fatal']}", pytrace=False)
    return reports[rel]


def _verdict(title: str, problems: list[str], lenient: bool = False) -> None:
    if not problems:
        return
    message = f"{title}:\n  " + "\n  ".join(problems)
    if lenient and LENIENT:
        warnings.warn(message, stacklevel=2)
    else:
        pytest.fail(message, pytrace=False)


def _checked(check: str, rel: str, title: str, problems: list[str], lenient: bool = False) -> None:
    """_verdict, except that a page on the KNOWN list for this check only warns, naming the reason."""
    reason = KNOWN.get(check, {}).get(_name(rel))
    if reason is None:
        _verdict(title, problems, lenient)
    elif problems:
        warnings.warn(f"known ({reason}): {title}:\n  " + "\n  ".join(problems), stacklevel=2)
    else:
        warnings.warn(f"{_name(rel)} now passes '{check}': remove it from KNOWN in tests/test_browser.py", stacklevel=2)


def test_site_built():
    assert PAGES, f"no pages under {HTML}: build the site first (bash .ci/run book)"


page_param = pytest.mark.parametrize("report", PAGES, indirect=True, ids=[_name(p) for p in PAGES])


@page_param
def test_no_console_errors(report):
    problems = report["console"] + [f"blocked request to another host (the site must work offline): {u}"
                                    for u in report["external"]]
    _verdict("console errors", problems)


@page_param
def test_formulas_typeset(report):
    problems = [f"not typeset: {s}" for s in report["untypeset"]]
    problems += [f"MathJax error: {s}" for s in report["merror"]]
    problems += [f"raw TeX in the text: {s}" for s in report["rawTex"]]
    _verdict("formulas", problems)


@page_param
def test_no_raw_markup(report, request):
    problems = [f"raw role: {s}" for s in report["rawRoles"]] + [f"double brackets: {s}" for s in report["rawParens"]]
    problems += [f"TeX outside a formula: {s}" for s in report["bareTex"]]
    _checked("markup", request.node.callspec.params["report"], "raw MyST markup or TeX on the page", problems)


@page_param
def test_tables_readable(report, request):
    problems = [f"cramped cells (under 4 px padding) in {s}" for s in report["crampedTables"]]
    problems += [f"a Markdown table shown as raw text: {s}" for s in report["rawTables"]]
    _checked("tables", request.node.callspec.params["report"], "tables", problems)


@page_param
def test_display_math_not_clipped(report, request):
    _checked("math", request.node.callspec.params["report"], f"display formulas cut off at {NARROW} px",
             report["clippedMath"])


@page_param
def test_figure_text_legible_on_phone(report, request):
    _checked("figure-text", request.node.callspec.params["report"],
             f"figure text under {MIN_FIGURE_TEXT_PX} px at {NARROW} px", report["smallFigureText"])


@page_param
def test_explorers_fit_the_column(report, request):
    _checked("explorer-width", request.node.callspec.params["report"],
             f"explorers wider than the column at {NARROW} px (legend or axis hidden)", report["wideExplorers"])


@page_param
def test_bibliography_author_year(report):
    _verdict("bibliography", report["bibProblems"])


@page_param
def test_figures_numbered_captioned_with_alt(report):
    _verdict(f"figures ({report['imageCount']} images)", report["badImages"] + report["badFigures"], lenient=True)


@page_param
def test_blocks_fit_the_column(report):
    problems = [f"at {WIDE} px, wider than the {report['column']:.0f} px column: {s}" for s in report["wide"]]
    if report["narrow_scroll_width"] > NARROW + 1:
        problems.append(f"at {NARROW} px the page scrolls sideways ({report['narrow_scroll_width']} px wide)")
    _verdict("blocks wider than the page", problems, lenient=True)


@page_param
def test_table_cells_keep_words_whole(report):
    _verdict(f"words split inside table cells at {NARROW} px", [f'"{w}"' for w in report["split_words"]])


@page_param
def test_explorers_respond(report):
    problems = [f"{desc}: the figure did not change" for desc, changed in report.get("explorers_moved", [])
                if not changed]
    problems += [f"{ex['kind']} explorer #{ex['index']}: no control could be moved" for ex in report["explorers"]
                 if ex["controls"] and not any(d.startswith(f"{ex['kind']} explorer #{ex['index']},")
                                               for d, _ in report.get("explorers_moved", []))]
    if report["widgetViews"]:
        problems.append(f"{report['widgetViews']} ipywidgets outputs: dead controls on a site without a kernel "
                        "(tag the cell remove-output, or render the explorer client-side)")
    _verdict("explorers", problems)


@page_param
def test_page_weight(report):
    assert report["bytes"] <= MAX_PAGE_BYTES, (
        f"the page loads {report['bytes'] / 1e6:.1f} MB, text gzipped (budget {MAX_PAGE_BYTES / 1e6:.0f} MB)"
    )


def test_figures_fit_the_column_when_opened_from_disk(browser):
    """The README says: open _build/html/index.html in a browser. A page opened from disk cannot fetch its
    images, so the figures' density must come from the width the page declares (tvlib.book.figure_png glues
    them at twice their dpi, shown at their 1x width): at 1400 px no figure may be wider than its column."""
    if not PAGES:
        pytest.skip("no built site")
    page = browser.new_page(viewport={"width": WIDE, "height": 900})
    problems = []
    try:
        for rel in ("book/intro.html", "book/pretrained.html", "book/addition.html"):
            page.goto((HTML / rel).as_uri(), wait_until="load")
            page.wait_for_timeout(500)
            wide = page.evaluate("""() => [...document.querySelectorAll('figure img, .cell_output img')]
                .filter(i => i.naturalWidth && i.getBoundingClientRect().width >
                             (i.closest('.tvlib-figure-scroll') || i.parentElement).clientWidth + 1)
                .map(i => i.getAttribute('src').split('/').pop().slice(0, 16) + ': ' +
                          Math.round(i.getBoundingClientRect().width) + ' px')""")
            problems += [f"{rel}: {w}" for w in wide]
    finally:
        page.close()
    _verdict(f"figures wider than their column at {WIDE} px (page opened from disk)", problems)
