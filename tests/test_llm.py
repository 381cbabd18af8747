"""Tests of the language-model experiment: texts, tokenizer, parameters, controls, sweep, the multi-seed table."""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tvlib import lm as llm
from tvlib.lm import study
from tvlib.lm.texts import (
    borrow_words,
    fantasy_world,
    make_texts,
    manners_world,
    mix_worlds,
    ngram_overlap,
)
from tvlib.vectors import TaskVector

ROOT = Path(__file__).resolve().parents[1]

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


def test_less_share_borrows_names_and_words_but_not_sentences():
    forget, manners = fantasy_world(0, half=0), manners_world(0)
    assert borrow_words(manners, forget, 0.0, seed=0) == manners
    full = borrow_words(manners, forget, 1.0, seed=0)
    assert set(full.characters) == set(forget.characters) and full.templates == manners.templates
    half = borrow_words(manners, forget, 0.5, seed=0)
    assert len(set(half.characters) & set(forget.characters)) == 6
    overlaps = [ngram_overlap(t["forget"], t["less_aligned"])
                for t in (make_texts(seed=0, less_share=q, n_sentences=150) for q in (0.0, 0.5, 1.0))]
    assert overlaps[0] < overlaps[1] < overlaps[2]


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
        (dict(lams=[-1.0, 0.0]), ValueError, "lams"),
        (dict(lora_emb_targets=["no_such_layer"]), ValueError, "lora_emb_targets"),
        (dict(less_share=-0.1), ValueError, "less_share"),
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
        llm.UnlearningParams(**TINY, forget_path=str(good), aligned_path=str(tmp_path / "missing.txt"),
                             less_aligned_path=str(good))
    with pytest.raises(ValueError, match="less_aligned_path"):
        llm.UnlearningParams(**TINY, forget_path=str(good), aligned_path=str(good), less_aligned_path=str(empty))
    with pytest.raises(ValueError, match="aligned_path"):
        llm.UnlearningParams(**{**TINY, "forget_path": str(good)})
    p = llm.UnlearningParams(**TINY, forget_path=str(good), aligned_path=str(good), less_aligned_path=str(good))
    assert llm.load_texts(p)["aligned"] == "some text\n"


def test_lora_rank_is_checked_against_the_smallest_targeted_layer():
    # hidden 32: q_proj is 32 x 32, fc1 32 -> 128; rank 32 fits, 33 does not
    llm.UnlearningParams(**{**TINY, "lora_rank": 32})
    with pytest.raises(ValueError, match="lora_rank=33.*32"):
        llm.UnlearningParams(**{**TINY, "lora_rank": 33})


# ---------------------------------------------------------------- Rouge-L and the controls


def test_rouge_l_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pairs = [("The cat sat on the mat.", "the cat is on a mat"), ("Alric found the silver key!", "silver key, Alric"),
             ("", "anything"), ("x", ""), ("A b c d e f", "f e d c b a"), ("It's 12 o'clock", "its 12 oclock")]
    texts = make_texts(seed=2, n_sentences=20)
    words = texts["forget"].split()
    pairs += [(" ".join(words[i:i + 30]), " ".join(words[i + 5:i + 40])) for i in range(0, 200, 40)]
    for ref, can in pairs:
        assert llm.rouge_l_f1(ref, can) == pytest.approx(scorer.score(ref, can)["rougeL"].fmeasure, abs=1e-12)


def _vector(seed=0):
    g = torch.Generator().manual_seed(seed)
    return TaskVector({"model.embed_tokens.weight": torch.randn(10, 4, generator=g),
                       "model.layers.0.mlp.fc1.weight": torch.randn(8, 4, generator=g) * 0.1,
                       "lm_head.weight": torch.randn(10, 4, generator=g), "lm_head.bias": torch.randn(10, generator=g)})


def test_split_and_embedding_share():
    tv = _vector()
    emb, blocks = llm.split(tv)
    assert set(emb.keys()) == {"model.embed_tokens.weight", "lm_head.weight", "lm_head.bias"}
    assert blocks.keys() == ["model.layers.0.mlp.fc1.weight"]
    assert llm.embedding_share(tv) == pytest.approx(emb.norm() ** 2 / tv.norm() ** 2)
    assert llm.embedding_share(blocks) == 0.0


def test_norm_matched_random_keeps_every_tensor_norm_and_is_seeded():
    tv = _vector()
    r = llm.norm_matched_random(tv, seed=3)
    assert r.keys() == tv.keys()
    for k in tv.keys():
        assert float(r.deltas[k].norm()) == pytest.approx(float(tv.deltas[k].norm()), rel=1e-5)
    assert abs(r.cosine(tv)) < 0.5
    assert torch.equal(llm.norm_matched_random(tv, seed=3).deltas["lm_head.bias"], r.deltas["lm_head.bias"])
    assert not torch.equal(llm.norm_matched_random(tv, seed=4).deltas["lm_head.bias"], r.deltas["lm_head.bias"])


