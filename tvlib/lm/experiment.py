"""The paper's language-model experiment (Section 6): unlearn a text from a causal LM by negating its task vector.

Psi = Psi0' + lam * dPsi, with Psi0' a base that knows the forget, aligned and less aligned texts.
The vectors negated (`VECTORS`): the forget text's full-rank task vector ("full"), its LoRA vector on
the attention and MLP projections ("lora") and with the embeddings and output layer among the
targets ("lora_emb"); two controls: a random direction with the full vector's per-tensor norms
("random") and each other text's own vector ("own_aligned", "own_less_aligned"). On each text the
mean token loss is measured along the whole lam grid; Rouge-L of greedy continuations along the grid
for "full" and "lora" (the paper's Tables 3 and 4), at the last lam for the others. `matched_step`
also negates the LoRA vectors at the full-rank vector's step norm, to compare their selectivity at
equal size. `run_metrics` flattens one run into named scalars: one row of the chapter's multi-seed table.
Parameters: tvlib.lm.params.UnlearningParams.
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

from ..vectors.device import resolve_device, resolve_dtype
from ..vectors.io import write_json
from ..vectors.task_vector import TaskVector
from .controls import embedding_share, norm_matched_random, restrict, split
from .hf import chunk, finetune_full, finetune_lora, train_lm, train_tokenizer
from .metrics import EvalSet, draw_prompts, evaluate, output_alpha_hat
from .params import PHI15_SHAPED, TEXTS, UnlearningParams
from .texts import make_texts, ngram_overlap

__all__ = [
    "VECTORS", "ROUGE_ALONG_GRID", "OTHERS", "load_texts", "load_model", "make_eval_sets", "Experiment", "prepare",
    "train_base", "task_vectors", "measure_alpha", "sweep", "MATCHED", "matched_step", "run_metrics", "run_unlearning",
]

#: the vectors negated, by role: the forget text's (full, LoRA, LoRA with embeddings) and the controls
VECTORS = ("full", "lora", "lora_emb", "random", "own_aligned", "own_less_aligned")
#: vectors whose Rouge-L is measured along the whole lam grid (the others: at lam = 0 and the last lam)
ROUGE_ALONG_GRID = ("full", "lora")
#: the texts other than the forget text
OTHERS = ("aligned", "less_aligned")
#: vectors also negated at the full-rank vector's step norm (`matched_step`)
MATCHED = ("lora", "lora_emb")


def load_texts(p: UnlearningParams) -> dict[str, str]:
    """The three texts: read from the given paths, or generated from (seed, share, less_share, n_sentences)."""
    if all(v is None for v in p.paths().values()):
        return make_texts(seed=p.seed, share=p.share, less_share=p.less_share, n_sentences=p.n_sentences)
    return {name: Path(path).read_text(encoding="utf-8") for name, path in p.paths().items()}  # type: ignore[arg-type]


def load_model(p: UnlearningParams, texts: Mapping[str, str]) -> tuple[nn.Module, Any]:
    """(model in float32 on the device, tokenizer): a random-init Phi (tiny or Phi-1.5-shaped), or `model_name`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PhiForCausalLM

    device = resolve_device(p.device)
    if p.is_tiny or p.model_name == PHI15_SHAPED:
        tokenizer = train_tokenizer([texts[k] for k in TEXTS], p.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p.seed)
            model = PhiForCausalLM(p.random_config(len(tokenizer)))
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
    """Psi0': the model trained on all three texts (from scratch for a random-init model); kept as ex.base_state."""
    p = ex.params
    blocks = torch.cat([ex.train_blocks[k] for k in TEXTS])
    ex.logs["base"] = train_lm(ex.model, blocks, epochs=p.base_epochs, lr=p.base_lr, batch_size=p.batch_size,
                               seed=p.seed, dtype=p.dtype, device=p.device, progress=p.progress)
    ex.base_state = {k: v.detach().clone() for k, v in ex.model.state_dict().items()}


