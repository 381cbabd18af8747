"""The per-tensor kernels against their definitions: exact radix-select top-k, TIES accumulation, DARE."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tvlib.vectors.kernels import (
    KthLargest,
    NonFiniteError,
    Scratch,
    TiesSum,
    cast_checked,
    count_kept,
    dare_tensor,
    top_mask,
    topk_tensor,
)


@given(st.integers(0, 2**31 - 1), st.integers(1, 300), st.floats(0.0, 1.0), st.booleans(), st.booleans())
@settings(max_examples=40, deadline=None)
def test_kth_largest_is_exact_and_keeps_exactly_k(seed, n, frac, ties, double):
    dtype = torch.float64 if double else torch.float32
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype).abs()
    if ties:
        x = (x * 4).round() / 4  # many equal magnitudes
    k = count_kept(frac, n)
    chunks = [x[: n // 3], x[n // 3:]]
    sel = KthLargest(k, n, dtype).select(lambda: chunks)
    if 0 < k < n:
        assert sel.threshold == float(torch.sort(x, descending=True).values[k - 1])
    room, kept = sel.room, []
    for c in chunks:  # fed in order, ties go to the earlier positions
        m, room = top_mask(c, sel.threshold, room)
        kept.append(m)
    mask = torch.cat(kept)
    assert int(mask.sum()) == k
    if 0 < k < n:
        assert x[mask].min() >= x[~mask].max()
        tied = (x == sel.threshold).nonzero().squeeze(1)
        assert mask[tied].tolist() == sorted(mask[tied].tolist(), reverse=True)  # earlier ties first


def test_feeding_through_scratch_buffers_gives_the_same_threshold():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0)).abs()
    plain = KthLargest(1234, x.numel()).select(lambda: [x])
    scratch = Scratch()
    reused = KthLargest(1234, x.numel())
    while not reused.done:
        reused.feed(x, scratch)
        reused.end_pass()
    assert (plain.threshold, plain.room) == (reused.threshold, reused.room)


def test_counts_round_to_nearest_or_floor():
    assert count_kept(0.25, 10) == 3 and count_kept(0.25, 10, "floor") == 2  # 2.5 entries
    assert count_kept(0.2, 1024) == 205 and count_kept(0.2, 1024, "floor") == 204
    with pytest.raises(ValueError, match="rounding='up'"):
        count_kept(0.5, 4, "up")


def test_topk_tensor_keeps_the_largest_magnitudes():
    d = torch.tensor([[0.5, -3.0], [2.0, -0.1]])
    torch.testing.assert_close(topk_tensor(d, 0.5), torch.tensor([[0.0, -3.0], [2.0, 0.0]]))


def _ties_reference(weighted: np.ndarray, weights: np.ndarray, normalize: str) -> np.ndarray:
    """TIES's elect + disjoint mean entry by entry, from its definition."""
    out = np.zeros(weighted.shape[1])
    for p in range(weighted.shape[1]):
        sign = np.sign(weighted[:, p].sum())
        agree = [(t, abs(w)) for t, w in zip(weighted[:, p], weights) if t != 0 and np.sign(t) == sign]
        if sign == 0 or not agree:
            continue
        total = sum(t for t, _ in agree)
        out[p] = total if normalize == "none" else total / (len(agree) if normalize == "count" else sum(w for _, w in agree))
    return out


@pytest.mark.parametrize("normalize", ["count", "weights", "none"])
def test_ties_sum_matches_its_definition(normalize):
    gen = torch.Generator().manual_seed(1)
    weights = np.array([0.7, -0.5, 0.3])
    deltas = torch.randn(3, 50, generator=gen) * (torch.rand(3, 50, generator=gen) > 0.4)
    for scratch in (None, Scratch()):
        acc = TiesSum(deltas[0], normalize, scratch)
        for w, d in zip(weights, deltas):
            acc.add(w * d, w)
        out = acc.result(1.5)
        ref = 1.5 * _ties_reference((torch.tensor(weights)[:, None] * deltas.double()).numpy(), weights, normalize)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_dare_rescale_per_entry_or_l1():
    d = torch.tensor([1.0, -2.0, 3.0, -4.0])
    keep = torch.tensor([True, False, True, False])
    torch.testing.assert_close(dare_tensor(d, keep, 0.5, "entry"), torch.tensor([2.0, 0.0, 6.0, 0.0]))
    l1 = dare_tensor(d, keep, 0.5, "l1")  # mergekit: the tensor's L1 norm is kept, 10 / 4
    torch.testing.assert_close(l1, torch.tensor([2.5, 0.0, 7.5, 0.0]))
    assert float(l1.abs().sum()) == pytest.approx(float(d.abs().sum()))
    torch.testing.assert_close(dare_tensor(d, keep, 0.5, "none"), torch.tensor([1.0, 0.0, 3.0, 0.0]))


def test_cast_reports_overflow_and_nonfinite_by_key():
    big = torch.tensor([1.0, 70000.0])
    with pytest.raises(NonFiniteError, match=r"layers\.0\.w: casting to torch.float16 overflows"):
        cast_checked(big, torch.float16, "layers.0.w")
    assert math.isinf(float(cast_checked(big, torch.float16, "k", allow_nonfinite=True)[1]))
    with pytest.raises(NonFiniteError, match="k: the merged tensor holds NaN"):
        cast_checked(torch.tensor([float("nan")]), torch.bfloat16, "k")
    assert cast_checked(big, torch.bfloat16, "k").dtype == torch.bfloat16
