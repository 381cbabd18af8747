"""Tests of task-vector arithmetic (Def. 1, eq. 2) on toy and Hugging Face state dicts."""

import copy
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tvlib.toy.data import task_pair
from tvlib.toy.model import OneLayerTransformer
from tvlib.toy.setting import Setting
from tvlib.vectors import StateDictMismatch, TaskVector, merge
from tvlib.toy.training import finetune

SHAPES = {"w": (5, 3), "b": (5,), "c": (2, 3, 4)}
seeds = st.integers(0, 2**31 - 1)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def state(seed: int, shapes=SHAPES, dtype=torch.float32) -> dict:
    gen = g(seed)
    return {k: torch.randn(s, generator=gen).to(dtype) for k, s in shapes.items()}


def vec(seed: int, shapes=SHAPES) -> TaskVector:
    return TaskVector(state(seed, shapes))


def assert_tv_close(a: TaskVector, b: TaskVector, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a.keys():
        torch.testing.assert_close(a.deltas[k], b.deltas[k], **tol)


def assert_sd_close(a: dict, b: dict, **tol) -> None:
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol)


# ---------------------------------------------------------------- algebra


@given(seeds, seeds)
@settings(max_examples=25, deadline=None)
def test_add_then_subtract_and_self_difference(s1, s2):
    a, b = vec(s1), vec(s2)
    assert_tv_close((a + b) - b, a)
    assert (a - a).norm() == 0.0


@given(seeds, seeds, seeds)
@settings(max_examples=25, deadline=None)
def test_scaling_negation_and_sum(s1, s2, s3):
    a, b, c = vec(s1), vec(s2), vec(s3)
    assert_tv_close(2 * a, a + a, rtol=0, atol=0)
    assert_tv_close(a * 2.0, a + a, rtol=0, atol=0)
    assert_tv_close(-(-a), a, rtol=0, atol=0)
    assert_tv_close(sum([a, b, c]), a + b + c, rtol=0, atol=0)
    assert_tv_close(a / 2.0, 0.5 * a)
    assert (-a).norm() == pytest.approx(a.norm())  # negation is not renormalised ...
    assert (-a).dot(a) == pytest.approx(-a.norm() ** 2)  # ... it points the other way
    assert (3 * a).norm() == pytest.approx(3 * a.norm(), rel=1e-6)


@given(seeds, seeds)
@settings(max_examples=25, deadline=None)
def test_norm_dot_cosine(s1, s2):
    a, b = vec(s1), vec(s2)
    flat_a = torch.cat([v.reshape(-1) for v in a.deltas.values()]).double()
    flat_b = torch.cat([v.reshape(-1) for v in b.deltas.values()]).double()
    assert a.norm() == pytest.approx(float(flat_a.norm()), rel=1e-9)
    assert a.dot(b) == pytest.approx(float(flat_a @ flat_b), rel=1e-9, abs=1e-9)
    assert a.cosine(b) == pytest.approx(float(flat_a @ flat_b / flat_a.norm() / flat_b.norm()), abs=1e-9)
    assert a.cosine(a) == pytest.approx(1.0)
    assert a.numel() == flat_a.numel() == 5 * 3 + 5 + 24 and len(a) == 3


def test_scalar_ops_reject_other_types():
    a = vec(0)
    for bad in ("2", None, True, torch.tensor(2.0)):
        with pytest.raises(TypeError, match=type(bad).__name__):
            a * bad
    with pytest.raises(TypeError, match="TaskVector"):
        a * a
    with pytest.raises(TypeError, match="str"):
        a + "x"
    with pytest.raises(ZeroDivisionError):
        a / 0
    with pytest.raises(ValueError, match="zero"):
        a.cosine(a - a)


def test_arithmetic_with_different_keys_or_shapes_raises():
    a = vec(0)
    b = vec(1, {"w": (5, 3), "b": (5,), "other": (1,)})
    with pytest.raises(StateDictMismatch, match="only in left: c") as err:
        a + b
    assert "only in right: other" in str(err.value)
    c = vec(2, {"w": (3, 5), "b": (5,), "c": (2, 3, 4)})
    with pytest.raises(StateDictMismatch, match=r"w: \(5, 3\) vs \(3, 5\)"):
        a - c
    with pytest.raises(StateDictMismatch):
        a.dot(c)


