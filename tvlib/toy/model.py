"""The one-layer Transformer of eq. 4, batched over a leading replica dimension.

    f(X; Psi) = (1/P) sum_l a^T ReLU( V sum_s x_s softmax_l(x_s^T W x_l) )

Merged form (default): Psi = (W, V) with W = W_K^T W_Q (d x d) and V = W_O W_V (m x d).
Factored form: Psi = (W_Q, W_K, W_V, W_O). The output layer a (entries +-1/sqrt(m)) is fixed.
Every weight carries a leading replica dimension R, so R independent models train and evaluate
in one pass: W is (R, d, d), V is (R, m, d), a is (R, m).
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["OneLayerTransformer"]


class OneLayerTransformer(nn.Module):
    """R independent copies of the model of eq. 4 (merged (W, V) or factored (W_Q, W_K, W_V, W_O))."""

    def __init__(
        self,
        d: int,
        m: int,
        *,
        replicas: int = 1,
        factored: bool = False,
        m_a: int | None = None,
        m_b: int | None = None,
        v_std: float = 0.01,
        w_std: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("d", d), ("m", m), ("replicas", replicas)):
            if value < 1:
                raise ValueError(f"{name}={value}: expected a positive integer")
        self.d, self.m, self.factored = d, m, factored
        g = torch.Generator().manual_seed(seed)
        R = replicas
        a = (torch.randint(0, 2, (R, m), generator=g).float() * 2 - 1) / math.sqrt(m)
        self.register_buffer("a", a)  # fixed output layer, never trained
        if not factored:
            self.W = nn.Parameter(w_std * torch.randn(R, d, d, generator=g))
            self.V = nn.Parameter(v_std * torch.randn(R, m, d, generator=g))
        else:
            m_a = m_a or m
            m_b = m_b or d
            # factors scaled so that W_K^T W_Q and W_O W_V have entries of std ~ w_std and v_std;
            # the query/key factors cannot both start at zero (their gradients would vanish)
            qk = max(w_std, 1e-2) ** 0.5 / m_b**0.25
            self.W_Q = nn.Parameter(qk * torch.randn(R, m_b, d, generator=g))
            self.W_K = nn.Parameter(qk * torch.randn(R, m_b, d, generator=g))
            self.W_V = nn.Parameter(v_std**0.5 / m_a**0.25 * torch.randn(R, m_a, d, generator=g))
            self.W_O = nn.Parameter(v_std**0.5 / m_a**0.25 * torch.randn(R, m, m_a, generator=g))

    @property
    def replicas(self) -> int:
        return int(self.a.shape[0])

    @classmethod
    def from_weights(cls, W: Tensor, V: Tensor, a: Tensor) -> "OneLayerTransformer":
        """A merged-form model with the given (R, d, d), (R, m, d) and (R, m) weights (copied), on W's device."""
        if W.ndim != 3 or V.ndim != 3 or a.ndim != 2:
            raise ValueError(
                f"got W {tuple(W.shape)}, V {tuple(V.shape)}, a {tuple(a.shape)}: "
                "expected (R, d, d), (R, m, d) and (R, m)"
            )
        R, d, _ = W.shape
        m = V.shape[1]
        if W.shape != (R, d, d) or V.shape != (R, m, d) or a.shape != (R, m):
            raise ValueError(
                f"inconsistent shapes W {tuple(W.shape)}, V {tuple(V.shape)}, a {tuple(a.shape)}: "
                "expected (R, d, d), (R, m, d) and (R, m)"
            )
        model = cls(d, m, replicas=R).to(W.device)
        with torch.no_grad():
            model.W.copy_(W)
            model.V.copy_(V)
            model.a.copy_(a)
        return model

    def merged_weights(self) -> tuple[Tensor, Tensor]:
        """(W, V) = (W_K^T W_Q, W_O W_V) in the factored form; the parameters themselves otherwise."""
        if not self.factored:
            return self.W, self.V
        return self.W_K.transpose(1, 2) @ self.W_Q, self.W_O @ self.W_V

    def to_merged(self) -> "OneLayerTransformer":
        """A merged-form copy computing the same function."""
        W, V = self.merged_weights()
        return OneLayerTransformer.from_weights(W.detach(), V.detach(), self.a)

    def _batched(self, X: Tensor) -> Tensor:
        if X.ndim == 3:  # (n, P, d): the same inputs for every replica
            X = X.unsqueeze(0).expand(self.replicas, *X.shape)
        if X.ndim != 4 or X.shape[0] != self.replicas or X.shape[-1] != self.d:
            raise ValueError(
                f"X has shape {tuple(X.shape)}: expected (n, P, d) or (R, n, P, d) "
                f"with R={self.replicas}, d={self.d}"
            )
        return X

    def attention(self, X: Tensor) -> Tensor:
        """Attention weights A[r, n, s, l] = softmax over keys s of x_s^T W x_l; columns sum to 1."""
        X = self._batched(X)
        W, _ = self.merged_weights()
        R, n, P, d = X.shape
        # one (n P, d) x (d, d) product per replica rather than n small ones
        XW = (X.reshape(R, n * P, d) @ W).view(R, n, P, d)
        scores = XW @ X.transpose(-1, -2)  # [s, l] = x_s^T W x_l
        return torch.softmax(scores, dim=-2)

    def hidden(self, X: Tensor) -> Tensor:
        """Pre-activations V sum_s x_s A[s, l], shape (R, n, P, m)."""
        X = self._batched(X)
        _, V = self.merged_weights()
        R, n, P, d = X.shape
        mixed = self.attention(X).transpose(-1, -2) @ X  # (R, n, P_l, d)
        return (mixed.reshape(R, n * P, d) @ V.transpose(-1, -2)).view(R, n, P, -1)

    def forward(self, X: Tensor) -> Tensor:
        """Scalar outputs f(X; Psi) of shape (R, n)."""
        h = torch.relu(self.hidden(X))  # (R, n, P, m)
        R, n, P, m = h.shape
        return (h.reshape(R, n * P, m) @ self.a[:, :, None]).view(R, n, P).mean(-1)

    def select(self, index: int | Sequence[int] | Tensor) -> "OneLayerTransformer":
        """A copy holding only the given replicas."""
        idx = torch.as_tensor(index).reshape(-1)
        new = copy.deepcopy(self)
        with torch.no_grad():
            for name, p in self.named_parameters(recurse=False):
                setattr(new, name, nn.Parameter(p[idx].clone()))
            for name, b in self.named_buffers(recurse=False):
                new.register_buffer(name, b[idx].clone())
        return new

    def replicate(self, times: int) -> "OneLayerTransformer":
        """A copy with every replica repeated `times` times (replica-major: r0, r0, ..., r1, ...)."""
        return self.select(torch.arange(self.replicas).repeat_interleave(times))

    def extra_repr(self) -> str:
        form = "factored" if self.factored else "merged"
        return f"d={self.d}, m={self.m}, replicas={self.replicas}, {form}"
