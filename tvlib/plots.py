"""Plotting helpers shared by the chapters; each returns a matplotlib Figure and draws nothing else."""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .data import Task

__all__ = [
    "explorer",
    "band",
    "token_labels",
    "plot_sequence",
    "plot_attention",
    "plot_learning_curves",
    "plot_task_vector",
    "plot_spectra",
    "plot_row_norms",
]


def explorer(plot_fn: Callable[..., Figure], **controls: Any) -> None:
    """Show plot_fn(**defaults) as an ordinary figure, then the controls that redraw it in place.

    `controls` are ipywidgets (e.g. FloatSlider) whose current values are passed to `plot_fn` by
    name. The static site and headless runs show the figure at the controls' initial values; in a
    live kernel moving a control replaces that figure.
    """
    import ipywidgets as widgets
    from IPython.display import display

    def draw() -> Figure:
        fig = plot_fn(**{name: c.value for name, c in controls.items()})
        plt.close(fig)  # displayed through the handle only, never twice
        return fig

    handle = display(draw(), display_id=True)

    def update(_: Any) -> None:
        handle.update(draw())

    for c in controls.values():
        c.observe(update, names="value")
    display(widgets.HBox(list(controls.values())))


def band(ax: plt.Axes, x: np.ndarray, runs: np.ndarray, label: str | None = None, **kw: Any) -> None:
    """Mean over the first axis of `runs` as a line, with a min-max band."""
    runs = np.asarray(runs)
    (line,) = ax.plot(x, runs.mean(0), label=label, **kw)
    ax.fill_between(x, runs.min(0), runs.max(0), color=line.get_color(), alpha=0.2, lw=0)


def token_labels(X: Tensor, y: float, task: Task) -> list[str]:
    """Name each token of one sequence: '+mu' (label-relevant), '-mu' (confusion) or 'v_j'."""
    proj_mu = (X @ task.mu) * y
    proj_v = X @ task.irrelevant.T
    names = []
    for p, pv in zip(proj_mu.tolist(), proj_v):
        if p > 0.5:
            names.append("y·μ")
        elif p < -0.5:
            names.append("−y·μ")
        else:
            names.append(f"v{int(pv.abs().argmax()) + 1}")
    return names