def test_repr_keys_and_device():
    a = vec(0)
    assert a.keys() == ["w", "b", "c"]
    assert "3 tensors" in repr(a) and "44 entries" in repr(a)
    assert_tv_close(a.to("cpu"), a, rtol=0, atol=0)


# ---------------------------------------------------------------- from_models / apply / merge


@given(seeds, seeds, st.floats(-2, 2))
@settings(max_examples=25, deadline=None)
def test_apply_to_interpolates(s1, s2, lam):
    base, ft = state(s1), state(s2)
    tv = TaskVector.from_models(base, ft)
    assert_sd_close(tv.apply_to(base, 1.0), ft)
    assert_sd_close(tv.apply_to(base, 0.0), base, rtol=0, atol=0)
    assert_sd_close(tv.apply_to(base, 0.5), {k: (base[k] + ft[k]) / 2 for k in base})
    assert_sd_close(tv.apply_to(base, lam), {k: base[k] + lam * (ft[k] - base[k]) for k in base})
    assert_sd_close(base, state(s1), rtol=0, atol=0)  # base unchanged


def test_merge_one_coefficient_per_vector():
    base = state(0)
    tvs = [TaskVector.from_models(base, state(s)) for s in (1, 2, 3)]
    lams = [0.5, -1.0, 2.0]
    expected = {k: base[k] + sum(lam * tv.deltas[k] for lam, tv in zip(lams, tvs)) for k in base}
    assert_sd_close(merge(base, tvs, lams), expected)
    assert_sd_close(merge(base, tvs, 0.3), {k: base[k] + 0.3 * sum(tv.deltas[k] for tv in tvs) for k in base})
    with pytest.raises(ValueError, match="lams"):
        merge(base, tvs, [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        merge(base, [], 1.0)


def test_strict_key_and_shape_checks():
    base = state(0)
    ft = {**state(1), "extra.weight": torch.zeros(2)}
    del ft["b"]
    with pytest.raises(StateDictMismatch) as err:
        TaskVector.from_models(base, ft)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    assert "only in pretrained: b" in msg and "only in finetuned: extra.weight" in msg
    ft2 = {**state(1), "w": torch.zeros(3, 5)}
    with pytest.raises(StateDictMismatch, match=r"w: \(5, 3\) vs \(3, 5\)"):
        TaskVector.from_models(base, ft2)
    tv = TaskVector.from_models(base, ft, strict=False)
    assert tv.keys() == ["w", "c"]
    assert tv.skipped == {"b": "only in pretrained", "extra.weight": "only in finetuned"}
    tv2 = TaskVector.from_models(base, ft2, strict=False)
    assert tv2.skipped == {"w": "(5, 3) vs (3, 5)"}
    # applying to a base lacking one of the vector's keys is refused too
    with pytest.raises(StateDictMismatch, match="only in task vector: c"):
        tv.apply_to({"w": base["w"]})


def test_mismatch_message_is_truncated():
    a = {f"layer{i}.weight": torch.zeros(1) for i in range(30)}
    b = {f"block{i}.weight": torch.zeros(1) for i in range(30)}
    with pytest.raises(StateDictMismatch, match=r"60 keys differ") as err:
        TaskVector.from_models(a, b)
    lines = str(err.value).splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 40 more lines"


def test_option_values_are_checked():
    with pytest.raises(ValueError, match="non_float"):
        TaskVector.from_models(state(0), state(1), non_float="keep")
    with pytest.raises(ValueError, match="buffers"):
        TaskVector.from_models(state(0), state(1), buffers="yes")
    with pytest.raises(TypeError, match="list"):
        TaskVector.from_models([1], state(1))


def _bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    net.train()
    net(torch.randn(8, 4, generator=g(seed)))  # updates running stats and num_batches_tracked
    return net


def test_non_float_and_buffer_policies():
    base, ft = _bn_net(0), _bn_net(1)
    ft(torch.randn(8, 4, generator=g(2)))  # num_batches_tracked: 1 in base, 2 in ft
    tv = TaskVector.from_models(base, ft)  # Modules: buffers skipped
    assert set(tv.keys()) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert tv.skipped["1.running_mean"] == "buffer" and tv.skipped["1.num_batches_tracked"] == "buffer"
    tv_inc = TaskVector.from_models(base, ft, buffers="include")
    assert "1.running_mean" in tv_inc.keys() and "1.num_batches_tracked" not in tv_inc.keys()
    # state dicts: buffers cannot be told apart, float ones become part of the vector
    tv_sd = TaskVector.from_models(base.state_dict(), ft.state_dict())
    assert set(tv_sd.keys()) == set(tv_inc.keys())
    assert tv_sd.skipped["1.num_batches_tracked"].startswith("non-float")
    out = tv_sd.apply_to(base, 1.0)
    assert out["1.num_batches_tracked"].item() == 1  # the base's value, not ft's 2
    torch.testing.assert_close(out["1.running_mean"], ft.state_dict()["1.running_mean"])
    net = copy.deepcopy(base)
    tv_sd.apply_(net)
    assert net[1].num_batches_tracked.item() == 1
    with pytest.raises(ValueError, match="1.num_batches_tracked"):
        TaskVector.from_models(base.state_dict(), ft.state_dict(), non_float="error")
    with pytest.raises(ValueError, match="1.num_batches_tracked"):
        TaskVector.from_models(base, ft, buffers="include", non_float="error")
    mask = {"w": torch.zeros(2), "mask": torch.tensor([True, False])}
    with pytest.raises(ValueError, match="mask"):
        TaskVector.from_models(mask, {"w": torch.ones(2), "mask": torch.tensor([False, False])}, non_float="error")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lam", [1.0, 0.3, -0.7])
def test_low_precision_base_keeps_its_dtype(dtype, lam):
    base = state(0, dtype=dtype)
    ft = {k: (v.float() + 0.01 * torch.randn(v.shape, generator=g(1))).to(dtype) for k, v in base.items()}
    tv = TaskVector.from_models(base, ft)
    assert all(d.dtype == torch.float32 for d in tv.deltas.values())
    for k in base:
        assert torch.equal(tv.deltas[k], ft[k].float() - base[k].float())
    out = tv.apply_to(base, lam)
    for k in base:
        assert out[k].dtype == dtype
        assert torch.equal(out[k], (base[k].float() + lam * tv.deltas[k]).to(dtype))
    merged = merge(base, [tv], lam)
    assert all(merged[k].dtype == dtype for k in base)


def test_apply_in_place_with_base():
    base, ft, other = state(0), state(1), state(2)
    tv = TaskVector.from_models(base, ft)
    target = {k: v.clone() for k, v in other.items()}
    ptrs = {k: v.data_ptr() for k, v in target.items()}
    tv.apply_(target, 0.5, base=base)  # current values ignored: base + 0.5 delta
    assert_sd_close(target, {k: (base[k] + ft[k]) / 2 for k in base})
    assert {k: v.data_ptr() for k, v in target.items()} == ptrs  # written in place
    tv.apply_(target, 0.5)  # current + 0.5 delta
    assert_sd_close(target, ft)


def test_save_load_round_trip(tmp_path):
    tv = TaskVector(state(0), aliases={"w": ["w_tied"]}, skipped={"n": "buffer"})
    path = tmp_path / "tv.safetensors"
    tv.save(path)
    assert os.listdir(tmp_path) == ["tv.safetensors"]  # no temp file left behind
    back = TaskVector.load(path)
    assert_tv_close(back, tv, rtol=0, atol=0)
    assert back.aliases == {"w": ("w_tied",)} and back.skipped == {"n": "buffer"}


# ---------------------------------------------------------------- low rank


@given(seeds, st.integers(1, 6))
@settings(max_examples=20, deadline=None)
def test_low_rank_truncation(seed, r):
    shapes = {"m": (8, 6), "v": (8,), "stack": (3, 5, 4)}
    tv = vec(seed, shapes)
    lr = tv.low_rank(r)
    assert torch.linalg.matrix_rank(lr.deltas["m"]) <= r
    assert torch.equal(lr.deltas["v"], tv.deltas["v"]) and torch.equal(lr.deltas["stack"], tv.deltas["stack"])
    # Eckart-Young: the residual is the energy of the dropped singular values
    S = torch.linalg.svdvals(tv.deltas["m"])
    residual = (tv.deltas["m"] - lr.deltas["m"]).norm()
    torch.testing.assert_close(residual, S[r:].norm(), atol=1e-5, rtol=1e-4)
    batched = tv.low_rank(r, batched=True)
    assert (torch.linalg.matrix_rank(batched.deltas["stack"]) <= r).all()


def test_low_rank_full_rank_and_bad_rank():
    tv = vec(0, {"m": (8, 6)})
    assert torch.equal(tv.low_rank(6).deltas["m"], tv.deltas["m"])
    assert torch.equal(tv.low_rank(100).deltas["m"], tv.deltas["m"])
    for bad in (0, -1):
        with pytest.raises(ValueError, match="r="):
            tv.low_rank(bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError):
            tv.low_rank(bad)


# ---------------------------------------------------------------- the toy model of eq. 4


def test_toy_model_round_trip():
    S = Setting(d=8, M=6, P=6, m=16)
    base = OneLayerTransformer(**S.model(), replicas=2, seed=0)
    task, _ = task_pair(0.0, **S.data(), seed=0)
    ft, _ = finetune(base, task, lr=1.0, batch_size=16, steps=5, generator=g(0))
    tv = TaskVector.from_models(base, ft)
    assert set(tv.keys()) == {"W", "V"} and tv.skipped == {"a": "buffer"}
    assert tv.norm() > 0
    X, _ = task.sample(32, g(1))
    model = copy.deepcopy(base)
    model.load_state_dict(tv.apply_to(base, 1.0))
    torch.testing.assert_close(model(X), ft(X))
    tv.apply_(base_copy := copy.deepcopy(base))
    torch.testing.assert_close(base_copy(X), ft(X))
    assert torch.equal(base_copy.a, base.a)


# ---------------------------------------------------------------- Hugging Face models

transformers = pytest.importorskip("transformers")


def tiny_phi(seed: int = 0, tie: bool = False) -> nn.Module:
    cfg = transformers.PhiConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=128, max_position_embeddings=64, tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    return transformers.PhiForCausalLM(cfg).eval()


def one_step(model: nn.Module, seed: int = 1, lr: float = 1e-2) -> nn.Module:
    """A copy of model after one SGD step on random tokens."""
    tuned = copy.deepcopy(model).train()
    ids = torch.randint(0, 128, (2, 16), generator=g(seed))
    tuned(input_ids=ids, labels=ids).loss.backward()
    with torch.no_grad():
        for p in tuned.parameters():
            p -= lr * p.grad
    tuned.zero_grad()
    return tuned.eval()


IDS = torch.randint(0, 128, (2, 12), generator=g(7))


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def test_phi_round_trip():
    base = tiny_phi()
    ft = one_step(base)
    tv = TaskVector.from_models(base, ft)
    assert "model.rotary_emb.inv_freq" not in tv.keys() and tv.aliases == {}
    model = copy.deepcopy(base)
    tv.apply_(model, 1.0)
    assert_sd_close(model.state_dict(), ft.state_dict())
    torch.testing.assert_close(logits(model), logits(ft))
    assert not torch.allclose(logits(base), logits(ft))
    tv.apply_(model, 0.0, base=base)
    assert_sd_close(model.state_dict(), base.state_dict(), rtol=0, atol=0)


def test_phi_tied_embeddings_counted_once():
    base = tiny_phi(tie=True)
    assert base.lm_head.weight is base.model.embed_tokens.weight
    ft = one_step(base)
    tv = TaskVector.from_models(base, ft)
    assert "model.embed_tokens.weight" in tv.keys() and "lm_head.weight" not in tv.keys()
    assert tv.aliases == {"model.embed_tokens.weight": ("lm_head.weight",)}
    pairs = dict(base.named_parameters())  # named_parameters lists a tied weight once
    ft_params = dict(ft.named_parameters())
    expected = sum(float(((ft_params[k] - p).detach().double() ** 2).sum()) for k, p in pairs.items()) ** 0.5
    assert tv.norm() == pytest.approx(expected, rel=1e-9)
    assert tv.numel() == sum(p.numel() for p in base.parameters())
    out = tv.apply_to(base, 1.0)
    assert out["lm_head.weight"] is out["model.embed_tokens.weight"]
    model = copy.deepcopy(base)
    tv.apply_(model, 1.0)
    emb = "model.embed_tokens.weight"
    torch.testing.assert_close(model.state_dict()[emb], ft.state_dict()[emb])  # not base + 2 delta
    assert_sd_close(model.state_dict(), ft.state_dict())
    torch.testing.assert_close(logits(model), logits(ft))
    # a vector whose tied keys were separated (cloned) would update the shared tensor twice: refused
    separate = TaskVector.from_models({k: v.clone() for k, v in base.state_dict().items()}, ft.state_dict())
    assert "lm_head.weight" in separate.keys()
    with pytest.raises(ValueError, match="share one tensor"):
        separate.apply_(copy.deepcopy(base))
    broken = {**ft.state_dict(), "lm_head.weight": torch.zeros_like(ft.lm_head.weight)}
    with pytest.raises(ValueError, match="tied"):
        TaskVector.from_models(base, broken)
    # an untied copy of the same weights receives the delta on both keys
    untied = tiny_phi(tie=False)
    untied.load_state_dict(base.state_dict())
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    tv.apply_(untied, 1.0)
    torch.testing.assert_close(untied.lm_head.weight, ft.lm_head.weight)


@pytest.mark.parametrize("extras", ["none", "bias+saved", "embeddings"])
def test_from_peft_matches_merge_and_unload(extras):
    peft = pytest.importorskip("peft")
    base = tiny_phi()
    more = dict(lora_bias=True, modules_to_save=["lm_head"]) if extras == "bias+saved" else {}
    targets = ["q_proj", "v_proj"] + (["embed_tokens", "lm_head"] if extras == "embeddings" else [])
    cfg = peft.LoraConfig(r=4, target_modules=targets, lora_alpha=8, **more)
    wrapped = peft.get_peft_model(copy.deepcopy(base), cfg)
    gen = g(3)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name or "lora_embedding" in name or "modules_to_save" in name:  # peft zeros embedding A
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    tv = TaskVector.from_peft(wrapped)
    expected_keys = {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(2) for m in "qv"}
    if extras == "bias+saved":  # LoRA's bias delta and the fully trained copy of lm_head
        expected_keys |= {k.replace("weight", "bias") for k in expected_keys} | {"lm_head.weight", "lm_head.bias"}
    if extras == "embeddings":  # a LoRA-wrapped nn.Embedding keeps its factors in lora_embedding_A/B
        expected_keys |= {"model.embed_tokens.weight", "lm_head.weight"}
        assert torch.linalg.matrix_rank(tv.deltas["model.embed_tokens.weight"]) == 4
    assert set(tv.keys()) == expected_keys and expected_keys <= set(base.state_dict())
    for k, d in tv.deltas.items():
        if "proj.weight" in k:
            assert torch.linalg.matrix_rank(d) <= 4
    lora_logits = logits(wrapped)
    merged = wrapped.merge_and_unload()
    assert_sd_close(tv.apply_to(base, 1.0), merged.state_dict())
    model = copy.deepcopy(base)
    tv.apply_(model)
    torch.testing.assert_close(logits(model), logits(merged))
    torch.testing.assert_close(logits(model), lora_logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="adapter_name='missing'"):
        TaskVector.from_peft(peft.get_peft_model(copy.deepcopy(base), cfg), adapter_name="missing")


def test_float64_weights_keep_float64_deltas():
    """float32 arithmetic is the floor, not a cap: float64 models are not rounded to float32."""
    base = {"w": torch.randn(3, 3, dtype=torch.float64)}
    tuned = {"w": base["w"] + 1e-12}
    tv = TaskVector.from_models(base, tuned)
    assert tv.deltas["w"].dtype == torch.float64
    assert torch.equal(tv.apply_to(base, 1.0)["w"], base["w"] + tv.deltas["w"])
    half = TaskVector.from_models({"w": base["w"].half()}, {"w": tuned["w"].half()})
    assert half.deltas["w"].dtype == torch.float32
