"""The unlearning chapter's multi-seed table: derived measures, summaries and the verdicts behind its text.

The table (tvlib.tables: unlearning-seeds.csv) has one row per run of the chapter (a seed and a `share`),
with the scalars of `tvlib.lm.experiment.run_metrics`. Here they become what the chapter reports:
the loss rise and Rouge-L drop at the last lambda, per vector and text; the per-seed slope of the
dose-response; and one `tvlib.rules` verdict per claim, each computed from paired seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import paper
from ..rules import Verdict, agreement, ordering
from .experiment import MATCHED, OTHERS, VECTORS
from .params import TEXTS

__all__ = ["TABLE_LAMS", "MAIN_SHARE", "load", "at_share", "alpha_table", "rouge_table", "controls_table",
           "claims_table", "chapter_values", "manifest_times", "rise", "drop", "curve", "mean_sd", "dose_slopes", "claims", "Claim",
           "committed_row", "row_differences", "ALPHA_TOL", "RATIO_TOL", "MATCHED_TABLE", "selectivity",
           "matched_claims", "matched_values"]

#: the lambda grid of the committed table (the chapter's default `lams`)
TABLE_LAMS = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
#: the aligned text's share in the chapter's main study (the other shares make the dose-response)
MAIN_SHARE = 0.8
#: tolerance of "alpha-hat agrees with the paper's", fixed before any run
ALPHA_TOL = 0.1
#: tolerance of "the aligned text drops almost as much as the forget text" on the ratio of drops
RATIO_TOL = 0.15
#: the table of the equal-step-norm test: fresh seeds 5-9 at share 0.8 (grids/unlearning-matched.yaml)
MATCHED_TABLE = "unlearning-matched.csv"


def load(path: Any):
    """The table's finished runs (status ok) as a DataFrame sorted by share and seed (a one-share grid has no share)."""
    import pandas as pd

    df = pd.read_csv(path)
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    return df.sort_values([c for c in ("share", "seed") if c in df.columns]).reset_index(drop=True)


def at_share(df, share: float):
    """The rows of one share, sorted by seed (the seeds are paired across every measure of a row)."""
    rows = df[np.isclose(df["share"].astype(float), share)]
    return rows.sort_values("seed").reset_index(drop=True)


def _last(df, prefix: str) -> int:
    """Index of the last lambda: the largest i with a column prefix_i."""
    idx = [int(c.rsplit("_", 1)[1]) for c in df.columns if c.startswith(prefix + "_") and c.rsplit("_", 1)[1].isdigit()]
    if not idx:
        raise KeyError(f"no column {prefix}_<i> in the table")
    return max(idx)


def rise(df, vector: str, text: str) -> np.ndarray:
    """Per row: mean token loss at the last lambda minus at lambda = 0 (nats)."""
    key = f"nll_{vector}_{text}"
    return (df[f"{key}_{_last(df, key)}"] - df[f"{key}_0"]).to_numpy(dtype=float)