def plot_sequence(X: Tensor, y: float, task: Task) -> Figure:
    """A sampled sequence as its tokens' coordinates in the pattern basis (mu, v_1..v_M)."""
    coords = (X @ task.basis()[: task.M + 1].T).T.numpy()  # (M+1, P)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    im = ax.imshow(coords, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_yticks(range(task.M + 1), ["μ"] + [f"v{j + 1}" for j in range(task.M)], fontsize=7)
    ax.set_xticks(range(X.shape[0]), token_labels(X, y, task), rotation=90, fontsize=7)
    ax.set_xlabel("token (its type)")
    ax.set_title(f"One sample of the task, label y = {int(y):+d}: token coordinates")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def plot_attention(A_before: Tensor, A_after: Tensor, names: list[str]) -> Figure:
    """Attention maps A[s, l] of one sequence before and after fine-tuning, tokens labelled by type."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    vmax = float(max(A_before.max(), A_after.max()))
    for ax, A, title in zip(axes, (A_before, A_after), ("Ψ⁽⁰⁾ (W = 0: uniform)", "after fine-tuning")):
        im = ax.imshow(A.numpy(), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("query l")
        ax.set_ylabel("key s")
        ax.set_title(title)
    fig.colorbar(im, ax=axes, fraction=0.025, label="softmax weight of key s for query l")
    return fig


def plot_learning_curves(loss: Tensor, accuracy: Tensor, window: int = 10) -> Figure:
    """Per-step hinge loss and accuracy (fresh batches, moving average), mean and min-max over replicas."""
    kernel = np.ones(window) / window

    def smooth(z: Tensor) -> np.ndarray:
        return np.stack([np.convolve(col, kernel, mode="valid") for col in z.T.numpy()])

    steps = np.arange(loss.shape[0] - window + 1) + window
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    band(axes[0], steps, smooth(loss))
    axes[0].set_ylabel("hinge loss on the fresh batch")
    axes[0].set_yscale("log")
    band(axes[1], steps, smooth(accuracy), color="C2")
    axes[1].set_ylabel("accuracy on the fresh batch")
    for ax in axes:
        ax.set_xlabel("SGD step t")
    fig.suptitle(f"{loss.shape[1]} runs: mean and min–max band ({window}-step moving average)")
    fig.tight_layout()
    return fig


def plot_task_vector(dW: Tensor, dV: Tensor, task: Task, a: Tensor) -> Figure:
    """ΔW and ΔV of one run in the pattern basis (μ, v_1..v_M, complement); neurons sorted by the sign of a."""
    B = task.basis()
    k = task.M + 1
    W_b = (B @ dW @ B.T)[:k, :k].numpy()
    order = torch.argsort(-a, stable=True)
    V_b = (dV[order] @ B.T)[:, :k].numpy()
    ticks = ["μ"] + [f"v{j + 1}" for j in range(task.M)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw=dict(width_ratios=[1, 1.1]))
    lim = float(np.abs(W_b).max())
    im = axes[0].imshow(W_b, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[0].set_xticks(range(k), ticks, rotation=90, fontsize=6)
    axes[0].set_yticks(range(k), ticks, fontsize=6)
    axes[0].set_title("ΔW in the pattern basis: $b_i^T\\,ΔW\\,b_j$")
    fig.colorbar(im, ax=axes[0], fraction=0.045)
    lim = float(np.abs(V_b).max())
    im = axes[1].imshow(V_b, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    axes[1].set_xticks(range(k), ticks, rotation=90, fontsize=6)
    n_pos = int((a > 0).sum())
    axes[1].axhline(n_pos - 0.5, color="k", lw=0.8)
    axes[1].set_ylabel(f"neuron i (a_i > 0 above the line, {n_pos} of {len(a)})")
    axes[1].set_title("ΔV in the pattern basis: $ΔV\\,b_j$")
    fig.colorbar(im, ax=axes[1], fraction=0.045)
    fig.tight_layout()
    return fig


def plot_spectra(dW: Tensor, dV: Tensor) -> Figure:
    """Singular values of ΔW and ΔV, normalised by the largest, one line per run (dW: (R, d, d), dV: (R, m, d))."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, D, name in zip(axes, (dW, dV), ("ΔW", "ΔV")):
        sv = torch.linalg.svdvals(D)
        sv = (sv / sv[:, :1]).numpy()
        k = np.arange(1, sv.shape[1] + 1)
        for row in sv:
            ax.plot(k, row, "o-", ms=3, lw=0.8, alpha=0.6, color="C0")
        ax.set_yscale("log")
        ax.set_xlabel("index k")
        ax.set_title(f"singular values of {name} (σ_k / σ_1), {len(sv)} runs")
    axes[0].set_ylabel("σ_k / σ_1")
    fig.tight_layout()
    return fig


def plot_row_norms(dV: Tensor, batch_size: int) -> Figure:
    """Sorted row norms of ΔV times sqrt(m), one line per run, against Corollary 2's two scales."""
    m = dV.shape[-2]
    norms = (dV.norm(dim=-1) * m**0.5).sort(dim=-1, descending=True).values.numpy()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for row in norms:
        ax.plot(np.arange(1, m + 1), row, lw=0.9, alpha=0.6, color="C0")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="$m^{-1/2}$")
    small = float(np.sqrt(np.log(batch_size) / batch_size))
    ax.axhline(small, color="C3", ls=":", lw=1.2, label=r"$m^{-1/2}\sqrt{\log B / B}$")
    ax.set_yscale("log")
    ax.set_xlabel("neuron, sorted by ‖u_i‖")
    ax.set_ylabel("‖u_i‖ · √m")
    ax.set_title(f"row norms of ΔV ({len(norms)} runs)")
    ax.legend()
    fig.tight_layout()
    return fig
