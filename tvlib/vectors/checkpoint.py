"""Checkpoints in and out: safetensors read tensor by tensor, merged models written shard by shard.

Reading: a local directory (model.safetensors, or a sharded model.safetensors.index.json), one
.safetensors file, or a Hugging Face hub id (fetched with huggingface_hub, which honours
HF_HUB_OFFLINE). Tensors are read one at a time with plain positioned reads at the offsets of the
safetensors header, not through a memory map: a map's pages count in the process's resident memory,
so reading three 1 GB checkpoints through maps shows 3 GB of RSS even when one tensor is in use.

Writing: a directory that transformers' from_pretrained loads: safetensors shards (an index when there
is more than one), the base's config, tokenizer and generation files copied, tied weights written
once (the input embedding, as Hugging Face does), everything under a temporary name until complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .io import atomic_path

__all__ = [
    "DTYPE_CODES",
    "Checkpoint",
    "ShardWriter",
    "TensorInfo",
    "copy_support_files",
    "load_state_dict",
    "open_checkpoint",
    "parse_size",
    "save_state_dict",
    "tied_embeddings",
]

DTYPE_CODES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
CODE_OF = {v: k for k, v in DTYPE_CODES.items()}
WEIGHT_FILES = re.compile(r".*\.(safetensors|bin|pt|pth|ckpt|gguf|msgpack|h5)$|.*\.index\.json$")
INPUT_EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight",
                    "tok_embeddings.weight")
OUTPUT_EMBEDDINGS = ("lm_head.weight", "embed_out.weight", "output.weight")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies: its file, dtype, shape and absolute byte range."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())


def _read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        header = json.loads(f.read(n))
    return header, 8 + n


def _resolve(source: str | os.PathLike) -> Path:
    """A local path for source: the path itself, or the snapshot of a hub id."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    text = os.fspath(source)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) and not text.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=text, allow_patterns=[
                "*.safetensors", "*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken", "tokenizer*"]))
        except Exception as err:  # noqa: BLE001 (offline, unknown id, no network: all mean "not found")
            raise FileNotFoundError(f"{text}: no such local path, and not fetched as a Hugging Face id "
                                    f"({type(err).__name__}: {err})") from None
    raise FileNotFoundError(f"{text}: no such file or directory")