def drop(df, vector: str, text: str) -> np.ndarray:
    """Per row: the paper's Rouge-L drop (R_0 - R_last) / R_0 in percent."""
    key = f"rouge_{vector}_{text}"
    r0, r1 = df[f"{key}_0"].to_numpy(dtype=float), df[f"{key}_{_last(df, key)}"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (r0 - r1) / r0


def curve(df, metric: str, vector: str, text: str) -> np.ndarray:
    """Per row, the metric ("nll" or "rouge") along the lambda grid: shape (rows, lambdas)."""
    key = f"{metric}_{vector}_{text}"
    return np.stack([df[f"{key}_{i}"].to_numpy(dtype=float) for i in range(_last(df, key) + 1)], axis=1)


def mean_sd(x: Sequence[float], fmt: str = "{:.3f}") -> str:
    """"mean ± sd" over seeds (sample standard deviation)."""
    a = np.asarray(x, dtype=float)
    sd = float(a.std(ddof=1)) if a.size > 1 else float("nan")
    return f"{fmt.format(a.mean())} ± {fmt.format(sd)}"


def dose_slopes(df, measure: str = "rise", vector: str = "full", text: str = "aligned",
                estimator: str = "tv") -> np.ndarray:
    """Per seed: least-squares slope of the text's damage (loss rise or Rouge-L drop) against its alpha-hat.

    One slope per seed over every share of the table (the seeds are the replicates).
    """
    out = []
    for _, rows in df.groupby("seed"):
        x = rows[f"alpha_{estimator}_{text}"].to_numpy(dtype=float)
        y = rise(rows, vector, text) if measure == "rise" else drop(rows, vector, text)
        out.append(float(np.polyfit(x, y, 1)[0]))
    return np.asarray(out)


def selectivity(df, vector: str, *, matched: bool = False) -> np.ndarray:
    """Per row: the other texts' mean loss rise over the forget text's (lower = more selective).

    At the last lambda; with matched=True at the full-rank vector's step norm (`tvlib.lm.matched_step`:
    the full-rank vector itself at its last lambda, which must be -1, a vector of MATCHED at its
    lam_matched). NaN where the forget text's loss does not rise.
    """
    if not matched or vector == "full":
        if matched and _lam_at(df, f"nll_{vector}_forget") != -1.0:
            raise ValueError("the equal-norm comparison needs the table's last lambda to be -1")
        r = {t: rise(df, vector, t) for t in TEXTS}
    elif vector in MATCHED:
        r = {t: (df[f"nll_matched_{vector}_{t}"] - df[f"nll_{vector}_{t}_0"]).to_numpy(dtype=float) for t in TEXTS}
    else:
        raise ValueError(f"vector={vector!r}: expected 'full' or one of {MATCHED} for matched=True")
    return _spread(r)


def _spread(rises: Mapping[str, Any]) -> np.ndarray:
    """The other texts' mean rise over the forget text's, per row; NaN where the forget text's does not rise."""
    r = {t: np.asarray(rises[t], dtype=float) for t in TEXTS}
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r["forget"] > 0, (r["aligned"] + r["less_aligned"]) / 2 / r["forget"], np.nan)


def _lam_at(df, key: str) -> float:
    """The lambda of the table's last grid point (the committed tables use TABLE_LAMS)."""
    return TABLE_LAMS[_last(df, key)] if _last(df, key) < len(TABLE_LAMS) else float("nan")


def alpha_table(df):
    """alpha-hat of the two other texts by estimator: mean ± sd over the rows, and the paper's value."""
    import pandas as pd

    names = {"tv": "task vectors, whole model", "blocks": "task vectors, blocks only (no embeddings, no lm_head)",
             "out_delta": "output changes (logits minus those of Ψ0′)", "out": "outputs (the paper's estimator)"}
    rows = [{"estimator": label, **{t.replace("_", " "): mean_sd(df[f"alpha_{est}_{t}"]) for t in OTHERS}}
            for est, label in names.items()]
    rows.append({"estimator": "paper (Phi-1.5, outputs)",
                 **{t.replace("_", " "): f"{paper.UNLEARNING_ALPHA_HAT[t]:.3f}" for t in OTHERS}})
    return pd.DataFrame(rows)


def rouge_table(df, lams: Sequence[float], vector: str):
    """Rouge-L along lambda (mean ± sd) and the drop in %, per text, with the paper's rows (Table 3 or 4)."""
    import pandas as pd

    rows = []
    for t in TEXTS:
        c = curve(df, "rouge", vector, t)
        row = {"text": t.replace("_", " ")}
        row.update({f"λ={lam:g}": mean_sd(c[:, i], "{:.3f}") for i, lam in enumerate(lams)})
        row["drop %"] = mean_sd(drop(df, vector, t), "{:.1f}")
        rows.append(row)
    for t in TEXTS:
        ref = paper.UNLEARNING_ROUGE_L[vector][t]
        row = {"text": f"{paper.UNLEARNING_NAMES[t]} (paper)"}
        row.update({f"λ={lam:g}": (f"{ref[paper.UNLEARNING_LAMS.index(lam)]:.3f}" if lam in paper.UNLEARNING_LAMS
                                   else "–") for lam in lams})
        row["drop %"] = f"{paper.UNLEARNING_DROP[vector][t]:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def controls_table(df, vectors: Sequence[str], labels: Mapping[str, str]):
    """Loss rise at the last lambda (mean ± sd) on each text, per negated vector."""
    import pandas as pd

    return pd.DataFrame([{"vector negated": labels[v], **{t.replace("_", " "): mean_sd(rise(df, v, t)) for t in TEXTS}}
                         for v in vectors])


