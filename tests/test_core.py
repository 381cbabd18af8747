"""Tests of the paper's objects: Def. 2 data, the eq. 4 model, hinge SGD, evaluation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tvlib.toy.data import Task, orthonormal_patterns, out_of_domain_tasks, stack_tasks, task_pair
from tvlib.metrics import hinge, output_cosine
from tvlib.toy.evaluation import evaluate
from tvlib.toy.model import OneLayerTransformer
from tvlib.toy.setting import Setting
from tvlib.toy.training import finetune

S = Setting()


def g(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- data


@given(alpha=st.floats(-1, 1), seed=st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_task_pair_has_requested_correlation(alpha, seed):
    t1, t2 = task_pair(alpha, **S.data(), seed=seed)
    assert torch.dot(t1.mu, t2.mu).item() == pytest.approx(alpha, abs=1e-5)
    assert t1.mu.norm().item() == pytest.approx(1, abs=1e-5)
    assert t2.mu.norm().item() == pytest.approx(1, abs=1e-5)
    # irrelevant patterns orthonormal and orthogonal to both task patterns
    V = t1.irrelevant
    assert torch.allclose(V @ V.T, torch.eye(S.M), atol=1e-5)
    assert (V @ t1.mu).abs().max() < 1e-5 and (V @ t2.mu).abs().max() < 1e-5


def test_samples_follow_definition_2():
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    X, y = t1.sample(4000, g())
    assert X.shape == (4000, S.P, S.d) and set(y.unique().tolist()) == {-1.0, 1.0}
    assert torch.allclose(X.norm(dim=-1), torch.ones(4000, S.P), atol=1e-5)
    proj = X @ t1.mu  # +1 for y*mu tokens, -1 for -y*mu tokens (times y), 0 for irrelevant ones
    rel = (proj * y[:, None] > 0.5).sum(1)
    conf = (proj * y[:, None] < -0.5).sum(1)
    assert (rel > conf).all(), "the label must be the majority sign"
    # average fractions close to delta_star, delta_hash (conditioning on rel > conf shifts them slightly)
    assert rel.float().mean().item() / S.P == pytest.approx(S.delta_star, abs=0.03)
    assert conf.float().mean().item() / S.P == pytest.approx(S.delta_hash, abs=0.03)
    # counts vary from sample to sample (paper.md §9: fixed counts make accuracy a step function)
    assert rel.unique().numel() > 3
    # each irrelevant pattern appears with fraction (1 - delta_star - delta_hash) / M
    irr = (X @ t1.irrelevant.T).abs() > 0.5  # (n, P, M)
    frac = irr.float().mean((0, 1))
    assert frac.mean().item() == pytest.approx((1 - S.delta_star - S.delta_hash) / S.M, rel=0.1)


def test_sampling_is_seeded():
    t1, _ = task_pair(0.3, **S.data(), seed=1)
    a, b = t1.sample(50, g(7)), t1.sample(50, g(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = t1.sample(50, g(8))
    assert not torch.equal(a[0], c[0])


def test_stacked_tasks_sample_per_replica():
    pairs = [task_pair(al, **S.data(), seed=0) for al in (-0.5, 0.5)]
    stack = stack_tasks([pairs[0][1], pairs[1][1]])
    X, y = stack.sample(300, g())
    assert X.shape == (2, 300, S.P, S.d) and y.shape == (2, 300)
    for r, (_, t2) in enumerate(pairs):
        signed = (X[r] @ t2.mu) * y[r][:, None]
        assert ((signed > 0.5).sum(1) > (signed < -0.5).sum(1)).all()


def test_out_of_domain_target():
    gam = (0.792, -0.637)
    norm = math.hypot(*gam)
    gam = tuple(x / norm * 0.9 for x in gam)
    sources, target = out_of_domain_tasks(gam, **S.data(), seed=3)
    for gi, t in zip(gam, sources):
        assert torch.dot(target.mu, t.mu).item() == pytest.approx(gi, abs=1e-5)
    assert torch.dot(sources[0].mu, sources[1].mu).abs().item() < 1e-5
    assert target.mu.norm().item() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(delta_star=0.2, delta_hash=0.2), "must exceed delta_hash"),
        (dict(delta_star=0.1, delta_hash=0.3), "must exceed delta_hash"),
        (dict(delta_star=0.8, delta_hash=0.3), "exceeds 1"),
        (dict(d=10), "too small"),
    ],
)
def test_bad_data_parameters(kwargs, match):
    params = {**S.data(), **kwargs}
    with pytest.raises(ValueError, match=match):
        task_pair(0.0, **params, seed=0)


def test_bad_alpha_and_gamma():
    with pytest.raises(ValueError, match="alpha=1.5"):
        task_pair(1.5, **S.data(), seed=0)
    with pytest.raises(ValueError, match="exceeds 1"):
        out_of_domain_tasks((0.9, 0.9), **S.data(), seed=0)
    with pytest.raises(ValueError, match="cannot draw 5 orthonormal"):
        orthonormal_patterns(4, 5, g())


# ---------------------------------------------------------------- model


def test_model_matches_eq4_written_out():
    model = OneLayerTransformer(6, 5, replicas=2, w_std=0.3, v_std=0.5, seed=1)
    X = torch.nn.functional.normalize(torch.randn(2, 3, 4, 6, generator=g()), dim=-1)
    out = model(X)
    for r in range(2):
        W, V, a = model.W[r], model.V[r], model.a[r]
        for n in range(3):
            x = X[r, n]  # (P, d)
            total = 0.0
            for l in range(4):
                att = torch.softmax(torch.stack([x[s] @ W @ x[l] for s in range(4)]), 0)
                z = V @ sum(x[s] * att[s] for s in range(4))
                total += a @ torch.relu(z)
            assert out[r, n].item() == pytest.approx(total.item() / 4, abs=1e-5)


def test_output_layer_fixed_and_balanced():
    model = OneLayerTransformer(8, 400, seed=0)
    assert torch.allclose(model.a.abs(), torch.full_like(model.a, 1 / 20))
    assert abs(model.a.sign().mean().item()) < 0.15
    assert "a" not in dict(model.named_parameters())


def test_factored_form_equals_its_merged_form():
    model = OneLayerTransformer(6, 5, replicas=3, factored=True, m_a=4, m_b=3, seed=2, w_std=0.5, v_std=0.5)
    X = torch.nn.functional.normalize(torch.randn(3, 7, 4, 6, generator=g()), dim=-1)
    assert torch.allclose(model(X), model.to_merged()(X), atol=1e-6)
    assert set(dict(model.named_parameters())) == {"W_Q", "W_K", "W_V", "W_O"}


def test_replicas_are_independent_models():
    model = OneLayerTransformer(6, 5, replicas=4, w_std=0.2, v_std=0.5, seed=3)
    X = torch.nn.functional.normalize(torch.randn(9, 4, 6, generator=g()), dim=-1)
    out = model(X)
    for r in range(4):
        assert torch.allclose(model.select(r)(X)[0], out[r], atol=1e-6)
    rep = model.select([1]).replicate(3)
    assert torch.allclose(rep(X), out[1].expand(3, -1), atol=1e-6)


def test_attention_columns_sum_to_one_and_uniform_at_zero():
    model = OneLayerTransformer(6, 5, seed=0)  # W0 = 0
    X = torch.nn.functional.normalize(torch.randn(2, 4, 6, generator=g()), dim=-1)
    A = model.attention(X)
    assert torch.allclose(A.sum(-2), torch.ones(1, 2, 4))
    assert torch.allclose(A, torch.full_like(A, 0.25))


def test_bad_model_input():
    model = OneLayerTransformer(6, 5, replicas=2)
    with pytest.raises(ValueError, match="expected"):
        model(torch.randn(3, 2, 4, 6))
    with pytest.raises(ValueError, match="expected"):
        OneLayerTransformer.from_weights(torch.zeros(2, 6, 6), torch.zeros(2, 5, 6), torch.zeros(3, 5))


# ---------------------------------------------------------------- training and evaluation


def test_finetuning_reaches_small_error():
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    base = OneLayerTransformer(**S.model(), replicas=3, seed=0)
    before = evaluate(base, t1, n=1000, generator=g(1))
    tuned, hist = finetune(base, t1, **S.training(), generator=g(2))
    after = evaluate(tuned, t1, n=1000, generator=g(1))
    assert (before["error"] > 0.9).all()
    assert (after["error"] < 0.1).all() and (after["accuracy"] > 0.99).all()
    assert hist.loss.shape == (S.steps, 3)
    assert hist.loss[-20:].mean() < hist.loss[:20].mean()
    assert torch.equal(base.a, tuned.a), "the output layer must stay fixed"
    assert not torch.equal(base.V, tuned.V)


def test_finetuning_is_deterministic_and_leaves_base_alone():
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    base = OneLayerTransformer(**S.model(), replicas=2, seed=0)
    V0 = base.V.detach().clone()
    a, _ = finetune(base, t1, lr=1.0, batch_size=16, steps=20, generator=g(3))
    b, _ = finetune(base, t1, lr=1.0, batch_size=16, steps=20, generator=g(3))
    assert torch.equal(a.V, b.V) and torch.equal(a.W, b.W)
    assert torch.equal(base.V, V0)


def test_stacked_finetuning_learns_one_task_per_replica():
    t1, t2 = task_pair(0.0, **S.data(), seed=0)
    base = OneLayerTransformer(**S.model(), seed=0).replicate(2)
    tuned, _ = finetune(base, stack_tasks([t1, t2]), **S.training(), generator=g(4))
    acc1 = evaluate(tuned, t1, n=500, generator=g(5))["accuracy"]
    acc2 = evaluate(tuned, t2, n=500, generator=g(5))["accuracy"]
    # irrelevant tasks: each replica solves its own task and is at chance on the other
    assert acc1[0] > 0.99 and acc2[1] > 0.99
    assert abs(acc1[1] - 0.5) < 0.1 and abs(acc2[0] - 0.5) < 0.1


def test_bad_training_arguments():
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    base = OneLayerTransformer(**S.model(), replicas=2)
    with pytest.raises(ValueError, match="lr=0"):
        finetune(base, t1, lr=0, batch_size=4, steps=1, generator=g())
    with pytest.raises(ValueError, match="3 tasks"):
        finetune(base, stack_tasks([t1, t1, t1]), lr=1, batch_size=4, steps=1, generator=g())


def test_hinge_and_output_cosine():
    y = torch.tensor([1.0, -1.0, 1.0])
    assert torch.allclose(hinge(torch.tensor([2.0, -0.5, -1.0]), y), torch.tensor([0.0, 0.5, 2.0]))
    f = torch.randn(2, 50, generator=g())
    assert torch.allclose(output_cosine(f, 3 * f), torch.ones(2))
    assert torch.allclose(output_cosine(f, -f), -torch.ones(2))
    v = torch.randn(50, 3, generator=g())
    assert output_cosine(v, v, vector_outputs=True).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes"):
        output_cosine(f, f[:, :3])


def test_per_replica_learning_rates_equal_separate_runs():
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    base = OneLayerTransformer(**S.model(), seed=0).replicate(2)
    both, _ = finetune(base, t1, lr=torch.tensor([0.5, 2.0]), batch_size=8, steps=5, generator=g(1))
    # same data stream, same base: each replica equals a run with its own scalar lr
    for r, lr in enumerate((0.5, 2.0)):
        alone, _ = finetune(base, t1, lr=lr, batch_size=8, steps=5, generator=g(1))
        assert torch.allclose(both.V[r], alone.V[r], atol=1e-6)
    with pytest.raises(ValueError, match="lr="):
        finetune(base, t1, lr=torch.tensor([1.0, 1.0, 1.0]), batch_size=8, steps=1, generator=g(1))


def test_steps_to_reach():
    from tvlib.toy.training import steps_to_reach

    loss = torch.tensor([[1.0, 1.0], [0.5, 1.0], [0.1, 1.0], [0.1, 1.0]])
    out = steps_to_reach(loss, 0.4, window=2)
    assert out[0].item() == 3 and torch.isnan(out[1])
    with pytest.raises(ValueError, match="window"):
        steps_to_reach(loss, 0.4, window=9)


def test_chapter_params_check_what_goes_together():
    import numpy as np

    from tvlib.toy.params import AdditionParams, FinetuningParams, NegationParams, SettingParams, two_step_grid

    assert SettingParams().setting() == Setting()
    grid = two_step_grid(-10.0, -3.0, 3.0, 0.5, 0.2)
    assert grid[0] == -10.0 and grid[-1] == 3.0 and -3.0 in grid and -3.5 in grid and -3.1 not in grid
    assert np.all(np.diff(grid) > 0)
    assert NegationParams().lams.tolist() == grid.tolist()
    with pytest.raises(ValueError, match="delta_stars entry 0.05 with delta_hash=0.1"):
        FinetuningParams(delta_stars=[0.05, 0.3])
    with pytest.raises(ValueError, match=r"factor \[3.0\] not in factors"):
        AdditionParams(factor=3.0)
    with pytest.raises(ValueError, match="predict_max"):
        AdditionParams(predict_max=3.0)  # beyond lam_min = -2: nothing to predict
    with pytest.raises(ValueError, match="no 0.0"):
        NegationParams(alphas=[-0.4, 0.4], curve_alphas=[0.4])
    with pytest.raises(ValueError, match="c="):
        NegationParams(c=1.5)