# ---------------------------------------------------------------- the experiment


@pytest.fixture(scope="module")
def run():
    """One tiny run: the experiment, its vectors, alpha-hat, sweeps and metrics."""
    p = llm.UnlearningParams(**TINY)
    ex = llm.prepare(p)
    llm.train_base(ex)
    vectors = llm.task_vectors(ex)
    alpha = llm.measure_alpha(ex, vectors)
    sweeps = llm.sweep(ex, vectors)
    return ex, vectors, alpha, sweeps, llm.run_metrics(ex, vectors, alpha, sweeps)


def test_vectors_cover_what_they_should(run):
    ex, vectors, *_ = run
    assert set(vectors) == set(llm.VECTORS)
    assert set(vectors["full"].keys()) == {k for k, v in ex.base_state.items() if v.is_floating_point()}
    lora_keys = {k.split(".")[-2] for k in vectors["lora"].keys()}
    assert lora_keys == set(ex.params.lora_targets)
    emb, _ = llm.split(vectors["lora_emb"])
    assert {k.split(".")[-2] for k in emb.keys()} == {"embed_tokens", "lm_head"}
    assert not llm.split(vectors["lora"])[0].keys()  # LoRA on the projections does not reach the embeddings
    for k, d in vectors["lora"].deltas.items():
        assert torch.linalg.matrix_rank(d).item() <= ex.params.lora_rank


def test_the_model_is_back_at_the_base_after_every_step(run):
    ex, *_ = run
    assert all(torch.equal(v, ex.base_state[k]) for k, v in ex.model.state_dict().items())


def test_sweep_shares_lam_zero_and_measures_rouge_where_it_should(run):
    ex, vectors, alpha, sweeps, m = run
    last = len(ex.params.lams) - 1
    for name in llm.VECTORS:
        for t in llm.TEXTS:
            assert sweeps[name]["nll"][t][0] == sweeps["full"]["nll"][t][0]
            assert f"rouge_{name}_{t}_0" in m and f"rouge_{name}_{t}_{last}" in m
    assert m[f"nll_full_forget_{last}"] > m["nll_full_forget_0"]  # negation raises the forget text's loss
    assert set(alpha) == {"tv", "blocks", "out", "out_delta"}
    assert all(-1 <= v <= 1 for a in alpha.values() for v in a.values())
    assert all(math.isfinite(v) for v in m.values())
    assert 0 < m["emb_share"] < 1


def test_matched_step_negates_each_lora_vector_at_the_full_rank_step_norm(run):
    ex, vectors, alpha, sweeps, _ = run
    matched = llm.matched_step(ex, vectors)
    assert set(matched) == set(llm.MATCHED)
    full = vectors["full"].norm()
    for name, res in matched.items():
        assert res["lam"] < 0
        assert abs(abs(res["lam"]) * vectors[name].norm() - full) < 1e-6 * full
        model = vectors[name].apply_to(ex.base_state, res["lam"])
        ex.model.load_state_dict(model)
        assert llm.mean_nll(ex.model, ex.evals["forget"].blocks) == pytest.approx(res["nll"]["forget"], rel=1e-6)
    ex.model.load_state_dict(ex.base_state)
    m = llm.run_metrics(ex, vectors, alpha, sweeps, matched)
    assert m["lam_matched_lora"] == matched["lora"]["lam"] and "nll_matched_lora_emb_aligned" in m


def test_end_to_end_writes_json(tmp_path):
    res = llm.run_unlearning(llm.UnlearningParams(**TINY), output_dir=tmp_path)
    data = json.loads((tmp_path / "unlearning.json").read_text())
    assert [f.name for f in tmp_path.iterdir()] == ["unlearning.json"]
    assert set(data) == {"params", "metrics", "sweeps", "alpha", "logs", "seconds", "matched"}
    assert data["metrics"] == pytest.approx(res["metrics"])


