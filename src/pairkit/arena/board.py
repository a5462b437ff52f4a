"""What the owner sees: the leaderboard of the votes so far and the annotators' quality statistics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from pairkit.arena.export import to_comparisons
from pairkit.errors import NoMLEError, PairkitWarning

__all__ = ["annotator_stats", "krippendorff_alpha_nominal", "leaderboard_summary", "votes_to_separate"]


def votes_to_separate(theta: np.ndarray, cov: np.ndarray, n_votes: int, level: float = 0.95) -> float:
    """Estimated further votes until the top two items' difference is significant at ``level``.

    The variance of :math:`\\hat\\theta_1-\\hat\\theta_2` shrinks like 1/N when votes keep being spread as so
    far, so separation needs :math:`N^\\ast = N\\,(z\\,s_{12}/|\\hat\\theta_1-\\hat\\theta_2|)^2` votes in all.
    Returns ``inf`` when the two are rated equal and 0 when they are already separated.
    """
    if len(theta) < 2:
        return 0.0
    first, second = np.argsort(-theta, kind="stable")[:2]
    gap = abs(theta[first] - theta[second])
    s = math.sqrt(max(cov[first, first] + cov[second, second] - 2 * cov[first, second], 0.0))
    if gap == 0:
        return math.inf
    z = float(special.ndtri(0.5 + level / 2))
    return max(0.0, n_votes * (z * s / gap) ** 2 - n_votes)


def leaderboard_summary(
    votes: Sequence[Mapping[str, Any]], items: Sequence[str], *, prior: float = 0.0, level: float = 0.95
) -> dict[str, Any]:
    """Bradley–Terry leaderboard (Elo scale) of the votes, with the warnings, position bias and pair counts.

    The ratings are :func:`~pairkit.rating.fit_bradley_terry` of :func:`~pairkit.arena.export.to_comparisons`
    (Fisher intervals); when the MLE does not exist (too few votes, an unbeaten item, a disconnected graph)
    the reason is shown and the MAP fit with one virtual win and loss per item (``prior=1``) stands in.
    The position bias is the left-side advantage β of :func:`~pairkit.rating.fit_order_advantage`.
    """
    from pairkit.rating import fit_bradley_terry, fit_order_advantage

    comps = to_comparisons(votes, items)
    out: dict[str, Any] = {"n_votes": len(comps), "rows": [], "warnings": [], "position": None, "level": level}
    if len(comps) == 0:
        out["warnings"].append("no votes yet")
        return out
    used_prior = prior
    with warnings.catch_warnings(record=True) as caught:  # shown on the admin page, not lost in a server log
        warnings.simplefilter("always", PairkitWarning)
        try:
            board = fit_bradley_terry(comps, prior=prior, intervals="fisher", level=level)
        except NoMLEError as exc:
            used_prior = max(prior, 1.0)
            out["warnings"].append(f"{exc} Shown: the MAP fit with prior={used_prior:g}.")
            board = fit_bradley_terry(comps, prior=used_prior, intervals="fisher", level=level)
    for item in caught:
        if str(item.message) not in out["warnings"]:
            out["warnings"].append(str(item.message))
    out["prior"] = used_prior
    out["board"] = board
    frame = board.scale("elo").to_pandas()
    out["rows"] = frame.to_dict(orient="records")
    out["more_votes"] = votes_to_separate(board.log_strength, board.covariance, len(comps), level)
    try:
        order = fit_order_advantage(comps, prior=used_prior, intervals="fisher", level=level)
        lo, hi = order.param_intervals.get("order_advantage_elo", (math.nan, math.nan))
        out["position"] = {"elo": order.params["order_advantage_elo"], "low": lo, "high": hi}
    except NoMLEError:  # pragma: no cover - the prior above keeps the fit finite
        pass
    out["left_win_rate"] = float(np.mean(comps.outcome))
    a, b = np.minimum(comps.a, comps.b), np.maximum(comps.a, comps.b)
    pair_votes = pd.Series(np.ones(len(a))).groupby([a, b]).sum()
    if len(items) <= 16:  # small arenas: the full matrix of votes per pair
        matrix = np.zeros((len(items), len(items)), np.int64)
        np.add.at(matrix, (comps.a, comps.b), 1)
        matrix += matrix.T
        out["pair_matrix"] = {"items": list(items), "counts": matrix.tolist()}
    total = len(items) * (len(items) - 1) // 2
    out["pairs"] = {
        "voted": len(pair_votes),
        "total": total,
        "min": int(pair_votes.min()) if len(pair_votes) == total else 0,  # an unvoted pair has 0
        "max": int(pair_votes.max()),
    }
    return out


def _winner(frame: pd.DataFrame) -> np.ndarray:
    """The item a vote prefers, or "tie" (ties and "both bad")."""
    return np.select(
        [frame["outcome"] == "left", frame["outcome"] == "right"], [frame["left_id"], frame["right_id"]], "tie"
    ).astype(object)


def krippendorff_alpha_nominal(units: np.ndarray, values: np.ndarray) -> float:
    """Krippendorff's α for nominal data: one value per (unit, coder), units with one value ignored.

    .. math::

        \\alpha = 1 - (n-1)\\,\\frac{\\sum_{c\\ne k} o_{ck}}{\\sum_{c\\ne k} n_c n_k},\\qquad
        o_{ck} = \\sum_u \\frac{\\#\\{(c,k) \\text{ pairs of values in } u\\}}{m_u - 1}

    Krippendorff (2011), "Computing Krippendorff's alpha-reliability". ``nan`` when there is no pairable
    value or no variation.
    """
    u_codes, u = np.unique(np.asarray(units), return_inverse=True)
    v_codes, v = np.unique(np.asarray(values).astype(str), return_inverse=True)
    counts = np.zeros((len(u_codes), len(v_codes)))
    np.add.at(counts, (u, v), 1)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]
    m = m[m >= 2]
    if not len(m):
        return math.nan
    coincidence = (counts / (m - 1)[:, None]).T @ counts
    coincidence -= np.diag((counts / (m - 1)[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = (n * n - np.sum(n_c**2)) / (n - 1)
    return math.nan if expected == 0 else float(1 - observed / expected)


def annotator_stats(votes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per annotator: votes, skips, gold accuracy, consistency on repeats, left-side win rate, median latency and
    agreement with the others on shared pairs (for an LLM judge: judge–human agreement); across annotators:
    Krippendorff's α and pairwise agreement on the pairs several of them voted on (judges included)."""
    cols = ["annotator", "context_id", "left_id", "right_id", "outcome", "kind", "expected", "latency_ms", "undone"]
    frame = pd.DataFrame(list(votes), columns=cols)
    frame = frame[~frame["undone"].astype(bool)]
    rows = []
    if len(frame):
        frame = frame.assign(winner=_winner(frame))
        judged = frame[frame["outcome"] != "skip"]
        for name, own in frame.groupby("annotator", sort=True):
            mine = judged[judged["annotator"] == name]
            gold = mine[mine["kind"] == "gold"]
            rep = mine[mine["kind"] == "repeat"]
            decisive = mine[(mine["kind"] == "normal") & mine["outcome"].isin(["left", "right"])]
            rows.append({
                "annotator": name,
                "votes": int((own["outcome"] != "skip").sum()),
                "skips": int((own["outcome"] == "skip").sum()),
                "both_bad": int((own["outcome"] == "both_bad").sum()),
                "gold": len(gold),
                "gold_accuracy": float((gold["winner"] == gold["expected"]).mean()) if len(gold) else math.nan,
                "repeats": len(rep),
                "consistency": float((rep["winner"] == rep["expected"]).mean()) if len(rep) else math.nan,
                "left_win_rate": float((decisive["outcome"] == "left").mean()) if len(decisive) else math.nan,
                "median_latency_s": float(own["latency_ms"].median()) / 1000,
                "agreement": math.nan,
                "agreement_n": 0,
            })
    normal = frame[(frame["kind"] == "normal") & (frame["outcome"] != "skip")] if len(frame) else frame
    alpha = agreement = math.nan
    if len(normal):
        lo = np.minimum(normal["left_id"].astype(str), normal["right_id"].astype(str))
        hi = np.maximum(normal["left_id"].astype(str), normal["right_id"].astype(str))
        unit = normal["context_id"].astype(str) + "\x1f" + lo + "\x1f" + hi
        # One value per annotator and unit: their latest vote on it.
        last = pd.DataFrame({"unit": unit, "annotator": normal["annotator"], "winner": normal["winner"]})
        last = last.drop_duplicates(["unit", "annotator"], keep="last")
        alpha = krippendorff_alpha_nominal(last["unit"].to_numpy(), last["winner"].to_numpy())
        # Each annotator's (or judge's) agreement with everyone else who voted on the same pairs.
        both = last.merge(last, on="unit", suffixes=("", "_other"))
        both = both[both["annotator"] != both["annotator_other"]]
        agree = (both["winner"] == both["winner_other"]).groupby(both["annotator"]).agg(["mean", "size"])
        for row in rows:
            if row["annotator"] in agree.index:
                row["agreement"] = float(agree.loc[row["annotator"], "mean"])
                row["agreement_n"] = int(agree.loc[row["annotator"], "size"])
        per_unit = last.groupby(["unit", "winner"]).size()
        m = per_unit.groupby(level=0).sum()
        pairs = float((m * (m - 1)).sum())
        if pairs:
            agreement = float((per_unit * (per_unit - 1)).sum()) / pairs
    return {"annotators": rows, "alpha": alpha, "agreement": agreement}
