"""The streaming engine: merge checkpoints tensor by tensor into a from_pretrained directory.

For each tensor of the base (in storage order) it reads the base and then each fine-tuned model, one
at a time, forms the float32 delta, runs the recipe's per-tensor code (tvlib.vectors.recipe, the same
code as the in-memory API), adds the base, casts once to the output dtype and appends the result to
the current shard. Memory: a few tensors of the largest size, whatever the number of models or the
model's size. A global top-k (TIES, magnitude with scope="global") first runs two reading passes to
find each vector's exact threshold. Output is written under a temporary name and renamed when
complete: an interrupted merge leaves no directory that looks finished.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import (
    Checkpoint,
    ShardWriter,
    copy_support_files,
    open_checkpoint,
    parse_size,
    tied_embeddings,
)
from .io import atomic_path, write_text
from .kernels import NonFiniteError, Scratch, cast_checked, is_finite
from .merge_methods import TrimCall
from .recipe import (
    MaskFn,
    MergeState,
    Recipe,
    find_thresholds,
    layer_of,
    merge_tensor,
    merge_tensors,
    seeded_masks,
)
from .statedict import StateDictMismatch

__all__ = ["MARKER", "RUNTIME_BYTES", "MergePlan", "check_output", "merge_checkpoints", "plan_merge"]

MARKER = "tvlib_merge.json"  # written into every merge output: what made it (and so what may be replaced;
# outputs of the command before it are known by the tvlib_merge.yaml it wrote)

RUNTIME_BYTES = 280 * 10**6  # resident memory of Python, torch and tvlib before any tensor (measured)
CHUNK = 1 << 22  # entries per piece of a tensor when the recipe is elementwise


def _size(nbytes: float) -> str:
    """Bytes in GB, or MB below 1 GB."""
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _progress(total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=f"merging {name}", disable=None, leave=False)


def model_card(plan: MergePlan, name: str, config: str | None = None) -> str:
    """The README.md of a merge output: Hugging Face model-card metadata, the inputs, the method and its options."""
    r = plan.recipe
    lines = ["---", f"base_model: {json.dumps(plan.base.name)}" if r.impl.base == "required" else "base_model:",
             *([f"- {json.dumps(m.name)}" for m in plan.models] if r.impl.base != "required" else []),
             "library_name: transformers", "tags:", "- merge", "- tvlib", "---", "", f"# {name}", "",
             f"Merged with `tvlib merge` by **{r.method}** ({r.impl.summary}).", "", "## Inputs", ""]
    if r.impl.base == "required":
        lines.append(f"- base: `{plan.base.name}`")
    for i, m in enumerate(plan.models):
        dens = f", density {r.densities[i]}" if r.densities is not None else ""
        lines.append(f"- `{m.name}`: weight {r.weights[i]}{dens}")
    lines += ["", f"{len(plan.merged)} tensors merged, {len(plan.copied)} copied from "
              f"`{plan.base.name}`.", ""]
    if config:
        lines += ["## Configuration", "", "```yaml", config.rstrip(), "```", ""]
    return "\n".join(lines)


def check_output(out: str | os.PathLike, inputs: Sequence[Checkpoint], *, force: bool = False,
                 markers: Sequence[str] = (MARKER, "tvlib_merge.yaml")) -> None:
    """Refuse an output that cannot or should not be written, before any weight is read: OUT that is a
    file, under a file, in a folder that cannot be written, that is (or holds) an input model, or a
    non-empty folder that is not an earlier tvlib output, known by one of its `markers` files (force=True
    replaces the last two)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} is a file: expected a directory (new, or an earlier tvlib merge output)")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"output {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output {out}: {parent} is not writable (the output and its temporary go there)")
    if force:
        return
    real = out.resolve()
    for ck in inputs:
        root = ck.root.resolve()
        if real == root or real in root.parents:
            raise FileExistsError(f"output {out} is (or holds) the input model {ck.name}: writing it would replace "
                                  "an input (--force / force=True to do it anyway)")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).is_file() for m in markers):
        raise FileExistsError(f"output {out} is a non-empty folder that is not a tvlib merge output: not replacing "
                              "it (--force / force=True replaces it)")