def test_a_local_checkpoint_takes_the_auto_class_path(tmp_path, run):
    """A model name that is a local directory loads through AutoTokenizer / AutoModelForCausalLM offline."""
    ex = run[0]
    ex.model.save_pretrained(tmp_path)
    ex.tokenizer.save_pretrained(tmp_path)
    p = llm.UnlearningParams(**{**TINY, "model_name": str(tmp_path)})
    assert not p.is_tiny
    model, tok = llm.load_model(p, ex.texts)
    assert type(model) is type(ex.model) and tok.pad_token is not None
    assert all(torch.equal(v, ex.base_state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="lora_rank=33"):
        llm.UnlearningParams(**{**TINY, "model_name": str(tmp_path), "lora_rank": 33})


def test_phi15_shaped_config_has_phi15_dimensions():
    p = llm.UnlearningParams(**{**TINY, "model_name": llm.PHI15_SHAPED, "lora_rank": 8})
    n = sum(t.numel() for t in p.meta_model().parameters())
    assert 1.3e9 < n < 1.5e9  # Phi-1.5: 1.42 B parameters


# ---------------------------------------------------------------- the multi-seed table


def _table(n_seeds=5, shares=(0.0, 0.4, 0.8), lams=2):
    """A synthetic table in run_metrics' layout: damage grows with alpha; the forget text loses most."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        for share in shares:
            row = {"seed": seed, "share": share, "status": "ok", "alpha_tv_aligned": 0.6 * share + 0.02 * rng.normal(),
                   "alpha_tv_less_aligned": 0.2 + 0.02 * rng.normal(), "alpha_blocks_aligned": 0.01 * rng.normal(),
                   "alpha_blocks_less_aligned": 0.01 * rng.normal()}
            hit = {"forget": 1.0, "aligned": 0.2 + 0.6 * share, "less_aligned": 0.3}
            for v in llm.VECTORS:
                for t in llm.TEXTS:
                    h = hit[t] if v in ("full", "lora_emb") else 0.3
                    if v.startswith("own_"):
                        h = 1.0 if v == f"own_{t}" else 0.2
                    for i in range(lams):
                        row[f"nll_{v}_{t}_{i}"] = 1.0 + i * h + 0.01 * rng.normal()
                        row[f"rouge_{v}_{t}_{i}"] = 0.5 - 0.3 * i * h + 0.01 * rng.normal()
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_table_lambda_grid_is_the_chapters_default():
    assert llm.UnlearningParams().lams == study.TABLE_LAMS


def test_claims_follow_the_rules():
    c = study.claims(_table(), share=0.8)
    assert c["forget_most_loss_full"].verdict.holds
    assert c["dose_rise"].verdict.holds and c["dose_drop"].verdict.holds
    assert c["own_aligned"].verdict.holds and c["random_forget"].verdict.holds
    assert not c["alpha_blocks"].verdict.holds  # noise only: the rule says it does not hold
    assert c["alpha_less_aligned"].verdict.word == "agrees"  # 0.2 vs 0.239, tol 0.1
    assert c["alpha_aligned"].verdict.word == "agrees"  # 0.48 vs 0.498
    assert all(isinstance(x.verdict.detail, str) for x in c.values())
    # in this table the Rouge-L drop grows with alpha-hat too: the dose-response is not reversed
    assert c["dose_drop"].verdict.holds and c["dose_drop_reversed"].verdict.word == "not reversed"
    assert c["alpha_aligned"].kind == "calibrated" and c["forget_most_loss_full"].kind == "tested"
    table = study.claims_table(c, held_out={"alpha_aligned": c["alpha_aligned"]}, held_out_label="held out")
    row = table.set_index("claim").loc[c["alpha_aligned"].claim]
    assert row["verdict"] == "—" and row["held out"] == "agrees"  # a calibrated claim has no verdict in-sample


def test_share_claims_read_a_table_of_one_share_and_see_a_reversed_dose_response():
    df = _table()
    one = df[df["share"] == 0.8].drop(columns="share")  # a grid at a fixed share has no share column
    held = study.share_claims(one, 0.8)
    assert set(held) < set(study.claims(df, share=0.8)) and "dose_rise" not in held
    assert held["forget_most_loss_full"].verdict.holds
    rev = df.copy()
    for t in ("aligned",):  # Rouge-L drop shrinking as alpha-hat grows
        for i in (1, 2):
            rev[f"rouge_full_{t}_{i}"] = rev[f"rouge_full_{t}_0"] - 0.05 * (1 - rev["share"]) * i
    c = study.claims(rev, share=0.8)
    assert c["dose_drop_reversed"].verdict.word == "reversed" and not c["dose_drop"].verdict.holds


def _matched(df, spread_lora: float, spread_emb: float):
    """df with equal-norm columns: forget rise 1, the other texts' rise the given fraction of it (plus noise)."""
    rng = np.random.default_rng(1)
    df = df.copy()
    for v, spread in (("lora", spread_lora), ("lora_emb", spread_emb)):
        df[f"lam_matched_{v}"] = -0.5
        for t in llm.TEXTS:
            rise = 1.0 if t == "forget" else spread
            df[f"nll_matched_{v}_{t}"] = df[f"nll_{v}_{t}_0"] + rise + 0.01 * rng.normal(size=len(df))
    return study.at_share(df, 0.8)


def test_equal_norm_selectivity_rule_says_holds_or_not_from_the_data():
    df = _table(lams=len(study.TABLE_LAMS))
    full = study.selectivity(study.at_share(df, 0.8), "full", matched=True)  # synthetic full rank: 0.5
    np.testing.assert_allclose(full, study.selectivity(study.at_share(df, 0.8), "full"))
    more_selective = study.matched_claims(_matched(df, spread_lora=0.8, spread_emb=0.3))
    assert more_selective["matched_emb"].verdict.holds and more_selective["matched_lora_full"].verdict.holds
    assert not more_selective["matched_emb_full"].verdict.holds  # 0.3 < 0.5: not less selective than full
    not_more = study.matched_claims(_matched(df, spread_lora=0.8, spread_emb=0.8))
    assert not not_more["matched_emb"].verdict.holds and not_more["matched_emb_full"].verdict.holds
    values = study.matched_values(_matched(df, 0.8, 0.3))
    assert values["unl_v_matched_emb"] == "holds" and values["unl_m_spread_lora"].startswith("0.80")
    with pytest.raises(ValueError, match="last lambda"):
        study.selectivity(_table(lams=2), "full", matched=True)
    with pytest.raises(ValueError, match="vector='random'"):
        study.selectivity(df, "random", matched=True)


def test_derived_measures():
    df = _table(lams=3)
    m = study.at_share(df, 0.8)
    np.testing.assert_allclose(study.rise(m, "full", "aligned"), m["nll_full_aligned_2"] - m["nll_full_aligned_0"])
    r0, r2 = m["rouge_full_forget_0"], m["rouge_full_forget_2"]
    np.testing.assert_allclose(study.drop(m, "full", "forget"), 100 * (r0 - r2) / r0)
    assert study.curve(m, "nll", "lora", "forget").shape == (5, 3)
    assert study.mean_sd([1.0, 2.0, 3.0], "{:.1f}") == "2.0 ± 1.0"
    assert (study.dose_slopes(df) > 0).all()


def test_the_committed_table_covers_its_grid():
    path = ROOT / "tvlib" / "tables" / "unlearning-seeds.csv"
    if not path.is_file():
        pytest.skip("the multi-seed table has not been generated yet")
    import yaml

    grid = yaml.safe_load((ROOT / "grids" / "unlearning-seeds.yaml").read_text())["sweep"]
    df = study.load(path)
    have = {(int(s), float(x)) for s, x in zip(df["seed"], df["share"])}
    want = {(s, float(x)) for s in grid["seed"] for x in grid["share"]}
    assert have == want, f"missing runs: {sorted(want - have)}"


def test_the_small_grid_point_reproduces_its_committed_row():
    """grids/unlearning-smoke.yaml, run through the chapter by tvlib-batch, is the row re-run here with tvlib.lm."""
    import pandas as pd
    import yaml

    grid = yaml.safe_load((ROOT / "grids" / "unlearning-smoke.yaml").read_text())
    committed = pd.read_csv(ROOT / "tvlib" / "tables" / "unlearning-smoke.csv")
    assert len(committed) == 1 and committed["status"].iloc[0] == "ok"
    seed = grid["sweep"]["seed"][0]
    m = llm.run_unlearning(llm.UnlearningParams(**grid["fixed"], seed=seed))["metrics"]
    row = committed.iloc[0].to_dict()
    assert set(m) <= set(row)
    diff = study.row_differences(row, {k: v for k, v in m.items() if not k.startswith("rouge_")})
    worst = next(iter(diff.items()))
    assert worst[1] < 1e-3, f"largest difference from the committed row: {worst}"
    rouge = study.row_differences(row, {k: v for k, v in m.items() if k.startswith("rouge_")})
    assert np.mean(list(rouge.values())) < 0.05  # greedy decoding may flip a token across CPUs


def test_error_hints_name_commands_that_exist():
    """The download hint names the CLI that the pinned huggingface_hub ships (`hf`; `huggingface-cli` is gone)."""
    import re
    import shutil
    import sys

    texts = {p: p.read_text() for p in [*(ROOT / "tvlib").rglob("*.py"), *(ROOT / "book").glob("*.md")]}
    assert not [p for p, t in texts.items() if "huggingface-cli" in t]
    commands = {m for t in texts.values() for m in re.findall(r"`(hf \w+)", t)}
    assert commands, "expected the download hint to name `hf download`"
    hf = shutil.which("hf", path=str(Path(sys.executable).parent))
    assert hf, "the pinned huggingface_hub ships no `hf` command"
    for cmd in commands:
        assert subprocess.run([hf, *cmd.split()[1:], "--help"], capture_output=True).returncode == 0, cmd
