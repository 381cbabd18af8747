"""Site tweaks for the book that `_config.yml` cannot express (loaded via `local_extensions`).

- No launch button on the pages named in `tvlib_no_launch` (they run only from a clone).

- Chapters rendered from their committed notebooks: every ``.md`` that has a same-named ``.ipynb``
  beside it is excluded, so Sphinx reads the ``.ipynb`` (its stored, nbval-checked outputs and glue;
  the Colab button points at it). Pages without a notebook (``intro.md``) are read as they are.
- Author–year labels in the bibliography list, to match the author–year citations in the text:
  a pybtex label style ``author_year`` ("Li et al., 2025") and a formatting style ``author_year``
  (pybtex's ``plain``, sorted by author and year, using those labels).
- MathJax served from the build: when `tvlib_mathjax_dir` (set in `_config.yml`) holds a MathJax 3
  ``es5`` tree (``bash .ci/run`` puts the npm package ``mathjax`` there), it is copied to
  ``_static/mathjax`` and used instead of the CDN; otherwise Sphinx's CDN default stays.
- Unnumbered theorem boxes titled flat ("Theorem 3 of the paper: ..."; see ``_flat_box_titles``).
- The landing page's teaser figure taken from a chapter's committed notebook (``tvlib_teaser``).
- Icons drawn by a generated stylesheet (tvlib-icons.css) instead of the theme's fontawesome.js.
- References to unnumbered boxes named by the box ("Theorem 3 of the paper", "Conventions").
- The Vega scripts only on pages with an explorer (``tvlib-explorer`` in the page body).
- Each script tag once: sphinx-thebe and sphinx-togglebutton add their inline configuration twice,
  which throws ``SyntaxError: 'THEBE_JS_URL' has already been declared`` on every page.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _last_names(person) -> str:
    return Text(*person.rich_last_names).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    """'Eldan and Russinovich, 2023', 'Ilharco et al., 2023'; 'a', 'b' appended on a clash."""

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label

    @staticmethod
    def format_label(entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_last_names(p) for p in persons]
        if not names:
            who = re.sub(r"[{}]", "", entry.fields.get("title", entry.key)).split(":")[0]
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(PlainStyle):
    default_label_style = "author_year"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "author_year", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)


def _exclude_paired_sources(app, config) -> None:
    root = Path(app.confdir)
    for notebook in sorted(root.glob("book/**/*.ipynb")):
        source = notebook.with_suffix(".md")
        if ".ipynb_checkpoints" not in notebook.parts and source.is_file():
            config.exclude_patterns.append(source.relative_to(root).as_posix())


def _use_local_mathjax(app, config) -> None:
    if not config.tvlib_mathjax_dir:
        return
    root = Path(app.confdir, config.tvlib_mathjax_dir)
    if (root / "mathjax" / "tex-mml-chtml.js").is_file():
        config.html_static_path.append(str(root))
        config.mathjax_path = "mathjax/tex-mml-chtml.js"
    else:
        logger.info(
            "[tvlib] no MathJax in %s: formulas load MathJax from a CDN "
            "(bash .ci/run setup puts it there)",
            root,
        )


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts, seen = [], set()
    for js in context.get("script_files", []):
        attributes = getattr(js, "attributes", {})
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            scripts.append(js)
    if "script_files" in context:
        context["script_files"][:] = scripts


def _drop_launch_buttons(app, pagename, templatename, context, doctree):
    """No Colab button on pages listed in tvlib_no_launch (they need a clone of the repository)."""
    if pagename in app.config.tvlib_no_launch and "header_buttons" in context:
        context["header_buttons"][:] = [b for b in context["header_buttons"] if b.get("label") != "launch-buttons"]


def _repository_substitutions(app, config) -> None:
    """{{ repository_url }}, {{ repository_link }} and {{ repository_branch }} in the text: _config.yml's repository."""
    opts = config.html_theme_options or {}
    subs = dict(config.myst_substitutions or {})
    subs.setdefault("repository_url", opts.get("repository_url", ""))
    subs.setdefault("repository_branch", opts.get("repository_branch", "main"))
    subs.setdefault("repository_link", f"[{subs['repository_url']}]({subs['repository_url']})")
    config.myst_substitutions = subs


_VEGA = ("vendor/vega.min.js", "vendor/vega-lite.min.js", "vendor/vega-embed.min.js")


