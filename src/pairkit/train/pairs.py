"""Preference pairs from scored samples: best-vs-worst, the sweet-spot rule, Curry-DPO curricula.

Input is one row per sampled response: a prompt, the response and its score (a reward model's or a judge's),
as a DataFrame or a mapping of equal-length columns. Every rule works per prompt with pandas group-bys (no
Python loop over prompts) and returns a DataFrame ``prompt, chosen, rejected, chosen_score, rejected_score,
gap`` ready for :func:`pairkit.train.train_preference`. Prompts that cannot give a pair (one sample, or all
scores equal) are left out with a :class:`pairkit.errors.DroppedRowsWarning` saying how many.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairkit.errors import DroppedRowsWarning, InputError

__all__ = ["best_vs_worst_pairs", "curriculum_pairs", "read_pairs", "sweet_spot_pairs"]

_OUT = ["prompt", "chosen", "rejected", "chosen_score", "rejected_score", "gap"]


def _frame(samples: Any, prompt: str, response: str, score: str) -> pd.DataFrame:
    df = samples if isinstance(samples, pd.DataFrame) else pd.DataFrame(samples)
    missing = [c for c in (prompt, response, score) if c not in df.columns]
    if missing:
        raise InputError(f"samples lack column(s) {missing}; columns are {list(df.columns)}")
    out = pd.DataFrame({"prompt": df[prompt], "response": df[response]})
    s = pd.to_numeric(df[score], errors="coerce")
    bad = ~np.isfinite(s.to_numpy(dtype=float))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"samples, row {row + 1}, column {score!r}: score {df[score].iloc[row]!r} is not a finite number"
        )
    out["score"] = s.to_numpy(dtype=float)
    return out.reset_index(drop=True)


def _pairs(df: pd.DataFrame, chosen_idx, rejected_idx) -> pd.DataFrame:
    c, r = df.loc[np.asarray(chosen_idx)], df.loc[np.asarray(rejected_idx)]
    out = pd.DataFrame(
        {
            "prompt": c["prompt"].to_numpy(),
            "chosen": c["response"].to_numpy(),
            "rejected": r["response"].to_numpy(),
            "chosen_score": c["score"].to_numpy(),
            "rejected_score": r["score"].to_numpy(),
        }
    )
    out["gap"] = out["chosen_score"] - out["rejected_score"]
    return out


def _keep_positive(pairs: pd.DataFrame, n_prompts: int, min_gap: float) -> pd.DataFrame:
    keep = pairs["gap"] > min_gap
    dropped = n_prompts - int(keep.sum())
    if dropped:
        warnings.warn(
            f"{dropped} of {n_prompts} prompts gave no pair with a score gap above {min_gap} (one sample or tied "
            "scores); they are left out",
            DroppedRowsWarning,
            stacklevel=3,
        )
    return pairs[keep].reset_index(drop=True)


def best_vs_worst_pairs(
    samples, *, prompt: str = "prompt", response: str = "response", score: str = "score", min_gap: float = 0.0
) -> pd.DataFrame:
    """Per prompt, the highest-scored response as chosen and the lowest as rejected.

    .. math::

        y^c = \\arg\\max_j s_j, \\qquad y^r = \\arg\\min_j s_j

    The construction of iterative/on-policy DPO data, e.g. Xu et al. (2023), "Some things are more CRINGE
    than others: Iterative Preference Optimization with the Pairwise Cringe Loss". Ties go to the first row.

    Args: ``samples`` with columns ``prompt``, ``response``, ``score`` (one row per sample).
    Returns a DataFrame with one row per prompt whose gap exceeds ``min_gap``.
    """
    df = _frame(samples, prompt, response, score)
    g = df.groupby("prompt", sort=False)["score"]
    pairs = _pairs(df, g.idxmax(), g.idxmin())
    return _keep_positive(pairs, g.ngroups, min_gap)


def sweet_spot_pairs(
    samples,
    *,
    k_sigma: float = 2.0,
    ddof: int = 0,
    prompt: str = "prompt",
    response: str = "response",
    score: str = "score",
) -> pd.DataFrame:
    """Chosen = the best response; rejected = the response whose score is nearest to :math:`\\mu - k\\sigma`.

    .. math::

        y^c = \\arg\\max_j s_j, \\qquad y^r = \\arg\\min_{j \\ne c} \\lvert s_j - (\\mu - k\\sigma)\\rvert,
        \\quad \\mu, \\sigma = \\text{mean, std of the prompt's scores}

    Xiao et al. (2025), "Finding the Sweet Spot: Preference Data Construction for Scaling Preference
    Optimization": with many samples per prompt, a rejected response near :math:`\\mu - 2\\sigma` of the
    prompt's reward distribution beats the minimum. ``ddof=0`` is the population standard deviation.

    Args: ``samples`` with columns ``prompt``, ``response``, ``score``; ``k_sigma`` = :math:`k`.
    """
    df = _frame(samples, prompt, response, score)
    g = df.groupby("prompt", sort=False)["score"]
    best = g.idxmax()
    target = g.transform("mean") - k_sigma * g.transform("std", ddof=ddof).fillna(0.0)
    dist = (df["score"] - target).abs()
    dist[best.to_numpy()] = np.inf  # the rejected response must differ from the chosen one
    rejected = dist.groupby(df["prompt"], sort=False).idxmin()
    has_other = g.size() > 1
    pairs = _pairs(df, best[has_other], rejected[has_other])
    return _keep_positive(pairs, g.ngroups, 0.0)


def curriculum_pairs(
    samples,
    *,
    n_stages: int = 3,
    chosen: str = "best",
    prompt: str = "prompt",
    response: str = "response",
    score: str = "score",
) -> pd.DataFrame:
    """Curry-DPO: several pairs per prompt, ordered from easy (large score gap) to hard (small gap).

    .. math::

        \\{(y_i, y_j) : s_i > s_j\\}, \\quad \\text{stage} = \\Big\\lfloor n_{stages}\\cdot
        \\frac{\\operatorname{rank}_{\\downarrow}(s_i - s_j)}{N}\\Big\\rfloor

    Pattnaik et al. (2024), "Curry-DPO: Enhancing Alignment using Curriculum Learning & Ranked Preferences":
    with the best response as chosen and each other response as rejected (``chosen="best"``, the paper's
    setting) or all ordered pairs (``chosen="all"``), training proceeds through stages of decreasing gap.
    Within a prompt, pairs keep the easy-to-hard order; stage 0 is the easiest.

    Returns the pairs sorted by ``stage`` then decreasing ``gap``, with a ``stage`` column.
    """
    if chosen not in ("best", "all"):
        raise InputError(f"chosen must be 'best' or 'all', got {chosen!r}")
    if int(n_stages) < 1:
        raise InputError(f"n_stages must be a positive integer, got {n_stages!r}")
    df = _frame(samples, prompt, response, score)
    df["row"] = np.arange(len(df))
    left = df.loc[df.groupby("prompt", sort=False)["score"].idxmax()] if chosen == "best" else df
    merged = left.merge(df, on="prompt", suffixes=("_c", "_r"))
    merged = merged[merged["score_c"] > merged["score_r"]]
    n_prompts = df["prompt"].nunique()
    with_pair = merged["prompt"].nunique()
    if with_pair < n_prompts:
        warnings.warn(
            f"{n_prompts - with_pair} of {n_prompts} prompts have no two differently scored responses; "
            "they are left out",
            DroppedRowsWarning,
            stacklevel=2,
        )
    pairs = _pairs(df, merged["row_c"].to_numpy(), merged["row_r"].to_numpy())
    order = np.argsort(-pairs["gap"].to_numpy(), kind="stable")
    pairs = pairs.iloc[order].reset_index(drop=True)
    pairs["stage"] = (np.arange(len(pairs)) * int(n_stages)) // max(len(pairs), 1)
    return pairs


def read_pairs(path: str | Path) -> pd.DataFrame:
    """Read preference pairs exported by the judging tools (JSONL/JSON/Parquet ``{prompt, chosen, rejected}``).

    .. math::

        \\text{row} = (x, y^c, y^r) \\text{ with } y^c \\succ y^r

    Bradley & Terry (1952), "Rank Analysis of Incomplete Block Designs: I. The Method of Paired Comparisons"
    is the model these pairs are later fitted with. Extra columns (scores, judge, cost) are kept.
    """
    from pairkit.train.data import read_records

    df = pd.DataFrame(read_records(path))
    for col in ("prompt", "chosen", "rejected"):
        if col not in df.columns:
            raise InputError(f"{path}: column {col!r} is missing; pairs need prompt, chosen and rejected")
    for col in ("chosen", "rejected"):
        bad = ~df[col].map(lambda v: isinstance(v, str) and v != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise InputError(
                f"{path}, row {row}, column {col!r}: expected non-empty text, got {df[col].iloc[row - 1]!r}"
            )
    same = df["chosen"] == df["rejected"]
    if same.any():
        row = int(np.flatnonzero(same.to_numpy())[0]) + 1
        raise InputError(f"{path}, row {row}: chosen and rejected are the same text; remove the row")
    return df
