"""Tests of the batched task-arithmetic sweep: shapes, determinism, batched vs loop, and what it measures."""

import pandas as pd
import pytest
import torch

from tvlib.toy.data import task_pair
from tvlib.toy.evaluation import evaluate
from tvlib.toy.model import OneLayerTransformer
from tvlib.toy.setting import Setting
from tvlib.toy.grid import VectorGrid, bases_for_seeds, evaluate_merged, finetune_tasks, merged_outputs
from tvlib.toy.sweeps import arithmetic_sweep

S = Setting()
FAST = S.replace(steps=15, batch_size=16)


def g(seed=0):
    return torch.Generator().manual_seed(seed)



@pytest.fixture(scope="module")
def small():
    return arithmetic_sweep(FAST, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], [0, 1], n_eval=40)


@pytest.fixture(scope="module")
def trained():
    """Default setting, alpha = 0, two seeds: enough SGD for the claims of Theorem 1 to be testable."""
    return arithmetic_sweep(S, [0.0], [0.0, 1.0], [0, 1], n_eval=1000)


def test_shapes_and_columns(small):
    A, L, Sd = 3, 3, 2
    assert list(small.curves.columns) == ["alpha", "seed", "lam", "task", "error", "accuracy"]
    assert len(small.curves) == A * Sd * L * 2
    assert list(small.references.columns) == ["alpha", "seed", "model", "task", "error", "accuracy"]
    assert len(small.references) == A * Sd * 3 * 2
    assert set(small.references["model"]) == {"base", "T1", "T2"}
    assert list(small.alpha_hat.columns) == ["alpha", "seed", "alpha_hat"] and len(small.alpha_hat) == A * Sd
    assert small.vectors.groups == Sd and small.vectors.tasks == 1 + A
    assert small.history.loss.shape == (FAST.steps, Sd * (1 + A))
    assert small.curves[["alpha", "seed", "lam", "task"]].drop_duplicates().shape[0] == len(small.curves)
    assert small.curves["error"].ge(0).all() and small.curves["accuracy"].between(0, 1).all()


def test_sweep_is_deterministic(small):
    again = arithmetic_sweep(FAST, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], [0, 1], n_eval=40)
    pd.testing.assert_frame_equal(small.curves, again.curves)
    pd.testing.assert_frame_equal(small.references, again.references)
    pd.testing.assert_frame_equal(small.alpha_hat, again.alpha_hat)


def test_device_cpu_and_auto_give_the_same_sweep_here(small):
    """The device only moves the arithmetic; on a machine without a GPU "auto" is the CPU."""
    for device in ("cpu", torch.device("cpu")) + (() if torch.cuda.is_available() else ("auto",)):
        again = arithmetic_sweep(FAST, [-0.5, 0.0, 0.5], [-1.0, 0.0, 1.0], [0, 1], n_eval=40, device=device)
        pd.testing.assert_frame_equal(small.curves, again.curves)
        assert again.vectors.dW.device.type == "cpu" and again.history.loss.device.type == "cpu"


