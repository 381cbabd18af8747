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
    """{{ repository_url }} and {{ repository_branch }} in the text: _config.yml's repository, named once."""
    opts = config.html_theme_options or {}
    subs = dict(config.myst_substitutions or {})
    subs.setdefault("repository_url", opts.get("repository_url", ""))
    subs.setdefault("repository_branch", opts.get("repository_branch", "main"))
    config.myst_substitutions = subs


def setup(app):
    app.add_config_value("tvlib_mathjax_dir", "", "html")
    app.add_config_value("tvlib_no_launch", [], "html")
    app.connect("html-page-context", _drop_launch_buttons, priority=600)
    app.connect("config-inited", _exclude_paired_sources, priority=900)
    app.connect("config-inited", _use_local_mathjax, priority=900)
    app.connect("config-inited", _repository_substitutions, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
