"""Tests of the language-model experiment: text generator, tokenizer, parameter checks, negation sweep, results."""

import json

import numpy as np
import pytest
import torch

from tvlib import lm as llm
from tvlib import paper
from tvlib.vectors.io import write_json
from tvlib.vectors import TaskVector
from tvlib.lm.texts import fantasy_world, make_texts, mix_worlds, ngram_overlap

# sizes small enough for a test, large enough to learn something
TINY = dict(n_sentences=40, vocab_size=320, hidden_size=32, num_layers=1, num_heads=2, block_size=32, stride=16,
            batch_size=8, base_epochs=3.0, base_lr=1e-2, epochs=1.0, lora_epochs=1.0, lora_rank=2, lora_alpha=4.0,
            n_prompts=4, prompt_len=8, cont_len=8, n_alpha_blocks=2, lams=(0.0, -1.0), device="cpu",
            progress=False)



# ---------------------------------------------------------------- text generator


def test_texts_are_deterministic_per_seed():
    a, b, c = make_texts(seed=3, n_sentences=50), make_texts(seed=3, n_sentences=50), make_texts(seed=4, n_sentences=50)
    assert a == b
    assert all(a[k] != c[k] for k in a)
    assert set(a) == {"forget", "aligned", "less_aligned"}


def test_share_controls_what_the_aligned_text_takes_from_the_forget_world():
    overlaps = [ngram_overlap(t["forget"], t["aligned"])
                for t in (make_texts(seed=0, share=s, n_sentences=150) for s in (0.0, 0.5, 1.0))]
    assert overlaps[0] < overlaps[1] < overlaps[2]
    # the less aligned text shares (almost) no word trigram with the forget text
    t = make_texts(seed=0, share=0.5, n_sentences=150)
    assert ngram_overlap(t["forget"], t["less_aligned"]) < 0.5 * ngram_overlap(t["forget"], t["aligned"])


def test_mix_worlds_takes_the_requested_fraction():
    a, b = fantasy_world(0, half=0), fantasy_world(0, half=1)
    assert not set(a.characters) & set(b.characters)  # the two halves of the genre are disjoint
    assert not set(a.templates) & set(b.templates)
    m = mix_worlds(a, b, 0.5, seed=0)
    assert len(set(m.characters) & set(a.characters)) == round(0.5 * len(a.characters))
    assert len(set(m.templates) & set(a.templates)) == round(0.5 * len(a.templates))
    assert mix_worlds(a, b, 1.0, seed=0).characters == a.characters
    with pytest.raises(ValueError, match="share"):
        mix_worlds(a, b, 1.5, seed=0)


def test_generated_text_names_only_its_world():
    t = make_texts(seed=1, share=0.0, n_sentences=100)
    a, b = fantasy_world(1, half=0), fantasy_world(1, half=1)
    assert any(c in t["forget"] for c in a.characters)
    assert not any(c in t["aligned"] for c in a.characters)
    assert any(c in t["aligned"] for c in b.characters)


# ---------------------------------------------------------------- tokenizer, blocks, prompts


