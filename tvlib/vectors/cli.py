"""The `tvlib` command: `tvlib merge CONFIG OUT` merges checkpoints as a config file says (--dry-run: only say
what it would do); `tvlib extract-lora BASE FT OUT --rank r` writes FT - BASE as a peft LoRA adapter;
`tvlib inspect BASE FT1 FT2 ...` reports what the theory needs to advise a merge."""

from __future__ import annotations

import argparse
import signal
import sys
import time

__all__ = ["main"]


def _merge(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import check_output, merge_checkpoints, plan_merge

    job = load_config(args.config)
    strict = job.strict and not args.no_strict
    allow = job.allow_nonfinite or args.allow_nonfinite
    shard = args.shard_size or job.shard_size
    if args.dry_run:
        plan = plan_merge(job.base, job.models, job.recipe, dtype=job.dtype, strict=strict)
        check_output(args.out, [plan.base, *plan.models], force=args.force)
        plan.notes[:0] = job.notes
        print(plan.describe(args.out))
        print("dry run: nothing read beyond the headers, nothing written")
        return 0
    for note in job.notes:
        print(f"note: {note}", file=sys.stderr)
    t0 = time.perf_counter()
    summary = merge_checkpoints(job.base, job.models, job.recipe, args.out, dtype=job.dtype, max_shard_size=shard,
                                strict=strict, allow_nonfinite=allow, extra_files={"tvlib_merge.yaml": job.text},
                                threads=args.threads, log=lambda s: print(s, file=sys.stderr), force=args.force,
                                progress=True)
    print(f"merged {summary['merged']} tensors ({summary['copied']} copied from the base) of "
          f"{len(job.models)} model(s) by {job.recipe.method} into {args.out}: "
          f"{summary['bytes'] / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f} s")
    return 0


def _extract_lora(args: argparse.Namespace) -> int:
    from .lora import extract_lora

    t0 = time.perf_counter()
    summary = extract_lora(args.base, args.finetuned, args.out, args.rank, force=args.force)
    print(f"wrote a rank-{args.rank} LoRA adapter of {summary['matrices']} matrices to {args.out}: relative error "
          f"{summary['relative_error']:.3g} (Frobenius, over the matrices) in {time.perf_counter() - t0:.1f} s")
    left = summary["left_out"]
    if left:
        worst = max(left, key=left.get)
        print(f"note: {len(left)} non-matrix deltas are not in the adapter (a LoRA holds matrices only), "
              f"largest |delta| {left[worst]:.3g} in {worst}", file=sys.stderr)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from .inspection import inspect_checkpoints

    print(inspect_checkpoints(args.base, args.models, svd_limit=args.svd_limit).report())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tvlib` console script."""
    parser = argparse.ArgumentParser(prog="tvlib", description="Task-vector tools for checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge fine-tuned checkpoints into a base as a YAML config says",
                       description="Merge fine-tuned safetensors checkpoints into their base, tensor by tensor, "
                                   "and write a directory that from_pretrained loads.")
    m.add_argument("config", help="YAML config (mergekit's layout: merge_method, base_model, models, parameters)")
    m.add_argument("out", help="output directory (written atomically; an earlier tvlib output is replaced when done)")
    m.add_argument("--force", action="store_true",
                   help="replace OUT even if it is an input model or a non-empty folder that tvlib did not write")
    m.add_argument("--dry-run", action="store_true", help="list what would be read and written, and the estimated peak memory")
    m.add_argument("--shard-size", default=None, help="largest shard, e.g. 2GB (default: the config's, else 2GB)")
    m.add_argument("--allow-nonfinite", action="store_true", help="let NaN/inf values through instead of failing")
    m.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the merge is memory-bound)")
    m.add_argument("--no-strict", action="store_true", help="copy the base's value where the models' keys differ")
    x = sub.add_parser("extract-lora", help="write finetuned - base as a rank-r peft LoRA adapter",
                       description="The best rank-r approximation (truncated SVD) of every weight matrix of "
                                   "FINETUNED - BASE, written as a LoRA adapter that peft loads on BASE.")
    x.add_argument("base", help="the base checkpoint (directory, .safetensors file or Hugging Face id)")
    x.add_argument("finetuned", help="the fine-tuned checkpoint")
    x.add_argument("out", help="output directory of the adapter")
    x.add_argument("--rank", type=int, required=True, help="the rank r of every matrix's approximation")
    x.add_argument("--force", action="store_true", help="replace OUT even if it is a non-empty folder of other files")
    i = sub.add_parser("inspect", help="what the theory needs to advise a merge: cosines, norms, ranks, lambda ranges",
                       description="Per-layer and overall norms and cosines of the task vectors FT_i - BASE, the "
                                   "effective rank and row concentration of their matrices, and the lambda ranges "
                                   "the paper's Theorems 1-2 suggest (theory-based guidance, with its assumptions).")
    i.add_argument("base", help="the base checkpoint")
    i.add_argument("models", nargs="+", help="fine-tuned checkpoints of the same base")
    i.add_argument("--svd-limit", type=int, default=4096,
                   help="effective ranks only of matrices whose smaller side is at most this (default 4096)")
    args = parser.parse_args(argv)

    def terminate(signum, frame):  # SLURM, docker stop: unwind, so the partial output is removed
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return {"merge": _merge, "extract-lora": _extract_lora, "inspect": _inspect}[args.command](args)
    except (ValueError, OSError, TypeError) as err:  # OSError: FileNotFoundError, PermissionError, disk full, ...
        print(f"tvlib {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tvlib {args.command}: interrupted: nothing written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(err: BaseException) -> str:
    """An error as text: an OSError from the OS as one line (its message and the path), others as they are."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        other = f" -> {err.filename2}" if err.filename2 else ""
        return f"{err.strerror}{where}{other}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
