"""Where tvlib's methods differ from mergekit 0.1.5's, pinned (book/merging.md states each difference).

The reference functions below are mergekit's formulas (merge_methods/generalized_task_arithmetic.py and
sparsify.py of mergekit 0.1.5) written out in numpy; the small cases are worked by hand.
"""

import numpy as np
import pytest
import torch

from tvlib.vectors import Recipe, TaskVector, magnitude_prune, ties_merge
from tvlib.vectors.methods import run_recipe


def tv(x) -> TaskVector:
    return TaskVector({"x": torch.tensor(x, dtype=torch.float32)})


def mergekit_ties(deltas: np.ndarray, weights: np.ndarray, density: float = 1.0, normalize: bool = True) -> np.ndarray:
    """mergekit's TIES on one tensor: per-tensor top-k (k = max(1, int(density n))), sign by the weighted
    sum (>= 0 elects +), sum of the agreeing weighted entries divided by the sum of their *signed* weights."""
    n = deltas.shape[1]
    if density < 1:
        k = max(1, int(density * n))
        trimmed = np.zeros_like(deltas)
        for i, d in enumerate(deltas):
            top = np.argsort(-np.abs(d), kind="stable")[:k]
            trimmed[i, top] = d[top]
        deltas = trimmed
    wd = weights[:, None] * deltas
    majority = np.where(wd.sum(0) >= 0, 1.0, -1.0)
    mask = np.sign(wd) == majority
    mixed = (wd * mask).sum(0)
    divisor = (weights[:, None] * mask).sum(0)
    divisor[divisor == 0] = 1
    return mixed / divisor if normalize else mixed


def mergekit_dare(delta: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """mergekit's DARE rescale (rescale: true): the masked tensor scaled to the original L1 norm."""
    masked = delta * keep
    before, after = np.abs(delta).sum(), np.abs(masked).sum()
    return masked if before < 1e-7 or after < 1e-7 else masked * (before / after)


T1, T2, T3 = [1.0, -2.0, 0.5, 3.0], [2.0, -1.0, -0.2, 1.0], [1.5, 4.0, 0.3, 2.0]
W = [0.7, 0.5, 0.3]


def test_ties_normalize_by_count_or_by_weights():
    vecs = [tv(T1), tv(T2), tv(T3)]
    ref = mergekit_ties(np.array([T1, T2, T3]), np.array(W))
    weights = ties_merge(vecs, density=1.0, weights=W, normalize="weights").deltas["x"]
    np.testing.assert_allclose(weights.numpy(), ref, rtol=1e-6)  # mergekit's, with positive weights
    count = ties_merge(vecs, density=1.0, weights=W).deltas["x"]  # tvlib's default, the TIES paper's mean
    # entry 0: all three agree: (0.7 + 1.0 + 0.45) / 3 by count, / (0.7 + 0.5 + 0.3) by weights
    assert float(count[0]) == pytest.approx((0.7 * 1 + 0.5 * 2 + 0.3 * 1.5) / 3)
    assert float(weights[0]) == pytest.approx((0.7 * 1 + 0.5 * 2 + 0.3 * 1.5) / 1.5)
    # entry 1: sum -1.4 - 0.5 + 1.2 < 0: T1 and T2 agree
    assert float(count[1]) == pytest.approx((-1.4 - 0.5) / 2)
    assert float(weights[1]) == pytest.approx((-1.4 - 0.5) / 1.2)


def test_mergekit_normalisation_undoes_a_negative_weight_tvlib_does_not():
    tau = np.array([1.0, -2.0, 0.5, 3.0])
    undone = mergekit_ties(tau[None], np.array([-1.0]))
    np.testing.assert_allclose(undone, tau)  # mergekit: (-tau) / (-1) = +tau, the negation is gone
    for normalize in ("count", "weights"):
        out = ties_merge([tv(tau.tolist())], density=1.0, weights=[-1.0], normalize=normalize).deltas["x"]
        np.testing.assert_allclose(out.numpy(), -tau)  # tvlib divides by |w|: the task stays negated


def test_exact_sign_cancellation_gives_zero_not_plus():
    assert ties_merge([tv([2.0]), tv([-2.0])], density=1.0).deltas["x"].tolist() == [0.0]
    assert mergekit_ties(np.array([[2.0], [-2.0]]), np.array([1.0, 1.0])).tolist() == [2.0]  # elects +


def test_k_is_rounded_not_truncated():
    v = tv([5.0, 4.0, 3.0, 2.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert int((magnitude_prune(v, 0.25).deltas["x"] != 0).sum()) == 3  # floor(2.5 + 1/2)
    assert int((magnitude_prune(v, 0.25, rounding="floor").deltas["x"] != 0).sum()) == 2  # mergekit's int(2.5)


def test_ties_with_mergekit_options_equals_mergekit():
    gen = torch.Generator().manual_seed(0)
    deltas = torch.randn(3, 40, generator=gen)
    recipe = Recipe("ties", W, [0.3] * 3, normalize="weights", scope="tensor", rounding="floor")
    out = run_recipe(recipe, [TaskVector({"x": d}) for d in deltas]).deltas["x"]
    ref = mergekit_ties(deltas.double().numpy(), np.array(W), density=0.3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_dare_rescales_per_entry_where_mergekit_matches_the_l1_norm():
    delta = torch.tensor([1.0, -2.0, 3.0, -4.0, 0.5, 2.5])
    keep = torch.tensor([True, False, True, True, False, False])
    masks = lambda i, key, d, p: keep
    entry = run_recipe(Recipe("dare", [1.0], [0.5]), [TaskVector({"x": delta})], masks=masks).deltas["x"]
    torch.testing.assert_close(entry, delta * keep / 0.5)  # Yu et al.: each kept entry / (1 - p)
    l1 = run_recipe(Recipe("dare", [1.0], [0.5], rescale="l1"), [TaskVector({"x": delta})], masks=masks).deltas["x"]
    np.testing.assert_allclose(l1.numpy(), mergekit_dare(delta.numpy(), keep.numpy()), rtol=1e-6)
    assert float(entry.abs().sum()) != pytest.approx(float(delta.abs().sum()))


def test_dare_ties_with_mergekit_options_equals_mergekit():
    gen = torch.Generator().manual_seed(3)
    deltas = torch.randn(2, 30, generator=gen)
    keeps = torch.rand(2, 30, generator=gen) > 0.5
    recipe = Recipe("dare_ties", [0.6, 0.8], [0.5, 0.5], normalize="none", rescale="l1")  # mergekit's dare_ties
    out = run_recipe(recipe, [TaskVector({"x": d}) for d in deltas], masks=lambda i, k, d, p: keeps[i]).deltas["x"]
    sparse = np.stack([mergekit_dare(d.double().numpy(), m.numpy()) for d, m in zip(deltas, keeps)])
    ref = mergekit_ties(sparse, np.array([0.6, 0.8]), normalize=False)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_top_k_scope_is_explicit():
    v = TaskVector({"a": torch.tensor([3.0, -1.0, 0.5, -4.0]), "b": torch.tensor([0.2, -0.1])})
    assert magnitude_prune(v, 0.5).deltas["b"].tolist() == [0.0, 0.0]  # global: b's entries are the smallest
    assert magnitude_prune(v, 0.5, scope="tensor").deltas["b"].tolist() == pytest.approx([0.2, 0.0])  # each alone
