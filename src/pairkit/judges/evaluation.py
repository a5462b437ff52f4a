"""How good is a judge? Agreement with human labels, position and self-consistency, length bias, calibration,
separability of the leaderboard it produces and its agreement with a reference ranking — each with an interval.

:func:`evaluate_judge` reads a judge's judgments (the rows ``pairkit judge --judgments`` writes, or
``Selection.judgments_frame()``: ``context_id``, ``a``, ``b``, ``order``, ``p_a``, ``p_tie``, optional ``weight``)
and returns a :class:`JudgeReport` (a table of metrics with intervals and a plot); ``pairkit judge-eval`` is its
command line.

=========================  ==============================================================  =========================
metric                     definition                                                      interval
=========================  ==============================================================  =========================
``agreement``              judge's decision on a pair (mean expected score > ½: a, < ½:    Wilson
                           b, = ½: tie) equals the human label (ties count as a label;
                           MT-Bench's agreement, Zheng et al. 2023)
``agreement_no_ties``      the same among pairs where neither the human nor the judge      Wilson
                           says tie
``cohen_kappa``            chance-corrected agreement over the labels a / tie / b          bootstrap over labels
``brier``, ``ece``         the judge's mean expected score against the human outcome       bootstrap over labels
                           (1, ½, 0), ECE over both orientations
``position_consistency``   the same winner when a pair is shown in both orders             Wilson
``first_position_win``     decisive judgments won by the answer shown first (½: no bias)   Wilson
``longer_wins``            decisive judgments won by the longer answer (needs texts);      Wilson
                           ``human_longer_wins`` the same for the human labels
``self_consistency``       repeated asks of one shown prompt agree with its first answer   Wilson
``separability``           pairs of items whose bootstrap intervals of the judge's         — (itself interval-based)
                           Bradley–Terry strengths do not overlap (Arena-Hard, Li et al.
                           2024)
``kendall_tau``            between the judge's leaderboard and a reference ranking         bootstrap percentile
``agreement_with_ci``      over item pairs: +1 separated in the reference's order, −1      —
                           separated against it, 0 not separated (Arena-Hard's agreement
                           with confidence, every reference pair taken as separated)
=========================  ==============================================================  =========================

Intervals are at ``level`` (default 95%). Wilson (1927) score intervals are exact-coverage-leaning intervals for a
proportion; bootstrap intervals are percentile intervals over ``n_boot`` resamples (Efron 1979).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pairkit.errors import InputError

__all__ = ["JudgeReport", "evaluate_judge"]

_JUDGMENT_COLUMNS = ("context_id", "a", "b", "p_a")


@dataclass
class JudgeReport:
    """The metrics of :func:`evaluate_judge`: ``table`` (a DataFrame: metric, value, low, high, n), the judge's
    bootstrapped leaderboard (``leaderboard``, when it has at least two items) and the data behind the plot.

    >>> from pairkit.judges import evaluate_judge
    >>> rows = [('q1', 0.9), ('q2', 0.8), ('q3', 0.3)]
    >>> judgments = [{'context_id': c, 'a': 'x', 'b': 'y', 'p_a': p} for c, p in rows]
    >>> report = evaluate_judge(judgments, n_boot=20)
    >>> report.level, list(report.table.columns)
    (0.95, ['metric', 'value', 'low', 'high', 'n', 'note', 'proportion'])
    """

    table: Any
    level: float
    leaderboard: Any = None
    reliability: tuple | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str) -> float:
        """The value of one metric (NaN when it could not be computed)."""
        rows = self.table[self.table["metric"] == metric]
        if rows.empty:
            raise KeyError(f"no metric {metric!r}; available: {', '.join(self.table['metric'])}")
        return float(rows["value"].iloc[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metrics (NaN as null), the level and the judge's leaderboard."""
        rows = []
        for row in self.table.to_dict(orient="records"):
            rows.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
        out: dict[str, Any] = {"level": self.level, "metrics": rows}
        if self.leaderboard is not None:
            b = self.leaderboard
            out["leaderboard"] = [
                {"item": item, "score": float(s), "low": float(lo), "high": float(hi)}
                for item, s, lo, hi in zip(b.items, b.scores, b.ci_low_log, b.ci_high_log)
            ]
        return out

    def plot(self, path: str | Path | None = None):
        """Proportion metrics with their intervals, and the reliability diagram against the human labels."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from pairkit._io import save_figure

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        shown = self.table[np.isfinite(self.table["value"].astype(float)) & self.table["proportion"]]
        y = np.arange(len(shown))
        value = shown["value"].to_numpy(float)
        lo = np.where(np.isfinite(shown["low"].to_numpy(float)), shown["low"].to_numpy(float), value)
        hi = np.where(np.isfinite(shown["high"].to_numpy(float)), shown["high"].to_numpy(float), value)
        left.errorbar(value, y, xerr=[value - lo, hi - value], fmt="o", capsize=3)
        left.set_yticks(y, shown["metric"])
        left.axvline(0.5, color="0.8", lw=1, zorder=0)
        left.set_xlim(0, 1)
        left.invert_yaxis()
        left.set_title(f"judge metrics ({self.level:.0%} intervals)")
        right.plot([0, 1], [0, 1], color="0.7", lw=1)
        if self.reliability is not None:
            _, pb, yb, wb = self.reliability
            ok = wb > 0
            right.scatter(pb[ok], yb[ok], s=20 + 200 * wb[ok] / wb[ok].max())
            right.set_title("calibration against the human labels")
        else:
            right.set_title("calibration (no human labels given)")
        right.set_xlabel("judge's expected score")
        right.set_ylabel("human outcome")
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
            plt.close(fig)
        return fig


def _frame(rows, what: str, required: Sequence[str]):
    import pandas as pd

    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {', '.join(missing)}; rows need {', '.join(required)}")
    if frame.empty:
        raise InputError(f"{what}: no rows")
    for col in ("context_id", "a", "b"):
        if col in frame.columns:
            frame[col] = frame[col].astype(str)
    return frame


def _judgment_scores(frame) -> np.ndarray:
    p_a = np.asarray(frame["p_a"], dtype=float)
    p_tie = np.asarray(frame["p_tie"], dtype=float) if "p_tie" in frame.columns else np.zeros(len(frame))
    bad = ~(np.isfinite(p_a) & np.isfinite(p_tie) & (p_a >= 0) & (p_tie >= 0) & (p_a + p_tie <= 1 + 1e-9))
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InputError(
            f"judgments, row {row}: p_a={p_a[row - 1]!r}, p_tie={p_tie[row - 1]!r} are not probabilities "
            f"({int(bad.sum())} such row(s))"
        )
    return p_a + 0.5 * p_tie


def _label(score: np.ndarray) -> np.ndarray:
    """1 (a), 0.5 (tie), 0 (b) from expected scores (exactly ½ is a tie)."""
    return np.where(np.isclose(score, 0.5, atol=1e-12), 0.5, np.where(score > 0.5, 1.0, 0.0))


def _human_outcomes(human, what: str = "human labels"):
    frame = _frame(human, what, ("context_id", "a", "b", "winner"))
    winner = frame["winner"].astype(str)
    outcome = np.full(len(frame), np.nan)
    outcome[(winner == frame["a"]).to_numpy() | winner.str.lower().isin(["a", "model_a"]).to_numpy()] = 1.0
    outcome[(winner == frame["b"]).to_numpy() | winner.str.lower().isin(["b", "model_b"]).to_numpy()] = 0.0
    outcome[winner.str.lower().isin(["tie", "draw", "tie (bothbad)", "both_bad"]).to_numpy()] = 0.5
    if np.isnan(outcome).any():
        row = int(np.flatnonzero(np.isnan(outcome))[0])
        raise InputError(
            f"{what}, row {row + 1}: winner {frame['winner'].iloc[row]!r} is neither a ({frame['a'].iloc[row]!r}), "
            f"b ({frame['b'].iloc[row]!r}) nor 'tie' ({int(np.isnan(outcome).sum())} such row(s))"
        )
    frame["outcome"] = outcome
    return frame


def _proportion(name: str, hits: np.ndarray, level: float, note: str = "") -> dict:
    from pairkit.rating import wilson_interval

    n = int(len(hits))
    if n == 0:
        return _row(name, math.nan, math.nan, math.nan, 0, note or "no data", proportion=True)
    k = float(np.sum(hits))
    lo, hi = wilson_interval(np.array([k]), np.array([n]), level=level)
    return _row(name, k / n, float(lo[0]), float(hi[0]), n, note, proportion=True)


def _row(name, value, low, high, n, note="", *, proportion=False) -> dict:
    return {"metric": name, "value": float(value), "low": float(low), "high": float(high), "n": int(n),
            "note": note, "proportion": proportion}  # fmt: skip


def _percentile(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return math.nan, math.nan
    alpha = (1 - level) / 2
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))


def _kappa(x: np.ndarray, y: np.ndarray) -> float:
    """Cohen's κ of two label arrays over the labels {0, ½, 1}, each pair counted in both orientations (so that
    κ does not depend on which answer is called a)."""
    x, y = np.r_[x, 1 - x], np.r_[y, 1 - y]
    labels = np.array([0.0, 0.5, 1.0])
    observed = float(np.mean(x == y))
    px = (x[:, None] == labels).mean(axis=0)
    py = (y[:, None] == labels).mean(axis=0)
    expected = float(px @ py)
    return (observed - expected) / (1 - expected) if expected < 1 else math.nan


def evaluate_judge(
    judgments,
    human=None,
    *,
    candidates=None,
    reference: Sequence[str] | Mapping[str, float] | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    prior: float = 0.5,
) -> JudgeReport:
    """Evaluate a judge from its judgments (see the module docstring for every metric and its interval).

    Args:
        judgments: rows (DataFrame or dicts) with ``context_id``, ``a``, ``b``, ``p_a`` and optionally ``p_tie``,
            ``order`` (``"ab"``/``"ba"``: which was shown first), ``sample``, ``weight``; ``a``/``b`` are item ids.
        human: rows ``{context_id, a, b, winner}`` (winner: the id of ``a`` or ``b``, ``"a"``/``"b"``, or
            ``"tie"``) for the same pairs, in either orientation.
        candidates: rows ``{context_id, candidate_id, text}`` for the length bias.
        reference: item ids best first, or item id → reference score.
        level: interval coverage; n_boot: bootstrap resamples; prior: virtual games per item in the fits.

    >>> from pairkit.judges import evaluate_judge
    >>> pairs = [('q1', 0.9, 'x'), ('q2', 0.8, 'x'), ('q3', 0.3, 'y'), ('q4', 0.7, 'y')]
    >>> judgments = [{'context_id': c, 'a': 'x', 'b': 'y', 'p_a': p} for c, p, _ in pairs]
    >>> human = [{'context_id': c, 'a': 'x', 'b': 'y', 'winner': w} for c, _, w in pairs]
    >>> report = evaluate_judge(judgments, human, n_boot=20)
    >>> print(report.table[['metric', 'value']].head(3).to_string(index=False))
               metric  value
            agreement   0.75
    agreement_no_ties   0.75
          cohen_kappa   0.50
    """
    import pandas as pd

    if not (0 < level < 1):
        raise InputError(f"level must be in (0, 1), got {level!r}")
    if not (isinstance(n_boot, int) and 10 <= n_boot <= 100_000):
        raise InputError(f"n_boot must be an integer in [10, 100000], got {n_boot!r}")
    frame = _frame(judgments, "judgments", _JUDGMENT_COLUMNS)
    frame["score"] = _judgment_scores(frame)
    if "order" not in frame.columns:
        frame["order"] = "ab"
    if not frame["order"].isin(["ab", "ba"]).all():
        row = int(np.flatnonzero(~frame["order"].isin(["ab", "ba"]).to_numpy())[0]) + 1
        raise InputError(f"judgments, row {row}: order must be 'ab' or 'ba', got {frame['order'].iloc[row - 1]!r}")
    if (frame["a"] == frame["b"]).any():
        row = int(np.flatnonzero((frame["a"] == frame["b"]).to_numpy())[0]) + 1
        raise InputError(f"judgments, row {row}: a and b are the same item {frame['a'].iloc[row - 1]!r}")
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    # canonical orientation per row: lo < hi, score of lo
    lo = np.where(frame["a"] < frame["b"], frame["a"], frame["b"])
    hi = np.where(frame["a"] < frame["b"], frame["b"], frame["a"])
    flipped = (frame["a"] > frame["b"]).to_numpy()
    frame["lo"], frame["hi"] = lo, hi
    frame["score_lo"] = np.where(flipped, 1 - frame["score"], frame["score"])
    pair_keys = ["context_id", "lo", "hi"]
    per_pair = frame.groupby(pair_keys, sort=False)["score_lo"].mean()

    # ------------------------------------------------------------------ agreement with humans, calibration
    reliability = None
    details: dict[str, Any] = {}
    if human is not None:
        from pairkit.rating.model_selection import prediction_scores
        from pairkit.rating.model_selection import reliability as reliability_points

        labels = _human_outcomes(human)
        h_flip = (labels["a"] > labels["b"]).to_numpy()
        labels["lo"] = np.where(h_flip, labels["b"], labels["a"])
        labels["hi"] = np.where(h_flip, labels["a"], labels["b"])
        labels["y_lo"] = np.where(h_flip, 1 - labels["outcome"], labels["outcome"])
        joined = labels.join(per_pair.rename("p_lo"), on=pair_keys, how="inner")
        details["human_labels"], details["human_labels_matched"] = len(labels), len(joined)
        y, p = joined["y_lo"].to_numpy(float), joined["p_lo"].to_numpy(float)
        decision = _label(p)
        note = f"{len(labels) - len(joined)} human label(s) on pairs the judge did not judge" if len(joined) < len(
            labels) else ""  # fmt: skip
        rows.append(_proportion("agreement", decision == y, level, note))
        decisive = (decision != 0.5) & (y != 0.5)
        rows.append(_proportion("agreement_no_ties", decision[decisive] == y[decisive], level))
        if len(y):
            idx = rng.integers(0, len(y), size=(n_boot, len(y)))
            kappas = np.array([_kappa(decision[i], y[i]) for i in idx])
            rows.append(_row("cohen_kappa", _kappa(decision, y), *_percentile(kappas, level), len(y)))
            scores = prediction_scores(p, y)
            boot = np.array([[prediction_scores(p[i], y[i])[m] for m in ("brier", "ece")] for i in idx[:200]])
            b_lo, b_hi = _percentile(boot[:, 0], level)
            e_lo, e_hi = _percentile(boot[:, 1], level)
            rows.append(_row("brier", scores["brier"], b_lo, b_hi, len(y), "200 bootstrap resamples"))
            rows.append(_row("ece", scores["ece"], e_lo, e_hi, len(y), "200 bootstrap resamples"))
            reliability = reliability_points(p, y)
        else:
            rows += [_row(m, math.nan, math.nan, math.nan, 0, "no data") for m in ("cohen_kappa", "brier", "ece")]

    # ------------------------------------------------------------------------------- position consistency
    first_sample = frame.drop_duplicates(subset=[*pair_keys, "order"], keep="first")
    both = first_sample.groupby(pair_keys, sort=False).filter(lambda g: g["order"].nunique() == 2)
    if len(both):
        wide = both.pivot_table(index=pair_keys, columns="order", values="score_lo", aggfunc="first")
        rows.append(_proportion("position_consistency", _label(wide["ab"].to_numpy()) == _label(wide["ba"].to_numpy()),
                                level))  # fmt: skip
    else:
        rows.append(_proportion("position_consistency", np.array([]), level, "no pair shown in both orders"))
    first_score = np.where(frame["order"] == "ab", frame["score"], 1 - frame["score"])
    decisive = _label(first_score) != 0.5
    rows.append(_proportion("first_position_win", _label(first_score[decisive]) == 1.0, level))

    # ---------------------------------------------------------------------------------------- length bias
    if candidates is not None:
        cands = _frame(candidates, "candidates", ("context_id", "candidate_id", "text"))
        length = {
            (c, i): len(t) for c, i, t in zip(cands["context_id"], cands["candidate_id"].astype(str), cands["text"])
        }
        la = np.array([length.get((c, a), -1) for c, a in zip(frame["context_id"], frame["a"])])
        lb = np.array([length.get((c, b), -1) for c, b in zip(frame["context_id"], frame["b"])])
        unknown = int(((la < 0) | (lb < 0)).sum())
        judged = _label(frame["score"].to_numpy())
        keep = (la >= 0) & (lb >= 0) & (la != lb) & (judged != 0.5)
        rows.append(_proportion("longer_wins", (judged[keep] == 1.0) == (la[keep] > lb[keep]), level,
                                f"{unknown} judgment(s) without candidate texts" if unknown else ""))  # fmt: skip
        if human is not None:
            hl = np.array([length.get((c, a), -1) for c, a in zip(labels["context_id"], labels["a"])])
            hr = np.array([length.get((c, b), -1) for c, b in zip(labels["context_id"], labels["b"])])
            ho = labels["outcome"].to_numpy(float)
            keep = (hl >= 0) & (hr >= 0) & (hl != hr) & (ho != 0.5)
            rows.append(_proportion("human_longer_wins", (ho[keep] == 1.0) == (hl[keep] > hr[keep]), level))

    # ----------------------------------------------------------------------------------- self-consistency
    shown_keys = [*pair_keys, "order"]
    repeated = frame[frame.duplicated(subset=shown_keys, keep=False)]
    if len(repeated):
        first = repeated.groupby(shown_keys, sort=False)["score_lo"].transform("first")
        later = ~repeated.duplicated(subset=shown_keys, keep="first")
        agree = _label(repeated["score_lo"].to_numpy()) == _label(first.to_numpy())
        rows.append(_proportion("self_consistency", agree[~later.to_numpy()], level))
    else:
        rows.append(_proportion("self_consistency", np.array([]), level, "no prompt asked more than once"))

    # --------------------------------------------------------- the judge's leaderboard: separability, reference
    board = None
    items = sorted(set(frame["a"]) | set(frame["b"]))
    if len(items) >= 2:
        board, more = _leaderboard(frame, items, level, n_boot, seed, prior, reference)
        rows += more
    table = pd.DataFrame(rows, columns=["metric", "value", "low", "high", "n", "note", "proportion"])
    return JudgeReport(table=table, level=level, leaderboard=board, reliability=reliability, details=details)


def _leaderboard(frame, items, level, n_boot, seed, prior, reference) -> tuple[Any, list[dict]]:
    from pairkit.data import Comparisons
    from pairkit.rating import bootstrap_bradley_terry

    weight = frame["weight"].to_numpy(float) if "weight" in frame.columns else None
    comps = Comparisons.from_arrays(
        frame["a"].to_numpy(), frame["b"].to_numpy(), frame["score"].to_numpy(float), items=items, weight=weight
    )
    board = bootstrap_bradley_terry(comps, n_boot=n_boot, level=level, seed=seed, prior=prior)
    low, high = np.asarray(board.ci_low_log), np.asarray(board.ci_high_log)
    i, j = np.triu_indices(len(board.items), 1)
    separated = (low[i] > high[j]) | (low[j] > high[i])
    rows = [_row("separability", separated.mean(), math.nan, math.nan, len(i), f"{len(board.items)} items")]
    if reference is None:
        return board, rows
    ref = _reference_scores(reference, board.items)
    known = np.isfinite(ref)
    if known.sum() < 2:
        rows.append(_row("kendall_tau", math.nan, math.nan, math.nan, int(known.sum()), "fewer than 2 items ranked"))
        return board, rows
    from pairkit.metrics import kendall_tau

    theta = np.asarray(board.scores)
    tau = float(kendall_tau(theta[known][None, :], ref[known][None, :])[0])
    samples = np.asarray(board.samples)
    taus = kendall_tau(samples[:, known], np.broadcast_to(ref[known], (len(samples), int(known.sum()))))
    rows.append(_row("kendall_tau", tau, *_percentile(np.asarray(taus, float), level), int(known.sum())))
    both = known[i] & known[j]
    order = np.sign(ref[i] - ref[j])
    judge_order = np.where(low[i] > high[j], 1, np.where(low[j] > high[i], -1, 0))
    score = np.where(order[both] == 0, 0, judge_order[both] * order[both])
    rows.append(_row("agreement_with_ci", float(score.mean()) if len(score) else math.nan, math.nan, math.nan,
                     int(both.sum()), "+1 separated as the reference orders, -1 against, 0 not separated"))  # fmt: skip
    return board, rows


def _reference_scores(reference, items: Sequence[str]) -> np.ndarray:
    """Reference scores aligned with ``items`` (NaN for items the reference does not rank)."""
    if isinstance(reference, Mapping):
        scores = {str(k): float(v) for k, v in reference.items()}
        if not all(math.isfinite(v) for v in scores.values()):
            raise InputError("reference scores must be finite numbers")
    else:
        ranked = [str(x) for x in reference]
        if len(set(ranked)) != len(ranked):
            raise InputError(f"the reference ranking lists an item twice: {ranked!r}")
        scores = {item: float(len(ranked) - k) for k, item in enumerate(ranked)}
    unknown = sorted(set(scores) - set(items))
    if unknown:
        raise InputError(f"the reference names item(s) the judgments do not have: {', '.join(unknown[:5])}")
    return np.array([scores.get(item, np.nan) for item in items])