def _vega_only_with_explorers(app, pagename, templatename, context, doctree) -> None:
    """The Vega scripts (~1 MB) only on pages that draw an explorer (tvlib.explore's container class)."""
    if "tvlib-explorer" in context.get("body", "") or "script_files" not in context:
        return
    context["script_files"][:] = [
        js for js in context["script_files"] if not str(getattr(js, "filename", js) or "").endswith(_VEGA)
    ]


_UNNUMBERED_TITLE = re.compile(
    r'(<p class="admonition-title"[^>]*>)<span class="caption-number">([A-Z][a-z]+) </span> \((.*)\)</p>'
)
_PAPER_SOURCE = re.compile(r"^(.*) \(([^()]* of the paper)\)$")


def _flat_title(match: re.Match) -> str:
    head, title = match.group(1), match.group(3)
    paper = _PAPER_SOURCE.match(title)
    if paper:
        title = f"{paper.group(2)}: {paper.group(1)}"
    return f'{head}<span class="tvlib-box-title">{title}</span></p>'


def _flat_box_titles(app, pagename, templatename, context, doctree) -> None:
    """Unnumbered boxes show their title alone: "Theorem 3 of the paper: Out-of-domain generalization" for a
    restatement titled "Out-of-domain generalization (Theorem 3 of the paper)", "Conventions" for the book's
    own box, instead of sphinx-proof's "Theorem (Out-of-domain generalization (Theorem 3 of the paper))"."""
    if "body" in context:
        context["body"] = _UNNUMBERED_TITLE.sub(_flat_title, context["body"])


def _write_teaser(app, config) -> None:
    """The landing page's teaser: a figure glued in a chapter's committed notebook, written as a PNG where
    the page's figure directive reads it (tvlib_teaser: notebook, glue name, path), so it is always the
    chapter's own figure."""
    import base64
    import json

    if not config.tvlib_teaser:
        return
    root = Path(app.confdir)
    notebook, name, target = (config.tvlib_teaser[k] for k in ("notebook", "glue", "path"))
    cells = json.loads((root / notebook).read_text(encoding="utf-8"))["cells"]
    for output in (o for c in cells for o in c.get("outputs", [])):
        if output.get("metadata", {}).get("scrapbook", {}).get("name") == name:
            png = next((v for k, v in output.get("data", {}).items() if k.endswith("image/png")), None)
            if png:
                path = root / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(png))
                return
    raise ValueError(f"tvlib_teaser: no PNG glued as {name!r} in {notebook}: expected a glue_figure of that name")


_FA_PACKS = {"fas": ("fa-solid", "fas"), "far": ("fa-regular", "far"), "fab": ("fa-brands", "fab")}
_FA_ICON = re.compile(r'(?:"([\w-]+)"|(\w+)):\[(\d+),(\d+),\[([^\]]*)\],"[0-9a-f]+","((?:[^"\\]|\\.)*)"\]')


def _fontawesome_packs(script: str) -> dict[str, dict[str, tuple[int, int, str]]]:
    """{pack: {icon name or alias: (width, height, SVG path)}} read from the theme's fontawesome.js."""
    packs: dict[str, dict[str, tuple[int, int, str]]] = {}
    end = 0
    for define in re.finditer(r'd\("(fa[brs])",(\w+)\)', script):
        start = script.rfind(f"var {define.group(2)}={{", end, define.start())
        chunk = script[start if start >= 0 else end:define.start()]
        icons = packs.setdefault(define.group(1), {})
        for m in _FA_ICON.finditer(chunk):
            shape = (int(m.group(3)), int(m.group(4)), m.group(6))
            for name in [m.group(1) or m.group(2), *re.findall(r'"([\w-]+)"', m.group(5))]:
                icons.setdefault(name, shape)
        end = define.end()
    return packs


