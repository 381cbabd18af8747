"""Per-tensor kernels of every merge method: the one implementation both the in-memory TaskVector API
(tvlib.vectors.methods) and the streaming engine (tvlib.vectors.engine) call.

Each kernel sees one tensor (or one tensor of each task vector) in float32/float64 and never the
whole model, so the streaming engine can run them tensor by tensor. Conventions:

- k entries out of n for a fraction `density`: k = floor(density * n + 1/2) ("nearest", tvlib's
  default), floor(density * n) ("floor"), or max(1, floor(density * n)) for 0 < density < 1
  ("mergekit": a positive density keeps at least one entry).
- Top-k keeps the k largest magnitudes; ties at the k-th largest are broken by position (the order
  the tensors are fed in, then row-major), so exactly k entries are kept. The k-th largest is found exactly by a radix
  select on the bit patterns (KthLargest), fed in passes: over one tensor, or over a whole model.
- TIES is accumulated entry by entry (TiesSum), so its memory does not grow with the number of vectors.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "NORMALIZE",
    "KthLargest",
    "NonFiniteError",
    "TiesSum",
    "cast_checked",
    "count_kept",
    "dare_mask",
    "dare_tensor",
    "finite_range",
    "fraction",
    "band_mask",
    "della_keep_probability",
    "l1_rescale",
    "linear_tensor",
    "low_rank_factors",
    "model_stock_tensor",
    "model_stock_stats",
    "slerp_stats",
    "slerp_tensor",
    "row_mask",
    "top_mask",
    "topk_tensor",
]

NORMALIZE = ("count", "weights", "signed_weights", "none")
ROUNDING = ("nearest", "floor", "mergekit")
ZERO_SUM = ("drop", "plus")


class NonFiniteError(ValueError):
    """A tensor holds NaN or infinite values (or a cast overflowed to infinity)."""


def fraction(x: object, name: str, *, open_right: bool = False) -> float:
    """x as a float in [0, 1] (or [0, 1) when open_right), else a ValueError naming the parameter."""
    right = ")" if open_right else "]"
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise ValueError(f"{name}={x!r}: expected a real number in [0, 1{right}")
    v = float(x)
    if v < 0 or v > 1 or (open_right and v == 1):
        raise ValueError(f"{name}={v}: expected a fraction in [0, 1{right}")
    return v


def count_kept(density: float, n: int, rounding: str = "nearest") -> int:
    """Number of entries out of n that a fraction `density` keeps."""
    if rounding == "nearest":
        return min(n, math.floor(density * n + 0.5))
    if rounding == "floor":
        return min(n, math.floor(density * n))
    if rounding == "mergekit":
        return n if density >= 1 else 0 if density <= 0 or n == 0 else max(1, math.floor(density * n))
    raise ValueError(f"rounding={rounding!r}: expected one of {ROUNDING}")


_INT = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}


class Scratch:
    """Flat buffers reused from tensor to tensor by name (the streaming engine's): no allocation, and so
    no page faults, per tensor. Kernels given no Scratch allocate as usual."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, torch.dtype], Tensor] = {}

    def take(self, name: str, shape: torch.Size | tuple, dtype: torch.dtype) -> Tensor:
        """A tensor of `shape` and `dtype` (uninitialised) viewing the buffer `name`."""
        numel = int(torch.Size(shape).numel())
        buf = self._bufs.get((name, dtype))
        if buf is None or buf.numel() < numel:
            self._bufs.pop((name, dtype), None)
            buf = self._bufs[(name, dtype)] = torch.empty(numel, dtype=dtype)
        return buf[:numel].view(shape)

    def zeros(self, name: str, like: Tensor) -> Tensor:
        return self.take(name, like.shape, like.dtype).zero_()


class KthLargest:
    """The exact k-th largest of n non-negative float values, found by radix select in passes.

    Feed every value once per pass (in any chunks, in the same order each pass) and call end_pass();
    after 2 passes for float32 (4 for float64) `done` is True and `threshold` is the k-th largest,
    `room` how many entries equal to it belong to the top k. Each pass keeps a 65536-bin histogram.
    """

    def __init__(self, k: int, n: int, dtype: torch.dtype = torch.float32) -> None:
        if dtype not in _INT:
            raise TypeError(f"dtype={dtype}: expected torch.float32 or torch.float64")
        self.k, self.n, self.dtype = int(k), int(n), dtype
        self._int, self._bits = _INT[dtype]
        self.level, self.prefix, self.above = 0, 0, 0
        self._hist = torch.zeros(65536, dtype=torch.int64)
        self.threshold: float | None = None
        self.room = 0
        if self.k <= 0:
            self.threshold, self.room = math.inf, 0
        elif self.k >= self.n:
            self.threshold, self.room = 0.0, self.n  # every entry is >= 0: keep all

    @property
    def done(self) -> bool:
        return self.threshold is not None

    @property
    def passes(self) -> int:
        """Passes needed in all (0 when k <= 0 or k >= n)."""
        return 0 if self.done and self.level == 0 else self._bits // 16

    def feed(self, values: Tensor, scratch: Scratch | None = None) -> None:
        """Add the values of one chunk to this pass's histogram."""
        if self.done:
            return
        if values.dtype != self.dtype:
            raise TypeError(f"values are {values.dtype}: this selection runs on {self.dtype}")
        ints = values.detach().reshape(-1).view(self._int)
        shift = self._bits - 16 * (self.level + 1)
        high = torch.empty_like(ints) if scratch is None else scratch.take("radix", ints.shape, ints.dtype)
        if self.level == 0:  # values >= 0: the sign bit is 0, so the top 16 bits are < 2**15
            torch.bitwise_right_shift(ints, shift, out=high)
        else:
            torch.bitwise_right_shift(ints, shift + 16, out=high)
            high = (ints[high == self.prefix] >> shift) & 0xFFFF
        self._hist += torch.bincount(high, minlength=65536).cpu()

    def end_pass(self) -> None:
        """Pick the bucket that holds the k-th largest; after the last level set threshold and room."""
        if self.done:
            return
        hist = self._hist.flip(0)  # largest bucket first
        cum = torch.cumsum(hist, 0)
        need = self.k - self.above
        pos = int(torch.searchsorted(cum, torch.tensor([need]))[0])  # first bucket with cum >= need
        bucket = 65535 - pos
        self.above += int(cum[pos - 1]) if pos > 0 else 0
        self.prefix = (self.prefix << 16) | bucket
        self.level += 1
        self._hist.zero_()
        if 16 * self.level == self._bits:
            bits = torch.tensor([self.prefix], dtype=torch.int64).to(self._int)
            self.threshold = float(bits.view(self.dtype)[0])
            self.room = self.k - self.above

    def select(self, values_by_pass: Callable[[], object]) -> KthLargest:
        """Run every pass: values_by_pass() yields the chunks of one pass."""
        while not self.done:
            for chunk in values_by_pass():
                self.feed(chunk)
            self.end_pass()
        return self


def top_mask(values: Tensor, threshold: float, room: int, out: Tensor | None = None) -> tuple[Tensor, int]:
    """Mask of values > threshold plus the first `room` entries equal to it; and the room left."""
    if math.isinf(threshold):
        return torch.zeros_like(values, dtype=torch.bool), room
    mask = torch.ge(values, threshold, out=out) if out is not None else values >= threshold
    tied = values == threshold
    n_tied = int(tied.sum())
    if n_tied > room:
        drop = tied.reshape(-1).nonzero().squeeze(1)[room:]
        mask.view(-1)[drop] = False
        n_tied = room
    return mask, room - n_tied


def topk_tensor(delta: Tensor, density: float, rounding: str = "nearest", scratch: Scratch | None = None,
                inplace: bool = False) -> Tensor:
    """delta with all but its top-k magnitudes (k from density) set to zero: top-k within one tensor."""
    mag = delta.abs() if scratch is None else torch.abs(delta, out=scratch.take("abs", delta.shape, delta.dtype))
    sel = KthLargest(count_kept(density, delta.numel(), rounding), delta.numel(), mag.dtype)
    while not sel.done:
        sel.feed(mag, scratch)
        sel.end_pass()
    mask, _ = top_mask(mag, sel.threshold, sel.room,
                       None if scratch is None else scratch.take("mask", delta.shape, torch.bool))
    return delta.mul_(mask) if inplace else delta * mask


def band_mask(mag: Tensor, keep: int, skip_top: int) -> Tensor:
    """Mask of the entries ranked skip_top, ..., skip_top + keep - 1 by descending magnitude (ties by
    position): the largest `skip_top` dropped as outliers, the next `keep` kept (Model Breadcrumbs)."""
    n = mag.numel()

    def top(k: int) -> Tensor:
        sel = KthLargest(k, n, mag.dtype)
        while not sel.done:
            sel.feed(mag)
            sel.end_pass()
        return top_mask(mag, sel.threshold, sel.room)[0]

    upper = top(skip_top + keep)
    return upper if skip_top == 0 else upper & ~top(skip_top)


def della_keep_probability(delta: Tensor, density: float, epsilon: float) -> Tensor:
    """DELLA's MagPrune keep probabilities (Deep et al. 2024, as mergekit computes them): within each row
    (a 1-D tensor is one row), entries ranked by magnitude get probabilities spread linearly from
    density - epsilon (smallest) to density + epsilon (largest)."""
    if not (0 < density - epsilon and density + epsilon < 1):
        raise ValueError(f"density={density}, epsilon={epsilon}: DELLA needs density +/- epsilon inside (0, 1)")
    rows = delta.unsqueeze(0) if delta.ndim < 2 else delta
    order = torch.argsort(rows.abs(), dim=1, descending=False)
    inverse = torch.empty_like(order)  # the inverse permutation: argsort(order), in linear time
    inverse.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    ranks = inverse.to(delta.dtype) + 1
    lo, hi = ranks.min(dim=1, keepdim=True).values, ranks.max(dim=1, keepdim=True).values
    spread = ((ranks - lo) / (hi - lo)).clamp(0, 1)
    return ((density - epsilon) + spread * 2 * epsilon).reshape(delta.shape)


def linear_tensor(tensors: list[Tensor], weights: tuple[float, ...], normalize: bool) -> Tensor:
    """sum_i w_i x_i (divided by sum_i w_i when normalize): a weighted average of whole models (model soups)."""
    out = torch.zeros_like(tensors[0])
    for x, w in zip(tensors, weights):
        out.add_(x, alpha=w)
    return out.div_(sum(weights)) if normalize else out


def slerp_stats(v0: Tensor, v1: Tensor) -> list[float]:
    """(|v0|^2, |v1|^2, v0 . v1) in float64: what SLERP needs of two whole tensors, additive over pieces."""
    a, b = v0.reshape(-1).double(), v1.reshape(-1).double()
    return [float(a @ a), float(b @ b), float(a @ b)]


def slerp_tensor(t: float, v0: Tensor, v1: Tensor, dot_threshold: float = 0.9995, eps: float = 1e-8,
                 stats: list[float] | None = None) -> Tensor:
    """Spherical interpolation from v0 (t = 0) to v1 (t = 1) of the flattened tensors, linear where they are
    (anti)parallel (|cos| > dot_threshold): mergekit's slerp. stats: slerp_stats of the whole tensors when
    v0, v1 are pieces of them."""
    if v0.numel() == 0:
        return v0.clone()
    sq_a, sq_b, dot = slerp_stats(v0, v1) if stats is None else stats
    na, nb = math.sqrt(sq_a), math.sqrt(sq_b)
    na, nb = (na if na > eps else 1.0), (nb if nb > eps else 1.0)
    dot = min(1.0, max(-1.0, dot / (na * nb)))
    if abs(dot) > dot_threshold:
        ca, cb = 1 - t, t
    else:
        theta = math.acos(dot)
        ca, cb = math.sin((1 - t) * theta) / math.sin(theta), math.sin(t * theta) / math.sin(theta)
    return (v0 * ca).add_(v1, alpha=cb)


def model_stock_stats(base: Tensor, tensors: list[Tensor]) -> list[float]:
    """Squared norms of the offsets x_i - base, then their dot products (i < j), in float64: additive over pieces."""
    offsets = [(x.reshape(-1) - base.reshape(-1)).double() for x in tensors]
    out = [float(o @ o) for o in offsets]
    out += [float(a @ b) for i, a in enumerate(offsets) for b in offsets[i + 1:]]
    return out


def model_stock_tensor(base: Tensor, tensors: list[Tensor], filter_wise: bool = False,
                       stats: list[float] | None = None) -> Tensor:
    """Model Stock (Jang et al. 2024, as mergekit computes it): t = n cos / (1 + (n - 1) cos) from the mean
    pairwise cosine of the fine-tuned offsets (of the whole tensor, or of each row with filter_wise), then
    t * mean(models) + (1 - t) * base; the base where the denominator vanishes. stats: model_stock_stats of
    the whole tensors when these are pieces of them (not with filter_wise)."""
    n = len(tensors)
    if not filter_wise:
        st = model_stock_stats(base, tensors) if stats is None else stats
        norms, dots = [math.sqrt(v) for v in st[:n]], iter(st[n:])
        cos = [max(-1.0, min(1.0, next(dots) / max(norms[i] * norms[j], 1e-6)))
               for i in range(n) for j in range(i + 1, n)]
        c = sum(cos) / len(cos)
        den = 1 + (n - 1) * c
        t = 0.0 if abs(den) < 1e-6 else n * c / den
        avg = torch.stack(tensors).sum(0).div_(n) if n > 1 else tensors[0].clone()
        return avg.mul_(t).add_(base, alpha=1 - t)
    shape = base.shape
    w0 = base.unsqueeze(0) if base.ndim == 1 else base
    ws = [x.unsqueeze(0) if x.ndim == 1 else x for x in tensors]
    offsets = [x - w0 for x in ws]
    cos = []
    for i, a in enumerate(offsets):
        for b in offsets[i + 1:]:
            norms = torch.norm(a, dim=-1) * torch.norm(b, dim=-1)
            cos.append(((a * b).sum(dim=-1) / norms.clamp(min=1e-6)).clamp(-1, 1))
    c = torch.stack(cos).mean(dim=0).unsqueeze(-1)
    denominator = 1 + (n - 1) * c
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(c), n * c / torch.where(singular, torch.ones_like(c), denominator))
    return (t * (sum(ws) / n) + (1 - t) * w0).reshape(shape)


