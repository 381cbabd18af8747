"""One clear error per bad input to the in-memory API (issue 15), and tied weights written once."""

import math

import pytest
import torch
from torch import nn

from tvlib.vectors import (
    NonFiniteError,
    StateDictMismatch,
    TaskVector,
    dare,
    magnitude_prune,
    merge,
    ties_merge,
)


def sd(seed: int, layers: int = 2) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {f"layers.{i}.w": torch.randn(3, 4, generator=gen) for i in range(layers)}
    out["head.w"] = torch.randn(2, 4, generator=gen)
    return out


def test_non_finite_values_are_named_by_key_unless_allowed():
    base, ft = sd(0), sd(1)
    ft["layers.1.w"][0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"layers\.1\.w \(finetuned\)"):
        TaskVector.from_models(base, ft)
    base_inf = {**sd(0), "head.w": torch.full((2, 4), math.inf)}
    with pytest.raises(NonFiniteError, match=r"head\.w \(pretrained\)"):
        TaskVector.from_models(base_inf, sd(1))
    tv = TaskVector.from_models(base, ft, allow_nonfinite=True)
    assert torch.isnan(tv.deltas["layers.1.w"]).any()
    with pytest.raises(NonFiniteError, match=r"layers\.1\.w"):
        TaskVector({"layers.1.w": ft["layers.1.w"]})


def test_non_finite_lambda_is_rejected():
    base = sd(0)
    tv = TaskVector.from_models(base, sd(1))
    for bad in (float("nan"), math.inf):
        with pytest.raises(ValueError, match="lam is"):
            tv.apply_to(base, bad)
        with pytest.raises(ValueError, match="lam is"):
            tv.apply_(dict(base), bad)
        with pytest.raises(ValueError, match="lams"):
            merge(base, [tv], [bad])
        with pytest.raises(ValueError, match="finite"):
            tv * bad
        with pytest.raises(ValueError, match="finite"):
            ties_merge([tv], lam=bad)


def test_meta_tensors_are_rejected_by_key():
    with torch.device("meta"):
        empty = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"meta device.*weight, bias"):
        TaskVector.from_models(empty, nn.Linear(4, 3))
    tv = TaskVector.from_models(nn.Linear(4, 3), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="meta device"):
        tv.apply_to(empty)


class Tied(nn.Module):
    def __init__(self, tie: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        if tie:
            self.head.weight = self.embed.weight


def test_apply_to_honours_the_base_tying_like_apply_():
    torch.manual_seed(0)
    tied, untied_a, untied_b = Tied(), Tied(tie=False), Tied(tie=False)
    untied = TaskVector.from_models(untied_a, untied_b)  # separate deltas for embed and head
    with pytest.raises(ValueError, match=r"embed\.weight, head\.weight share one tensor in the base"):
        untied.apply_to(tied)
    with pytest.raises(ValueError, match="share one tensor in the module"):
        untied.apply_(tied)
    other = Tied()
    with torch.no_grad():
        other.embed.weight += 1.0
    tv = TaskVector.from_models(tied, other)
    out = tv.apply_to(tied)
    assert out["head.weight"] is out["embed.weight"]
    torch.testing.assert_close(out["embed.weight"], other.embed.weight.detach())


def test_a_shallower_vector_on_a_deeper_model_names_the_extra_layers():
    tv = TaskVector.from_models(sd(0, layers=2), sd(1, layers=2))
    deep = sd(2, layers=3)
    with pytest.raises(StateDictMismatch, match=r"only in base: layers\.2\.w"):
        tv.apply_to(deep)
    with pytest.raises(StateDictMismatch, match=r"only in base: layers\.2\.w"):
        merge(deep, [tv], 1.0)
    out = tv.apply_to(deep, strict=False)
    assert out["layers.2.w"].data_ptr() == deep["layers.2.w"].data_ptr()  # untouched, and not copied


def test_key_mismatches_between_vectors_name_the_keys():
    a, b = TaskVector(sd(0)), TaskVector(sd(1, layers=3))
    with pytest.raises(StateDictMismatch, match=r"only in right: layers\.2\.w"):
        a + b
    with pytest.raises(StateDictMismatch, match=r"layers\.2\.w"):
        ties_merge([a, b])


def test_cast_back_overflow_is_reported():
    base = {k: v.half() for k, v in sd(0).items()}
    tv = TaskVector({k: torch.full(v.shape, 1000.0) for k, v in base.items()})
    with pytest.raises(NonFiniteError, match="float16 overflows"):
        tv.apply_to(base, 100.0)
    assert torch.isinf(tv.apply_to(base, 100.0, allow_nonfinite=True)["head.w"]).all()


def test_methods_do_not_take_nan_for_the_largest_entry():
    bad = {"w": torch.tensor([1.0, float("nan"), 0.5])}
    with pytest.raises(NonFiniteError):
        TaskVector(bad)
    ok = TaskVector({"w": torch.tensor([1.0, -3.0, 0.5])})
    assert magnitude_prune(ok, 1 / 3).deltas["w"].tolist() == [0.0, -3.0, 0.0]
    assert torch.isfinite(dare(ok, 0.5, generator=torch.Generator().manual_seed(0)).deltas["w"]).all()


def test_tied_state_dict_saves_once_and_from_a_path(tmp_path):
    from tvlib.vectors import load_state_dict, save_state_dict

    torch.manual_seed(0)
    base, ft = Tied(), Tied()
    merged = merge(base, [TaskVector.from_models(base, ft)], 0.5)
    save_state_dict(merged, tmp_path / "m")  # safetensors' save_file refuses shared tensors
    back = load_state_dict(tmp_path / "m")
    assert list(back) == ["embed.weight"]
    save_state_dict(ft.state_dict(), tmp_path / "ft")
    tv = TaskVector.from_models(base, tmp_path / "ft")  # a checkpoint path; head is tied to embed
    assert tv.keys() == ["embed.weight"] and tv.aliases == {"embed.weight": ("head.weight",)}
