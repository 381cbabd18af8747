"""The paper's language-model experiment (Section 6): unlearn a text from a causal LM by negating its task vector.

Psi = Psi0' + lam * dPsi_forget, with Psi0' a base that knows the forget, aligned and less aligned
texts, dPsi_forget the full-rank or LoRA task vector of fine-tuning Psi0' on the forget text, and
Rouge-L of greedy continuations (plus the mean token loss) measured on each text along the lam grid.
The default model is a small PhiForCausalLM trained here from scratch with a locally trained
byte-level BPE tokenizer; any causal LM on the local disk (e.g. `microsoft/phi-1_5`) takes the
same code path. Parameters: tvlib.lm.params.UnlearningParams.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import paper
from ..vectors.device import resolve_device, resolve_dtype
from ..vectors.io import write_json
from .hf import (
    chunk,
    finetune_full,
    finetune_lora,
    tiny_config,
    train_lm,
    train_tokenizer,
)
from .metrics import (
    EvalSet,
    draw_prompts,
    negation_sweep,
    output_alpha_hat,
    relative_drop,
)
from .params import TEXTS, TINY, UnlearningParams
from .texts import make_texts, ngram_overlap

__all__ = [
    "load_texts",
    "load_model",
    "make_eval_sets",
    "results_table",
    "compare_table",
    "Experiment",
    "prepare",
    "train_base",
    "forget_vectors",
    "measure_alpha",
    "sweep",
    "summarize",
    "save_results",
    "run_unlearning",
]


def load_texts(p: UnlearningParams) -> dict[str, str]:
    """The three texts: read from the given paths, or generated from (seed, share, n_sentences)."""
    if all(v is None for v in p.paths().values()):
        return make_texts(seed=p.seed, share=p.share, n_sentences=p.n_sentences)
    return {name: Path(path).read_text(encoding="utf-8") for name, path in p.paths().items()}  # type: ignore[arg-type]


def load_model(p: UnlearningParams, texts: Mapping[str, str]) -> tuple[nn.Module, Any]:
    """(model in float32 on the device, tokenizer): the tiny model built from scratch, or `model_name` from disk."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PhiForCausalLM

    device = resolve_device(p.device)
    if p.is_tiny:
        tokenizer = train_tokenizer([texts[k] for k in TEXTS], p.vocab_size)
        config = tiny_config(len(tokenizer), hidden_size=p.hidden_size, num_layers=p.num_layers,
                             num_heads=p.num_heads, block_size=max(p.block_size, p.prompt_len + p.cont_len))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            model = PhiForCausalLM(config)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(p.model_name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(p.model_name, local_files_only=True, dtype=torch.float32)
        except OSError as e:
            raise ValueError(f"model_name={p.model_name!r} cannot be loaded offline: {e}") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def make_eval_sets(ids: Mapping[str, Tensor], tokenizer: Any, p: UnlearningParams) -> dict[str, EvalSet]:
    """Prompts drawn with the seed from every text, their reference continuations, and loss blocks."""
    out = {}
    for k, (name, x) in enumerate(ids.items()):
        starts = draw_prompts(len(x), n_prompts=p.n_prompts, prompt_len=p.prompt_len, cont_len=p.cont_len,
                              seed=p.seed + k)
        prompts = torch.stack([x[s:s + p.prompt_len] for s in starts])
        refs = [tokenizer.decode(x[s + p.prompt_len:s + p.prompt_len + p.cont_len]) for s in starts]
        out[name] = EvalSet(prompts, refs, chunk(x, p.block_size, p.block_size))
    return out


def results_table(results: Mapping[str, Any], kind: str = "full", metric: str = "rouge_l"):
    """A pandas DataFrame in the layout of the paper's Tables 3 (kind="full") and 4 (kind="lora")."""
    import pandas as pd

    sweep = results[kind]
    cols = [f"λ={lam:g}" for lam in results["lams"]]
    df = pd.DataFrame({name: vals for name, vals in sweep[metric].items()}, index=cols).T
    if metric == "rouge_l":
        df["drop %"] = [sweep["drop_percent"][k] for k in df.index]
    return df


def compare_table(results: Mapping[str, Any], kind: str = "full"):
    """Our Rouge-L table next to the paper's (Table 3 for kind="full", 4 for "lora"), rows interleaved."""
    import pandas as pd

    ours = results_table(results, kind)
    rows = []
    for name in TEXTS:
        rows.append(pd.Series(ours.loc[name].to_numpy(), name=f"{name} (here)"))
        ref = paper.UNLEARNING_ROUGE_L[kind][name]
        vals = [ref[paper.UNLEARNING_LAMS.index(lam)] if lam in paper.UNLEARNING_LAMS else float("nan")
                for lam in results["lams"]]
        rows.append(pd.Series(vals + [100.0 * relative_drop(ref)], name=f"{paper.UNLEARNING_NAMES[name]} (paper)"))
    return pd.DataFrame(rows).set_axis(ours.columns, axis=1)


@dataclass
class Experiment:
    """Everything the steps of the experiment share: parameters, texts, model, tokenizer, Psi0' and the tokens."""

    params: UnlearningParams
    texts: dict[str, str]
    model: nn.Module
    tokenizer: Any
    ids: dict[str, Tensor]
    train_blocks: dict[str, Tensor]
    evals: dict[str, EvalSet]
    base_state: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype."""
        return resolve_dtype(self.params.dtype)

    def train_kw(self, lora: bool = False) -> dict[str, Any]:
        """Keyword arguments of a full-rank (or, with lora=True, a LoRA) fine-tuning of Psi0'."""
        p = self.params
        kw = dict(epochs=p.lora_epochs if lora else p.epochs, lr=p.lora_lr if lora else p.lr,
                  batch_size=p.batch_size, seed=p.seed, dtype=p.dtype, device=p.device, progress=p.progress)
        if lora:
            kw.update(rank=p.lora_rank, alpha=p.lora_alpha, targets=p.lora_targets)
        return kw


def prepare(p: UnlearningParams) -> Experiment:
    """Texts, tokenizer, model, training blocks and evaluation sets (no training yet)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    texts = load_texts(p)
    model, tokenizer = load_model(p, texts)
    ids = {k: torch.tensor(tokenizer(texts[k], add_special_tokens=False)["input_ids"]) for k in TEXTS}
    evals = make_eval_sets(ids, tokenizer, p)
    blocks = {k: chunk(ids[k], p.block_size, p.stride) for k in TEXTS}
    return Experiment(p, texts, model, tokenizer, ids, blocks, evals)


def train_base(ex: Experiment) -> None:
    """Psi0': the model trained on all three texts (from scratch for the tiny model); kept as ex.base_state."""
    p = ex.params
    blocks = torch.cat([ex.train_blocks[k] for k in TEXTS])
    ex.logs["base"] = train_lm(ex.model, blocks, epochs=p.base_epochs, lr=p.base_lr, batch_size=p.batch_size,
                               seed=p.seed, dtype=p.dtype, device=p.device, progress=p.progress)
    ex.base_state = {k: v.detach().clone() for k, v in ex.model.state_dict().items()}


def forget_vectors(ex: Experiment) -> tuple[Any, Any]:
    """dPsi_forget, full-rank and LoRA: Psi0' fine-tuned on the forget text (losses logged in ex.logs)."""
    blocks = ex.train_blocks["forget"]
    full, ex.logs["forget"] = finetune_full(ex.model, ex.base_state, blocks, **ex.train_kw())
    lora, ex.logs["forget_lora"] = finetune_lora(ex.model, ex.base_state, blocks, **ex.train_kw(lora=True))
    return full, lora


def measure_alpha(ex: Experiment, forget: Any) -> dict[str, dict[str, float]]:
    """alpha-hat of the aligned and less aligned texts to the forget text (three estimators, see the chapter).

    "task_vector": cosine of dPsi_forget and dPsi_other (Psi0' fine-tuned on each text, same recipe);
    "output" / "output_delta": output_alpha_hat on n_alpha_blocks blocks of each of the three texts.
    """
    p = ex.params
    vectors = {"forget": forget}
    for name in ("aligned", "less_aligned"):
        vectors[name], ex.logs[name] = finetune_full(ex.model, ex.base_state, ex.train_blocks[name], **ex.train_kw())
    g = torch.Generator().manual_seed(p.seed)
    inputs = torch.cat([b[torch.randperm(len(b), generator=g)[: p.n_alpha_blocks]]
                        for b in (ex.evals[k].blocks for k in TEXTS)])
    out = output_alpha_hat(ex.model, ex.base_state, vectors, inputs, dtype=ex.dtype)
    tv = {k: float(forget.cosine(vectors[k])) for k in ("aligned", "less_aligned")}
    return {"task_vector": tv, **out}


def sweep(ex: Experiment, task_vector: Any, desc: str = "sweep") -> dict[str, Any]:
    """negation_sweep of Psi0' + lam * task_vector over the parameters' lam grid, on all three texts."""
    p = ex.params
    return negation_sweep(ex.model, ex.tokenizer, ex.base_state, task_vector, p.lams, ex.evals,
                          cont_len=p.cont_len, dtype=ex.dtype, progress=p.progress, desc=desc)


def _restricted_cosine(full: Any, low: Any) -> float:
    """Cosine of two task vectors over the tensors of the second (the LoRA-targeted weights)."""
    return float(type(full)({k: full.deltas[k] for k in low.deltas}).cosine(low))


def summarize(ex: Experiment, full: Any, lora: Any, alpha: dict | None, sweeps: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters, data sizes, alpha-hat, both sweeps ("full", "lora") and training logs as one JSON-ready dict."""
    p = ex.params
    params = asdict(p)
    params["lora_targets"], params["lams"] = list(p.lora_targets), list(p.lams)
    return {
        "params": params,
        "model": {"name": p.model_name or TINY, "n_parameters": sum(t.numel() for t in ex.model.parameters())},
        "texts": {k: {"n_tokens": len(ex.ids[k]), "n_chars": len(ex.texts[k]),
                      "source": p.paths()[k] or "generated"} for k in TEXTS},
        "ngram_overlap": {k: ngram_overlap(ex.texts["forget"], ex.texts[k]) for k in ("aligned", "less_aligned")},
        "alpha_hat": alpha,
        "lams": list(p.lams),
        "full": sweeps["full"],
        "lora": sweeps["lora"],
        "task_vectors": {"full_norm": float(full.norm()), "lora_norm": float(lora.norm()),
                         "cosine_full_lora": _restricted_cosine(full, lora)},
        "training_loss": dict(ex.logs),
        "prompt": {k: ex.tokenizer.decode(ex.evals[k].prompts[0]) for k in TEXTS},
        "reference": {k: ex.evals[k].references[0] for k in TEXTS},
    }


def save_results(results: Mapping[str, Any], output_dir: str | os.PathLike) -> Path | None:
    """Write results to output_dir/unlearning.json atomically (only on the main process); the path."""
    if int(os.environ.get("RANK", 0)) != 0:
        return None
    return write_json(results, Path(output_dir) / "unlearning.json")


def run_unlearning(p: UnlearningParams, *, write: bool = True) -> dict[str, Any]:
    """The whole experiment for validated parameters; the results dict (also saved as JSON if `write`)."""
    t0 = time.perf_counter()
    ex = prepare(p)
    train_base(ex)
    full, lora = forget_vectors(ex)
    alpha = measure_alpha(ex, full) if p.measure_alpha else None
    sweeps = {"full": sweep(ex, full, "full-rank sweep"), "lora": sweep(ex, lora, "LoRA sweep")}
    results = summarize(ex, full, lora, alpha, sweeps)
    results["seconds"] = time.perf_counter() - t0
    if write:
        save_results(results, p.output_dir)
    return results