def row_mask(delta: Tensor, *, keep: float | None = None, threshold: float | None = None) -> Tensor:
    """Boolean (..., rows) mask of the rows u_i = delta[..., i, :] kept: a fraction `keep` of each matrix's
    rows with the largest norms (ties by position), or those with norm >= threshold."""
    norms = delta.norm(dim=-1)
    if threshold is not None:
        return norms >= threshold
    rows = norms.shape[-1]
    k = count_kept(keep, rows)
    out = []
    for r in norms.reshape(-1, rows):
        sel = KthLargest(k, rows, r.dtype).select(lambda r=r: [r])
        out.append(top_mask(r, sel.threshold, sel.room)[0])
    return torch.stack(out).view(norms.shape)


def dare_mask(shape: torch.Size | tuple, p: float, generator: torch.Generator) -> Tensor:
    """The entries DARE keeps: each independently with probability 1 - p (draws on the generator's device)."""
    return torch.rand(shape, generator=generator, device=generator.device) >= p


def dare_tensor(delta: Tensor, keep: Tensor, p: float, rescale: str = "entry") -> Tensor:
    """DARE on one tensor with a given mask: drop, then rescale the kept entries.

    rescale: "entry" multiplies each kept entry by 1/(1 - p) (Yu et al. 2024; unbiased);
    "l1" multiplies the tensor so its L1 norm equals the original one (mergekit's rescale);
    "none" leaves them as they are.
    """
    out = delta * keep.to(delta.device)
    if rescale == "entry":
        return out * (1.0 / (1.0 - p))
    if rescale == "l1":
        return l1_rescale(out, delta.abs().sum(dtype=torch.float64))
    if rescale == "none":
        return out
    raise ValueError(f"rescale={rescale!r}: expected 'entry', 'l1' or 'none'")


