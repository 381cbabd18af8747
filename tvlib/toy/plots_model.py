"""Figures of one toy model (setting and fine-tuning chapters): a sequence, attention, training, its task vector.

Each plot_* function returns a matplotlib Figure drawn with tvlib.style (mathtext labels, at most three
panels per row, one legend outside the data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .. import style
from ..figures import band
from .data import Task

__all__ = [
    "token_labels",
    "plot_sequence",
    "plot_attention",
    "plot_learning_curves",
    "plot_steps",
    "plot_task_vector",
    "plot_spectra",
    "plot_row_norms",
]

L = style.LABELS


def token_labels(X: Tensor, y: float, task: Task) -> list[str]:
    """Name each token of one sequence in mathtext: $y\\mu$ (label-relevant), $-y\\mu$ (confusion) or $v_j$."""
    proj_mu = (X @ task.mu) * y
    proj_v = X @ task.irrelevant.T
    names = []
    for p, pv in zip(proj_mu.tolist(), proj_v):
        if p > 0.5:
            names.append(r"$y\mu$")
        elif p < -0.5:
            names.append(r"$-y\mu$")
        else:
            names.append(f"$v_{{{int(pv.abs().argmax()) + 1}}}$")
    return names


def _pattern_ticks(M: int, every: int = 4) -> tuple[list[int], list[str]]:
    """Tick positions and labels for the pattern basis (mu, v_1..v_M): mu and every `every`-th v_j."""
    pos = [0] + [j for j in range(1, M + 1) if j % every == 0]
    return pos, [r"$\mu$" if j == 0 else f"$v_{{{j}}}$" for j in pos]


def plot_sequence(X: Tensor, y: float, task: Task) -> Figure:
    """A sampled sequence as its tokens' coordinates in the pattern basis (mu, v_1..v_M)."""
    coords = (X @ task.basis()[: task.M + 1].T).T.numpy()  # (M+1, P)
    fig, ax = style.subplots(width=1.0, aspect=0.45)
    im = ax.imshow(coords, cmap=style.DIVERGING, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(*_pattern_ticks(task.M))
    ax.set_xticks(range(X.shape[0]), token_labels(X, y, task), rotation=90)
    ax.set_xlabel("token position, labelled by its type")
    ax.set_ylabel("pattern")
    ax.set_title(f"one sample, label $y = {int(y):+d}$")
    fig.colorbar(im, ax=ax, label="coordinate", shrink=0.9)
    return fig


def plot_attention(A_before: Tensor, A_after: Tensor, names: list[str]) -> Figure:
    """Attention maps A[s, l] of one sequence before and after fine-tuning, tokens labelled by type."""
    fig, axes = style.subplots(ncols=2, aspect=1.0)
    vmax = float(max(A_before.max(), A_after.max()))
    titles = (L["Psi0"] + r" ($W = 0$: uniform)", "after fine-tuning on " + L["T1"])
    for ax, A, title in zip(axes, (A_before, A_after), titles):
        im = ax.imshow(A.numpy(), cmap=style.SEQUENTIAL, vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("query $l$")
        ax.set_title(title)
    axes[0].set_ylabel("key $s$")
    fig.colorbar(im, ax=axes, shrink=0.8, label="softmax weight of key $s$ for query $l$")
    return fig


def plot_learning_curves(loss: Tensor, accuracy: Tensor, window: int = 10) -> Figure:
    """Per-step hinge loss and accuracy (fresh batches, moving average), mean and min-max over replicas."""
    kernel = np.ones(window) / window

    def smooth(z: Tensor) -> np.ndarray:
        return np.stack([np.convolve(col, kernel, mode="valid") for col in z.T.numpy()])

    steps = np.arange(loss.shape[0] - window + 1) + window
    fig, axes = style.subplots(ncols=2)
    band(axes[0], steps, smooth(loss), color=style.COLORS["T1"], label=f"mean of {loss.shape[1]} runs")
    axes[0].set_ylabel("hinge loss on the fresh batch")
    axes[0].set_yscale("log")
    band(axes[1], steps, smooth(accuracy), color=style.COLORS["T1"])
    axes[1].set_ylabel("accuracy on the fresh batch")
    for ax in axes:
        ax.set_xlabel("SGD step $t$")
    axes[0].plot([], [], color=style.COLORS["T1"], alpha=0.25, lw=6, label="min–max over runs")
    style.legend_outside(fig)
    return fig


def plot_steps(delta_stars: Any, lrs: Any, reach: np.ndarray) -> Figure:
    """Steps to reach the loss level against delta_star (one line per eta) and against eta (one per delta_star),
    with the slopes -2 and -1 of T = Theta(1 / (eta delta_star^2)); reach is (len(delta_stars), len(lrs))."""
    ds, lr = np.asarray(delta_stars, dtype=float), np.asarray(lrs, dtype=float)
    import matplotlib as mpl

    fig, axes = style.subplots(ncols=2)
    cmap = mpl.colormaps[style.SEQUENTIAL]
    for j, eta in enumerate(lr):
        axes[0].loglog(ds, reach[:, j], "o-", color=cmap(0.15 + 0.7 * j / max(1, len(lr) - 1)),
                       label=rf"$\eta = {eta:g}$")
    axes[0].loglog(ds, reach[0, 1 % len(lr)] * (ds / ds[0]) ** -2.0, ls="--", color=style.COLORS["theory"],
                   label="slope $-2$, $-1$ (theory)")
    axes[0].set_xlabel(L["delta_star"])
    axes[0].set_ylabel("steps to reach the loss level")
    for i, d in enumerate(ds):
        axes[1].loglog(lr, reach[i], "s:", color=cmap(0.15 + 0.7 * i / max(1, len(ds) - 1)),
                       label=rf"$\delta_* = {d:g}$")
    axes[1].loglog(lr, reach[0, 0] * (lr / lr[0]) ** -1.0, ls="--", color=style.COLORS["theory"])
    axes[1].set_xlabel(r"step size $\eta$")
    for ax, x in ((axes[0], ds), (axes[1], lr)):
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xticks(x, [f"{v:g}" for v in x])
    style.legend_outside(fig)
    return fig


def plot_task_vector(dW: Tensor, dV: Tensor, task: Task, a: Tensor) -> Figure:
    """ΔW and ΔV of one run in the pattern basis (mu, v_1..v_M); neurons sorted by the sign of a."""
    B = task.basis()
    k = task.M + 1
    W_b = (B @ dW @ B.T)[:k, :k].numpy()
    order = torch.argsort(-a, stable=True)
    V_b = (dV[order] @ B.T)[:, :k].numpy()
    fig, axes = style.subplots(ncols=2, aspect=1.0)
    pos, ticks = _pattern_ticks(task.M)
    lim = float(np.abs(W_b).max())
    im = axes[0].imshow(W_b, cmap=style.DIVERGING, vmin=-lim, vmax=lim, interpolation="nearest")
    axes[0].set_xticks(pos, ticks)
    axes[0].set_yticks(pos, ticks)
    axes[0].set_title(r"$\Delta W$: $b_i^\top \Delta W\, b_j$")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    lim = float(np.abs(V_b).max())
    im = axes[1].imshow(V_b, cmap=style.DIVERGING, vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    axes[1].set_xticks(pos, ticks)
    n_pos = int((a > 0).sum())
    axes[1].axhline(n_pos - 0.5, color=style.COLORS["base"], lw=0.8)
    axes[1].set_ylabel(f"neuron $i$ ($a_i > 0$ above the line: {n_pos} of {len(a)})")
    axes[1].set_title(r"$\Delta V$: $\Delta V\, b_j$")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    return fig


def plot_spectra(dW: Tensor, dV: Tensor) -> Figure:
    """Singular values of ΔW and ΔV, normalised by the largest, one line per run (dW: (R, d, d), dV: (R, m, d))."""
    fig, axes = style.subplots(ncols=2, sharey=True)
    for ax, D, name in zip(axes, (dW, dV), (r"$\Delta W$", r"$\Delta V$")):
        sv = torch.linalg.svdvals(D)
        sv = (sv / sv[:, :1]).numpy()
        k = np.arange(1, sv.shape[1] + 1)
        for row in sv:
            ax.plot(k, row, "o-", ms=2.5, lw=0.8, alpha=0.6, color=style.COLORS["T1"])
        ax.set_yscale("log")
        ax.set_xlabel("index $k$")
        ax.set_title(f"singular values of {name}, {len(sv)} runs")
    axes[0].set_ylabel(r"$\sigma_k / \sigma_1$")
    return fig


def plot_row_norms(dV: Tensor, batch_size: int) -> Figure:
    """Sorted row norms of ΔV times sqrt(m), one line per run, against Corollary 2's two scales."""
    m = dV.shape[-2]
    norms = (dV.norm(dim=-1) * m**0.5).sort(dim=-1, descending=True).values.numpy()
    fig, ax = style.subplots()
    for k, row in enumerate(norms):
        ax.plot(np.arange(1, m + 1), row, lw=0.9, alpha=0.6, color=style.COLORS["T1"],
                label=f"$\\Delta V$ of {len(norms)} runs" if k == 0 else None)
    ax.axhline(1.0, color=style.COLORS["base"], ls="--", lw=1, label="$m^{-1/2}$")
    small = float(np.sqrt(np.log(batch_size) / batch_size))
    ax.axhline(small, color=style.COLORS["theory"], ls=":", lw=1.5, label=r"$m^{-1/2}\sqrt{\log B / B}$")
    ax.set_yscale("log")
    ax.set_xlabel(r"neuron, sorted by $\|u_i\|$")
    ax.set_ylabel(r"$\|u_i\| \cdot \sqrt{m}$")
    style.legend_outside(fig)
    return fig


# ---------------------------------------------------------------- task arithmetic sweeps (Theorems 1, 2)
