"""Tests of the out-of-domain sweep (Theorem 3), condition (7) and re-evaluating sweeps with other task vectors."""

import numpy as np
import pandas as pd
import pytest
import torch

from tvlib.toy.sparsity import join_task_vectors, split_task_vectors
from tvlib.vectors.methods import magnitude_prune
from tvlib.toy.setting import Setting
from tvlib.toy.grid import VectorGrid
from tvlib.toy.sweeps import (
    arithmetic_sweep,
    evaluate_out_of_domain,
    out_of_domain_sweep,
    reevaluate_sweep,
)
from tvlib.toy.theory import ood_condition

S = Setting()
FAST = S.replace(steps=15, batch_size=16)



def test_ood_condition_by_hand():
    region = ood_condition([0.0, 2.0, 3.0], [-1.0, 0.0, 2.0], (0.8, 0.6), beta=0.1, c=0.25)
    # (2, 0): 1.6 >= 1.25 and 1.28 >= 1.25 and 0.2 <= 0.25 -> in; (3, *): |3| * 0.1 > 0.25 -> out
    # (2, 2): 2.8 and 2.0 but |2| * 0.1 = 0.2 <= 0.25 -> in; (2, -1): 1.0 < 1.25 -> out; (0, *): out
    expected = np.array([[False, False, False], [False, True, True], [False, False, False]])
    np.testing.assert_array_equal(region, expected)
    assert not ood_condition(np.linspace(-3, 3, 13), np.linspace(-3, 3, 13), (0.0, 0.0), beta=0.0, c=0.5).any()
    with pytest.raises(ValueError, match="c=1.5"):
        ood_condition([1.0], [1.0], (0.5, 0.5), beta=0.1, c=1.5)
    with pytest.raises(ValueError, match="gammas"):
        ood_condition([1.0], [1.0], (0.5,), beta=0.1, c=0.5)


@pytest.fixture(scope="module")
def small():
    return out_of_domain_sweep(FAST, [(0.6, 0.6), (0.0, 0.0)], [0.0, 1.0], [-1.0, 0.0, 1.0], [0, 1], n_eval=50)


def test_ood_sweep_shapes_and_references(small):
    assert small.error.shape == small.accuracy.shape == (2, 2, 2, 3)
    assert small.vectors.groups == 2 and small.vectors.tasks == 4
    refs = small.references
    assert list(refs.columns) == ["gamma_index", "gamma1", "gamma2", "seed", "model", "error", "accuracy"]
    assert len(refs) == 2 * 2 * 4
    # grid points (0, 0) and (1, 0) are Psi0 and Psi*_T1: the same numbers as the references
    for i, seed in enumerate(small.seeds):
        for j in range(2):
            r = refs[(refs["seed"] == seed) & (refs["gamma_index"] == j)].set_index("model")["error"]
            assert small.error[i, j, 0, 1] == pytest.approx(r["base"], rel=1e-5)
            assert small.error[i, j, 1, 1] == pytest.approx(r["T1"], rel=1e-5)


def test_ood_evaluation_is_deterministic_and_depends_on_vectors(small):
    again = evaluate_out_of_domain(FAST, small.vectors, small.gammas, small.lams1, small.lams2, small.seeds, n_eval=50)
    np.testing.assert_array_equal(again.error, small.error)
    zero = VectorGrid(small.vectors.W0, small.vectors.V0, small.vectors.a,
                       torch.zeros_like(small.vectors.dW), torch.zeros_like(small.vectors.dV))
    flat = evaluate_out_of_domain(FAST, zero, small.gammas, small.lams1, small.lams2, small.seeds, n_eval=50)
    assert np.allclose(flat.error, flat.error[..., :1, :1])  # every grid point is Psi0
    with pytest.raises(ValueError, match="expected 2 \\(seeds\\) of 3"):
        evaluate_out_of_domain(FAST, small.vectors, small.gammas[:1], [0.0], [0.0], [0, 1])
    with pytest.raises(ValueError, match="gamma1\\^2 \\+ gamma2\\^2 <= 1"):
        out_of_domain_sweep(FAST, [(0.9, 0.9)], [0.0], [0.0], [0])


def test_theorem3_on_the_default_setting():
    """Fine-tuned vectors: a combination inside condition (7) learns T'; with gamma = 0 nothing does."""
    lams = [0.0, 1.0, 2.0, 3.0]
    r = out_of_domain_sweep(S, [(0.6, 0.6), (0.0, 0.0)], lams, lams, [0], n_eval=300)
    eps = float(r.references.query("model == 'target' and gamma_index == 0")["error"].iloc[0])
    region = ood_condition(lams, lams, (0.6, 0.6), beta=0.04, c=0.2)
    assert region.any()
    assert r.error[0, 0][region].max() <= 2 * eps  # inside (7): learned
    assert r.error[0, 0, 0, 0] > 0.9  # Psi0 does not solve T'
    assert r.error[0, 1].min() > 0.9  # gamma = 0: error stays at Theta(1) for every combination


def test_reevaluate_sweep_reproduces_and_transforms():
    sweep = arithmetic_sweep(FAST, [0.0, 0.5], [-1.0, 1.0], [0, 1], n_eval=40)
    same = reevaluate_sweep(sweep, sweep.vectors, n_eval=40)
    pd.testing.assert_frame_equal(same.curves, sweep.curves, rtol=1e-6)
    pd.testing.assert_frame_equal(same.references, sweep.references, rtol=1e-6)
    pd.testing.assert_frame_equal(same.alpha_hat, sweep.alpha_hat, rtol=1e-5)
    pruned = join_task_vectors(sweep.vectors, [[magnitude_prune(tv, 0.05) for tv in row]
                                               for row in split_task_vectors(sweep.vectors)])
    other = reevaluate_sweep(sweep, pruned, n_eval=40)
    assert not np.allclose(other.curves["error"], sweep.curves["error"])
    base = other.references.query("model == 'base'")["error"].to_numpy()
    np.testing.assert_allclose(base, sweep.references.query("model == 'base'")["error"].to_numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="expected 2 \\(seeds\\) of 3"):
        reevaluate_sweep(sweep, sweep.vectors.take([0, 1], [[0, 1], [0, 1]]))
