"""A config in mergekit's layout gives mergekit's model: real-world-shaped configs (benchmarks/mergekit_reference.py
CASES) through `tvlib merge`'s config reader and engine, compared with mergekit 0.1.5's outputs.

The reference outputs were written by mergekit itself (tests/data/mergekit_reference.safetensors, made
by benchmarks/mergekit_reference.py from inputs rebuilt here from fixed seeds, checked by their hash),
so CI needs no mergekit. With $TVLIB_MERGEKIT_PYTHON naming a python that has mergekit 0.1.5,
test_live_mergekit_still_gives_the_reference runs mergekit again on the same inputs (about a minute).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

safetensors = pytest.importorskip("safetensors")
pytest.importorskip("yaml")

from tvlib.vectors import load_state_dict, merge_checkpoints  # noqa: E402
from tvlib.vectors.config import parse_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref_mod = _load("mergekit_reference")
masks_mod = _load("_masks")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mk-inputs")
    digest = ref_mod.make_inputs(root)
    return root, digest


@pytest.fixture(scope="module")
def reference():
    from safetensors import safe_open

    with safe_open(str(ref_mod.REFERENCE), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return meta, tensors


def hashed_masks(i, key, delta, p):
    return masks_mod.hashed_keep(delta, 1.0 - p)


def tvlib_merge(root: Path, case: str, out: Path) -> dict[str, torch.Tensor]:
    import yaml

    text, masks = ref_mod.CASES[case]
    job = parse_config(yaml.safe_load(text.format(root=root)), root=root)
    merge_checkpoints(job.base, job.models, job.recipe, out, dtype=job.dtype, masks=hashed_masks if masks else None)
    return load_state_dict(out)


def test_reference_inputs_are_rebuilt_bit_for_bit(inputs, reference):
    _, digest = inputs
    meta, _ = reference
    assert meta["inputs_sha256"] == digest  # the reference was made from these very inputs
    assert meta["mergekit"] == "0.1.5"
    assert meta["cases"].split(",") == list(ref_mod.CASES)


@pytest.mark.parametrize("case", list(ref_mod.CASES))
def test_config_in_mergekit_layout_gives_mergekits_model(inputs, reference, case, tmp_path):
    root, _ = inputs
    _, ref = reference
    got = tvlib_merge(root, case, tmp_path / "out")
    expected = {k.split("/", 1)[1]: v for k, v in ref.items() if k.startswith(case + "/")}
    assert set(got) == set(expected)
    base = load_state_dict(root / "base")
    moved = 0
    for k, v in expected.items():
        # float32 on both sides; mergekit sums the stacked deltas, tvlib one at a time: last-bit differences
        torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-6, msg=lambda m, k=k: f"{case}: {k}: {m}")
        moved += not torch.equal(v, base[k])
    assert moved > 0  # the merge changed something: a comparison of two copies of the base proves nothing


def test_tvlib_semantics_by_explicit_keys_differ_from_mergekits(inputs, reference, tmp_path):
    """The paper's TIES (normalize: count, scope: global, rounding: nearest, zero_sum: drop) is one explicit
    key set away, and gives a different model than mergekit's defaults on the same config."""
    import yaml

    root, _ = inputs
    _, ref = reference
    text, _ = ref_mod.CASES["ties_defaults"]
    cfg = yaml.safe_load(text.format(root=root))
    cfg["parameters"] = {"normalize": "count", "scope": "global", "rounding": "nearest", "zero_sum": "drop"}
    job = parse_config(cfg, root=root)
    r = job.recipe
    assert (r.normalize, r.scope, r.rounding, r.zero_sum) == ("count", "global", "nearest", "drop")
    merge_checkpoints(job.base, job.models, r, tmp_path / "paper", dtype=job.dtype)
    got = load_state_dict(tmp_path / "paper")
    key = "model.layers.1.mlp.up_proj.weight"
    assert not torch.allclose(got[key], ref[f"ties_defaults/{key}"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    ({"models": [{"model": "{root}/ft1"}]}, r"models\[0\] .*no weight: mergekit requires one"),
    ({"models": [{"model": "{root}/base"}]}, "only the base model is listed"),
    ({"models": [{"model": "{root}/ft1", "parameters": {"weight": [{"filter": "mlp", "value": 1.0}]}}]},
     "no filter matches tensor"),
])
def test_configs_mergekit_refuses_are_refused(inputs, tmp_path, bad, message):
    root, _ = inputs
    cfg = {"merge_method": "ties", "base_model": str(root / "base"), "dtype": "float32"}
    cfg["models"] = [{**m, "model": m["model"].format(root=root)} for m in bad["models"]]
    with pytest.raises(ValueError, match=message):
        job = parse_config(cfg, root=root)
        merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_live_mergekit_still_gives_the_reference(inputs, reference, tmp_path):
    import os

    python = os.environ.get("TVLIB_MERGEKIT_PYTHON")
    if not python or ref_mod.find_mergekit(python) != python:
        pytest.skip("set TVLIB_MERGEKIT_PYTHON to a python with mergekit 0.1.5 to compare with mergekit live")
    root, _ = inputs
    _, ref = reference
    for case in ("ties_gradients_filters", "dare_ties", "della", "slerp", "linear_soup"):
        live = ref_mod.run_mergekit(python, root, case, tmp_path / case)
        for k, v in live.items():
            assert torch.equal(v.float(), ref[f"{case}/{k}"]), (case, k)


