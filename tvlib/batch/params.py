"""Parameters of the page 'Running the experiments at scale' (book/scale.md), checked on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..params import Params, integer, number_list, positive

__all__ = ["ScaleParams"]


@dataclass(frozen=True)
class ScaleParams(Params):
    """A small real batch: one chapter over a grid of delta_hash and seeds."""

    chapter: ClassVar[str | None] = "scale"

    notebook: str = "setting.ipynb"
    delta_hashes: tuple[float, ...] = (0.05, 0.15)
    seeds: tuple[int, ...] = (0, 1)
    metric: str = "att_after_own_sign"
    eps: float = 0.1

    def check(self) -> None:
        if not isinstance(self.notebook, str) or not self.notebook.endswith((".ipynb", ".md")):
            raise ValueError(f"notebook={self.notebook!r}: expected a chapter file such as 'setting.ipynb'")
        number_list("delta_hashes", self.delta_hashes, lo=0.0, hi=1.0)
        for s in self.seeds:
            integer("seeds", s, lo=0)
        if not self.seeds:
            raise ValueError("seeds is empty: expected at least one seed")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"metric={self.metric!r}: expected the name of a number the notebook glues")
        positive("eps", self.eps)