def test_bad_device_is_refused_before_training():
    with pytest.raises(ValueError, match="device='gpu'"):
        arithmetic_sweep(FAST, [0.0], [0.0], [0], device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            arithmetic_sweep(FAST, [0.0], [0.0], [0], device="cuda")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            merged_outputs(
                finetune_tasks(
                    bases_for_seeds(FAST, [0]), [[task_pair(0.0, **FAST.data(), seed=0)[0]]],
                    lr=1.0, batch_size=4, steps=1, generator=g(),
                )[0],
                torch.ones(1, 1), torch.zeros(2, FAST.P, FAST.d), device="cuda:0",
            )


def test_lam_zero_is_the_t1_model(small, trained):
    for res in (small, trained):
        c = res.curves
        at0 = c[(c["lam"] == 0.0) & (c["task"] == "T1")].set_index(["alpha", "seed"])["error"]
        r = res.references
        ref = r[(r["model"] == "T1") & (r["task"] == "T1")].set_index(["alpha", "seed"])["error"]
        pd.testing.assert_series_equal(at0.sort_index(), ref.sort_index(), check_names=False)
    # and, on independent samples, the fine-tuned T1 model has the same error up to sampling
    t1, _ = task_pair(0.0, **S.data(), seed=0)
    model = trained.vectors.finetuned().select(0)  # seed 0, task 0 = T1
    fresh = evaluate(model, t1, n=4000, generator=g(123))["error"].item()
    c = trained.curves
    swept = c[(c["lam"] == 0.0) & (c["task"] == "T1") & (c["seed"] == 0)]["error"].item()
    assert fresh == pytest.approx(swept, abs=0.02)


def test_irrelevant_tasks_added_with_lam_one_learn_both(trained):
    # Theorem 1 with alpha = 0: lam = 1 gives a small hinge error on both tasks
    c = trained.curves
    at1 = c[c["lam"] == 1.0]
    assert (at1["accuracy"] >= 0.97).all(), at1
    assert (at1["error"] <= 0.1).all(), at1
    # ... while lam = 0 has not learned T2 (Psi*_T1 knows nothing about an irrelevant task)
    t2_at0 = c[(c["lam"] == 0.0) & (c["task"] == "T2")]["error"]
    assert (t2_at0 > 0.7).all()
    # fine-tuned and pre-trained reference levels
    r = trained.references
    assert (r[r["model"] == r["task"]]["error"] < 0.1).all()
    assert (r[r["model"] == "base"]["error"] > 0.9).all()


def test_alpha_hat_orders_the_pairs():
    res = arithmetic_sweep(S.replace(steps=150), [-0.6, 0.0, 0.6], [0.0], [0], n_eval=300)
    ah = res.alpha_hat.set_index("alpha")["alpha_hat"]
    assert ah[-0.6] < -0.3 and abs(ah[0.0]) < 0.15 and ah[0.6] > 0.3


def test_batched_and_loop_paths_agree():
    kw = dict(alphas=[0.0], lams=[0.0, 1.0], seeds=[0], n_eval=600)
    setting = S.replace(steps=200)
    batched = arithmetic_sweep(setting, **kw)
    loop = arithmetic_sweep(setting, **kw, batched=False)
    # different SGD sample streams, same distribution: the errors agree statistically
    diff = (batched.curves["error"] - loop.curves["error"]).abs()
    assert diff.max() < 0.05, diff
    assert (batched.curves["accuracy"] - loop.curves["accuracy"]).abs().max() < 0.03


def test_merged_outputs_batched_chunked_and_loop_are_equal(small):
    vec = small.vectors
    coef = torch.tensor([[1.0, 0.5, 0.0, -1.0], [0.0, 0.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    X = torch.randn(vec.groups, 7, S.P, S.d, generator=g(5))
    big = merged_outputs(vec, coef, X)
    tiny = merged_outputs(vec, coef, X, max_bytes=1)  # one replica per chunk
    loop = merged_outputs(vec, coef, X, batched=False)
    assert big.shape == (vec.groups, 3, 7)
    assert torch.allclose(big, tiny, atol=1e-6) and torch.allclose(big, loop, atol=1e-6)
    # the same as building the merged models directly
    direct = vec.merged(coef)(X.repeat_interleave(3, 0)).view(vec.groups, 3, 7)
    assert torch.allclose(big, direct, atol=1e-6)


def test_finetune_tasks_returns_task_vectors_of_the_trained_models():
    seeds = [3, 4]
    bases = bases_for_seeds(FAST, seeds)
    for i, s in enumerate(seeds):
        alone = OneLayerTransformer(**FAST.model(), seed=s)
        assert torch.equal(bases.W[i], alone.W[0]) and torch.equal(bases.V[i], alone.V[0])
        assert torch.equal(bases.a[i], alone.a[0])
    pairs = [task_pair(0.3, **FAST.data(), seed=s) for s in seeds]
    vec, hist = finetune_tasks(bases, [list(p) for p in pairs], **FAST.training(), generator=g(1))
    assert vec.groups == 2 and vec.tasks == 2 and hist.loss.shape == (FAST.steps, 4)
    assert torch.equal(vec.W0, bases.W.detach())
    assert vec.dV.abs().sum() > 0
    # finetuned() rebuilds Psi0 + dPsi, and take() selects (group, task) pairs
    X, _ = pairs[0][0].sample(5, g(2))
    tuned = vec.finetuned()
    sub = vec.take([1, 0], [[1], [0]])
    assert torch.allclose(sub.finetuned()(X), tuned(X)[[3, 0]], atol=1e-6)


def test_evaluate_merged_uses_the_same_samples_for_every_coefficient(small):
    vec = small.vectors.take([0], [[0, 1]])
    t1, t2 = task_pair(-0.5, **FAST.data(), seed=0)
    coef = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    ev = evaluate_merged(vec, coef, [[t1, t2]], n=30, generator=g(9))
    assert ev.error.shape == (1, 2, 2) and ev.outputs.shape == (1, 2, 2, 30) and ev.y.shape == (1, 2, 30)
    assert torch.equal(ev.outputs[:, 0], ev.outputs[:, 1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="alphas"):
        arithmetic_sweep(FAST, [1.5], [0.0], [0])
    with pytest.raises(ValueError, match="seeds is empty"):
        arithmetic_sweep(FAST, [0.0], [0.0], [])
    with pytest.raises(ValueError, match="repeated"):
        arithmetic_sweep(FAST, [0.0], [0.0, 0.0], [0])
    with pytest.raises(ValueError, match="n_eval"):
        arithmetic_sweep(FAST, [0.0], [0.0], [0], n_eval=0)
    vec = VectorGrid(
        W0=torch.zeros(2, 4, 4), V0=torch.zeros(2, 3, 4), a=torch.ones(2, 3),
        dW=torch.zeros(2, 1, 4, 4), dV=torch.zeros(2, 1, 3, 4),
    )
    with pytest.raises(ValueError, match="coefficients"):
        merged_outputs(vec, torch.ones(3, 2), torch.zeros(5, 2, 4))
    with pytest.raises(ValueError, match="X has shape"):
        merged_outputs(vec, torch.ones(3, 1), torch.zeros(5, 2, 7))
    with pytest.raises(ValueError, match="dV"):
        VectorGrid(W0=vec.W0, V0=vec.V0, a=vec.a, dW=vec.dW, dV=torch.zeros(2, 2, 3, 4))
    with pytest.raises(ValueError, match="one row of tasks per base"):
        finetune_tasks(bases_for_seeds(FAST, [0]), [], **FAST.training(), generator=g())


def test_parts_split_each_task_vector_into_attention_and_value(small):
    vec = small.vectors.take([0], [[0, 1]])
    parts = vec.parts()
    assert parts.tasks == 4
    assert torch.equal(parts.dW[:, :2], vec.dW) and parts.dV[:, :2].abs().sum() == 0
    assert torch.equal(parts.dV[:, 2:], vec.dV) and parts.dW[:, 2:].abs().sum() == 0
    X = torch.randn(1, 6, FAST.P, FAST.d, generator=g(3))
    whole = merged_outputs(vec, torch.tensor([[1.0, -0.7]]), X)
    split = merged_outputs(parts, torch.tensor([[1.0, -0.7, 1.0, -0.7]]), X)
    assert torch.allclose(whole, split, atol=1e-6)


def test_keep_freed_memory_applies_on_glibc_and_leaves_results_unchanged():
    import platform

    import torch

    from tvlib.toy.data import task_pair
    from tvlib.toy.grid import bases_for_seeds, finetune_tasks, keep_freed_memory
    from tvlib.toy.setting import Setting

    s = Setting(steps=20)

    def vectors():
        t1, t2 = task_pair(0.3, **s.data(), seed=0)
        v, _ = finetune_tasks(bases_for_seeds(s, [0, 1]), [[t1, t2], [t1, t2]], **s.training(),
                              generator=torch.Generator().manual_seed(0))
        return v.dV.clone()

    before = vectors()  # finetune_tasks applies it; a second call finds it applied
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
    assert torch.equal(before, vectors())
