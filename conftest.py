"""Settings for `pytest --nbval book/*.ipynb` (the unit tests have their own tests/conftest.py).

Figures glued with myst_nb.glue are stored under papermill's record MIME types; nbval compares
those as text, so a PNG whose pixels differ in the last bits of a float between CPUs would fail.
They are skipped like the plain image types nbval already skips; their numbers are checked where
they are glued as text.
"""

GLUED_IMAGES = tuple(f"application/papermill.record/image/{kind}" for kind in ("png", "jpeg", "svg+xml"))


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if skip is not None and GLUED_IMAGES[0] not in skip:
            parent.skip_compare = tuple(skip) + GLUED_IMAGES