class Checkpoint:
    """A safetensors checkpoint opened for reading tensor by tensor (keys in storage order)."""

    def __init__(self, source: str | os.PathLike, name: str | None = None) -> None:
        self.source = os.fspath(source)
        self.name = name or self.source
        path = _resolve(source)
        self.root = path if path.is_dir() else path.parent
        files = self._files(path)
        self.infos: dict[str, TensorInfo] = {}
        for f in files:
            header, base = _read_header(f)
            entries = []
            for k, v in header.items():
                if k == "__metadata__":
                    continue
                if v["dtype"] not in DTYPE_CODES:
                    raise ValueError(f"{f}: tensor {k} has dtype {v['dtype']}, which tvlib does not read")
                s, e = v["data_offsets"]
                entries.append((s, k, TensorInfo(f, DTYPE_CODES[v["dtype"]], tuple(v["shape"]), base + s, base + e)))
            for _, k, info in sorted(entries, key=lambda t: t[0]):
                if k in self.infos:
                    raise ValueError(f"{self.name}: tensor {k} appears in two files")
                self.infos[k] = info
        cfg = self.root / "config.json" if path.is_dir() else None
        self.config: dict | None = json.loads(cfg.read_text()) if cfg is not None and cfg.is_file() else None
        self._fds: dict[Path, int] = {}

    def _files(self, path: Path) -> list[Path]:
        if path.is_file():
            if path.suffix != ".safetensors":
                raise ValueError(f"{path}: expected a .safetensors file (tvlib reads safetensors checkpoints only)")
            return [path]
        index = sorted(path.glob("*.safetensors.index.json"))
        if index:
            weight_map = json.loads(index[0].read_text())["weight_map"]
            return [path / f for f in dict.fromkeys(weight_map.values())]
        files = sorted(path.glob("*.safetensors"))
        if not files:
            other = sorted(p.name for p in path.iterdir() if WEIGHT_FILES.match(p.name))
            hint = f" (found {', '.join(other)}: save it with safe_serialization=True)" if other else ""
            raise FileNotFoundError(f"{path}: no .safetensors weights{hint}")
        return files

    def keys(self) -> list[str]:
        return list(self.infos)

    def __contains__(self, key: str) -> bool:
        return key in self.infos

    def __iter__(self):
        return iter(self.infos)

    def numel(self) -> int:
        """Total number of entries."""
        return sum(i.numel for i in self.infos.values())

    def nbytes(self) -> int:
        return sum(i.end - i.start for i in self.infos.values())

    def files(self) -> list[Path]:
        return list(dict.fromkeys(i.file for i in self.infos.values()))

    def read(self, key: str, out: Tensor | None = None, part: tuple[int, int] | None = None) -> Tensor:
        """The tensor `key`, read from disk into fresh memory (or into the uint8 buffer `out`, reused);
        part=(start, stop): only those entries of its row-major flattening, as a 1-D tensor."""
        info = self.infos[key]
        first, n = info.start, info.end - info.start
        if part is not None:
            size = info.dtype.itemsize
            first, n = info.start + part[0] * size, (part[1] - part[0]) * size
        buf = torch.empty(n, dtype=torch.uint8) if out is None else out[:n]
        if n:
            fd = self._fds.get(info.file)
            if fd is None:
                fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
            view, done = memoryview(buf.numpy()), 0
            while done < n:
                got = os.preadv(fd, [view[done:]], first + done)
                if got <= 0:
                    raise OSError(f"{info.file}: truncated while reading {key}")
                done += got
        return buf.view(info.dtype) if part is not None else buf.view(info.dtype).reshape(info.shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Checkpoint:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({self.name!r}, {len(self.infos)} tensors, {self.numel():,} entries)"


def open_checkpoint(source: str | os.PathLike | Checkpoint, name: str | None = None) -> Checkpoint:
    """A Checkpoint for a directory, a .safetensors file or a hub id (a Checkpoint is returned as it is);
    "MODEL+ADAPTER" (mergekit's notation) for a model with a peft LoRA adapter applied (lora.LoraCheckpoint)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    text = os.fspath(source)
    if "+" in text and not Path(text).expanduser().exists():
        model, _, adapter = text.rpartition("+")
        from .lora import LoraCheckpoint, is_adapter

        if is_adapter(adapter):
            return LoraCheckpoint(model, adapter, name)
    return Checkpoint(source, name)


def load_state_dict(source: str | os.PathLike) -> dict[str, Tensor]:
    """Every tensor of a checkpoint in memory (for small models; merges of large ones stream instead)."""
    with open_checkpoint(source) as ck:
        return {k: ck.read(k) for k in ck}


def tied_embeddings(config: Mapping | None, keys: Iterable[str]) -> tuple[str, str] | None:
    """(input embedding key, output embedding key) when the config ties them, else None."""
    if not config:
        return None
    tie = config.get("tie_word_embeddings")
    if tie is None and isinstance(config.get("text_config"), Mapping):
        tie = config["text_config"].get("tie_word_embeddings")
    if not tie:
        return None
    keys = list(keys)
    inputs = [k for k in keys if k.endswith(INPUT_EMBEDDINGS)]
    if len(inputs) != 1:
        return None
    present = [o for o in OUTPUT_EMBEDDINGS if o in keys]
    return inputs[0], (present[0] if present else OUTPUT_EMBEDDINGS[0])


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "2GB", "500MB", "1GiB"."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(size), re.IGNORECASE)
    if not m:
        raise ValueError(f"size={size!r}: expected bytes as an int or a string like '2GB'")
    unit = (1024 if m.group(3) else 1000) ** " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * unit)


class ShardWriter:
    """Writes tensors, in a planned order, into safetensors shards of at most max_bytes (an index if > 1)."""

    def __init__(self, directory: Path, entries: list[tuple[str, torch.dtype, tuple]], max_bytes: int,
                 prefix: str = "model") -> None:
        self.directory, self.entries = Path(directory), entries
        shards: list[list[tuple[str, torch.dtype, tuple]]] = [[]]
        size = 0
        for e in entries:
            nbytes = int(torch.Size(e[2]).numel()) * e[1].itemsize
            if shards[-1] and size + nbytes > max_bytes:
                shards.append([])
                size = 0
            shards[-1].append(e)
            size += nbytes
        n = len(shards)
        self.names = [f"{prefix}.safetensors"] if n == 1 else [
            f"{prefix}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self.shards = shards
        self._shard, self._pos, self._file, self._done = -1, 0, None, 0
        self.total = sum(int(torch.Size(s).numel()) * d.itemsize for _, d, s in entries)
        self.weight_map = {k: self.names[i] for i, shard in enumerate(shards) for k, _, _ in shard}
        self.prefix = prefix

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        self._shard += 1
        self._pos = 0
        header, offset = {}, 0
        for k, dtype, shape in self.shards[self._shard]:
            nbytes = int(torch.Size(shape).numel()) * dtype.itemsize
            header[k] = {"dtype": CODE_OF[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._file = open(self.directory / self.names[self._shard], "wb")  # noqa: SIM115 (closed by close())
        self._file.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, key: str, tensor: Tensor, part: bool = False) -> None:
        """Append the next tensor (it must be the next one planned, with its planned dtype and shape);
        part=True: the next entries of it, flat (a tensor may be written in several parts, in order)."""
        while self._file is None or self._pos == len(self.shards[self._shard]):
            self._open_next()
        k, dtype, shape = self.shards[self._shard][self._pos]
        numel = int(torch.Size(shape).numel())
        if k != key or tensor.dtype != dtype or (tuple(tensor.shape) != tuple(shape) and not part) or (
                part and self._done + tensor.numel() > numel):
            raise ValueError(f"writing {key} {tensor.dtype} {tuple(tensor.shape)}: planned {k} {dtype} {tuple(shape)}")
        t = tensor.detach().contiguous().cpu()
        if t.numel():
            self._file.write(memoryview(t.view(torch.uint8).reshape(-1).numpy()))
        self._done += t.numel()
        if self._done == numel:
            self._pos, self._done = self._pos + 1, 0

    def close(self) -> None:
        """Finish the last shard and write the index when there are several."""
        while self._shard < len(self.shards) - 1:  # shards of empty plans
            self._open_next()
        if self._file is not None:
            self._file.close()
            self._file = None
        if len(self.names) > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": self.weight_map}
            (self.directory / f"{self.prefix}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def copy_support_files(src: Path | None, dst: Path, *, dtype: torch.dtype | None = None) -> list[str]:
    """Copy config, tokenizer and generation files (everything but weights) from src; set config's dtype."""
    copied = []
    if src is not None and src.is_dir():
        for p in sorted(src.iterdir()):
            if p.is_file() and not p.name.startswith(".") and not WEIGHT_FILES.match(p.name) and p.name != "README.md":
                shutil.copyfile(p, dst / p.name)  # new file: the umask's permissions, not the source's
                copied.append(p.name)
    cfg = dst / "config.json"
    if dtype is not None and cfg.is_file():
        config = json.loads(cfg.read_text())
        name = str(dtype).removeprefix("torch.")
        key = "torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"
        if config.get(key) != name:
            config[key] = name
            cfg.write_text(json.dumps(config, indent=2) + "\n")
    return copied


def save_state_dict(state: Mapping[str, Tensor], out: str | os.PathLike, *, like: str | os.PathLike | None = None,
                    max_shard_size: int | str = "2GB") -> Path:
    """Write a state dict as a from_pretrained directory, atomically: tensors sharing memory once (the
    first key, i.e. the input embedding of a tied model), config and tokenizer files copied from `like`."""
    from .statedict import alias_groups

    drop = {a for group in alias_groups(state).values() for a in group}
    keys = [k for k in state if k not in drop]
    entries = [(k, state[k].dtype, tuple(state[k].shape)) for k in keys]
    src = Path(like) if like is not None else None
    with atomic_path(out, directory=True) as tmp:
        writer = ShardWriter(tmp, entries, parse_size(max_shard_size))
        for k in keys:
            writer.write(k, state[k])
        writer.close()
        copy_support_files(src if src is None or src.is_dir() else src.parent, tmp)
    return Path(out)
