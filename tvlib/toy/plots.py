"""Figures of the toy-model chapters (setting, fine-tuning, addition, negation); each returns a Figure."""

from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..figures import _edges, band
from .data import Task

__all__ = [
    "token_labels",
    "plot_sequence",
    "plot_attention",
    "plot_learning_curves",
    "plot_task_vector",
    "plot_spectra",
    "plot_row_norms",
    "plot_lambda_curves",
    "plot_merge_at",
    "plot_phase_diagram",
    "plot_thresholds",
    "plot_worst_task",
    "plot_alpha_hat",
    "plot_negation_bounds",
    "plot_pattern_ratios",
    "plot_negation_parts",
]


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


# ---------------------------------------------------------------- task arithmetic sweeps (Theorems 1, 2)

_TASK_COLORS = {"T1": "C0", "T2": "C3"}


def _seed_matrix(curves: Any, alpha: float, task: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """lams (L,) and a (seeds, L) matrix of `metric` for one alpha and task of a sweep's curves."""
    c = curves[np.isclose(curves["alpha"], alpha) & (curves["task"] == task)]
    table = c.pivot(index="seed", columns="lam", values=metric)
    return table.columns.to_numpy(dtype=float), table.to_numpy()


def plot_lambda_curves(
    curves: Any,
    alphas: list[float],
    *,
    vlines: dict[float, float] | None = None,
    vline_label: str = "theory",
    shade: dict[float, tuple[float, float]] | None = None,
    shade_label: str = "measured region",
    level: float | None = None,
    level_label: str = "2ε",
    title: str | None = None,
) -> Figure:
    """Hinge error (top) and accuracy (bottom) of the merged model on T1 and T2 against lam, one column per alpha.

    Lines are seed means with min-max bands; `vlines` maps alpha to a lam marked by a dashed line,
    `shade` maps alpha to a (lo, hi) lam interval shaded in grey; `level` draws a hinge-error level.
    """
    fig, axes = plt.subplots(2, len(alphas), figsize=(2.6 * len(alphas) + 1, 5.6), sharex=True, sharey="row", squeeze=False)
    for j, alpha in enumerate(alphas):
        for i, metric in enumerate(("error", "accuracy")):
            ax = axes[i, j]
            for task, color in _TASK_COLORS.items():
                lams, runs = _seed_matrix(curves, alpha, task, metric)
                band(ax, lams, runs, label=task, color=color)
            if shade and alpha in shade and np.all(np.isfinite(shade[alpha])):
                ax.axvspan(*shade[alpha], color="0.8", alpha=0.6, lw=0, label=shade_label)
            if vlines and alpha in vlines and np.isfinite(vlines[alpha]):
                ax.axvline(vlines[alpha], color="k", ls="--", lw=1, label=vline_label)
            ax.axvline(0, color="0.6", lw=0.5)
            if metric == "accuracy":
                ax.axhline(0.5, color="0.6", ls=":", lw=1)
                ax.set_xlabel("λ")
            else:
                if level is not None:
                    ax.axhline(level, color="0.4", ls=":", lw=1.2, label=level_label)
                ax.set_yscale("symlog", linthresh=0.05)
                ax.set_ylim(bottom=0)
                ax.set_title(f"α = {alpha:+.1f}")
    axes[0, 0].set_ylabel("hinge error (symlog)")
    axes[1, 0].set_ylabel("accuracy")
    axes[0, -1].legend(fontsize=8, loc="upper right")
    fig.suptitle(title or "Ψ⁽⁰⁾ + ΔΨ_T1 + λ ΔΨ_T2: seed mean and min–max band")
    fig.tight_layout()
    return fig


def plot_merge_at(curves: Any, alpha: float, lam: float) -> Figure:
    """The merged model at one (alpha, lam): error and accuracy curves of that alpha with lam marked and read off."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    alphas = np.sort(curves["alpha"].unique())
    alpha = float(alphas[np.argmin(np.abs(alphas - alpha))])  # nearest alpha of the sweep
    text = []
    for ax, metric in zip(axes, ("error", "accuracy")):
        for task, color in _TASK_COLORS.items():
            lams, runs = _seed_matrix(curves, alpha, task, metric)
            band(ax, lams, runs, label=task, color=color)
            value = float(np.interp(lam, lams, runs.mean(0)))
            ax.plot([lam], [value], "o", color=color, ms=6)
            text.append(f"{task} {metric} {value:.3f}")
        ax.axvline(lam, color="k", ls="--", lw=1)
        ax.set_xlabel("λ")
        ax.set_ylabel("hinge error (symlog)" if metric == "error" else "accuracy")
        if metric == "error":
            ax.set_yscale("symlog", linthresh=0.05)
            ax.set_ylim(bottom=0)
        else:
            ax.axhline(0.5, color="0.6", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"α = {alpha:+.2f}, λ = {lam:+.2f}:  " + ",  ".join(text[:1] + text[2:3] + text[1:2] + text[3:]), fontsize=9)
    fig.tight_layout()
    return fig


def plot_phase_diagram(
    learned: Any,
    *,
    beta: float | None = None,
    thresholds: Any = None,
) -> Figure:
    """Fraction of seeds learning both tasks over (lam, alpha), by hinge error and by accuracy.

    `learned` is tvlib.theory.learned_map's frame; `beta` draws Theorem 1's boundary lam = 1 - alpha + beta
    (alpha >= 0); `thresholds` (columns alpha, lam_star_error, lam_star_accuracy) adds the measured lam*.
    """
    alphas = np.sort(learned["alpha"].unique())
    lams = np.sort(learned["lam"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, col, name in zip(axes, ("both_error", "both_accuracy"), ("hinge error ≤ 2ε on both", "accuracy ≥ 0.95 on both")):
        grid = learned.pivot(index="alpha", columns="lam", values=col).reindex(index=alphas, columns=lams).to_numpy()
        im = ax.pcolormesh(_edges(lams), _edges(alphas), grid, cmap="Greens", vmin=0, vmax=1, shading="flat")
        if beta is not None:
            a = alphas[alphas >= 0]
            ax.plot(1 - a + beta, a, "k--", lw=2, label=f"theory: λ = 1 − α + β̂ (β̂ = {beta:.3f})")
            ax.axhspan(alphas[0] - 0.5 * np.diff(alphas)[0], 0 - 0.5 * np.diff(alphas)[0], fill=False, hatch="//",
                       color="0.5", lw=0, label="theory: α < 0, no λ works")
        key = "lam_star_error" if col == "both_error" else "lam_star_accuracy"
        if thresholds is not None and key in thresholds:
            ax.plot(thresholds[key], thresholds["alpha"], "o", color="C1", mec="k", ms=5, label="measured λ*(α) for T2")
        ax.set_xlabel("λ")
        ax.set_title(name)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("task correlation α")
    fig.colorbar(im, ax=axes, fraction=0.03, label="fraction of seeds where both tasks are learned")
    return fig


def plot_thresholds(summary: Any, *, beta: float) -> Figure:
    """Measured lam*(alpha) (seed mean +- std, by error and by accuracy) against Theorem 1's 1 - alpha (+ beta)."""
    g = summary.groupby("alpha")
    alphas = np.array(sorted(summary["alpha"].unique()))
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for col, label, color in (("lam_star_error", "λ*: T2 hinge error ≤ 2ε", "C1"),
                              ("lam_star_accuracy", "λ*: T2 accuracy ≥ 0.95", "C2")):
        ax.errorbar(alphas, g[col].mean(), yerr=g[col].std(), fmt="o-", color=color, capsize=3, label=label)
    ax.plot(alphas, 1 - alphas, "k-", lw=1, label="1 − α")
    ax.plot(alphas, 1 - alphas + beta, "k--", lw=1, label=f"1 − α + β̂ (β̂ = {beta:.3f})")
    ax.axvspan(alphas[0] - 0.05, 0, color="0.9", lw=0, label="α < 0: theorem promises nothing")
    ax.set_xlabel("task correlation α")
    ax.set_ylabel("threshold λ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_worst_task(frontier: Any) -> Figure:
    """Over lam, the best the merged model does on its worse task: min of max error/ε, max of min accuracy, per alpha."""
    g = frontier.groupby("alpha")
    alphas = np.array(sorted(frontier["alpha"].unique()))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    band(axes[0], alphas, frontier.pivot(index="seed", columns="alpha", values="ratio").to_numpy(), color="C3")
    axes[0].axhline(2, color="k", ls="--", lw=1, label="2ε: 'learned'")
    axes[0].set_yscale("symlog", linthresh=1.0)
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel("min over λ of max(err_T1/ε_T1, err_T2/ε_T2)")
    band(axes[1], alphas, frontier.pivot(index="seed", columns="alpha", values="accuracy").to_numpy(), color="C2")
    axes[1].axhline(0.95, color="k", ls="--", lw=1, label="0.95")
    axes[1].set_ylabel("max over λ of min(acc_T1, acc_T2)")
    axes[1].set_ylim(0.4, 1.02)
    for ax in axes:
        ax.axvline(0, color="0.6", lw=0.5)
        ax.set_xlabel("task correlation α")
        ax.legend(fontsize=8)
    fig.suptitle("Best achievable worse task over the λ grid (seed mean, min–max band)")
    fig.tight_layout()
    return fig


def plot_alpha_hat(alpha_hat: Any, reference: Callable[[np.ndarray], np.ndarray] | None = None) -> Figure:
    """The estimate alpha-hat against the true alpha, one dot per seed, with the identity (and an optional reference curve)."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.plot([-1, 1], [-1, 1], "k--", lw=1, label="identity α̂ = α")
    if reference is not None:
        a = np.linspace(-1, 1, 201)
        ax.plot(a, reference(a), color="C1", lw=1.2, label="2α / (1 + α²)")
    ax.plot(alpha_hat["alpha"], alpha_hat["alpha_hat"], "o", color="C0", alpha=0.6, ms=5, label="α̂, one dot per seed")
    ax.set_xlabel("true α = μ_T1 · μ_T2")
    ax.set_ylabel("α̂ = cos(f(X; Ψ*_T1), f(X; Ψ*_T2))")
    ax.set_aspect("equal")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_negation_bounds(summary: Any, *, c_lower: float, c_upper: float, lam_range: tuple[float, float]) -> Figure:
    """Measured lam intervals of negation per alpha (T1 kept, T2 forgotten, both) against Theorem 2's bounds.

    `summary` is tvlib.theory.negation_summary's frame; c_lower, c_upper scale -c/alpha^2 and c/|alpha|.
    """
    m = summary.groupby("alpha").mean()
    alphas = m.index.to_numpy()
    fig, ax = plt.subplots(figsize=(9.5, 4.6))
    off = 0.015
    ax.vlines(alphas - off, m["keep_lo"], m["keep_hi"], color="C0", lw=4, alpha=0.6, label="T1 kept (error ≤ 2ε)")
    ax.vlines(alphas + off, m["forget_lo"], m["forget_hi"], color="C3", lw=4, alpha=0.6, label="T2 forgotten (error ≥ Ψ⁽⁰⁾'s)")
    ok = np.isfinite(m["region_lo_error"])
    ax.plot(alphas[ok], m["region_lo_error"][ok], "k^", ms=6, label="both: lower / upper edge")
    ax.plot(alphas[ok], m["region_hi_error"][ok], "kv", ms=6)
    a = np.linspace(alphas.min(), -0.05, 200)
    a = a[a < 0]
    ax.plot(a, -c_lower / a**2, "C0--", lw=1.2, label=f"−c/α², c = {c_lower:.2f}")
    ax.plot(a, c_upper / np.abs(a), "C0:", lw=1.5, label=f"C/|α|, C = {c_upper:.2f}")
    ax.set_ylim(lam_range[0] - 0.3, lam_range[1] + 0.3)
    ax.axhline(lam_range[0], color="0.5", lw=0.5)
    ax.axhline(0, color="0.6", lw=0.5)
    ax.set_xlabel("task correlation α")
    ax.set_ylabel("λ")
    ax.set_title("Where negation works, seed means (edges at the grid's end are censored)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_pattern_ratios(ratios: Any) -> Figure:
    """How much of T1's attention (mu1^T dW mu1) and value read-out (dV mu1) the T2 vector carries, against alpha.

    `ratios` has columns alpha, seed, attention, value (tvlib.theory.pattern_ratios per seed).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    a = np.linspace(-1, 1, 201)
    for ax, col, ref, label in ((axes[0], "attention", a**2, "α²"), (axes[1], "value", a, "α")):
        ax.plot(a, ref, "k--", lw=1, label=f"first-order picture: {label}")
        ax.plot(ratios["alpha"], ratios[col], "o", color="C0", alpha=0.6, ms=5, label="ΔΨ_T2, one dot per seed")
        ax.axhline(0, color="0.6", lw=0.5)
        ax.axvline(0, color="0.6", lw=0.5)
        ax.set_xlabel("task correlation α")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("μ₁ᵀ ΔW_T2 μ₁  /  μ₁ᵀ ΔW_T1 μ₁")
    axes[0].set_title("attention part: sign-blind")
    axes[1].set_ylabel("(ΔV_T2 μ₁)·(ΔV_T1 μ₁) / |ΔV_T1 μ₁|²")
    axes[1].set_title("value part: carries the sign")
    fig.tight_layout()
    return fig


def plot_negation_parts(lams: np.ndarray, runs: dict[str, np.ndarray], metric: str = "accuracy") -> Figure:
    """T2's accuracy (or error) when negating the whole T2 vector, only its attention part or only its value part.

    `runs` maps a label to a (seeds, L) array over `lams`.
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (label, values), color in zip(runs.items(), ("C3", "C0", "C2")):
        band(ax, lams, values, label=label, color=color)
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    ax.set_xlabel("λ (weight of the negated part of ΔΨ_T2)")
    ax.set_ylabel(f"T2 {metric}")
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    return fig
