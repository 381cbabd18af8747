"""One run of the pre-trained-encoder chapter: the encoder, the tasks' data, fine-tuning, alpha-hat and merged models.

`setup` loads Psi0 (the encoder and its fixed head) and the run's sentences, one training and one test
set per domain (tvlib.encoder.texts: each task is trained and scored on sentences of its own domain);
`finetune_tasks` the task vectors of named tasks (full or LoRA); `alpha_hat` the paper's estimator
between two fine-tuned models; `lam_curves` and `ood_grid` evaluate merged models
Psi0 + sum_i lam_i dPsi_i on each task's test sentences.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics import hinge, output_cosine
from ..vectors.device import resolve_device
from ..vectors.task_vector import TaskVector, merge
from . import texts
from .load import load_encoder
from .model import Tokens, finetune, fixed_head, logits, tokenize
from .params import PretrainedParams

__all__ = ["Run", "numerics", "setup", "finetune_tasks", "outputs", "alpha_hat", "accuracy", "hinge_error",
           "lam_curves", "ood_grid", "merged_outputs", "outputs_of", "pair_outputs"]


@contextlib.contextmanager
def numerics(p: PretrainedParams) -> Iterator[None]:
    """float32, p.threads CPU threads and HF_HUB_OFFLINE=1 (unless set), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(p.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Run:
    """Psi0 and the data of one run: encoder, fixed head, base weights, training and test sentences per domain."""

    p: PretrainedParams
    encoder: nn.Module
    head: Tensor
    base: dict[str, Tensor]
    tasks: dict[str, texts.Task]
    train: dict[str, texts.Sentences]
    test: dict[str, texts.Sentences]
    train_tokens: dict[str, Tokens]
    test_tokens: dict[str, Tokens]

    def domain(self, task: str) -> str:
        return self.tasks[task].domain

    def y_test(self, task: str) -> np.ndarray:
        """The task's labels of its own test sentences."""
        return self.test[self.domain(task)].labels(self.tasks[task])


def setup(p: PretrainedParams) -> Run:
    """The encoder (hash-checked when shipped), the fixed head and the sentences of seed p.seed."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report lists the unused pooler: expected
    try:
        encoder, tokenizer, _ = load_encoder(p.model_name)
    finally:
        transformers.logging.set_verbosity(verbosity)
    device = resolve_device(p.device)
    encoder.to(device)
    head = fixed_head(encoder.config.hidden_size, p.head_seed, p.head_scale)
    base = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    tasks = p.tasks()
    domains = sorted({t.domain for t in tasks.values()})
    train = {d: texts.sample(p.n_train, seed=p.seed, domain=d) for d in domains}
    test = {d: texts.sample(p.n_test, seed=p.test_seed, domain=d) for d in domains}

    def tok(s: texts.Sentences) -> Tokens:
        return tokenize(tokenizer, s.text, p.max_len).to(device)

    return Run(p, encoder, head, base, tasks, train, test, {d: tok(s) for d, s in train.items()},
               {d: tok(s) for d, s in test.items()})


def finetune_tasks(run: Run, names: Sequence[str], method: str = "full") -> dict[str, TaskVector]:
    """{name: task vector} of fine-tuning Psi0 on each named task with seed p.seed (method 'full' or 'lora')."""
    p, out = run.p, {}
    for i, name in enumerate(names):
        kw = dict(steps=p.steps, batch_size=p.batch_size, seed=p.seed, freeze_embeddings=p.freeze_embeddings)
        if method == "lora":
            kw.update(lr=p.lora_lr, lora_rank=p.lora_rank, lora_alpha=p.lora_alpha)
        else:
            kw.update(lr=p.lr)
        d = run.domain(name)
        out[name], _ = finetune(run.encoder, run.head, run.train_tokens[d], run.train[d].labels(run.tasks[name]),
                                method=method, **kw)
    return out


def outputs_of(run: Run, tasks: Sequence[str], encoder: nn.Module | None = None,
               state_dict: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """{task: logits (n_test, 2) on that task's test sentences} of an encoder (default the run's, with the
    weights state_dict if given; e.g. a merged checkpoint loaded with from_pretrained), one pass per domain."""
    enc = run.encoder if encoder is None else encoder
    by_domain = {d: logits(enc, run.head, run.test_tokens[d], state_dict) for d in {run.domain(t) for t in tasks}}
    return {t: by_domain[run.domain(t)] for t in tasks}


def merged_outputs(run: Run, vectors: Sequence[TaskVector], lams: Sequence[float], tasks: Sequence[str]
                   ) -> dict[str, Tensor]:
    """{task: logits (n_test, 2) of Psi0 + sum_i lams_i vectors_i on that task's test sentences}."""
    return outputs_of(run, tasks, state_dict=merge(run.base, list(vectors), list(lams), strict=False)
                      if vectors else run.base)


def outputs(run: Run, vector: TaskVector | None, tasks: Sequence[str]) -> dict[str, Tensor]:
    """{task: logits of Psi0 + vector (Psi0 itself for None) on that task's test sentences}."""
    return merged_outputs(run, [vector] if vector is not None else [], [1.0] if vector is not None else [], tasks)


def pair_outputs(run: Run, fa: Mapping[str, Tensor], fb: Mapping[str, Tensor], a: str, b: str
                 ) -> tuple[Tensor, Tensor]:
    """Two models' logits on the test sentences of both tasks a and b (each domain once): where alpha-hat is measured."""
    doms = sorted({run.domain(a), run.domain(b)})
    first = {run.domain(t): t for t in (b, a)}
    return (torch.cat([fa[first[d]] for d in doms]), torch.cat([fb[first[d]] for d in doms]))


def alpha_hat(f1: Tensor, f2: Tensor) -> float:
    """The paper's alpha-hat: the mean over test sentences of the cosine of two models' logit vectors."""
    return float(output_cosine(f1, f2, vector_outputs=True))


def accuracy(f: Tensor, y: np.ndarray) -> float:
    """Share of sentences whose sign of f_1 - f_0 is the label y in {-1, +1}."""
    return float(((f[:, 1] - f[:, 0]).numpy() * y > 0).mean())


def hinge_error(f: Tensor, y: np.ndarray) -> float:
    """Mean hinge loss of the output z = (f_1 - f_0) / 2 = a.h against y."""
    z = (f[:, 1] - f[:, 0]) / 2
    return float(hinge(z, torch.as_tensor(y, dtype=z.dtype)).mean())


def lam_curves(run: Run, v1: TaskVector, v2: TaskVector, lams: Sequence[float], tasks: tuple[str, str]
               ) -> dict[str, np.ndarray]:
    """Accuracy and hinge error on (T1, T2) of Psi0 + v1 + lam v2 for each lam: arrays (lams, 2)."""
    acc, err = np.zeros((len(lams), 2)), np.zeros((len(lams), 2))
    for k, lam in enumerate(lams):
        f = merged_outputs(run, [v1, v2], [1.0, lam], tasks)
        for j, t in enumerate(tasks):
            acc[k, j], err[k, j] = accuracy(f[t], run.y_test(t)), hinge_error(f[t], run.y_test(t))
    return {"accuracy": acc, "error": err}


def ood_grid(run: Run, v1: TaskVector, v2: TaskVector, lams: Sequence[float], target: str) -> np.ndarray:
    """Accuracy on the target task of Psi0 + lam1 v1 + lam2 v2 over the grid lams x lams: array (L, L)."""
    out = np.zeros((len(lams), len(lams)))
    for i, l1 in enumerate(lams):
        for j, l2 in enumerate(lams):
            out[i, j] = accuracy(merged_outputs(run, [v1, v2], [l1, l2], [target])[target], run.y_test(target))
    return out