def _bands(recipe: Recipe, key: str, n: int, all_deltas, pool: Scratch, vectors: int) -> list:
    """Breadcrumbs on a tensor in pieces: per vector the [threshold, room] of the top (skip + keep) entries and
    of the top `skip` (the outliers dropped), found by radix-select passes over the pieces."""
    from .merge_methods.breadcrumbs import counts

    params = recipe.at(key)
    ks = [counts(n, d, g) if d < 1 else (n, 0) for d, g in zip(params.densities, params.options["gamma"])]
    upper = find_thresholds(recipe, [key], {key: n}, all_deltas, scratch=pool, vectors=vectors,
                            counts=[keep + skip for keep, skip in ks])
    top = find_thresholds(recipe, [key], {key: n}, all_deltas, scratch=pool, vectors=vectors,
                          counts=[skip for _, skip in ks])
    return [[u, t] for u, t in zip(upper, top)]


def _keep_norms(recipe: Recipe, key: str, parts, deltas, state: MergeState) -> list[tuple[float, float]]:
    """Per vector, the L1 norms of a tensor's delta before and after a random drop (DARE, DELLA), summed over
    its pieces (in float64), so an L1 rescale can be applied piece by piece."""
    params = recipe.at(key)
    sums = [[0.0, 0.0] for _ in params.densities]
    for part in parts:
        state.offset = part[0]
        for i, d in enumerate(deltas(key, part)):
            if params.densities[i] >= 1:
                continue
            opts = {name: params.options[name][i] for name in recipe.impl.model_options}
            keep = recipe.impl.keep(d, TrimCall(recipe, i, key, params.densities[i], opts, state, False))
            sums[i][0] += float(d.abs().sum(dtype=torch.float64))
            sums[i][1] += float((d.abs() * keep).sum(dtype=torch.float64))
            if recipe.impl.reuse_keep:  # kept for the merge pass, 1 byte an entry, in one block per vector
                # (one large allocation, returned whole when the tensor is done)
                state.kept = state.kept if state.kept is not None else {}
                if i not in state.kept:
                    state.kept[i] = torch.empty(parts[-1][1], dtype=torch.bool)
                state.kept[i][part[0]:part[1]] = keep.reshape(-1)
    state.offset = None
    return [(b, a) for b, a in sums]


def _layer_count(ck: Checkpoint) -> int:
    """The number of layers, for gradient parameters: the config's num_hidden_layers (or n_layer), else
    one more than the largest layer index in the tensor names."""
    cfg = ck.config or {}
    cfg = cfg.get("text_config", cfg) if "num_hidden_layers" not in cfg else cfg
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(name), int):
            return cfg[name]
    found = [i for k in ck.infos if (i := layer_of(k)) is not None]
    if not found:
        raise ValueError(f"{ck.name}: gradient parameters need layers, and no tensor name has a layer index")
    return max(found) + 1


def _dtypes(ck: Checkpoint) -> str:
    """The dtypes of a checkpoint's tensors, most entries first."""
    count: dict[torch.dtype, int] = {}
    for info in ck.infos.values():
        count[info.dtype] = count.get(info.dtype, 0) + info.numel
    return "/".join(str(d).removeprefix("torch.") for d, _ in sorted(count.items(), key=lambda t: -t[1]))


