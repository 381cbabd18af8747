"""Time a fresh install of each chapter extra, as a Colab user's first cell does it (torch already there).

    .venv/bin/python benchmarks/bench_install.py [--extras toy,images,lm,pretrained,batch] [--cache]

Builds tvlib's wheel, makes one virtual environment with the torch of .venv (not timed: Colab ships
torch), then for each extra copies it and times `pip install <wheel>[extra]` with pip's cache off (every
package downloaded, as on a new Colab machine), unless --cache. Prints one line per extra: seconds,
number of packages added, and the size added to site-packages.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", *args], capture_output=True, text=True)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extras", default="toy,images,lm,pretrained,batch")
    ap.add_argument("--cache", action="store_true", help="let pip use its cache (default: download everything)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tvlib-install-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
                       check=True, capture_output=True)
        wheel = next((tmp / "dist").glob("tvlib-*.whl"))
        base = tmp / "base"
        subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
        torch = f"torch=={version('torch').split('+')[0]}"
        t0 = time.perf_counter()
        done = _pip(base / "bin" / "python", "install", "-q", torch)
        if done.returncode:
            raise SystemExit(f"could not install {torch}: {done.stderr[-500:]}")
        print(f"base environment with {torch}: {time.perf_counter() - t0:.0f} s (not counted below)")
        site = next((base / "lib").glob("python*/site-packages"))
        before_n, before_size = len(list(site.glob("*.dist-info"))), _size(site)
        print(f"{'extra':<12}{'seconds':>9}{'packages':>10}{'MB added':>10}   (pip cache {'on' if a.cache else 'off'})")
        for extra in a.extras.split(","):
            env = tmp / f"env-{extra}"
            shutil.copytree(base, env, symlinks=True)
            py = env / "bin" / "python"
            t0 = time.perf_counter()
            done = _pip(py, "install", "-q", *([] if a.cache else ["--no-cache-dir"]), f"{wheel}[{extra}]")
            wall = time.perf_counter() - t0
            if done.returncode:
                print(f"{extra:<12} FAILED: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
                continue
            s = next((env / "lib").glob("python*/site-packages"))
            n = len(list(s.glob("*.dist-info"))) - before_n
            print(f"{extra:<12}{wall:>9.0f}{n:>10d}{(_size(s) - before_size) / 1e6:>10.0f}")
            shutil.rmtree(env)


if __name__ == "__main__":
    main()