def task_vectors(ex: Experiment) -> dict[str, TaskVector]:
    """Psi0' fine-tuned on one text, as task vectors (on the CPU), by role in `VECTORS`.

    forget full rank, LoRA and LoRA with the embeddings; the random control; each other text's own vector.
    Training losses are logged in ex.logs under the same names.
    """
    p, blocks = ex.params, ex.train_blocks
    out: dict[str, TaskVector] = {}
    out["full"], ex.logs["full"] = finetune_full(ex.model, ex.base_state, blocks["forget"], **ex.train_kw())
    out["lora"], ex.logs["lora"] = finetune_lora(ex.model, ex.base_state, blocks["forget"], **ex.train_kw(lora=True))
    kw = {**ex.train_kw(lora=True), "targets": tuple(p.lora_targets) + tuple(p.lora_emb_targets)}
    out["lora_emb"], ex.logs["lora_emb"] = finetune_lora(ex.model, ex.base_state, blocks["forget"], **kw)
    out["random"] = norm_matched_random(out["full"], seed=p.seed)
    for name in OTHERS:
        out[f"own_{name}"], ex.logs[f"own_{name}"] = finetune_full(ex.model, ex.base_state, blocks[name],
                                                                   **ex.train_kw())
    return out


def measure_alpha(ex: Experiment, vectors: Mapping[str, TaskVector]) -> dict[str, dict[str, float]]:
    """alpha-hat of the aligned and less aligned texts to the forget text, by four estimators.

    "tv": cosine of the full-rank task vectors (Psi0' fine-tuned on each text, same recipe);
    "blocks": the same without the token embeddings and the output layer; "out" / "out_delta": the
    paper's mean output cosine of the fine-tuned models, on their logits and on their logit changes
    relative to Psi0', over n_alpha_blocks blocks of each of the three texts.
    """
    p = ex.params
    forget = vectors["full"]
    others = {k: vectors[f"own_{k}"] for k in OTHERS}
    g = torch.Generator().manual_seed(p.seed)
    inputs = torch.cat([b[torch.randperm(len(b), generator=g)[: p.n_alpha_blocks]]
                        for b in (ex.evals[k].blocks for k in TEXTS)])
    out = output_alpha_hat(ex.model, ex.base_state, {"forget": forget, **others}, inputs, dtype=ex.dtype)
    _, forget_blocks = split(forget)
    return {
        "tv": {k: _cosine(forget, v) for k, v in others.items()},
        "blocks": {k: _cosine(forget_blocks, split(v)[1]) for k, v in others.items()},
        "out": out["output"],
        "out_delta": out["output_delta"],
    }


def _cosine(a: TaskVector, b: TaskVector) -> float:
    """Cosine of two task vectors; NaN when one is zero (a run too short to move the weights)."""
    return float(a.cosine(b)) if a.norm() > 0 and b.norm() > 0 else float("nan")


