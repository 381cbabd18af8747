"""A small Vision Transformer for 3x8x8 images: pre-training, fine-tuning and evaluating merged weights.

The book's stand-in for the paper's ViT-Small/16 (Section 6): patch embedding, a class token,
learned positions, pre-norm encoder blocks and a linear head. Merged models are evaluated from
state dicts with torch.func.functional_call, many at once with torch.func.vmap.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..metrics import hinge, output_cosine
from ..vectors.device import resolve_device
from ..vectors.task_vector import TaskVector, merge
from .data import ColorParityTask, DigitSplit

__all__ = [
    "ViT",
    "with_parity_head",
    "train",
    "logits",
    "accuracy",
    "merged_logits",
    "merged_accuracy",
    "alpha_hat",
    "train_many",
    "finetune_vits",
    "lam_curves",
    "parity_error",
    "merged_metrics",
]

StateDict = Mapping[str, Tensor]


class Block(nn.Module):
    """Pre-norm encoder block: multi-head self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, device=device)
        self.qkv = nn.Linear(dim, 3 * dim, device=device)
        self.proj = nn.Linear(dim, dim, device=device)
        self.norm2 = nn.LayerNorm(dim, device=device)
        self.fc1 = nn.Linear(dim, mlp_dim, device=device)
        self.fc2 = nn.Linear(mlp_dim, dim, device=device)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5  # (n, heads, t, t)
        att = scores.softmax(-1) @ v  # (n, heads, t, d / heads)
        x = x + self.proj(att.transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Vision Transformer: patches -> class token + positions -> `depth` blocks -> LayerNorm -> linear head."""

    def __init__(
        self,
        *,
        image_size: int = 8,
        patch_size: int = 2,
        channels: int = 3,
        dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        mlp_dim: int = 64,
        n_classes: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        sizes = dict(image_size=image_size, patch_size=patch_size, channels=channels, dim=dim, depth=depth,
                     heads=heads, mlp_dim=mlp_dim, n_classes=n_classes)
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"{bad}: expected positive integers")
        if image_size % patch_size:
            raise ValueError(f"patch_size={patch_size} does not divide image_size={image_size}")
        if dim % heads:
            raise ValueError(f"heads={heads} does not divide dim={dim}")
        self.config = sizes
        n_patches = (image_size // patch_size) ** 2
        meta = "meta"  # built without touching the global RNG, then initialised from `seed`
        self.patch = nn.Conv2d(channels, dim, patch_size, stride=patch_size, device=meta)
        self.cls = nn.Parameter(torch.empty(1, 1, dim, device=meta))
        self.pos = nn.Parameter(torch.empty(1, n_patches + 1, dim, device=meta))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim, device=meta) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, device=meta)
        self.head = nn.Linear(dim, n_classes, device=meta)
        self.to_empty(device="cpu")
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """ViT initialisation: weights, class token and positions N(0, 0.02^2); biases 0; LayerNorms 1 and 0."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if "norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))

    @property
    def n_classes(self) -> int:
        """Number of logits the head returns."""
        return self.head.out_features

    def features(self, x: Tensor) -> Tensor:
        """The class token's representation after the final LayerNorm, (n, dim)."""
        if x.ndim != 4:
            raise ValueError(f"images must have shape (n, channels, height, width); got {tuple(x.shape)}")
        z = self.patch(x).flatten(2).transpose(1, 2)  # (n, patches, dim)
        z = torch.cat([self.cls.expand(len(z), -1, -1), z], dim=1) + self.pos
        for block in self.blocks:
            z = block(z)
        return self.norm(z[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        """Logits (n, n_classes) of images x (n, channels, image_size, image_size)."""
        return self.head(self.features(x))


def with_parity_head(model: ViT, *, seed: int) -> ViT:
    """A copy of `model` with a fixed (untrained) two-logit head: logits (-a.h, a.h), a_j = +-1/sqrt(dim) at random.

    The analogue of the paper's fixed output layer a (eq. 4): fine-tuning and task vectors move the body only.
    """
    out = copy.deepcopy(model)
    dim = model.head.in_features
    g = torch.Generator().manual_seed(seed)
    a = (torch.randint(0, 2, (dim,), generator=g).float() * 2 - 1) / dim**0.5
    out.head = nn.Linear(dim, 2, device=model.head.weight.device)
    with torch.no_grad():
        out.head.weight.copy_(torch.stack([-a, a]))
        out.head.bias.zero_()
    out.head.requires_grad_(False)
    out.config = {**model.config, "n_classes": 2}
    return out


_LOSSES = {
    "cross_entropy": lambda out, t: F.cross_entropy(out, t, reduction="none"),
    "hinge": lambda out, t: F.multi_margin_loss(out, t, margin=1.0, reduction="none"),
}


def train_many(
    model: ViT,
    X: Tensor,
    y: Tensor,
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    loss: str = "cross_entropy",
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Tensor], Tensor]:
    """R independent AdamW trainings of copies of `model`, run together with torch.func.vmap.

    Replica r trains on (X[r], y[r]) (X: (R, n, channels, h, w), y: (R, n)) with shuffled minibatches
    drawn from seeds[r]. `loss` is "cross_entropy" or "hinge", the multi-class margin loss
    mean_j max(0, 1 - (f_y - f_j)); for two logits the paper's hinge loss on their difference.
    Parameters with requires_grad False stay fixed. Returns the trained parameters stacked (R, ...) by
    name (on `device`) and the per-step loss (steps, R).
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss={loss!r}: expected one of {sorted(_LOSSES)}")
    R = len(seeds)
    if X.ndim != 5 or y.shape != X.shape[:2] or len(X) != R or X.shape[1] == 0:
        raise ValueError(
            f"X {tuple(X.shape)}, y {tuple(y.shape)}, {R} seeds: expected X (R, n, channels, h, w), y (R, n) "
            "with R = len(seeds) and n > 0"
        )
    if epochs < 0 or batch_size < 1 or not lr > 0 or weight_decay < 0:
        raise ValueError(
            f"epochs={epochs}, batch_size={batch_size}, lr={lr}, weight_decay={weight_decay}: "
            "expected epochs >= 0, batch_size >= 1, lr > 0, weight_decay >= 0"
        )
    if int(y.max()) >= model.n_classes or int(y.min()) < 0:
        raise ValueError(f"labels span {int(y.min())}..{int(y.max())}: the model has {model.n_classes} classes")
    loss_fn = _LOSSES[loss]
    device = resolve_device(device)
    model = copy.deepcopy(model).to(device)  # frozen parameters (requires_grad False) are read from it
    params = {
        k: p.detach().unsqueeze(0).repeat(R, *[1] * p.ndim).requires_grad_()
        for k, p in model.named_parameters()
        if p.requires_grad
    }
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    forward = torch.vmap(lambda p, x: functional_call(model, p, (x,)))
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    X, y = X.to(device), y.to(device)
    rows = torch.arange(R, device=device)[:, None]
    n = X.shape[1]
    losses = []
    for _ in range(epochs):
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        for start in range(0, n, batch_size):
            idx = orders[:, start : start + batch_size]
            out = forward(params, X[rows, idx])  # (R, b, classes)
            per_replica = loss_fn(out.flatten(0, 1), y[rows, idx].flatten()).view(R, -1).mean(1)
            opt.zero_grad(set_to_none=True)
            # replica r's parameters enter only replica r's loss: the sum keeps the runs independent
            per_replica.sum().backward()
            opt.step()
            losses.append(per_replica.detach())
    trained = {k: v.detach() for k, v in params.items()}
    return trained, (torch.stack(losses).cpu() if losses else torch.empty(0, R))


def train(
    model: ViT,
    X: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    loss: str = "cross_entropy",
    device: str | torch.device = "cpu",
) -> tuple[ViT, Tensor]:
    """A trained copy of `model` (one run of train_many) and its per-step loss; `model` is unchanged."""
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} images and y {len(y)} labels: expected the same number")
    device = resolve_device(device)
    params, losses = train_many(model, X[None], y[None], seeds=[seed], epochs=epochs, batch_size=batch_size,
                                lr=lr, weight_decay=weight_decay, loss=loss, device=device)
    tuned = copy.deepcopy(model).to(device)
    with torch.no_grad():
        for k, p in tuned.named_parameters():
            if k in params:
                p.copy_(params[k][0])
    return tuned.eval(), losses[:, 0]


def _params(model: nn.Module, state_dict: StateDict | None) -> dict[str, Tensor]:
    """The tensors to run `model` with: `state_dict` cast to the model's dtype and device, or its own."""
    own = dict(model.named_parameters())
    if state_dict is None:
        return own
    missing, extra = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
    if missing or extra:
        raise ValueError(f"state dict does not match the model: missing {missing}, unexpected {extra}")
    return {k: state_dict[k].to(dtype=own[k].dtype, device=own[k].device) for k in own}


@torch.inference_mode()
def logits(model: nn.Module, X: Tensor, *, state_dict: StateDict | None = None, batch_size: int = 4096) -> Tensor:
    """Logits (n, classes) of `model`, run with the weights `state_dict` if given, on images X."""
    params = _params(model, state_dict)
    device = next(iter(params.values())).device
    out = [functional_call(model, params, (X[i : i + batch_size].to(device),)) for i in range(0, len(X), batch_size)]
    return torch.cat(out).float().cpu()


def accuracy(model: nn.Module, X: Tensor, y: Tensor, *, state_dict: StateDict | None = None) -> float:
    """Fraction of images whose largest logit is the label."""
    return (logits(model, X, state_dict=state_dict).argmax(-1) == y.cpu()).float().mean().item()


@torch.inference_mode()
def merged_logits(
    model: nn.Module,
    base: StateDict,
    vectors: Sequence[TaskVector],
    lams: Tensor | np.ndarray | Sequence[Sequence[float]],
    X: Tensor,
    *,
    chunk: int = 16,
) -> Tensor:
    """Logits (K, n, classes) of the K merged models merge(base, vectors, lams[k]) (eq. 2) on images X.

    The state dicts of `chunk` merged models at a time are stacked and run together with torch.func.vmap.
    """
    lams = torch.as_tensor(np.asarray(lams, dtype=np.float64), dtype=torch.get_default_dtype())
    if lams.ndim != 2 or lams.shape[1] != len(vectors):
        raise ValueError(f"lams has shape {tuple(lams.shape)}: expected (K, {len(vectors)}), one row per merged model")
    own = _params(model, base)
    device = next(iter(own.values())).device
    X = X.to(device)

    def run(params: dict[str, Tensor]) -> Tensor:
        return functional_call(model, params, (X,))

    out = []
    for i in range(0, len(lams), chunk):
        merged = [_params(model, merge(own, vectors, row.tolist())) for row in lams[i : i + chunk]]
        stacked = {k: torch.stack([m[k] for m in merged]) for k in own}
        out.append(torch.vmap(run)(stacked).float().cpu())
    return torch.cat(out) if out else torch.empty(0, len(X), model.head.out_features)


def parity_error(out: Tensor, y: Tensor) -> Tensor:
    """The paper's hinge error on two logits: mean over images of max(0, 1 - y (f_1 - f_0)), y = +-1 for 1 / 0."""
    if out.shape[-1] != 2:
        raise ValueError(f"logits have {out.shape[-1]} classes: the hinge error needs exactly 2")
    return hinge(out[..., 1] - out[..., 0], 2.0 * y.to(out.device).float() - 1.0).mean(-1)


def merged_metrics(
    model: nn.Module,
    base: StateDict,
    vectors: Sequence[TaskVector],
    lams: Tensor | np.ndarray | Sequence[Sequence[float]],
    data: Sequence[tuple[Tensor, Tensor]],
    *,
    chunk: int = 16,
) -> dict[str, np.ndarray]:
    """Accuracy and hinge error, each (K, len(data)), of the K merged models merge(base, vectors, lams[k])."""
    acc, err = [], []
    for X, y in data:
        out = merged_logits(model, base, vectors, lams, X, chunk=chunk)
        acc.append((out.argmax(-1) == y.cpu()).float().mean(-1).numpy())
        err.append(parity_error(out, y.cpu()).numpy())
    return {"accuracy": np.stack(acc, axis=-1), "error": np.stack(err, axis=-1)}


def merged_accuracy(
    model: nn.Module,
    base: StateDict,
    vectors: Sequence[TaskVector],
    lams: Tensor | np.ndarray | Sequence[Sequence[float]],
    data: Sequence[tuple[Tensor, Tensor]],
    *,
    chunk: int = 16,
) -> np.ndarray:
    """Accuracy (K, len(data)) of the K merged models merge(base, vectors, lams[k]) on each (X, y) of `data`."""
    return merged_metrics(model, base, vectors, lams, data, chunk=chunk)["accuracy"]


def alpha_hat(model: nn.Module, first: StateDict, second: StateDict, X: Tensor) -> float:
    """The paper's alpha-hat: mean over images X of the cosine between the two models' logit vectors."""
    f1 = logits(model, X, state_dict=first)
    f2 = logits(model, X, state_dict=second)
    return output_cosine(f1, f2, vector_outputs=True).item()


# ---------------------------------------------------------------- the experiment of Section 6


def finetune_vits(
    base: ViT,
    tasks: Sequence[ColorParityTask],
    split: DigitSplit,
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    loss: str = "hinge",
    device: str | torch.device = "cpu",
) -> list[list[TaskVector]]:
    """Task vectors Psi*_T - Psi0, [task][seed], of one fine-tuning per task and seed, all trained together.

    The seed paints the split's colors (where r_o or r_e is not 0 or 1) and orders the minibatches.
    """
    runs = [(task, seed) for task in tasks for seed in seeds]
    data = [task.data(split, seed=seed) for task, seed in runs]
    X = torch.stack([x for x, _ in data])
    y = torch.stack([t for _, t in data])
    params, _ = train_many(base, X, y, seeds=[seed for _, seed in runs], epochs=epochs, batch_size=batch_size,
                           lr=lr, loss=loss, device=device)
    own = base.state_dict()
    vectors = [TaskVector.from_models(own, {**own, **{k: v[r] for k, v in params.items()}}) for r in range(len(runs))]
    return [vectors[i * len(seeds) : (i + 1) * len(seeds)] for i in range(len(tasks))]


def lam_curves(
    model: ViT,
    base: StateDict,
    first: Sequence[TaskVector],
    second: Sequence[TaskVector],
    lams: Sequence[float],
    data: Sequence[tuple[Tensor, Tensor]],
    *,
    chunk: int = 16,
) -> dict[str, np.ndarray]:
    """Accuracy and hinge error (seeds, len(lams), len(data)) of Psi0 + dPsi_1 + lam dPsi_2, one pair per seed."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} first and {len(second)} second vectors: expected one pair per seed")
    rows = np.stack([np.ones(len(lams)), np.asarray(lams, dtype=float)], axis=1)
    runs = [merged_metrics(model, base, [v1, v2], rows, data, chunk=chunk) for v1, v2 in zip(first, second)]
    return {key: np.stack([r[key] for r in runs]) for key in ("accuracy", "error")}