@dataclass
class MergePlan:
    """What a merge reads, computes and writes: the basis of --dry-run and of the merge itself."""

    base: Checkpoint
    models: list[Checkpoint]
    recipe: Recipe
    merged: list[str]  # keys computed by the recipe, in storage order
    copied: dict[str, str]  # keys written as the base's value -> why
    dropped: dict[str, str]  # keys of the base not written -> why (a tied output embedding)
    dtypes: dict[str, torch.dtype]  # output dtype of every written key
    notes: list[str] = field(default_factory=list)

    @property
    def passes(self) -> int:
        """Reading passes over the whole model: 3 for a global top-k (2 to find its thresholds), else 1; the
        extra passes over large tensors only are `large_passes`."""
        return 3 if self.recipe.is_global else 1

    @property
    def large_passes(self) -> tuple[int, str]:
        """Extra reading passes over each tensor larger than one piece, and what they are for."""
        r = self.recipe
        if r.tensor_thresholds and r.trim == "breadcrumbs":
            return 4, "the two ends of its kept band"
        if r.tensor_thresholds:
            return 2, "its top-k thresholds"
        if r.seeded_pieces and r.rescale == "l1":
            return 1, "the L1 norms of the random drop's rescale"
        if r.whole and r.in_pieces and r.impl.stats is not None:
            return 1, "its norms and dot products"
        return 0, ""

    def peak_bytes(self, chunk: int = CHUNK, pieces: bool | None = None) -> int:
        """Estimated peak resident memory: the runtime plus the reused buffers of the largest piece (a chunk
        of `chunk` entries for elementwise recipes, else the largest tensor)."""
        raw = max((ck.infos[k].dtype.itemsize for ck in (self.base, *self.models) for k in self.merged if k in ck),
                  default=2)
        out = max((self.dtypes[k].itemsize for k in self.merged), default=2)
        per_entry = raw + 4 + 4 + 4 + 3 * out  # raw bytes, fp32 base, two fp32 deltas, three output buffers
        per_entry += {None: 0, "magnitude": 9, "dare": 13, "rows": 8, "low_rank": 16, "breadcrumbs": 14,
                      "della": 33}[self.recipe.trim]
        if self.recipe.whole:  # every input tensor in float32, and the result
            per_entry += 4 * (len(self.models) + 2)
        if self.recipe.combine == "ties":
            per_entry += 6 * 4 + 1
        largest = whole = max((self.base.infos[k].numel for k in self.merged), default=0)
        in_pieces = self.recipe.in_pieces if pieces is None else pieces
        if in_pieces:
            largest = min(largest, chunk)
        kept = 0  # DELLA in pieces with an L1 rescale keeps the L1 pass's masks of a whole tensor, 1 byte an entry
        if in_pieces and whole > chunk and self.recipe.impl.reuse_keep and self.recipe.rescale == "l1":
            kept = whole * len(self.models)
        return RUNTIME_BYTES + largest * per_entry + kept

    def describe(self, out: str | os.PathLike) -> str:
        """The dry-run report: what would be read, computed and written, and the estimated peak memory."""
        r = self.recipe
        lines = [f"tvlib merge: {r.method} of {len(self.models)} model(s) into {out}"]
        for role, ck in [("base ", self.base), *[(f"model {i}", m) for i, m in enumerate(self.models)]]:
            lines.append(f"  {role:8s} {ck.name}: {len(ck.files())} file(s), {len(ck.infos)} tensors, "
                         f"{ck.numel():,} entries, {_size(ck.nbytes())}, {_dtypes(ck)}")
        for i, m in enumerate(self.models):
            dens = f", density {r.densities[i]}" if r.densities is not None else ""
            lines.append(f"  model {i} weight {r.weights[i]}{dens}")
        opts = {"lambda": r.lam, "normalize": r.normalize}
        if r.trim == "magnitude":
            opts.update(scope=r.scope, rounding=r.rounding)
        if r.trim in ("magnitude", "dare"):
            opts.update(rescale=r.rescale)
        if r.trim in ("dare", "della"):
            opts.update(seed=r.seed)
        if r.trim in ("della", "breadcrumbs"):
            opts.update(rescale=r.rescale)
        opts.update({k: v for k, v in r.options.items() if not isinstance(v, tuple) or k in r.impl.shared_options})
        for k, v in r.options.items():
            if k in r.impl.model_options:
                opts[k] = list(v)
        if r.combine == "ties":
            opts.update(zero_sum=r.zero_sum)
        if r.gradients:
            opts.update(layers=r.layers)
        if r.trim == "low_rank":
            opts.update(rank=r.rank)
        lines.append("  options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
        lines += [f"  note: {n}" for n in self.notes]
        merged_n = sum(self.base.infos[k].numel for k in self.merged)
        lines.append(f"  tensors: {len(self.merged)} merged ({merged_n:,} entries), {len(self.copied)} copied from "
                     f"the base, {len(self.dropped)} not written")
        for k, why in list(self.copied.items())[:8]:
            lines.append(f"    copied {k}: {why}")
        if len(self.copied) > 8:
            lines.append(f"    ... and {len(self.copied) - 8} more copied")
        for k, why in self.dropped.items():
            lines.append(f"    not written {k}: {why}")
        read = self.base.nbytes() + sum(m.nbytes() for m in self.models)
        lines.append(f"  reads: {self.passes} pass(es) over {_size(read)}"
                     + (" (2 to find the global top-k thresholds, 1 to merge)" if self.recipe.is_global else ""))
        extra, why = self.large_passes
        large = [k for k in self.merged if self.base.infos[k].numel > CHUNK]
        if extra and large:
            big = sum(ck.infos[k].end - ck.infos[k].start for ck in (self.base, *self.models) for k in large if k in ck)
            lines.append(f"    and {extra} more over the {len(large)} tensor(s) of more than {CHUNK:,} entries "
                         f"({_size(big)}), merged in pieces: {why}")
        out_bytes = sum(self.base.infos[k].numel * self.dtypes[k].itemsize for k in self.dtypes)
        lines.append(f"  writes: {_size(out_bytes)} of safetensors, config and tokenizer files of the base")
        lines.append(f"  estimated peak memory: {_size(self.peak_bytes())}")
        return "\n".join(lines)


class _BackgroundWriter:
    """ShardWriter.write in a thread (file writes release the GIL): the next tensor is computed meanwhile.
    At most one tensor waits and one is being written, so three rotating output buffers are enough."""

    def __init__(self, writer: ShardWriter) -> None:
        self.writer, self.error = writer, None
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.write(*item)
                except BaseException as err:  # noqa: BLE001 (re-raised in the main thread)
                    self.error = err

    def write(self, key: str, tensor: Tensor, part: bool) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((key, tensor, part))

    def close(self, ok: bool = True) -> None:
        self.queue.put(None)
        self.thread.join()
        if ok and self.error is not None:
            raise self.error
        if ok:
            self.writer.close()


def plan_merge(base: str | os.PathLike | Checkpoint, models: Sequence[str | os.PathLike | Checkpoint], recipe: Recipe,
               *, dtype: torch.dtype | None = None, strict: bool = True) -> MergePlan:
    """Open the checkpoints and decide, key by key, what is merged, copied or dropped; check keys and shapes."""
    base_ck = open_checkpoint(base)
    model_cks = [open_checkpoint(m) for m in models]
    if len(model_cks) != len(recipe.weights):
        raise ValueError(f"{len(model_cks)} models but {len(recipe.weights)} weights: expected one per model")
    if recipe.layers is not None and recipe.layers != _layer_count(base_ck):
        raise ValueError(f"the config covers layers 0..{recipe.layers} but {base_ck.name} has {_layer_count(base_ck)}: "
                         "slices that cut layers (frankenmerges) are not supported")
    if recipe.gradients and recipe.layers is None:
        recipe = replace(recipe, layers=_layer_count(base_ck))
    tie = tied_embeddings(base_ck.config, base_ck.keys())
    dropped = {tie[1]: f"tied to {tie[0]} (config tie_word_embeddings)"} if tie and tie[1] in base_ck else {}
    merged, copied, notes = [], {}, []
    for k, info in base_ck.infos.items():
        if k in dropped:
            continue
        if not info.dtype.is_floating_point:
            copied[k] = f"non-float ({info.dtype})"
        elif not recipe.selects(k):
            copied[k] = "not selected by include/exclude"
        else:
            merged.append(k)
    problems: dict[str, str] = {}
    for i, m in enumerate(model_cks):
        name = f"model {i} ({m.name})"
        for k in merged:
            if k not in m:
                problems[k] = f"only in base (missing in {name})"
            elif m.infos[k].shape != base_ck.infos[k].shape:
                problems[k] = f"{base_ck.infos[k].shape} in base vs {m.infos[k].shape} in {name}"
        for k in m:
            if k not in base_ck and not (tie and k == tie[1]):
                problems[k] = f"only in {name}"
            elif tie and k == tie[1] and k not in base_ck and not torch.equal(m.read(k), m.read(tie[0])):
                raise ValueError(f"{k} is tied to {tie[0]} in the base but differs from it in {name}")
    if problems and strict:
        raise StateDictMismatch(
            f"the checkpoints do not match ({len(problems)} keys differ):\n"
            + "\n".join(f"  {k}: {why}" for k, why in list(problems.items())[:20])
            + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
            + "\n(strict=False merges the keys every model has and copies the base's value elsewhere)")
    for k, why in problems.items():
        if k in merged:
            merged.remove(k)
            copied[k] = why
    for k in merged:  # every parameter resolves for every tensor, before anything is read
        recipe.at(k)
    dtypes = {k: (dtype if dtype is not None and info.dtype.is_floating_point else info.dtype)
              for k, info in base_ck.infos.items() if k not in dropped}
    mixed = sorted({f"model {i} ({_dtypes(m)})" for i, m in enumerate(model_cks)
                    if any(m.infos[k].dtype != base_ck.infos[k].dtype for k in merged if k in m)})
    if mixed:
        notes.append(f"{', '.join(mixed)} differ from the base's dtype ({_dtypes(base_ck)}): deltas are formed "
                     "in float32, the output takes "
                     + (f"{str(dtype).removeprefix('torch.')}" if dtype is not None else "the base's dtypes (set dtype: to change)"))
    if recipe.is_global:
        notes.append("top-k is global: one threshold per model over all merged tensors (scope: tensor ranks each tensor alone)")
    return MergePlan(base_ck, model_cks, recipe, merged, copied, dropped, dtypes, notes)


def merge_checkpoints(
    base: str | os.PathLike | Checkpoint,
    models: Sequence[str | os.PathLike | Checkpoint],
    recipe: Recipe,
    out: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    max_shard_size: int | str = "2GB",
    strict: bool = True,
    allow_nonfinite: bool = False,
    masks: MaskFn | None = None,
    extra_files: dict[str, str] | None = None,
    threads: int | None = 1,
    chunk: int = CHUNK,
    log: Callable[[str], None] | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Merge fine-tuned checkpoints into base by `recipe`, streaming, and write `out` (a from_pretrained
    directory); returns a summary (tensors, passes, seconds, bytes written).

    dtype: the output dtype of float tensors (default: each tensor's dtype in the base). masks: DARE
    keep-masks as a function (vector index, key, delta, p) -> bool tensor (default: seeded by recipe.seed).
    extra_files: name -> text written next to the weights (the merge config, for provenance).
    threads: torch threads while merging (None: leave torch's setting). The work is memory-bound, so one
    thread is about as fast as several and does not stall when other processes share the cores;
    writing runs in a second thread. chunk: entries per piece when the recipe is elementwise (task
    arithmetic, global top-k, TIES): memory then depends on the chunk, not on the largest tensor.
    force: replace an `out` that is an input or a non-empty folder other than an earlier merge output
    (check_output; refused otherwise, before any weight is read). progress: a tqdm bar of the bytes
    written, on stderr when it is a terminal.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _merge(base, models, recipe, out, dtype=dtype, max_shard_size=max_shard_size, strict=strict,
                      allow_nonfinite=allow_nonfinite, masks=masks, extra_files=extra_files, chunk=chunk, log=log,
                      force=force, progress=progress)
    finally:
        torch.set_num_threads(before)


def _merge(base, models, recipe, out, *, dtype, max_shard_size, strict, allow_nonfinite, masks, extra_files, chunk,
           log, force, progress) -> dict:
    t0 = time.perf_counter()
    plan = plan_merge(base, models, recipe, dtype=dtype, strict=strict)
    base_ck, cks, recipe = plan.base, plan.models, plan.recipe
    check_output(out, [base_ck, *cks], force=force)
    current: dict[str, Tensor] = {}
    pool = Scratch()

    impl = recipe.impl
    in_pieces = recipe.in_pieces and not (recipe.seeded_pieces and masks is not None)  # given masks: whole tensors

    def pieces(key: str) -> list[tuple[int, int] | None]:
        """Chunks of at most `chunk` entries for elementwise recipes (of whole rows where the method works
        row by row); None = the whole tensor."""
        shape = base_ck.infos[key].shape
        n = base_ck.infos[key].numel
        if not in_pieces or n <= chunk:
            return [None]
        step = chunk
        if recipe.impl.rows:
            if len(shape) != 2:
                return [None]
            step = max(1, chunk // shape[1]) * shape[1]
        return [(s, min(s + step, n)) for s in range(0, n, step)]

    def deltas(key: str, part: tuple[int, int] | None = None):
        info = base_ck.infos[key]
        wide = torch.promote_types(info.dtype, torch.float32)
        for ck in cks:
            wide = torch.promote_types(wide, ck.infos[key].dtype)
        shape = info.shape if part is None else (part[1] - part[0],)
        numel = int(torch.Size(shape).numel())
        raw = base_ck.read(key, out=pool.take("raw", (numel * info.dtype.itemsize,), torch.uint8), part=part)
        if not allow_nonfinite and not is_finite(raw):
            raise NonFiniteError(f"base ({base_ck.name}): {key} holds NaN or infinite values "
                                 "(allow_nonfinite=True lets them through)")
        b = pool.take("base", shape, wide).copy_(raw)
        current["base"] = b
        for i, ck in enumerate(cks):
            x = ck.read(key, out=pool.take("raw", (numel * ck.infos[key].dtype.itemsize,), torch.uint8), part=part)
            if not allow_nonfinite and not is_finite(x):
                raise NonFiniteError(f"model {i} ({ck.name}): {key} holds NaN or infinite values "
                                     "(allow_nonfinite=True lets them through)")
            d = pool.take("delta0" if i == 0 else "delta", shape, wide).copy_(x)
            yield d.sub_(b)

    def whole_inputs(key: str, part: tuple[int, int] | None = None) -> tuple[list[Tensor], Tensor | None]:
        """Every model's tensor (or piece) and the base's, in float32."""
        wide = torch.promote_types(base_ck.infos[key].dtype, torch.float32)
        named = [(f"model {i} ({ck.name})", ck) for i, ck in enumerate(cks)]
        if recipe.impl.base == "required":
            named.append((f"base ({base_ck.name})", base_ck))
        tensors = []
        for who, ck in named:
            x = ck.read(key, part=part)
            if not allow_nonfinite and not is_finite(x):
                raise NonFiniteError(f"{who}: {key} holds NaN or infinite values (allow_nonfinite=True lets them through)")
            tensors.append(x.to(wide))
        base_t = tensors.pop() if recipe.impl.base == "required" else None
        return tensors, base_t

    def whole_stats(key: str, parts) -> list[float] | None:
        """The method's sums over the whole tensor, from a pass over its pieces (None: one piece, or no stats)."""
        if impl.stats is None or parts[0] is None:
            return None
        total = None
        for part in parts:
            tensors, base_t = whole_inputs(key, part)
            st = impl.stats(tensors, base_t, recipe.at(key), recipe)
            total = st if total is None else [a + b for a, b in zip(total, st)]
        return total

    def all_deltas(key: str):  # the threshold passes: every chunk of every vector, in order
        for part in pieces(key):
            yield from deltas(key, part)

    state = MergeState(masks=masks or seeded_masks(recipe.seed), scratch=pool)
    if recipe.is_global:
        numel = {k: base_ck.infos[k].numel for k in plan.merged}
        n = len(cks)
        state.thresholds = find_thresholds(recipe, sorted(plan.merged), numel, all_deltas, scratch=pool, vectors=n)
        if log:
            log(f"global thresholds found in 2 passes ({time.perf_counter() - t0:.1f} s)")
    keys = [k for k in base_ck if k not in plan.dropped]
    if recipe.is_global:  # ties at a global threshold are broken in sorted key order, in every pass
        keys.sort()
    entries = [(k, plan.dtypes[k], base_ck.infos[k].shape) for k in keys]
    merged = set(plan.merged)
    with atomic_path(out, directory=True) as tmp:
        writer = ShardWriter(tmp, entries, parse_size(max_shard_size))
        background = _BackgroundWriter(writer)
        bar = _progress(writer.total, Path(out).name) if progress else None
        ok = False
        try:
            j = 0
            for k, out_dtype, shape in entries:
                if bar is not None:
                    bar.update(int(torch.Size(shape).numel()) * out_dtype.itemsize)
                if k not in merged:
                    background.write(k, base_ck.read(k).to(out_dtype), False)
                    continue
                parts = pieces(k)
                if recipe.tensor_thresholds and parts[0] is not None and recipe.trim == "magnitude":
                    # a large tensor's top-k thresholds, by passes over its pieces (a small one: its trim alone)
                    state.thresholds = find_thresholds(recipe, [k], {k: base_ck.infos[k].numel}, all_deltas,
                                                       scratch=pool, vectors=len(cks), densities=recipe.at(k).densities)
                elif recipe.tensor_thresholds and parts[0] is not None:  # Breadcrumbs: the two ends of the band
                    state.bands = _bands(recipe, k, base_ck.infos[k].numel, all_deltas, pool, len(cks))
                state.row_len = base_ck.infos[k].shape[-1] if base_ck.infos[k].shape else None
                if recipe.seeded_pieces and recipe.rescale == "l1" and parts[0] is not None:
                    state.l1 = _keep_norms(recipe, k, parts, deltas, state)
                stats = whole_stats(k, parts) if recipe.whole else None
                for part in parts:
                    state.offset = None if part is None else part[0]
                    if recipe.whole:
                        acc = merge_tensors(recipe, k, *whole_inputs(k, part), stats)
                    else:
                        acc = merge_tensor(recipe, k, deltas(k, part), state, inplace=True)
                        acc.add_(current.pop("base"))
                    buf = pool.take(f"out{j % 3}", acc.shape, out_dtype)
                    result = cast_checked(acc, out_dtype, k, allow_nonfinite=allow_nonfinite, out=buf)
                    background.write(k, result, part is not None)
                    del acc, result
                    j += 1
                state.offset = state.l1 = state.bands = state.kept = None
                if recipe.tensor_thresholds:
                    state.thresholds = None
            ok = True
        finally:
            background.close(ok)
            if bar is not None:
                bar.close()
        copy_support_files(base_ck.root if base_ck.root.is_dir() else None, tmp,
                           dtype=dtype if dtype is not None else None)
        for name, text in (extra_files or {}).items():
            write_text(tmp / name, text)
        write_text(tmp / "README.md", model_card(plan, Path(out).name, (extra_files or {}).get("tvlib_merge.yaml")))
        write_text(tmp / MARKER, json.dumps(
            {"method": recipe.method, "base": base_ck.name, "models": [ck.name for ck in cks]}, indent=1) + "\n")
    for ck in (base_ck, *cks):
        ck.close()
    return {"out": str(Path(out)), "merged": len(plan.merged), "copied": len(plan.copied),
            "dropped": len(plan.dropped), "passes": plan.passes, "bytes": writer.total,
            "seconds": time.perf_counter() - t0}
