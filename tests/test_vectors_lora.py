"""Low-rank task vectors held as factors: saved as factors, exported as peft LoRA adapters, aligned and added."""

import os

import pytest
import torch

from tvlib.vectors import TaskVector, align

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def tiny():
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=4, vocab_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_low_rank_saves_its_factors_not_a_dense_tensor(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tv = TaskVector({"big": torch.randn(256, 128, generator=gen), "bias": torch.randn(256, generator=gen)})
    low = tv.low_rank(4)
    assert set(low.factors) == {"big"} and low.factors["big"][0].shape == (256, 4)
    low.save(tmp_path / "low.safetensors")
    tv.save(tmp_path / "dense.safetensors")
    assert os.path.getsize(tmp_path / "low.safetensors") < os.path.getsize(tmp_path / "dense.safetensors") / 10
    back = TaskVector.load(tmp_path / "low.safetensors")
    assert set(back.factors) == {"big"} and back.keys() == low.keys()
    torch.testing.assert_close(back.deltas["big"], low.deltas["big"])
    assert torch.linalg.matrix_rank(back.deltas["big"]) == 4
    # arithmetic keeps factors: scaling scales B, adding concatenates (ranks add), never factor by factor
    both = low + 2.0 * low
    assert both.factors["big"][0].shape == (256, 8)
    torch.testing.assert_close(both.deltas["big"], 3 * low.deltas["big"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((-low).deltas["big"], -low.deltas["big"])


def test_export_as_a_peft_adapter_that_peft_loads(tmp_path):
    base = tiny()
    ft = tiny()
    with torch.no_grad():
        for name, p in ft.named_parameters():
            if name.endswith(("q_proj.weight", "v_proj.weight")):
                p += 0.05 * torch.randn(p.shape)
    tv = TaskVector.from_models(base, ft).low_rank(3)
    lora = TaskVector({k: v for k, v in tv.deltas.items() if k.endswith(("q_proj.weight", "v_proj.weight"))}).low_rank(3)
    lora.to_peft(tmp_path / "adapter", base_model_name_or_path="tiny")
    assert sorted(os.listdir(tmp_path / "adapter")) == ["adapter_config.json", "adapter_model.safetensors"]
    model = peft.PeftModel.from_pretrained(tiny(), tmp_path / "adapter").merge_and_unload()
    expected = lora.apply_to(base, strict=False)
    got = model.state_dict()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dense"):
        tv.to_peft(tmp_path / "no")  # norms and embeddings are dense deltas
    assert not (tmp_path / "no").exists()
    back = TaskVector.from_peft(peft.PeftModel.from_pretrained(tiny(), tmp_path / "adapter"), factored=True)
    assert set(back.factors) == set(lora.factors)
    for k in lora:
        torch.testing.assert_close(back.deltas[k], lora.deltas[k], rtol=1e-5, atol=1e-6)


def test_adapters_with_different_target_modules_align_and_add(tmp_path):
    gen = torch.Generator().manual_seed(1)
    q, v = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"
    a = TaskVector({}, factors={q: (torch.randn(32, 2, generator=gen), torch.randn(2, 32, generator=gen))})
    b = TaskVector({}, factors={v: (torch.randn(32, 4, generator=gen), torch.randn(4, 32, generator=gen))})
    with pytest.raises(ValueError, match="do not match"):
        a + b
    with pytest.raises(ValueError, match="only in others"):
        align([a, b], missing="error")
    a2, b2 = align([a, b])
    assert a2.keys() == b2.keys() == [q, v] and a2.factors[v][0].shape == (32, 0)  # a rank-0 zero
    total = a2 + b2
    torch.testing.assert_close(total.deltas[q], a.deltas[q])
    torch.testing.assert_close(total.deltas[v], b.deltas[v])
    total.to_peft(tmp_path / "sum")
    model = peft.PeftModel.from_pretrained(tiny(), tmp_path / "sum").merge_and_unload()
    torch.testing.assert_close(model.state_dict()[v], tiny().state_dict()[v] + b.deltas[v], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_a_whole_model_round_trip_through_peft_keeps_the_embeddings(tmp_path, tie):
    """low_rank(r).to_peft(dense="skip") of every matrix, embeddings included: peft loads every factor
    (no missing adapter keys) and merge_and_unload gives base + the low-rank deltas exactly."""
    import warnings

    def model():
        cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=4, vocab_size=64, max_position_embeddings=32,
                                       tie_word_embeddings=tie)
        torch.manual_seed(0)
        return transformers.LlamaForCausalLM(cfg).eval()

    base, ft = model(), model()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in ft.parameters():
            p += 0.05 * torch.randn(p.shape, generator=gen)
    low = TaskVector.from_models(base, ft).low_rank(3)
    emb = "model.embed_tokens.weight"
    assert emb in low.factors
    low.to_peft(tmp_path / "adapter", dense="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = peft.PeftModel.from_pretrained(model(), tmp_path / "adapter")
    assert not [w for w in caught if "missing" in str(w.message).lower()], [str(w.message) for w in caught]
    back = TaskVector.from_peft(loaded)
    assert emb in back.keys()
    got = loaded.merge_and_unload().state_dict()
    expected = TaskVector({k: low.deltas[k] for k in low.factors}).apply_to(base, strict=False)
    changed = 0
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-5)
        changed += not torch.equal(expected[k], base.state_dict()[k])
    assert not torch.equal(got[emb], base.state_dict()[emb])  # the embedding delta arrived
    assert changed == len(low.factors) + (1 if tie else 0)  # a tied lm_head moves with its embedding


def test_extract_lora_writes_an_adapter_peft_loads(tmp_path, capsys):
    """A fine-tune whose matrices moved by rank-2 deltas (embeddings included) comes back exactly at rank 2."""
    from tvlib.vectors.cli import main

    base = tiny()
    ft = tiny()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in ft.named_parameters():
            if p.ndim == 2:
                p += 0.05 * torch.randn(p.shape[0], 2, generator=gen) @ torch.randn(2, p.shape[1], generator=gen)
            else:
                p += 0.01  # norms: not a matrix, left out with a note
    base.save_pretrained(tmp_path / "base")
    ft.save_pretrained(tmp_path / "ft")
    assert main(["extract-lora", str(tmp_path / "base"), str(tmp_path / "ft"), str(tmp_path / "lora"),
                 "--rank", "2"]) == 0
    captured = capsys.readouterr()
    assert "rank-2 LoRA adapter" in captured.out and "non-matrix deltas are not in the adapter" in captured.err
    merged = peft.PeftModel.from_pretrained(tiny(), tmp_path / "lora").merge_and_unload().state_dict()
    want = ft.state_dict()
    for k, v in base.state_dict().items():
        if v.ndim == 2:
            torch.testing.assert_close(merged[k], want[k], rtol=1e-4, atol=1e-5)
        else:
            assert torch.equal(merged[k], v)
    assert main(["extract-lora", str(tmp_path / "base"), str(tmp_path / "ft"), str(tmp_path / "lora"),
                 "--rank", "1"]) == 0  # an earlier adapter is replaced
    assert main(["extract-lora", str(tmp_path / "base"), str(tmp_path / "ft"), str(tmp_path / "base"),
                 "--rank", "1"]) == 2  # an input is not


def test_lora_adapters_are_merge_inputs(tmp_path):
    """An adapter directory alone (on the config's base), mergekit's `model+lora` and {model, lora} give the same
    merge as the models peft's merge_and_unload writes."""
    import yaml

    from tvlib.vectors import load_state_dict, merge_checkpoints
    from tvlib.vectors.config import parse_config

    tiny().save_pretrained(tmp_path / "base")
    for seed, targets in ((1, ["q_proj", "v_proj", "embed_tokens"]), (2, ["o_proj", "up_proj"])):
        torch.manual_seed(seed)
        cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=targets, init_lora_weights=False)
        model = peft.get_peft_model(tiny(), cfg)
        model.save_pretrained(tmp_path / f"lora{seed}")
        model.merge_and_unload().save_pretrained(tmp_path / f"merged{seed}")
    for first in (str(tmp_path / "lora1"), f"{tmp_path / 'base'}+{tmp_path / 'lora1'}"):
        config = {"merge_method": "ties", "base_model": str(tmp_path / "base"), "dtype": "float32",
                  "models": [{"model": first, "parameters": {"weight": 0.7, "density": 0.5}},
                             {"model": {"model": str(tmp_path / "base"), "lora": str(tmp_path / "lora2")},
                              "parameters": {"weight": 0.4, "density": 0.5}}]}
        job = parse_config(yaml.safe_load(yaml.safe_dump(config)))
        merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "from-adapters", dtype=job.dtype)
        job.models = [str(tmp_path / "merged1"), str(tmp_path / "merged2")]
        merge_checkpoints(job.base, job.models, job.recipe, tmp_path / "from-merged", dtype=job.dtype)
        got, want = load_state_dict(tmp_path / "from-adapters"), load_state_dict(tmp_path / "from-merged")
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
        emb = "model.embed_tokens.weight"
        assert not torch.equal(got[emb], load_state_dict(tmp_path / "base")[emb])  # the embedding's LoRA arrived