def l1_rescale(trimmed: Tensor, before: Tensor | float) -> Tensor:
    """trimmed scaled in place so its L1 norm equals `before` (the norm before trimming): mergekit's
    rescale, left as it is where either norm is below 1e-7 (mergekit's guard against a vanishing norm).
    The norms are summed in float64, so a tensor rescaled whole or in pieces (norms summed over the
    pieces) gets the same factor."""
    before, after = float(before), float(trimmed.abs().sum(dtype=torch.float64))
    if before < 1e-7 or after < 1e-7:
        return trimmed
    return trimmed.mul_(before / after)


class TiesSum:
    """TIES's elect-and-average for one tensor, fed one trimmed, weighted delta w_t * tau_t at a time.

    Keeps five buffers whatever the number of vectors: the running sum S (whose sign is the elected
    sign), the sums of positive and of negative entries, and their normalisers. normalize: "count"
    divides by the number of agreeing vectors (the TIES paper's disjoint mean), "weights" by the sum of
    their absolute weights, "signed_weights" by the sum of their signed weights (mergekit's: a divisor of
    0 counts as 1, and a negative weight is undone), "none" returns the sum of the agreeing entries.
    zero_sum: where S is exactly 0, "drop" elects no sign and the entry stays 0 (the paper's algorithm),
    "plus" elects + (mergekit's `>= 0`).
    """

    def __init__(self, like: Tensor, normalize: str = "count", scratch: Scratch | None = None,
                 zero_sum: str = "drop") -> None:
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize={normalize!r}: expected one of {NORMALIZE}")
        if zero_sum not in ZERO_SUM:
            raise ValueError(f"zero_sum={zero_sum!r}: expected one of {ZERO_SUM}")
        self.normalize, self.scratch, self.zero_sum = normalize, scratch, zero_sum
        zeros = torch.zeros_like if scratch is None else (lambda t, name: scratch.zeros(name, t))
        if scratch is None:
            self.total, self.pos, self.neg, self.n_pos, self.n_neg = (torch.zeros_like(like) for _ in range(5))
        else:
            self.total, self.pos, self.neg, self.n_pos, self.n_neg = (
                zeros(like, f"ties{i}") for i in range(5))
        self._tmp = torch.empty_like(like) if scratch is None else scratch.take("ties_tmp", like.shape, like.dtype)
        self._flag = (torch.empty(like.shape, dtype=torch.bool) if scratch is None
                      else scratch.take("ties_flag", like.shape, torch.bool))

    def add(self, weighted: Tensor, weight: float = 1.0) -> None:
        """Add one trimmed delta already multiplied by its weight."""
        self.total += weighted
        self.pos += torch.clamp(weighted, min=0, out=self._tmp)
        self.neg += torch.clamp(weighted, max=0, out=self._tmp)
        unit = {"weights": abs(float(weight)), "signed_weights": float(weight)}.get(self.normalize, 1.0)
        self.n_pos.add_(torch.gt(weighted, 0, out=self._flag), alpha=unit)
        self.n_neg.add_(torch.lt(weighted, 0, out=self._flag), alpha=unit)

    def result(self, lam: float = 1.0) -> Tensor:
        """lam times the merged delta (in one of the accumulators' buffers)."""
        pos, neg = self.pos, self.neg
        if lam != 1.0:
            pos.mul_(lam)
            neg.mul_(lam)
        if self.normalize == "signed_weights":
            pos.div_(self.n_pos.masked_fill_(torch.eq(self.n_pos, 0, out=self._flag), 1.0))
            neg.div_(self.n_neg.masked_fill_(torch.eq(self.n_neg, 0, out=self._flag), 1.0))
        elif self.normalize != "none":
            pos.div_(self.n_pos.clamp_(min=1e-30))
            neg.div_(self.n_neg.clamp_(min=1e-30))
        drop_pos = torch.lt if self.zero_sum == "plus" else torch.le
        pos.masked_fill_(drop_pos(self.total, 0, out=self._flag), 0.0)
        neg.masked_fill_(torch.ge(self.total, 0, out=self._flag), 0.0)
        out = pos.add_(neg)
        del self.total, self.pos, self.neg, self.n_pos, self.n_neg, self._tmp, self._flag
        return out


