"""Choosing a rating model by K-fold cross-validation of held-out predictions.

Each model is fitted on K − 1 folds and predicts the held-out comparisons; the scores use the *expected score*
``p̃ = P(a wins) + ½ P(tie)`` so that models with and without a tie probability are compared on the same footing
(a tie is the outcome ½):

* log-loss ``−Σ w [y log p̃ + (1 − y) log(1 − p̃)] / Σ w`` (p̃ clipped to [1e-12, 1 − 1e-12]),
* accuracy on decisive comparisons (``p̃ = ½`` counts half right),
* Brier score ``Σ w (p̃ − y)² / Σ w``,
* expected calibration error: ``Σ_b (W_b / W) |ȳ_b − p̄_b|`` over ten equal-width bins of p̃.

Folds hold whole clusters (``Comparisons.cluster``: prompts, voters, match days) when clusters are given, so
dependent comparisons never straddle training and test. Each fold's model is fitted only on the items present in
its training part; an item never seen in training gets log-strength 0 (the average item — what Newman's prior
gives an unseen item) and, for models without a strength predictor, a coin flip.

References:
    Stone, M. (1974). Cross-validatory choice and assessment of statistical predictions. JRSS B 36(2).
    Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review 78.
    Naeini, M. P., Cooper, G. & Hauskrecht, M. (2015). Obtaining well calibrated probabilities using Bayesian
    binning. AAAI 2015.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["DEFAULT_MODELS", "compare_models", "prediction_scores"]

DEFAULT_MODELS = ("bt", "elo", "davidson", "rao_kupper", "robust")
"""Models compared when none are named (those that need no order flag; ties models only with ties present)."""


def prediction_scores(
    expected: np.ndarray, outcome: np.ndarray, weight: np.ndarray | None = None, *, bins: int = 10
) -> dict[str, float]:
    """Log-loss, accuracy, Brier score and expected calibration error of expected scores.

    .. math::

        \\text{ECE} = \\sum_b \\frac{W_b}{W}\\,\\lvert \\bar y_b - \\bar p_b \\rvert

    Args:
        expected: (M,) predicted expected score of ``a`` (``P(win) + ½ P(tie)``).
        outcome: (M,) observed outcome for ``a`` (1, ½, 0).
        weight: (M,) comparison weights (default 1).
    """
    p = np.asarray(expected, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    if not (p.shape == y.shape == w.shape) or p.ndim != 1:
        raise InputError(f"expected, outcome and weight must be 1-D of equal length: {p.shape}, {y.shape}, {w.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise InputError("expected scores must be probabilities in [0, 1]")
    total = float(w.sum())
    if total <= 0:
        raise InputError("no weight to score")
    pc = np.clip(p, 1e-12, 1 - 1e-12)
    log_loss = -float(np.sum(w * (y * np.log(pc) + (1 - y) * np.log1p(-pc)))) / total
    decisive = (y == 0) | (y == 1)
    right = np.where(p == 0.5, 0.5, ((p > 0.5) == (y == 1)).astype(float))
    wd = w * decisive
    accuracy = float(np.sum(wd * right) / wd.sum()) if wd.sum() > 0 else float("nan")
    brier = float(np.sum(w * (p - y) ** 2)) / total
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    yb = np.bincount(which, w * y, bins)
    pb = np.bincount(which, w * p, bins)
    ece = float(np.sum(np.abs(yb - pb))) / total
    return {"log_loss": log_loss, "accuracy": accuracy, "brier": brier, "ece": ece}


def _fold_ids(comparisons: Comparisons, folds: int, rng: np.random.Generator) -> np.ndarray:
    if comparisons.cluster is not None:
        groups, inverse = np.unique(comparisons.cluster, return_inverse=True)
        if len(groups) < folds:
            raise InputError(f"{len(groups)} clusters cannot fill {folds} folds; use fewer folds")
        order = rng.permutation(len(groups))
        group_fold = np.empty(len(groups), dtype=np.int64)
        group_fold[order] = np.arange(len(groups)) % folds
        return group_fold[inverse]
    m = len(comparisons)
    if m < folds:
        raise InputError(f"{m} comparisons cannot fill {folds} folds")
    ids = np.empty(m, dtype=np.int64)
    ids[rng.permutation(m)] = np.arange(m) % folds
    return ids


def _compact(train: Comparisons) -> tuple[Comparisons, np.ndarray]:
    """Training comparisons over the items they contain; ``index[k]`` maps item k to it (−1 when unseen)."""
    seen = np.zeros(train.n_items, dtype=bool)
    seen[train.a] = True
    seen[train.b] = True
    index = np.full(train.n_items, -1, dtype=np.int64)
    index[seen] = np.arange(int(seen.sum()))
    items = tuple(np.asarray(train.items, dtype=object)[seen])
    compact = Comparisons(
        items=items,
        a=index[train.a],
        b=index[train.b],
        outcome=train.outcome,
        weight=train.weight,
        cluster=train.cluster,
        a_first=train.a_first,
        source=train.source,
    )
    return compact, index


def _expected_scores(board: Leaderboard, index: np.ndarray, test: Comparisons) -> np.ndarray:
    ia, ib = index[test.a], index[test.b]
    known = (ia >= 0) & (ib >= 0)
    order = test.a_first
    out = np.full(len(test), 0.5)
    index_predictor = board.info.get("index_predictor")
    if index_predictor is not None:
        if known.any():
            p, t = index_predictor(ia[known], ib[known], None if order is None else order[known])
            out[known] = p + t / 2
        return out
    if board.predictor is None:
        raise InputError(f"model {board.model!r} does not predict win probabilities")
    theta = np.concatenate([board.log_strength, [0.0]])  # position −1: an unseen item at the average strength
    p, t = board.predictor(theta[ia], theta[ib], order)
    return np.clip(p + t / 2, 0.0, 1.0)


def _supported(fit: Callable, options: Mapping) -> dict:
    try:
        params = inspect.signature(fit).parameters
    except (TypeError, ValueError):
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def compare_models(
    comparisons: Comparisons,
    models: Sequence[str] | Mapping[str, Callable[..., Leaderboard]] | None = None,
    *,
    folds: int = 5,
    seed: int | np.random.Generator = 0,
    prior: float = 1.0,
    options: Mapping[str, Mapping] | None = None,
) -> pd.DataFrame:
    """Held-out log-loss, accuracy, Brier score and calibration of rating models by K-fold cross-validation.

    .. math::

        \\text{log-loss} = -\\frac{1}{W}\\sum_{k \\in \\text{test}} w_k\\,[y_k \\log \\tilde p_k
            + (1-y_k)\\log(1-\\tilde p_k)],\\qquad \\tilde p = P(\\text{win}) + \\tfrac12 P(\\text{tie})

    Args:
        comparisons: (M,) comparisons; folds group by ``cluster`` when it is set.
        models: registry names (:mod:`pairkit.rating.registry`) or a mapping name → fit function; default
            :data:`DEFAULT_MODELS` (tie models only when the data have ties).
        folds: K ≥ 2.
        seed: fold assignment.
        prior: passed to every model that takes a ``prior`` (Newman's virtual games), so that each fold has finite
            ratings even when an item only won in its training part; 0 for pure MLE.
        options: per-model extra keyword arguments, e.g. ``{"order": {"ties": "davidson"}}``.

    Returns:
        One row per model, best log-loss first: ``model``, ``log_loss``, ``accuracy``, ``brier``, ``ece`` (pooled
        over all held-out comparisons), ``log_loss_sd`` (across folds), ``n_test``, ``folds``.
    """
    from pairkit.rating.registry import get_model

    if not isinstance(comparisons, Comparisons) or len(comparisons) == 0:
        raise InputError("compare_models needs a non-empty Comparisons")
    if int(folds) < 2:
        raise InputError(f"folds must be >= 2, got {folds!r}")
    folds = int(folds)
    if models is None:
        names = [m for m in DEFAULT_MODELS if comparisons.has_ties or m not in ("davidson", "rao_kupper")]
        fits = {name: get_model(name) for name in names}
    elif isinstance(models, Mapping):
        fits = dict(models)
    else:
        if isinstance(models, str):
            models = [models]
        fits = {name: get_model(name) for name in models}
    if not fits:
        raise InputError("no models to compare")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    fold = _fold_ids(comparisons, folds, rng)
    options = dict(options or {})
    rows = []
    for name, fit in fits.items():  # a handful of models × K folds; each fit is vectorised
        kwargs = _supported(fit, {"prior": prior, "intervals": "none", **options.get(name, {})})
        expected = np.empty(len(comparisons))
        fold_loss = []
        for k in range(folds):
            test_rows = fold == k
            compact, index = _compact(comparisons.subset(~test_rows))
            board = fit(compact, **kwargs)
            test = comparisons.subset(test_rows)
            expected[test_rows] = _expected_scores(board, index, test)
            fold_loss.append(prediction_scores(expected[test_rows], test.outcome, test.weight)["log_loss"])
        scores = prediction_scores(expected, comparisons.outcome, comparisons.weight)
        rows.append(
            {
                "model": name,
                **scores,
                "log_loss_sd": float(np.std(fold_loss, ddof=1)),
                "n_test": len(comparisons),
                "folds": folds,
            }
        )
    return pd.DataFrame(rows).sort_values("log_loss", kind="stable").reset_index(drop=True)
