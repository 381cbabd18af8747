import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Headless plotting for this process only. Not os.environ["MPLBACKEND"]: Jupyter kernels started by
# tests would inherit it and skip their inline backend, so executed notebooks would lose their figures.
try:
    import matplotlib
except ImportError:  # the plotting extra is not installed
    pass
else:
    matplotlib.use("Agg")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread per test module: the tiny models of the tests run fastest so on a shared CPU,
    and their numbers do not depend on the machine's core count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