def claims_table(cs: Mapping[str, "Claim"], keys: Sequence[str] | None = None,
                 held_out: Mapping[str, "Claim"] | None = None, held_out_label: str = "held-out seeds"):
    """Claim, kind, rule, measured (seeds and mean gap) and verdict, one row per claim.

    A calibrated claim (its quantity was tuned on these seeds) shows "—" as its verdict: it is no test.
    With `held_out` (the same claims on seeds no choice was made on), a column with those verdicts."""
    import pandas as pd

    keys = list(cs) if keys is None else keys
    rows = []
    for k in keys:
        c = cs[k]
        row = {"claim": c.claim, "kind": c.kind, "rule": c.rule, "measured": c.verdict.detail,
               "verdict": "—" if c.kind == "calibrated" else c.verdict.word}
        if held_out is not None:
            row[held_out_label] = held_out[k].verdict.word if k in held_out else "–"
        rows.append(row)
    return pd.DataFrame(rows)


KINDS = ("tested", "calibrated", "descriptive")  # calibrated: tuned on the same seeds, so no test


class Claim:
    """One row of the chapter's theory-vs-measurement reckoning: what is claimed, the rule, the verdict."""

    def __init__(self, claim: str, rule: str, verdict: Verdict, kind: str = "tested") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
        self.claim, self.rule, self.verdict, self.kind = claim, rule, verdict, kind

    def __repr__(self) -> str:
        return f"{self.claim}: {self.verdict.word} ({self.verdict.detail})"


def share_claims(df, share: float) -> dict[str, Claim]:
    """The verdicts that need only the rows at `share` (so also computable on a table of other seeds).

    alpha-hat's agreement with the paper is "calibrated" on the main table's seeds (`share` and
    `less_share` were chosen there to bring it near the paper's values); on other seeds it is a test.
    A table without a share column (one grid at a fixed share, e.g. MATCHED_TABLE) is taken to be at `share`.
    """
    if "share" not in df.columns:
        import pandas as pd

        df = pd.concat([df, pd.DataFrame({"share": float(share)}, index=df.index)], axis=1)
    return claims(df, share, _cross_share=False)


