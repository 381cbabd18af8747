"""Explorers that work without a kernel: a Vega-Lite chart over a precomputed grid, drawn in the browser.

Build an Altair chart whose sliders or menus (`alt.param(bind=...)`) filter a tidy table of results
computed in the notebook, then show it with `explorer(chart, alt=...)`. The output is HTML that draws
the chart with vega-embed: on the book's website the scripts come from `book/_static/vendor` (no
network needed); in Jupyter or Colab they are loaded from a CDN when the page does not have them.
Moving a control filters the precomputed data, so the figure changes on the static site too.

    import altair as alt
    from tvlib.explore import explorer

    slider = alt.binding_range(min=-2, max=3, step=0.2, name="λ ")
    lam = alt.param(name="lam", value=1.0, bind=slider)
    chart = (alt.Chart(df).mark_line().encode(x="alpha:Q", y="error:Q")
             .add_params(lam).transform_filter(alt.datum.lam == lam))
    explorer(chart, alt="Hinge error of the merged model against alpha, for the chosen lambda.")
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import Any

__all__ = ["Explorer", "explorer", "CDN"]

#: versions vendored under book/_static/vendor (vega 6 / vega-lite 6 / vega-embed 7, as Altair 6 targets)
CDN = (
    "https://cdn.jsdelivr.net/npm/vega@6.4.0",
    "https://cdn.jsdelivr.net/npm/vega-lite@6.4.1",
    "https://cdn.jsdelivr.net/npm/vega-embed@7.3.0",
)

_TEMPLATE = """<div class="tvlib-explorer" role="figure" aria-label="{alt}">
<div id="{id}" style="width:100%"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec};
  var el = document.getElementById("{id}");
  var waited = 0;
  function draw() {{  // "container" needs a laid-out width: wait a few frames for it, then draw anyway
    if (!el.clientWidth && waited++ < 120) {{ requestAnimationFrame(draw); return; }}
    vegaEmbed(el, spec, {{actions: false, renderer: "svg"}});
  }}
  if (window.vegaEmbed) {{ draw(); return; }}
  var urls = {cdn};
  (function load(i) {{
    if (i === urls.length) {{ draw(); return; }}
    var s = document.createElement("script");
    s.src = urls[i]; s.onload = function () {{ load(i + 1); }};
    document.head.appendChild(s);
  }})(0);
}})();
</script>
</div>"""


class Explorer:
    """A chart that renders in the browser; its text form is the alt text (what nbval and a terminal see)."""

    def __init__(self, spec: dict[str, Any], *, alt: str, name: str) -> None:
        if not alt or not alt.strip():
            raise ValueError("alt is empty: expected a sentence describing what the figure shows")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"name={name!r}: expected letters, digits, '-' and '_' only (it becomes an HTML id)")
        self.spec, self.alt, self.name = spec, alt.strip(), name

    def to_html(self) -> str:
        """The HTML snippet: a container and the script that draws the chart into it."""
        return _TEMPLATE.format(
            alt=html.escape(self.alt, quote=True),
            id=f"tvx-{self.name}",
            spec=json.dumps(self.spec, sort_keys=True, separators=(",", ":")).replace("</", "<\\/"),
            cdn=json.dumps(list(CDN)),
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.to_html(), "text/plain": f"[interactive figure] {self.alt}"}


def _round(obj: Any, digits: int) -> Any:
    """obj with every float rounded (so stored outputs do not depend on the last bits of a CPU's sums)."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v, digits) for v in obj]
    return obj


def explorer(chart: Any, *, alt: str, name: str | None = None, digits: int = 4) -> Explorer:
    """An Explorer for an Altair chart (or a Vega-Lite spec dict), its data inlined and floats rounded.

    A single or layered chart is always sized to its container (an ~800 px column, or a phone): a fixed
    width given by the chart is replaced, since a chart wider than a phone's column hides its legend.
    """
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    spec = _round(json.loads(json.dumps(spec)), digits)
    if not any(k in spec for k in ("hconcat", "vconcat", "concat", "facet", "repeat")):
        spec["width"] = "container"
    spec.setdefault("autosize", {"type": "fit-x", "contains": "padding"})
    if name is None:
        name = "x" + hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return Explorer(spec, alt=alt, name=name)
