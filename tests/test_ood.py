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


def test_ood_edge_lines_by_hand():
    from tvlib.toy.theory import ood_edge_lines, ood_predicted_edge

    e = ood_edge_lines((0.8, 0.4), c=0.2)
    # votes: 0.8 l1 + 0.4 l2 = 1.2 -> l1 = 1.5 - 0.5 l2; attention: 0.64 l1 + 0.16 l2 = 1.2 -> 1.875 - 0.25 l2
    assert e["vote_a"] == pytest.approx(1.5) and e["vote_s"] == pytest.approx(-0.5)
    assert e["attention_a"] == pytest.approx(1.875) and e["attention_s"] == pytest.approx(-0.25)
    assert e["cross"] == pytest.approx(-1.5)
    edge, binds = ood_predicted_edge([-3.0, 0.0], (0.8, 0.4), c=0.2)
    np.testing.assert_allclose(edge, [3.0, 1.875])
    assert list(binds) == ["vote", "attention"]
    assert np.isnan(ood_edge_lines((0.6, 0.6), c=0.2)["cross"])  # equal slopes: parallel lines
    with pytest.raises(ValueError, match="gamma_1 > 0"):
        ood_edge_lines((0.0, 0.5), c=0.2)


def _synthetic_error(l1, l2, edge_fn, upper=np.inf):
    """error 0 where edge_fn(l2) <= l1 <= upper, 1 elsewhere, shape (L1, L2)."""
    L1, L2 = np.meshgrid(l1, l2, indexing="ij")
    return np.where((L1 >= edge_fn(L2)) & (L1 <= upper), 0.0, 1.0)


def test_ood_edge_analysis_recovers_a_known_edge():
    from tvlib.toy.ood_edges import ood_edge_analysis, ood_measured_edges

    l1 = np.round(np.arange(-2, 12.01, 0.1), 2)
    l2 = np.round(np.arange(-4, 4.01, 0.5), 2)
    # the measured edge follows the vote line of gamma = (0.8, 0.4) shifted down by 1, learned up to lam1 = 9
    err = _synthetic_error(l1, l2, lambda x: 0.5 - 0.5 * x, upper=9.0)
    lo, hi = ood_measured_edges(l1, err, level=0.5)
    np.testing.assert_allclose(lo, 0.5 - 0.5 * l2, atol=0.1)
    np.testing.assert_allclose(hi, 9.0, atol=0.1)
    df = ood_edge_analysis(l1, l2, np.stack([err, err]), [0.25, 0.25], (0.8, 0.4), c=0.2, beta=0.05)
    row = df.iloc[0]
    assert row["slope_vote"] == pytest.approx(-0.5, abs=0.02)  # the vote part (lam2 < -1.5) follows the vote line
    assert row["slope_attention"] == pytest.approx(-0.5, abs=0.02)  # and so does the attention part (predicted -0.25)
    assert row["edge_predicted"] - row["edge_measured"] > 0.9  # (7) asks for at least 1 more lam1 than needed
    assert row["inside_learned"] == 1.0  # (7) needs lam1 <= c / beta = 4: inside the learned band
    assert row["beyond_cap"] > 0 and row["beyond_cap_learned"] < 1.0  # beyond lam1 = 9 it is not
    assert row["upper_edge"] == pytest.approx(9.0, abs=0.1)


def test_ood_edge_glues_round_trip_through_a_batch_table():
    from tvlib.toy.ood_edges import EDGE_METRICS, ood_edge_glues, ood_edges_from_runs

    per_seed = pd.DataFrame([{k: float(i + j) for j, k in enumerate(EDGE_METRICS)} for i in range(3)])
    per_seed.loc[1, "slope_vote"] = np.nan  # not measurable for this seed: not glued, read back as nan
    glues = ood_edge_glues(per_seed, np.array([1.0, np.nan, 3.0]), gamma1=0.8, beta=0.04)
    assert all(np.isfinite(v) for v in glues.values())
    runs = pd.DataFrame([{"gamma": "[0.8, 0.4]", **glues, "status": "ok"}])
    (back,) = ood_edges_from_runs(runs)
    pd.testing.assert_frame_equal(back["per_seed"], per_seed)
    np.testing.assert_array_equal(back["lo"], [1.0, np.nan, 3.0])
    assert back["gamma1"] == 0.8 and back["beta"] == 0.04