def claims(df, share: float, irrelevant_share: float = 0.0, *, _cross_share: bool = True) -> dict[str, Claim]:
    """Every verdict of the chapter, from the rows at `share` (and, for the dose-response, all shares).

    Orderings use tvlib.rules.ordering (>= 4/5 paired seeds and a mean gap beyond 2 SE);
    agreements use tvlib.rules.agreement with ALPHA_TOL or RATIO_TOL, fixed before any run.
    """
    m = at_share(df, share)
    zero = np.zeros(len(m))
    r = {(v, t): rise(m, v, t) for v in VECTORS for t in TEXTS}
    d = {(v, t): drop(m, v, t) for v in ("full", "lora") for t in TEXTS}
    out: dict[str, Claim] = {}

    def add(key: str, claim: str, rule: str, verdict: Verdict, kind: str = "tested") -> None:
        out[key] = Claim(claim, rule, verdict, kind)

    for v, name in (("full", "full-rank"), ("lora", "LoRA")):
        add(f"forget_most_loss_{v}", f"the forget text loses most ({name}, loss)",
            "forget rise > the larger other rise",
            ordering(r[v, "forget"], np.maximum(r[v, "aligned"], r[v, "less_aligned"])))
        add(f"forget_most_rouge_{v}", f"the forget text loses most ({name}, Rouge-L)",
            "forget drop > the larger other drop",
            ordering(d[v, "forget"], np.maximum(d[v, "aligned"], d[v, "less_aligned"])))
        add(f"order_loss_{v}", f"aligned hurt more than less aligned ({name}, loss)", "aligned rise > less aligned rise",
            ordering(r[v, "aligned"], r[v, "less_aligned"]))
        add(f"order_rouge_{v}", f"aligned hurt more than less aligned ({name}, Rouge-L)",
            "aligned drop > less aligned drop", ordering(d[v, "aligned"], d[v, "less_aligned"]))
    add("order_loss_lora_emb", "aligned hurt more than less aligned (LoRA with embeddings, loss)",
        "aligned rise > less aligned rise", ordering(r["lora_emb", "aligned"], r["lora_emb", "less_aligned"]))
    ratio = d["full", "aligned"] / d["full", "forget"]
    ref = paper.UNLEARNING_DROP["full"]
    add("almost_as_much", "the aligned text drops almost as much as the forget text (full-rank)",
        f"ratio of drops within {RATIO_TOL} of the paper's",
        agreement(ratio, ref["aligned"] / ref["forget"], tol=RATIO_TOL))
    add("lora_unlearns", "a LoRA vector unlearns the forget text (Cor. 1)", "forget rise > 0",
        ordering(r["lora", "forget"], zero))
    for t in OTHERS:
        add(f"alpha_{t}", f"alpha-hat of the {t.replace('_', ' ')} text is the paper's",
            f"within {ALPHA_TOL} of {paper.UNLEARNING_ALPHA_HAT[t]}",
            agreement(m[f"alpha_tv_{t}"], paper.UNLEARNING_ALPHA_HAT[t], tol=ALPHA_TOL, words=("agrees", "disagrees")),
            "calibrated")
    add("alpha_blocks", "alpha-hat without the embeddings orders the texts", "aligned > less aligned (blocks only)",
        ordering(m["alpha_blocks_aligned"], m["alpha_blocks_less_aligned"]))
    add("random_forget", "negating the forget vector beats a random vector of its norms (forget text)",
        "full rise > random rise", ordering(r["full", "forget"], r["random", "forget"]))
    add("random_aligned", "the aligned text's damage exceeds a random push of the same size",
        "full rise > random rise", ordering(r["full", "aligned"], r["random", "aligned"]))
    for t in OTHERS:
        own = f"own_{t}"
        others = [x for x in TEXTS if x != t]
        add(f"own_{t}", f"the {t.replace('_', ' ')} text's own vector hurts it most",
            "own text's rise > the larger other rise", ordering(r[own, t], np.maximum(*(r[own, x] for x in others))))
    spread = {v: selectivity(m, v) for v in ("full", "lora", "lora_emb")}
    add("spread_lora_full", "LoRA spreads its damage more evenly over the texts than the full-rank vector",
        "mean other rise / forget rise: LoRA > full rank", ordering(spread["lora"], spread["full"]))
    add("spread_lora_emb", "with the embeddings among its targets, LoRA's damage is more selective",
        "mean other rise / forget rise: LoRA > LoRA with embeddings", ordering(spread["lora"], spread["lora_emb"]))
    if not _cross_share:
        return out
    irr = at_share(df, irrelevant_share)
    add("alpha_between", "the less aligned text lies between irrelevant and aligned",
        "alpha-hat: aligned > less aligned > a text of share 0",
        _both(ordering(m["alpha_tv_aligned"], m["alpha_tv_less_aligned"]),
              ordering(m["alpha_tv_less_aligned"], irr["alpha_tv_aligned"])), "calibrated")
    zeros = np.zeros(df["seed"].nunique())
    for measure, what in (("rise", "loss rise"), ("drop", "Rouge-L drop")):
        add(f"dose_{measure}", f"the aligned text's {what} grows with alpha-hat (dose-response)",
            "per-seed slope over the shares > 0", ordering(dose_slopes(df, measure), zeros))
    add("dose_drop_reversed", "the aligned text's Rouge-L drop falls as alpha-hat grows (the dose-response reversed)",
        "per-seed slope over the shares < 0", ordering(zeros, dose_slopes(df, "drop"), words=("reversed", "not reversed")))
    add("dose_blocks", "the aligned text's loss rise grows with alpha-hat without the embeddings",
        "per-seed slope > 0", ordering(dose_slopes(df, "rise", estimator="blocks"), zeros))
    return out


