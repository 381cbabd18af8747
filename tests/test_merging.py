"""Tests of the merging variants (row-norm pruning, magnitude top-k, TIES, DARE) against their definitions."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tvlib.toy.sparsity import join_task_vectors, split_task_vectors
from tvlib.vectors.methods import (
    density,
    magnitude_prune,
    merge_vectors,
    prune_rows,
    dare,
    ties_merge,
)
from tvlib.toy.grid import VectorGrid
from tvlib.vectors import StateDictMismatch, TaskVector, merge


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tv(**deltas) -> TaskVector:
    return TaskVector({k: torch.tensor(v, dtype=torch.float32) for k, v in deltas.items()})


def assert_deltas(a: TaskVector, expected: dict) -> None:
    assert a.keys() == list(expected)
    for k, v in expected.items():
        torch.testing.assert_close(a.deltas[k], torch.tensor(v, dtype=torch.float32))


# ---------------------------------------------------------------- magnitude top-k


def test_magnitude_prune_global_and_per_tensor():
    v = tv(a=[[3.0, -1.0], [0.5, -4.0]], b=[0.2, -0.1])
    # 6 entries, density 0.5 keeps 3: |-4|, |3|, |-1| (all in a)
    assert_deltas(magnitude_prune(v, 0.5), {"a": [[3.0, -1.0], [0.0, -4.0]], "b": [0.0, 0.0]})
    # per tensor: 2 of the 4 in a, 1 of the 2 in b
    assert_deltas(magnitude_prune(v, 0.5, scope="tensor"), {"a": [[3.0, 0.0], [0.0, -4.0]], "b": [0.2, 0.0]})
    assert_deltas(magnitude_prune(v, 1.0), {"a": [[3.0, -1.0], [0.5, -4.0]], "b": [0.2, -0.1]})
    assert density(magnitude_prune(v, 0.0)) == 0.0


def test_magnitude_prune_counts_rounding_and_ties():
    v = tv(x=[1.0] * 10)
    assert density(magnitude_prune(v, 0.25)) == 0.3  # floor(2.5 + 0.5) = 3 kept, ties by position
    assert_deltas(magnitude_prune(tv(x=[1.0, 2.0, 1.0, 1.0]), 0.5), {"x": [1.0, 2.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="density=1.5"):
        magnitude_prune(v, 1.5)
    with pytest.raises(ValueError, match="scope='layer'"):
        magnitude_prune(v, 0.5, scope="layer")


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
@settings(max_examples=30, deadline=None)
def test_magnitude_prune_keeps_the_largest(seed, frac):
    v = TaskVector({"a": torch.randn(7, 5, generator=g(seed)), "b": torch.randn(11, generator=g(seed + 1))})
    out = magnitude_prune(v, frac)
    flat = torch.cat([v.deltas["a"].flatten(), v.deltas["b"].flatten()])
    kept = torch.cat([out.deltas["a"].flatten(), out.deltas["b"].flatten()])
    k = int(np.floor(frac * 46 + 0.5))
    assert int((kept != 0).sum()) == k
    if 0 < k < 46:  # every kept magnitude is at least every dropped one
        assert flat[kept != 0].abs().min() >= flat[kept == 0].abs().max()
    assert torch.equal(kept[kept != 0], flat[kept != 0])  # kept entries unchanged


# ---------------------------------------------------------------- row-norm pruning (Corollary 2)


def test_prune_rows_keep_fraction_and_threshold():
    V = [[3.0, 4.0], [1.0, 0.0], [0.0, 3.0], [0.3, 0.4]]  # row norms 5, 1, 3, 0.5
    v = tv(V=V, b=[1.0, 2.0])
    assert_deltas(prune_rows(v, keep=0.5), {"V": [[3.0, 4.0], [0, 0], [0.0, 3.0], [0, 0]], "b": [1.0, 2.0]})
    assert_deltas(prune_rows(v, threshold=1.0), {"V": [[3.0, 4.0], [1.0, 0.0], [0.0, 3.0], [0, 0]], "b": [1.0, 2.0]})
    stack = TaskVector({"V": torch.stack([torch.tensor(V), torch.tensor(V[::-1])])})
    out = prune_rows(stack, keep=0.25).deltas["V"]  # one row per matrix: the norm-5 row
    assert (out.norm(dim=-1) > 0).sum(-1).tolist() == [1, 1]
    assert out[0, 0].tolist() == [3.0, 4.0] and out[1, 3].tolist() == [3.0, 4.0]


def test_prune_rows_errors_name_the_parameter():
    v = tv(V=[[1.0, 2.0]], b=[1.0])
    with pytest.raises(ValueError, match="exactly one"):
        prune_rows(v)
    with pytest.raises(ValueError, match="exactly one"):
        prune_rows(v, keep=0.5, threshold=1.0)
    with pytest.raises(ValueError, match="not in the task vector"):
        prune_rows(v, keep=0.5, keys=["W"])
    with pytest.raises(ValueError, match="fewer than 2 dims"):
        prune_rows(v, keep=0.5, keys=["b"])
    with pytest.raises(ValueError, match="threshold=-1"):
        prune_rows(v, threshold=-1.0)


# ---------------------------------------------------------------- TIES


def test_ties_merge_hand_example():
    t1 = tv(x=[1.0, -2.0, 0.5, 3.0])
    t2 = tv(x=[-3.0, -1.0, 0.2, 1.0])
    t3 = tv(x=[1.5, 4.0, -0.1, -0.5])
    # trim to 2 of 4: [0,-2,0,3], [-3,-1,0,0], [1.5,4,0,0]; sums [-1.5,1,0,3] -> signs [-,+,0,+]
    out = ties_merge([t1, t2, t3], density=0.5, lam=0.5)
    assert_deltas(out, {"x": [-1.5, 2.0, 0.0, 1.5]})
    # without trimming: sums [-0.5,1,0.6,3.5]; agreeing means -3, 4, (0.5+0.2)/2, (3+1)/2
    assert_deltas(ties_merge([t1, t2, t3], density=1.0), {"x": [-3.0, 4.0, 0.35, 2.0]})
    # exact cancellation: the elected sign is 0 and the entry is 0
    assert_deltas(ties_merge([tv(x=[2.0]), tv(x=[-2.0])], density=1.0), {"x": [0.0]})
    # weights act before the election: negating t2 flips its votes
    assert_deltas(ties_merge([t1, t2], density=1.0, weights=[1.0, -1.0]), {"x": [2.0, -2.0, 0.5, 3.0]})


def _ties_reference(vectors: list[np.ndarray], k: int) -> np.ndarray:
    """The published algorithm, entry by entry (global trim of flat vectors)."""
    trimmed = []
    for v in vectors:
        order = np.argsort(-np.abs(v), kind="stable")
        t = np.zeros_like(v)
        t[order[:k]] = v[order[:k]]
        trimmed.append(t)
    T = np.stack(trimmed)
    out = np.zeros(T.shape[1])
    for p in range(T.shape[1]):
        gamma = np.sign(T[:, p].sum())
        agree = [t for t in T[:, p] if t != 0 and np.sign(t) == gamma]
        out[p] = np.mean(agree) if agree else 0.0
    return out


@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.floats(0.05, 1.0))
@settings(max_examples=30, deadline=None)
def test_ties_merge_matches_the_published_algorithm(seed, n, frac):
    vecs = [torch.randn(3, 4, generator=g(seed + i)) for i in range(n)]
    out = ties_merge([TaskVector({"w": v}) for v in vecs], density=frac, lam=1.3)
    k = int(np.floor(frac * 12 + 0.5))
    ref = 1.3 * _ties_reference([v.flatten().double().numpy() for v in vecs], k)
    np.testing.assert_allclose(out.deltas["w"].flatten().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_ties_merge_checks_inputs():
    with pytest.raises(ValueError, match="vectors is empty"):
        ties_merge([])
    with pytest.raises(StateDictMismatch):
        ties_merge([tv(x=[1.0]), tv(y=[1.0])])
    with pytest.raises(ValueError, match="2 weights for 1 vectors"):
        ties_merge([tv(x=[1.0])], weights=[1.0, 2.0])


# ---------------------------------------------------------------- DARE


def test_dare_drops_and_rescales():
    v = TaskVector({"w": torch.ones(200, 500), "b": torch.full((7,), 2.0)})
    out = dare(v, 0.3, generator=g(0))
    w = out.deltas["w"]
    assert torch.unique(w).tolist() == pytest.approx([0.0, 1 / 0.7])
    assert abs(float((w == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(w.mean()) - 1.0) < 0.01  # unbiased: E[dare(tau)] = tau
    again = dare(v, 0.3, generator=g(0))
    assert torch.equal(again.deltas["w"], w) and torch.equal(again.deltas["b"], out.deltas["b"])
    assert not torch.equal(dare(v, 0.3, generator=g(1)).deltas["w"], w)
    assert torch.equal(dare(v, 0.0, generator=g(0)).deltas["w"], v.deltas["w"])
    plain = dare(v, 0.3, generator=g(0), rescale=False).deltas["w"]
    assert set(torch.unique(plain).tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="p=1.0"):
        dare(v, 1.0, generator=g(0))
    with pytest.raises(TypeError, match="generator"):
        dare(v, 0.5, generator=0)


# ---------------------------------------------------------------- merge_vectors and the toy model's batch


def test_merge_vectors_dispatch():
    t1, t2 = tv(W=[[1.0, 0.0], [0.0, 0.1]], V=[[3.0, 4.0], [0.1, 0.0]]), tv(W=[[0.0, 2.0], [0.0, 0.0]], V=[[0.0, 1.0], [1.0, 1.0]])
    plain = merge_vectors("sum", [t1, t2], [1.0, -0.5])
    assert_deltas(plain, {"W": [[1.0, -1.0], [0.0, 0.1]], "V": [[3.0, 3.5], [-0.4, -0.5]]})
    rows = merge_vectors("rows", [t1, t2], [1.0, 1.0], level=0.5, row_keys=["V"])
    assert_deltas(rows, {"W": [[1.0, 2.0], [0.0, 0.1]], "V": [[3.0, 4.0], [1.0, 1.0]]})
    ties = merge_vectors("ties", [t1, t2], [1.0, -1.0], level=1.0)
    torch.testing.assert_close(ties.deltas["W"], ties_merge([t1, t2], density=1.0, weights=[1, -1]).deltas["W"])
    with pytest.raises(ValueError, match="generator"):
        merge_vectors("dare", [t1], [1.0], level=0.5)
    with pytest.raises(ValueError, match="method='magic'"):
        merge_vectors("magic", [t1], [1.0])


def test_split_and_join_toy_task_vectors():
    G, K, d, m = 2, 3, 4, 5
    gen = g(0)
    vectors = VectorGrid(
        torch.randn(G, d, d, generator=gen), torch.randn(G, m, d, generator=gen), torch.randn(G, m, generator=gen),
        torch.randn(G, K, d, d, generator=gen), torch.randn(G, K, m, d, generator=gen),
    )
    tvs = split_task_vectors(vectors)
    assert len(tvs) == G and all(len(r) == K for r in tvs)
    assert tvs[1][2].deltas["V"].shape == (m, d)
    back = join_task_vectors(vectors, tvs)
    assert torch.equal(back.dW, vectors.dW) and torch.equal(back.dV, vectors.dV)
    merged = [[merge_vectors("sum", row, [1.0, 2.0, 0.0])] for row in tvs]
    one = join_task_vectors(vectors, merged)
    assert one.dW.shape == (G, 1, d, d)
    torch.testing.assert_close(one.dV[:, 0], vectors.dV[:, 0] + 2 * vectors.dV[:, 1])
    with pytest.raises(ValueError, match="expected 2 rows"):
        join_task_vectors(vectors, tvs[:1])


# ---------------------------------------------------------------- Hugging Face models

transformers = pytest.importorskip("transformers")

ENTRY = ("model.layers.0.mlp.fc1.weight", (3, 5))
OTHER = ("model.layers.1.self_attn.q_proj.weight", (0, 1))
THIRD = ("model.layers.1.mlp.fc2.weight", (7, 2))


def tiny_phi(tie: bool = False) -> nn.Module:
    cfg = transformers.PhiConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=128, max_position_embeddings=64, tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    return transformers.PhiForCausalLM(cfg).eval()


def perturbed(base: nn.Module, changes: list[tuple[tuple[str, tuple], float]], noise: float, seed: int) -> dict:
    """A copy of base with small noise on every parameter and the given changes on single entries."""
    gen = g(seed)
    model = copy.deepcopy(base)
    params = dict(model.named_parameters())  # a tied weight once
    with torch.no_grad():
        for p in params.values():
            p += noise * torch.randn(p.shape, generator=gen).to(p.dtype)
        for (key, idx), value in changes:
            params[key][idx] += value
    return model.state_dict()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merging_phi_perturbations(dtype):
    base = tiny_phi().to(dtype)
    sd0 = base.state_dict()
    ft1 = perturbed(base, [(ENTRY, 0.5), (THIRD, -0.4)], 1e-3, 1)
    ft2 = perturbed(base, [(ENTRY, -0.2), (OTHER, 0.3)], 1e-3, 2)
    t1, t2 = TaskVector.from_models(base, ft1), TaskVector.from_models(base, ft2)
    assert t1.keys() == t2.keys() and "model.rotary_emb.inv_freq" not in t1.keys()
    n = t1.numel()
    # 2 of the n entries per vector survive a trim to density 2/n: the hand-set changes
    ties = ties_merge([t1, t2], density=2 / n, lam=0.8)
    assert density(ties) == pytest.approx(3 / n)
    # ENTRY: votes +0.5 and -0.2, the sign + wins, mean of the agreeing +0.5; the others: one vote each
    expected = {ENTRY: 0.8 * 0.5, OTHER: 0.8 * 0.3, THIRD: 0.8 * -0.4}
    for (key, idx), value in expected.items():
        assert float(ties.deltas[key][idx]) == pytest.approx(value, rel=2e-2)
    for variant in (ties, magnitude_prune(t1, 0.1), prune_rows(t1, keep=0.5), dare(t2, 0.9, generator=g(0))):
        merged = variant.apply_to(base)
        assert list(merged) == list(sd0)
        for k, v in merged.items():
            assert v.shape == sd0[k].shape and v.dtype == sd0[k].dtype
    merged = merge(base, [magnitude_prune(t1, 2 / n), magnitude_prune(t2, 2 / n)], [1.0, 1.0])
    moved = (merged[ENTRY[0]].float() - sd0[ENTRY[0]].float())[ENTRY[1]]
    assert float(moved) == pytest.approx(0.5 - 0.2, abs=2e-2)  # bf16 rounding of the base entry
    model = copy.deepcopy(base)
    model.load_state_dict(ties.apply_to(base))
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.arange(8)[None]).logits).all()


def test_phi_tied_weights_counted_once_by_global_top_k():
    base = tiny_phi(tie=True)
    t = TaskVector.from_models(base, perturbed(base, [], 1e-2, 3))
    assert "lm_head.weight" not in t.keys()
    out = magnitude_prune(t, 0.1)
    assert density(out) == pytest.approx(0.1, abs=1 / t.numel())
    assert out.aliases == t.aliases
    merged = out.apply_to(base)
    assert merged["lm_head.weight"] is merged["model.embed_tokens.weight"]


# ---------------------------------------------------------------- sparsity sweep on the toy model


def test_sparsity_sweep_on_fine_tuned_toy_vectors():
    from tvlib.toy.data import task_pair
    from tvlib.toy.sparsity import map_task_vectors, sparsity_sweep
    from tvlib.toy.setting import Setting
    from tvlib.toy.grid import bases_for_seeds, evaluate_merged, finetune_tasks

    s = Setting().replace(steps=20, batch_size=16)
    pairs = [task_pair(0.0, **s.data(), seed=k) for k in (0, 1)]
    vectors, _ = finetune_tasks(bases_for_seeds(s, [0, 1]), [list(p) for p in pairs], **s.training(), generator=g(0))
    methods, levels = ["sum", "rows", "topk", "ties", "dare"], [1.0, 0.1]
    frame = sparsity_sweep(vectors, [1.0, -1.0], [list(p) for p in pairs], methods=methods, levels=levels,
                           n=64, generator=g(1), task_names=["T1", "T2"])
    assert len(frame) == 2 * len(methods) * len(levels) * 2
    dense = evaluate_merged(vectors, [(1.0, -1.0)], [list(p) for p in pairs], n=64, generator=g(1))
    full = frame[(frame["level"] == 1.0) & (frame["method"] != "ties")]
    for _, row in full.iterrows():  # nothing pruned: the plain merge on the same samples
        e = ["T1", "T2"].index(row["task"])
        assert row["error"] == pytest.approx(float(dense.error[row["seed"], 0, e]), rel=1e-5)
        assert row["kept"] == 1.0
    sparse = frame[frame["level"] == 0.1].groupby("method")["kept"].mean()
    d, m = s.d, s.m
    assert sparse["topk"] == pytest.approx(0.1, abs=1e-3) and sparse["ties"] == sparse["topk"]
    assert sparse["rows"] == pytest.approx((d * d + round(0.1 * m) * d) / (d * d + m * d))
    assert 0.05 < sparse["dare"] < 0.15
    low = map_task_vectors(vectors, lambda tv: tv.low_rank(1))
    assert torch.linalg.matrix_rank(low.dV).max() == 1 and low.dW.shape == vectors.dW.shape
    with pytest.raises(ValueError, match="got 3 lams for 2"):
        sparsity_sweep(vectors, [1.0, 1.0, 1.0], [list(p) for p in pairs], methods=["sum"], levels=[1.0], n=8, generator=g(0))


def test_harmless_table_judges_each_method_and_level_against_the_dense_merge():
    import pandas as pd

    from tvlib.toy.sparsity import harmless_table, worse_error

    rows = []
    for seed in range(5):
        for method, level, err in (("sum", 1.0, 0.1), ("topk", 0.5, 0.15), ("topk", 0.1, 0.5), ("dare", 0.5, 0.19)):
            for task, bump in (("T1", 0.0), ("T2", 0.01 * seed)):
                rows.append((method, level, 1.0, seed, task, err + bump, 1.0))
    frame = pd.DataFrame(rows, columns=["method", "level", "kept", "seed", "task", "error", "accuracy"])
    np.testing.assert_allclose(worse_error(frame, "topk", 0.5), 0.15 + 0.01 * np.arange(5))
    np.testing.assert_allclose(worse_error(frame, "topk", 0.5, ["T1"]), 0.15)
    table, verdicts = harmless_table({"add": frame}, {"add": ["T1", "T2"]}, ["topk", "dare"], [0.5, 0.1][:1])
    assert verdicts["topk", 0.5].word == "harmless"  # 0.15 + b <= 2 (0.1 + b)
    assert list(table.columns) == ["method", "50% kept"]
    _, verdicts = harmless_table({"add": frame}, {"add": ["T1"]}, ["topk"], [0.1])
    assert verdicts["topk", 0.1].word == "harmful"  # 0.5 > 2 x 0.1: the disagreeing case
    with pytest.raises(ValueError, match="no rows"):
        worse_error(frame, "ties", 0.5)
