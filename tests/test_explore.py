"""tvlib.explore: explorers render as self-contained, deterministic HTML."""

import pandas as pd
import pytest

altair = pytest.importorskip("altair")

from tvlib.explore import Explorer, explorer  # noqa: E402


def _chart():
    df = pd.DataFrame({"lam": [0.0, 0.0, 1.0, 1.0], "alpha": [0.0, 0.5, 0.0, 0.5], "error": [0.1234567, 0.2, 0.3, 0.4]})
    lam = altair.param(name="lam", value=0.0, bind=altair.binding_range(min=0, max=1, step=1, name="λ "))
    return altair.Chart(df).mark_line().encode(x="alpha:Q", y="error:Q").add_params(lam).transform_filter(
        altair.datum.lam == lam)


def test_explorer_html_is_deterministic_and_has_its_controls():
    a, b = explorer(_chart(), alt="Error against alpha."), explorer(_chart(), alt="Error against alpha.")
    assert a.to_html() == b.to_html()
    html = a.to_html()
    assert '"bind"' in html and "vegaEmbed" in html and 'aria-label="Error against alpha."' in html
    assert "0.1235" in html and "0.1234567" not in html  # floats rounded to 4 digits
    bundle = a._repr_mimebundle_()
    assert bundle["text/plain"] == "[interactive figure] Error against alpha."


def test_explorer_rejects_missing_alt_text_and_bad_names():
    with pytest.raises(ValueError, match="alt"):
        explorer(_chart(), alt="  ")
    with pytest.raises(ValueError, match="name"):
        Explorer({}, alt="x", name="a b")


def test_explorer_fits_its_container_even_when_the_chart_sets_a_width():
    spec = explorer(_chart().properties(width=560, height=300), alt="Error against alpha.").spec
    assert spec["width"] == "container" and spec["height"] == 300
    assert spec["autosize"]["type"] == "fit-x"