def _both(a: Verdict, b: Verdict) -> Verdict:
    ok = a.holds and b.holds
    return Verdict("holds" if ok else "does not hold", ok, f"{a.detail}; {b.detail}")


def chapter_values(df, share: float = MAIN_SHARE) -> dict[str, str]:
    """Every number and verdict the chapter's text quotes, as "mean ± sd" strings and words, keyed unl_*."""
    m = at_share(df, share)
    out: dict[str, str] = {"unl_n_runs": str(len(df)), "unl_n_seeds": str(m["seed"].nunique())}
    ref = paper.UNLEARNING_DROP
    out.update({f"unl_paper_alpha_{t}": f"{paper.UNLEARNING_ALPHA_HAT[t]:.3f}" for t in OTHERS})
    out.update({f"unl_paper_drop_{v}_{t}": f"{ref[v][t]:.2f}" for v in ("full", "lora") for t in TEXTS})
    out["unl_paper_ratio"] = f"{ref['full']['aligned'] / ref['full']['forget']:.2f}"
    for est in ("tv", "blocks", "out", "out_delta"):
        out.update({f"unl_alpha_{est}_{t}": mean_sd(m[f"alpha_{est}_{t}"]) for t in OTHERS})
    s0, s1 = at_share(df, 0.0), at_share(df, 1.0)
    out.update(unl_alpha_share0=mean_sd(s0["alpha_tv_aligned"]), unl_alpha_less_share0=mean_sd(s0["alpha_tv_less_aligned"]),
               unl_alpha_less_share1=mean_sd(s1["alpha_tv_less_aligned"]),
               unl_emb_share=mean_sd(100 * m["emb_share"], "{:.0f}"),
               unl_overlap_aligned=mean_sd(100 * m["overlap_aligned"], "{:.0f}"),
               unl_overlap_less=mean_sd(100 * m["overlap_less_aligned"], "{:.0f}"))
    for v in VECTORS:
        out.update({f"unl_rise_{v}_{t}": mean_sd(rise(m, v, t)) for t in TEXTS})
    for v in ("full", "lora"):
        out.update({f"unl_drop_{v}_{t}": mean_sd(drop(m, v, t), "{:.1f}") for t in TEXTS})
    out["unl_drop_ratio"] = mean_sd(drop(m, "full", "aligned") / drop(m, "full", "forget"), "{:.2f}")
    out["unl_rouge_sd"] = f"{max(np.std(drop(m, v, t), ddof=1) for v in ('full', 'lora') for t in TEXTS):.0f}"
    for v in ("full", "lora", "lora_emb"):
        out[f"unl_spread_{v}"] = mean_sd(selectivity(m, v), "{:.2f}")
        out[f"unl_norm_{v}"] = mean_sd(m[f"norm_{v}"], "{:.1f}")
    out.update(unl_slope_rise=mean_sd(dose_slopes(df, "rise"), "{:.2f}"),
               unl_slope_drop=mean_sd(dose_slopes(df, "drop"), "{:.0f}"),
               unl_slope_blocks=mean_sd(dose_slopes(df, "rise", estimator="blocks"), "{:.2f}"))
    for x in sorted(df["share"].unique()):
        rows = at_share(df, x)
        key = f"{round(100 * x):03d}"
        out[f"unl_dose_rise_{key}"] = mean_sd(rise(rows, "full", "aligned"))
        out[f"unl_dose_alpha_{key}"] = mean_sd(rows["alpha_tv_aligned"], "{:.2f}")
        out[f"unl_dose_forget_{key}"] = mean_sd(rise(rows, "full", "forget"))
        out[f"unl_dose_blocks_{key}"] = mean_sd(rows["alpha_blocks_aligned"], "{:.2f}")
        out[f"unl_dose_ratio_{key}"] = mean_sd(rise(rows, "full", "aligned") / rise(rows, "full", "forget"), "{:.2f}")
        out[f"unl_dose_less_alpha_{key}"] = mean_sd(rows["alpha_tv_less_aligned"], "{:.2f}")
    out["unl_less_rise_range"] = f"{min(rise(df, 'full', 'less_aligned')):.2f} to {max(rise(df, 'full', 'less_aligned')):.2f}"
    out["unl_slope_less"] = mean_sd(dose_slopes(df, "rise", text="less_aligned"), "{:.2f}")
    step = {t: m[f"nll_lora_emb_{t}_1"] - m[f"nll_lora_emb_{t}_0"] for t in TEXTS}  # the first lambda step
    out["unl_emb_small_forget"] = mean_sd(step["forget"])
    out["unl_emb_small_spread"] = mean_sd(_spread(step), "{:.2f}")
    for key, c in claims(df, share).items():
        out[f"unl_v_{key}"], out[f"unl_d_{key}"] = c.verdict.word, c.verdict.detail
    return out