def _icons_without_fontawesome(app, exception) -> None:
    """The theme's icons as CSS masks (tvlib-icons.css) for the icons the built pages use, so no page
    needs the 1.5 MB fontawesome.js, which the theme's template puts in every page and this takes out."""
    from urllib.parse import quote

    if exception or app.builder.format != "html":
        return
    out = Path(app.outdir)
    script = out / "_static" / "scripts" / "fontawesome.js"
    if not script.is_file():
        logger.warning("[tvlib] no _static/scripts/fontawesome.js: the icons cannot be drawn without it")
        return
    packs = _fontawesome_packs(script.read_text(encoding="utf-8"))
    used: set[tuple[str, str]] = set()
    tag = re.compile(r'[ \t]*<script[^>]*src="[^"]*scripts/fontawesome\.js[^"]*"[^>]*></script>\n?')
    for page in out.rglob("*.html"):
        html = page.read_text(encoding="utf-8", errors="replace")
        if tag.search(html):  # the theme's template writes this tag itself: take it out of the page
            page.write_text(tag.sub("", html), encoding="utf-8")
        for classes in re.findall(r'class="([^"]*\bfa-[^"]*)"', html):
            names = classes.split()
            pack = next((p for p, aliases in _FA_PACKS.items() if set(aliases) & set(names)), "fas")
            used |= {(pack, n[3:]) for n in names if n.startswith("fa-") and n[3:] in packs.get(pack, {})}
    # The icon is drawn by ::before, so the theme's own display rules for the element (e.g. which of
    # the colour-mode icons shows) keep working.
    rules = [
        ":where(i, span):where(.fa-solid, .fa-regular, .fa-brands, .fas, .far, .fab)::before {"
        ' content: ""; display: inline-block; height: 1em; width: var(--tvlib-icon-w, 1em);'
        " vertical-align: -0.125em; background-color: currentColor;"
        " -webkit-mask: var(--tvlib-icon) no-repeat center / contain; mask: var(--tvlib-icon) no-repeat center / contain; }",
        ":where(.fa-lg) { font-size: 1.25em; }",
    ]
    for pack, name in sorted(used):
        w, h, path = packs[pack][name]
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}"><path d="{path}"/></svg>'
        selector = ", ".join(f".{cls}.fa-{name}" for cls in _FA_PACKS[pack])
        rules.append(f'{selector} {{ --tvlib-icon-w: {w / h:.4f}em; --tvlib-icon: url("data:image/svg+xml,{quote(svg)}"); }}')
    (out / "_static" / "tvlib-icons.css").write_text("\n".join(rules) + "\n", encoding="utf-8")


def _box_title(app, label: str) -> str | None:
    """The flat name of the unnumbered sphinx-proof box `label` ("Theorem 3 of the paper", "Conventions"),
    read from its page's doctree (so an incremental build knows every box), or None."""
    cache = app.__dict__.setdefault("_tvlib_box_titles", {})
    if label not in cache:
        cache[label] = None
        entry = getattr(app.env, "proof_list", {}).get(label)
        if entry and entry.get("nonumber"):
            doctree = app.env.get_doctree(entry["docname"])
            for node in doctree.findall(lambda n: getattr(n, "get", None) and n.get("label") == label and "title" in n):
                title = re.sub(r"^\s*\((.*)\)\s*$", r"\1", node["title"]).strip()
                paper = _PAPER_SOURCE.match(title)
                cache[label] = paper.group(2) if paper else (title or None)
                break
    return cache[label]


_BOX_REFERENCE = re.compile(r'(<a class="reference internal" href="[^"]*#([\w-]+)">)([A-Z][a-z]+) </a>')


def _name_box_references(app, pagename, templatename, context, doctree) -> None:
    """A {prf:ref} to an unnumbered box reads "Theorem 3 of the paper" or "Conventions", not sphinx-proof's
    bare "Theorem "."""
    if "body" in context:
        def name(m: re.Match) -> str:
            known = _box_title(app, m.group(2))
            return f"{m.group(1)}{known}</a>" if known else m.group(0)

        context["body"] = _BOX_REFERENCE.sub(name, context["body"])


def setup(app):
    app.add_config_value("tvlib_mathjax_dir", "", "html")
    app.add_config_value("tvlib_no_launch", [], "html")
    app.add_config_value("tvlib_teaser", {}, "env")
    app.connect("html-page-context", _drop_launch_buttons, priority=600)
    app.connect("config-inited", _exclude_paired_sources, priority=900)
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("config-inited", _repository_substitutions, priority=900)
    app.connect("config-inited", _write_teaser, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    app.connect("html-page-context", _vega_only_with_explorers, priority=110)
    app.connect("html-page-context", _flat_box_titles, priority=120)
    app.connect("html-page-context", _name_box_references, priority=125)
    app.connect("build-finished", _icons_without_fontawesome)
    app.add_css_file("tvlib-icons.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
