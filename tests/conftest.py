import os

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