def sweep(ex: Experiment, vectors: Mapping[str, TaskVector]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Psi0' + lam * vector on every text, for every vector of `VECTORS` and lam of the grid (model edited in place).

    Returns {vector: {"nll" | "rouge_l" | "rouge_l_se": {text: [value per lam]}, "example": {text: [...]}}};
    Rouge-L is NaN where it is not measured. lam = 0 is Psi0' itself, evaluated once.
    """
    p = ex.params
    lams = [float(x) for x in p.lams]
    kw = dict(cont_len=p.cont_len, dtype=ex.dtype)
    ex.model.load_state_dict(ex.base_state)
    base = evaluate(ex.model, ex.tokenizer, ex.evals, rouge=True, **kw)
    out: dict[str, Any] = {}
    for name in VECTORS:
        ex.model.load_state_dict(ex.base_state)  # a vector may cover only some tensors
        res = {m: {t: [] for t in TEXTS} for m in ("nll", "rouge_l", "rouge_l_se", "example")}
        for i, lam in enumerate(lams):
            rouge = i == 0 or name in ROUGE_ALONG_GRID or i == len(lams) - 1
            if lam == 0.0:
                point = base
            else:
                vectors[name].apply_(ex.model, lam, base=ex.base_state)
                point = evaluate(ex.model, ex.tokenizer, ex.evals, rouge=rouge, **kw)
            for t in TEXTS:
                res["nll"][t].append(point[t]["nll"])
                for m in ("rouge_l", "rouge_l_se"):
                    res[m][t].append(point[t].get(m, float("nan")) if rouge else float("nan"))
                res["example"][t].append(point[t].get("example", ""))
        out[name] = res
    ex.model.load_state_dict(ex.base_state)
    return out


def matched_step(ex: Experiment, vectors: Mapping[str, TaskVector]) -> dict[str, dict[str, Any]]:
    """Each vector of `MATCHED` negated at the full-rank vector's step norm: lam = -||full|| / ||vector||.

    So ||lam * vector|| = ||full||, the size of the full-rank vector's step at lam = -1: selectivity is
    compared at equal size. Returns {vector: {"lam": lam, "nll": {text: mean token loss}}}.
    """
    full = vectors["full"].norm()
    out: dict[str, dict[str, Any]] = {}
    for name in MATCHED:
        norm = vectors[name].norm()
        lam = -float(full / norm) if norm > 0 else float("nan")
        ex.model.load_state_dict(ex.base_state)
        nll = {t: float("nan") for t in TEXTS}
        if lam == lam:
            vectors[name].apply_(ex.model, lam, base=ex.base_state)
            point = evaluate(ex.model, ex.tokenizer, ex.evals, rouge=False, cont_len=ex.params.cont_len, dtype=ex.dtype)
            nll = {t: point[t]["nll"] for t in TEXTS}
        out[name] = {"lam": lam, "nll": nll}
    ex.model.load_state_dict(ex.base_state)
    return out


def run_metrics(ex: Experiment, vectors: Mapping[str, TaskVector], alpha: Mapping[str, Mapping[str, float]],
                sweeps: Mapping[str, Any], matched: Mapping[str, Any] | None = None) -> dict[str, float]:
    """One run as named scalars (the columns of the multi-seed table); unmeasured Rouge-L points are left out.

    alpha_<estimator>_<text>; emb_share (of ||dPsi_forget||^2); norm_<vector>; cos_full_lora (on the
    LoRA-targeted weights); overlap_<text> (word trigrams shared with the forget text);
    nll_<vector>_<text>_<i> and rouge_<vector>_<text>_<i> at lam index i; train_<vector> (last training loss);
    with `matched` (from `matched_step`), lam_matched_<vector> and nll_matched_<vector>_<text>.
    """
    m: dict[str, float] = {}
    for est, by_text in alpha.items():
        m.update({f"alpha_{est}_{t}": float(v) for t, v in by_text.items()})
    full = vectors["full"]
    m["emb_share"] = embedding_share(full)
    m.update({f"norm_{k}": float(vectors[k].norm()) for k in ("full", "lora", "lora_emb")})
    m["cos_full_lora"] = _cosine(restrict(full, vectors["lora"].keys()), vectors["lora"])
    m["norm_full_on_lora"] = float(restrict(full, vectors["lora"].keys()).norm())
    m.update({f"overlap_{t}": ngram_overlap(ex.texts["forget"], ex.texts[t]) for t in OTHERS})
    for name, res in sweeps.items():
        for t in TEXTS:
            for i, (nll, r) in enumerate(zip(res["nll"][t], res["rouge_l"][t])):
                m[f"nll_{name}_{t}_{i}"] = float(nll)
                if r == r:  # measured (not NaN)
                    m[f"rouge_{name}_{t}_{i}"] = float(r)
    for name, res in (matched or {}).items():
        m[f"lam_matched_{name}"] = float(res["lam"])
        m.update({f"nll_matched_{name}_{t}": float(v) for t, v in res["nll"].items()})
    m.update({f"train_{k}": float(v[-1]) for k, v in ex.logs.items() if v})
    return m


def run_unlearning(p: UnlearningParams, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The whole experiment for validated parameters: {"params", "metrics", "sweeps", "alpha", "logs", "seconds"}.

    With output_dir, also written to output_dir/unlearning.json (by the main process only).
    """
    t0 = time.perf_counter()
    ex = prepare(p)
    train_base(ex)
    vectors = task_vectors(ex)
    alpha = measure_alpha(ex, vectors)
    sweeps = sweep(ex, vectors)
    matched = matched_step(ex, vectors)
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(p).items()}
    results = {"params": params, "metrics": run_metrics(ex, vectors, alpha, sweeps, matched),
               "sweeps": sweeps, "matched": matched,
               "alpha": alpha, "logs": dict(ex.logs), "seconds": time.perf_counter() - t0}
    if output_dir is not None and int(os.environ.get("RANK", 0)) == 0:
        write_json(results, Path(output_dir) / "unlearning.json")
    return results