def test_exact_cancellation_elects_plus_by_default_and_nothing_with_zero_sum_drop(inputs, reference, tmp_path):
    import yaml

    root, _ = inputs
    _, ref = reference
    text, _ = ref_mod.CASES["ties_cancelling"]  # ft3 = ft1 in layer 0, weights +0.5 and -0.5
    key = "model.layers.0.mlp.up_proj.weight"
    base = load_state_dict(root / "base")[key]
    mk = ref[f"ties_cancelling/{key}"] - base
    ft1 = load_state_dict(root / "ft1")[key] - base
    torch.testing.assert_close(mk, 0.5 * ft1.abs(), rtol=1e-5, atol=1e-7)  # mergekit: + elected, positives kept
    cfg = yaml.safe_load(text.format(root=root))
    cfg["parameters"]["zero_sum"] = "drop"
    job = parse_config(cfg, root=root)
    merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "drop", dtype=job.dtype)
    assert torch.equal(load_state_dict(tmp_path / "drop")[key], base)  # the paper's: no sign, entry stays 0


def test_a_whole_model_slice_reads_as_models_and_a_cut_is_refused(inputs, reference, tmp_path):
    """The SLERP configs people share use `slices:` with one slice over every layer: mergekit's model again."""
    import yaml

    root, _ = inputs
    _, ref = reference
    text, _ = ref_mod.CASES["slerp"]
    cfg = yaml.safe_load(text.format(root=root))
    cfg["slices"] = [{"sources": [{"model": m["model"], "layer_range": [0, 3]} for m in cfg.pop("models")]}]
    got = {}
    job = parse_config(cfg, root=root)
    merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "out", dtype=job.dtype)
    got = load_state_dict(tmp_path / "out")
    for k, v in got.items():
        torch.testing.assert_close(v, ref[f"slerp/{k}"], rtol=1e-6, atol=1e-6)
    cut = {**cfg, "slices": [{"sources": [{"model": s["model"], "layer_range": [0, 2]} for s in cfg["slices"][0]["sources"]]}]}
    job = parse_config(cut, root=root)
    with pytest.raises(ValueError, match="covers layers 0..2 but .* has 3"):
        merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "cut")
    stacked = {**cfg, "slices": cfg["slices"] * 2}
    with pytest.raises(ValueError, match="frankenmerges"):
        parse_config(stacked, root=root)