def matched_claims(df) -> dict[str, Claim]:
    """The equal-step-norm test of the LoRA explanation, fixed before its runs (fresh seeds, MATCHED_TABLE).

    Each vector negated at the full-rank vector's step norm; selectivity compared with
    tvlib.rules.ordering over the paired seeds, as every other ordering of the chapter.
    """
    s = {v: selectivity(df, v, matched=True) for v in ("full", *MATCHED)}
    rule = "other/forget rise: {}"
    return {
        "matched_emb": Claim("with the embeddings among its targets, LoRA is more selective (equal norm)",
                             rule.format("LoRA > LoRA with embeddings"), ordering(s["lora"], s["lora_emb"])),
        "matched_lora_full": Claim("LoRA on the projections is less selective than the full-rank vector (equal norm)",
                                   rule.format("LoRA > full rank"), ordering(s["lora"], s["full"])),
        "matched_emb_full": Claim("LoRA with embeddings is less selective than the full-rank vector (equal norm)",
                                  rule.format("LoRA with embeddings > full rank"), ordering(s["lora_emb"], s["full"])),
    }


def matched_values(df) -> dict[str, str]:
    """The equal-step-norm test's numbers and verdicts, keyed unl_m_*."""
    out = {"unl_m_n_seeds": str(df["seed"].nunique()),
           "unl_m_seeds": f"{int(df['seed'].min())}–{int(df['seed'].max())}"}
    for v in ("full", *MATCHED):
        out[f"unl_m_spread_{v}"] = mean_sd(selectivity(df, v, matched=True), "{:.2f}")
    for v in MATCHED:
        out[f"unl_m_lam_{v}"] = mean_sd(df[f"lam_matched_{v}"], "{:.2f}")
        out[f"unl_m_rise_{v}"] = mean_sd(df[f"nll_matched_{v}_forget"] - df[f"nll_{v}_forget_0"])
    out["unl_m_rise_full"] = mean_sd(rise(df, "full", "forget"))
    for key, c in matched_claims(df).items():
        out[f"unl_v_{key}"], out[f"unl_d_{key}"] = c.verdict.word, c.verdict.detail
    return out


def manifest_times(path: Any) -> dict[str, float]:
    """From a table's manifest: number of runs, mean minutes per run, and the minutes from first start to last end."""
    import datetime as dt
    import json
    from pathlib import Path

    runs = json.loads(Path(path).read_text())["runs"].values()
    starts = [dt.datetime.fromisoformat(r["started"]) for r in runs]
    ends = [dt.datetime.fromisoformat(r["finished"]) for r in runs]
    walls = [r["wall_s"] for r in runs]
    return {"n_runs": len(walls), "run_min": float(np.mean(walls)) / 60,
            "span_min": (max(ends) - min(starts)).total_seconds() / 60}


def committed_row(df, seed: int, share: float) -> Mapping[str, Any] | None:
    """The table's row of (seed, share), or None."""
    rows = df[(df["seed"] == seed) & np.isclose(df["share"].astype(float), share)]
    return None if rows.empty else rows.iloc[0].to_dict()


def row_differences(row: Mapping[str, Any], metrics: Mapping[str, float]) -> dict[str, float]:
    """|committed - measured| for every metric of both, largest first (metrics missing from one are skipped)."""
    diff = {}
    for k, v in metrics.items():
        c = row.get(k)
        if isinstance(c, (int, float)) and math.isfinite(c) and math.isfinite(v):
            diff[k] = abs(float(c) - float(v))
    return dict(sorted(diff.items(), key=lambda kv: -kv[1]))