def low_rank_factors(delta: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """Factors (B, A) of the best rank-r approximation B @ A of a matrix (or a stack over the last two dims)."""
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    return (U[..., :r] * S[..., None, :r]).contiguous(), Vh[..., :r, :].contiguous()


def finite_range(t: Tensor) -> tuple[float, float]:
    """(min, max) of a tensor; NaN if it holds a NaN (a fast test of finiteness)."""
    if t.numel() == 0:
        return 0.0, 0.0
    lo, hi = torch.aminmax(t.detach().reshape(-1))
    return float(lo), float(hi)


def is_finite(t: Tensor) -> bool:
    """True when every entry is finite."""
    lo, hi = finite_range(t)
    return math.isfinite(lo) and math.isfinite(hi)


def cast_checked(t: Tensor, dtype: torch.dtype, key: str, *, allow_nonfinite: bool = False,
                 out: Tensor | None = None) -> Tensor:
    """t cast to dtype (into `out` if given); NonFiniteError naming `key` if the result holds NaN/inf:
    from t itself, or from a cast that overflows."""
    res = t.to(dtype) if out is None else out.copy_(t)
    if allow_nonfinite or is_finite(res):
        return res
    lo, hi = finite_range(t)
    if math.isfinite(lo) and math.isfinite(hi):
        raise NonFiniteError(
            f"{key}: casting to {dtype} overflows to inf (largest magnitude {max(-lo, hi):.4g} > "
            f"{torch.finfo(dtype).max:.4g}); write a wider dtype or lower the coefficients"
        )
    raise NonFiniteError(f"{key}: the merged tensor holds NaN or infinite values (allow_nonfinite=True lets them through)")