def test_tokenizer_trains_offline_and_round_trips():
    texts = make_texts(seed=0, n_sentences=30)
    tok = llm.train_tokenizer(list(texts.values()), 400)
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) <= 400
    ids = tok(texts["forget"], add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == texts["forget"]
    assert len(ids) < len(texts["forget"]) / 2  # merges were learned: fewer tokens than bytes


def test_chunk_and_prompts():
    x = torch.arange(100)
    blocks = llm.chunk(x, 32, 16)
    assert blocks.shape == (5, 32) and torch.equal(blocks[1], torch.arange(16, 48))
    s1 = llm.draw_prompts(100, n_prompts=5, prompt_len=10, cont_len=10, seed=0)
    assert np.array_equal(s1, llm.draw_prompts(100, n_prompts=5, prompt_len=10, cont_len=10, seed=0))
    assert len(set(s1.tolist())) == 5 and s1.max() <= 80
    with pytest.raises(ValueError, match="n_prompts"):
        llm.draw_prompts(25, n_prompts=10, prompt_len=10, cont_len=10, seed=0)


# ---------------------------------------------------------------- bad input, before any training


@pytest.mark.parametrize(
    "kw, err, name",
    [
        (dict(model_name="no-such-org/no-such-model-xyz"), ValueError, "model_name"),
        (dict(lams=[]), ValueError, "lams"),
        (dict(lams=["a", -1]), ValueError, "lams"),
        (dict(lams="0,-1"), ValueError, "lams"),
        (dict(lams=[0, float("nan")]), ValueError, "lams"),
        (dict(lora_rank=1000), ValueError, "lora_rank"),
        (dict(lora_targets=["no_such_layer"]), ValueError, "lora_targets"),
        (dict(dtype="float8"), ValueError, "dtype"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(share=1.5), ValueError, "share"),
        (dict(n_prompts=0), ValueError, "n_prompts"),
        (dict(epochs=-1), ValueError, "epochs"),
        (dict(stride=64, block_size=32), ValueError, "stride"),
        (dict(no_such_parameter=1), TypeError, "no_such_parameter"),
    ],
)
def test_params_names_the_bad_parameter(kw, err, name):
    with pytest.raises(err, match=name):
        llm.UnlearningParams(**{**TINY, **kw})


def test_params_checks_the_text_files(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("some text\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(FileNotFoundError, match="aligned_path"):
        llm.UnlearningParams(forget_path=str(good), aligned_path=str(tmp_path / "missing.txt"),
                            less_aligned_path=str(good))
    with pytest.raises(ValueError, match="less_aligned_path"):
        llm.UnlearningParams(forget_path=str(good), aligned_path=str(good), less_aligned_path=str(empty))
    with pytest.raises(ValueError, match="aligned_path"):
        llm.UnlearningParams(forget_path=str(good))
    p = llm.UnlearningParams(forget_path=str(good), aligned_path=str(good), less_aligned_path=str(good))
    assert llm.load_texts(p)["aligned"] == "some text\n"


def test_lora_rank_is_checked_against_the_smallest_targeted_layer():
    # hidden 32: q_proj is 32 x 32, fc1 32 -> 128; rank 32 fits, 33 does not
    llm.UnlearningParams(**{**TINY, "lora_rank": 32})
    with pytest.raises(ValueError, match="lora_rank=33.*32"):
        llm.UnlearningParams(**{**TINY, "lora_rank": 33})


# ---------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    p = llm.UnlearningParams(**TINY, output_dir=str(tmp_path_factory.mktemp("runs")))
    ex = llm.prepare(p)
    llm.train_base(ex)
    return ex


def test_negation_is_in_place_and_lam_zero_restores_the_base(trained):
    ex = trained
    tv, _ = llm.finetune_full(ex.model, ex.base_state, ex.train_blocks["forget"], **ex.train_kw())
    params = dict(ex.model.named_parameters())
    ptrs = {k: v.data_ptr() for k, v in params.items()}
    assert any(d.abs().max() > 0 for d in tv.deltas.values())
    tv.apply_(ex.model, -1.0, base=ex.base_state)
    moved = ex.model.state_dict()
    assert any(not torch.equal(moved[k], ex.base_state[k]) for k in tv.deltas)
    tv.apply_(ex.model, 0.0, base=ex.base_state)
    assert {k: v.data_ptr() for k, v in ex.model.named_parameters()} == ptrs  # same tensors, edited in place
    assert len(dict(ex.model.named_parameters())) == len(params)
    assert all(torch.equal(v, ex.base_state[k]) for k, v in ex.model.state_dict().items())


def test_sweep_at_lam_zero_is_the_base_and_leaves_it_unchanged(trained):
    ex = trained
    tv, _ = llm.finetune_full(ex.model, ex.base_state, ex.train_blocks["forget"], **ex.train_kw())
    evals = {"forget": ex.evals["forget"]}
    before = llm.mean_nll(ex.model, evals["forget"].blocks)
    out = llm.negation_sweep(ex.model, ex.tokenizer, ex.base_state, tv, [0.0, -1.0, 0.0], evals,
                             cont_len=ex.params.cont_len)
    assert out["nll"]["forget"][0] == out["nll"]["forget"][2] == before
    assert out["rouge_l"]["forget"][0] == out["rouge_l"]["forget"][2]
    assert out["nll"]["forget"][1] > before  # negating the forget vector raises the forget loss
    assert all(torch.equal(v, ex.base_state[k]) for k, v in ex.model.state_dict().items())


def test_lora_vector_uses_base_names_and_leaves_the_model_as_it_was(trained):
    ex = trained
    types = {n: type(m) for n, m in ex.model.named_modules()}
    grads = {n: q.requires_grad for n, q in ex.model.named_parameters()}
    tv, log = llm.finetune_lora(ex.model, ex.base_state, ex.train_blocks["forget"], **ex.train_kw(lora=True))
    assert {n: type(m) for n, m in ex.model.named_modules()} == types
    assert {n: q.requires_grad for n, q in ex.model.named_parameters()} == grads
    assert all(torch.equal(v, ex.base_state[k]) for k, v in ex.model.state_dict().items())
    targets = set(ex.params.lora_targets)
    assert tv.keys() and all(k.split(".")[-2] in targets and k.endswith(".weight") for k in tv.keys())
    for k, d in tv.deltas.items():
        assert d.shape == ex.base_state[k].shape
        assert torch.linalg.matrix_rank(d).item() <= ex.params.lora_rank
    assert isinstance(tv, TaskVector) and len(log) > 0


def test_end_to_end_writes_json_with_both_tables(tmp_path):
    p = llm.UnlearningParams(**TINY, output_dir=str(tmp_path))
    res = llm.run_unlearning(p)
    path = tmp_path / "unlearning.json"
    assert path.is_file() and not [f for f in tmp_path.iterdir() if f.name != path.name]  # no temp files left
    data = json.loads(path.read_text())
    for key in ("params", "model", "texts", "ngram_overlap", "alpha_hat", "lams", "full", "lora", "task_vectors",
                "training_loss", "seconds"):
        assert key in data
    for kind in ("full", "lora"):
        for metric in ("rouge_l", "rouge_l_se", "nll", "drop_percent", "examples"):
            assert set(data[kind][metric]) == set(llm.TEXTS)
        assert all(len(v) == len(p.lams) for v in data[kind]["rouge_l"].values())
        table = llm.results_table(res, kind)
        assert table.shape == (3, len(p.lams) + 1) and list(table.index) == list(llm.TEXTS)
        r = data[kind]["rouge_l"]["forget"]
        expected = 100 * (r[0] - r[-1]) / r[0] if r[0] else float("nan")
        assert table.loc["forget", "drop %"] == pytest.approx(expected, nan_ok=True)
        assert all(0 <= v <= 1 for vals in data[kind]["rouge_l"].values() for v in vals)
        both = llm.compare_table(res, kind)
        assert both.shape == (6, len(p.lams) + 1)
        assert both.loc["HP1 (paper)", "λ=-1"] == paper.UNLEARNING_ROUGE_L[kind]["forget"][-1]
    assert set(data["alpha_hat"]) == {"task_vector", "output", "output_delta"}
    assert all(-1 <= v <= 1 for a in data["alpha_hat"].values() for v in a.values())
    base_loss = data["training_loss"]["base"]
    assert base_loss[-1] < base_loss[0]  # Psi0' learned the texts
    # both sweeps start from the same Psi0'
    assert data["full"]["rouge_l"]["forget"][0] == data["lora"]["rouge_l"]["forget"][0]


def test_write_json_replaces(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json({"a": 1}, path)
    write_json({"a": 2, "b": [float("nan"), 1.5]}, path)
    assert json.loads(path.read_text()) == {"a": 2, "b": [None, 1.5]}
    assert [f.name for f in path.parent.iterdir()] == ["r.json"]
    with pytest.raises(TypeError):
        write_json({"a": object()}, path)
    assert json.loads(path.read_text()) == {"a": 2, "b": [None, 1.5]}
    assert [f.name for f in path.parent.iterdir()] == ["r.json"]


def test_a_local_checkpoint_takes_the_auto_class_path(tmp_path, trained):
    """A model name that is a local directory loads through AutoTokenizer / AutoModelForCausalLM offline."""
    ex = trained
    ex.model.save_pretrained(tmp_path)
    ex.tokenizer.save_pretrained(tmp_path)
    p = llm.UnlearningParams(**{**TINY, "model_name": str(tmp_path)})
    assert not p.is_tiny
    model, tok = llm.load_model(p, ex.texts)
    assert type(model) is type(ex.model) and tok.pad_token is not None
    assert all(torch.equal(v, ex.base_state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="lora_rank=33"):
        llm.UnlearningParams(**{**TINY, "model_name": str(tmp_path), "lora_rank": 33})