def test_rank_residuals_match_truncated_svd_and_the_tail_of_the_spectrum():
    from tvlib.toy.vector_stats import rank_residuals
    from tvlib.vectors import TaskVector

    D = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0))
    got = rank_residuals({"W": D}, [1, 2, 5])["W"]
    for j, r in enumerate((1, 2)):
        want = (D - TaskVector({"W": D}).low_rank(r, batched=True).deltas["W"]).norm(dim=(-2, -1))
        np.testing.assert_allclose(got[:, j], want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(got[:, 2], 0.0, atol=1e-9)  # full rank: nothing left


def test_finetuned_errors_follow_the_vector_grid_order():
    from tvlib.toy.measured import finetuned_errors

    sweep = arithmetic_sweep(FAST, [0.0, 0.5], [1.0], [0, 1], n_eval=30)
    e = finetuned_errors(sweep.references, [0.0, 0.5])
    r = sweep.references
    assert e.shape == (2, 3)
    assert e[1, 2] == r.query("seed == 1 and alpha == 0.5 and model == 'T2' and task == 'T2'")["error"].item()
    assert e[0, 0] == r.query("seed == 0 and alpha == 0.0 and model == 'T1' and task == 'T1'")["error"].item()


def test_row_norm_stats_by_hand_and_seed_glues_round_trip():
    from tvlib.book import seed_frame, seed_glues
    from tvlib.toy.vector_stats import row_norm_stats

    m = 4
    dV = torch.zeros(1, m, 3)
    dV[0, 0, 0] = 2.0 / m**0.5  # large (2 m^-1/2)
    dV[0, 1, 1] = 0.1 / m**0.5  # small (below sqrt(log 64 / 64) = 0.255)
    dV[0, 2, 2] = 0.5 / m**0.5  # in between
    s = row_norm_stats(dV, 64).iloc[0]  # row 3 is zero: small
    assert (s["frac_large"], s["frac_small"], s["frac_gap"]) == pytest.approx((0.25, 0.5, 0.25))
    assert s["min"] == 0.0 and s["median"] == pytest.approx(0.1, abs=1e-6)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 4.0]})
    run = pd.Series({"x_n_seeds": 2, **seed_glues("x", frame)})
    pd.testing.assert_frame_equal(seed_frame(run, "x", ["a", "b"]), frame)


def test_chapter_params_check_their_dependencies():
    from tvlib.toy.params import LowRankParams, OodParams, SparseParams

    assert OodParams().target_gamma == pytest.approx((0.7792, -0.6267), abs=1e-4)  # the paper's, renormalised
    assert OodParams(gamma=[0.8, 0.4]).target_gamma == (0.8, 0.4)
    with pytest.raises(ValueError, match="gamma_1\\^2 \\+ gamma_2\\^2 <= 1"):
        OodParams(gamma=[0.9, 0.9])
    with pytest.raises(ValueError, match="gamma_1 > 0"):
        OodParams(gamma=[-0.5, 0.5])
    with pytest.raises(ValueError, match=r"rank \[5\] not in explore_ranks"):
        LowRankParams(rank=5)
    with pytest.raises(ValueError, match="explore_ranks"):
        LowRankParams(max_rank=3)
    with pytest.raises(ValueError, match="alpha = 0"):
        LowRankParams(alphas=[-0.8, 0.8])
    with pytest.raises(ValueError, match="d >= M \\+ 3"):
        SparseParams(d=10, M=8)
    with pytest.raises(ValueError, match="levels"):
        SparseParams(levels=[1.0, 0.5])


def test_explorers_filter_a_precomputed_grid():
    from tvlib.figures import ood_explorer
    from tvlib.toy.plots_merging import lambda_explorer, pruning_explorer

    l1, l2 = [0.0, 1.0, 2.0], [-1.0, 0.0]
    ex = ood_explorer(l1, l2, np.array([[1.0, 1.0], [0.5, 0.01], [0.01, 0.01]]), level=0.1,
                      gammas=(0.8, 0.4), beta=0.05, c=0.2)
    assert ex.spec["params"][0]["name"] == "c" and "datum.lam1 * 0.8" in ex.to_html()
    curves = pd.DataFrame({"alpha": [0.0] * 4, "lam": [0.0, 0.0, 1.0, 1.0], "task": ["T1", "T2"] * 2,
                           "seed": [0] * 4, "error": [0.1, 1.0, 0.1, 0.1]})
    ex = lambda_explorer({1: curves, 2: curves}, curves)
    assert {p["name"] for p in ex.spec["params"]} == {"k", "a"}
    ex = pruning_explorer({("topk", 0.5): np.ones((2, 3)), ("dare", 0.5): np.zeros((2, 3))}, ["μ", "v1", "v2"])
    assert len(ex.spec["datasets"][next(iter(ex.spec["datasets"]))]) == 12


def test_chapter_figures_fit_the_column():
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from tvlib.figures import plot_ood_edges, plot_ood_grid
    from tvlib.toy.plots_merging import plot_rank_errors, plot_row_norms_by_width, plot_sparsity_curves
    from tvlib.toy.theory import ood_edge_lines

    l1, l2 = np.linspace(-2, 3, 6), np.linspace(-2, 2, 5)
    err = np.abs(np.subtract.outer(l1, l2)) / 3
    frame = pd.DataFrame([(meth, lv, lv, s, "T1", 0.1 / lv, 1.0) for meth in ("topk", "dare")
                          for lv in (1.0, 0.1) for s in range(2)],
                         columns=["method", "level", "kept", "seed", "task", "error", "accuracy"])
    figs = [plot_ood_grid(l1, l2, 1 - err, err, region=err < 0.2, level=0.3, best=(1.0, 0.0)),
            plot_ood_edges(l2, {f"t{i}": l2 + i for i in range(4)}, {f"t{i}": ood_edge_lines((0.8, 0.4), 0.2)
                                                                      for i in range(4)}, caps={"t0": 5.0}),
            plot_rank_errors([1, 2], np.ones((3, 2)), np.ones((3, 2)) / 2),
            plot_row_norms_by_width({256: np.array([0.0, 0.1, 5.0, 10.0])}, small=0.255),
            plot_sparsity_curves(frame, tasks=["T1"])]
    for fig in figs:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
        plt.close(fig)
        assert Image.open(buf).size[0] <= 800
