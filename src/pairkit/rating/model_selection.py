"""Choosing a rating model by held-out predictions: K-fold cross-validation, forward splits, or a test file.

Each model is fitted on training comparisons and predicts the held-out ones. The main scores use the *expected
score* ``p̃ = P(a wins) + ½ P(tie)`` so that models with and without a tie probability are compared on the same
footing (a tie is the outcome ½):

* log-loss ``−Σ w [y log p̃ + (1 − y) log(1 − p̃)] / Σ w`` (p̃ clipped to [1e-12, 1 − 1e-12]),
* accuracy on decisive comparisons (``p̃ = ½`` counts half right),
* Brier score ``Σ w (p̃ − y)² / Σ w``,
* expected calibration error over ten equal-width bins, computed on *both* orientations of every comparison
  (``(p̃, y)`` and ``(1 − p̃, 1 − y)``), so it does not depend on which side is called ``a`` — winner/loser files
  put the winner first and a one-sided ECE then measures the orientation, not the model.

When the data have ties, models that forecast a tie probability are also scored on the three outcomes
(win/tie/loss): ``log_loss_3 = −Σ w log P(observed outcome) / Σ w`` and the multi-class Brier score
``brier_3 = Σ w Σ_o (P_o − 1[o observed])² / Σ w``; the expected score alone never checks the tie probability.

Held-out parts: K folds holding whole clusters (``Comparisons.cluster``: prompts, voters, match days) when
clusters are given, so dependent comparisons never straddle training and test; or ``split_by`` groups in their
order of first appearance (seasons, weeks: each group is predicted from all earlier ones — the forecast setting,
and the only fair one for online models such as Elo, TrueSkill and Weng–Lin); or a separate ``test`` set. A model
is fitted only on the items present in its training part; an item never seen in training gets log-strength 0
(the average item — what Newman's prior gives an unseen item), for the online Gaussian models (TrueSkill,
Weng–Lin) the prior's mean and σ (a newcomer), and for other models without a strength predictor a coin flip.
A model that cannot be fitted (``order`` without an order flag, ``davidson`` without ties) is skipped with a
``note`` instead of aborting the comparison.

References:
    Stone, M. (1974). Cross-validatory choice and assessment of statistical predictions. JRSS B 36(2).
    Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather Review 78.
    Naeini, M. P., Cooper, G. & Hauskrecht, M. (2015). Obtaining well calibrated probabilities using Bayesian
    binning. AAAI 2015.
    Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and estimation. JASA 102(477).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError
from pairkit.rating.leaderboard import Leaderboard

__all__ = [
    "DEFAULT_MODELS",
    "ModelComparison",
    "compare_models",
    "plot_reliability",
    "prediction_scores",
    "reliability",
]

DEFAULT_MODELS = ("bt", "elo", "davidson", "rao_kupper")
"""Models compared when none are named (those that need no order flag; tie models only with ties present).
``robust`` is not among them: it took ~90% of the run time and scores like ``bt`` unless outcomes are noisy —
name it to include it."""


def prediction_scores(
    expected: np.ndarray,
    outcome: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    bins: int = 10,
    tie_probability: np.ndarray | None = None,
) -> dict[str, float]:
    """Log-loss, accuracy, Brier score and (orientation-symmetric) calibration error of expected scores.

    .. math::

        \\text{ECE} = \\sum_b \\frac{W_b}{2W}\\,\\lvert \\bar y_b - \\bar p_b \\rvert
        \\quad\\text{over the } 2M \\text{ pairs } (\\tilde p_k, y_k),\\ (1 - \\tilde p_k, 1 - y_k)

    Args:
        expected: (M,) predicted expected score of ``a`` (``P(win) + ½ P(tie)``).
        outcome: (M,) observed outcome for ``a`` (1, ½, 0; strictly between 0 and 1 counts as a tie).
        weight: (M,) comparison weights (default 1).
        tie_probability: (M,) predicted P(tie); adds the three-outcome ``log_loss_3`` and ``brier_3``.

    >>> from pairkit.rating import prediction_scores
    >>> scores = prediction_scores([0.9, 0.2, 0.6], [1.0, 0.0, 0.0])
    >>> {k: round(float(v), 3) for k, v in scores.items()}
    {'log_loss': 0.415, 'accuracy': 0.667, 'brier': 0.137, 'ece': 0.3}
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
    _, pb, yb, wb = reliability(p, y, w, bins=bins)
    ece = float(np.sum(wb * np.abs(np.nan_to_num(yb - pb)))) / float(wb.sum())
    scores = {"log_loss": log_loss, "accuracy": accuracy, "brier": brier, "ece": ece}
    if tie_probability is not None:
        t = np.asarray(tie_probability, dtype=np.float64)
        win = np.clip(p - t / 2, 0.0, 1.0)
        loss = np.clip(1.0 - win - t, 0.0, 1.0)
        tie = ~decisive
        observed = np.where(y == 1, win, np.where(y == 0, loss, t))
        scores["log_loss_3"] = -float(np.sum(w * np.log(np.clip(observed, 1e-12, 1.0)))) / total
        sq = (win - (y == 1)) ** 2 + (t - tie) ** 2 + (loss - (y == 0)) ** 2
        scores["brier_3"] = float(np.sum(w * sq)) / total
    return scores


def reliability(
    expected: np.ndarray, outcome: np.ndarray, weight: np.ndarray | None = None, *, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A reliability diagram's points over both orientations: bin centres, mean predicted, mean observed, weight.

    Every comparison enters twice, as ``(p̃, y)`` and ``(1 − p̃, 1 − y)``, so the diagram is symmetric about
    (½, ½) and does not depend on which side is ``a``. Empty bins have NaN means and zero weight.

    >>> from pairkit.rating import reliability
    >>> centres, predicted, observed, weight = reliability([0.9, 0.2, 0.6], [1.0, 0.0, 0.0], bins=2)
    >>> print(centres, predicted.round(3), observed.round(3), weight)
    [0.25 0.75] [0.233 0.767] [0.333 0.667] [3. 3.]
    """
    p = np.asarray(expected, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.ones_like(p) if weight is None else np.asarray(weight, dtype=np.float64)
    pp, yy, ww = np.r_[p, 1 - p], np.r_[y, 1 - y], np.r_[w, w]
    which = np.minimum((pp * bins).astype(np.int64), bins - 1)
    wb = np.bincount(which, ww, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        pb = np.bincount(which, ww * pp, bins) / wb
        yb = np.bincount(which, ww * yy, bins) / wb
    return (np.arange(bins) + 0.5) / bins, pb, yb, wb


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


def _predictions(board: Leaderboard, index: np.ndarray, test: Comparisons) -> tuple[np.ndarray, np.ndarray]:
    """P(a wins) and P(tie) for the test comparisons; ``index`` maps test items to the board (−1: unseen)."""
    win, tie = board.predict_indices(index[test.a], index[test.b], test.a_first)
    return np.asarray(win, dtype=float), np.broadcast_to(np.asarray(tie, dtype=float), np.shape(win))


def _expected_scores(board: Leaderboard, index: np.ndarray, test: Comparisons) -> np.ndarray:
    win, tie = _predictions(board, index, test)
    return np.clip(win + tie / 2, 0.0, 1.0)


def _splits(comparisons: Comparisons, folds: int, rng, split_by, test) -> list[tuple[np.ndarray, Comparisons]]:
    """(training rows, held-out comparisons) pairs for K folds, forward groups or a separate test set."""
    if test is not None:
        return [(np.ones(len(comparisons), dtype=bool), test)]
    if split_by is not None:
        group = pd.factorize(np.asarray(split_by))[0]  # order of first appearance
        if group.shape != (len(comparisons),):
            raise InputError(f"split_by must have one value per comparison ({len(comparisons)}), got {group.shape}")
        n_groups = int(group.max()) + 1
        if n_groups < 2:
            raise InputError("split_by has a single group: nothing to predict from earlier groups")
        return [(group < g, comparisons.subset(group == g)) for g in range(1, n_groups)]
    fold = _fold_ids(comparisons, folds, rng)
    return [(fold != k, comparisons.subset(fold == k)) for k in range(folds)]


def _index_for(test: Comparisons, train: Comparisons, index: np.ndarray) -> np.ndarray:
    """Map the test set's items to the compact training board by name (−1 when not seen in training)."""
    if test.items == train.items:
        return index
    lookup = {name: k for k, name in enumerate(train.items)}
    to_train = np.array([lookup.get(name, -1) for name in test.items], dtype=np.int64)
    return np.where(to_train >= 0, index[np.maximum(to_train, 0)], -1)


def compare_models(
    comparisons: Comparisons,
    models: Sequence[str] | Mapping[str, Callable[..., Leaderboard]] | None = None,
    *,
    folds: int = 5,
    seed: int | np.random.Generator = 0,
    prior: float = 1.0,
    options: Mapping[str, Mapping] | None = None,
    split_by: np.ndarray | Sequence | None = None,
    test: Comparisons | None = None,
) -> ModelComparison:
    """Held-out log-loss, accuracy, Brier score and calibration of rating models.

    .. math::

        \\text{log-loss} = -\\frac{1}{W}\\sum_{k \\in \\text{test}} w_k\\,[y_k \\log \\tilde p_k
            + (1-y_k)\\log(1-\\tilde p_k)],\\qquad \\tilde p = P(\\text{win}) + \\tfrac12 P(\\text{tie})

    Args:
        comparisons: (M,) training comparisons; K folds group by ``cluster`` when it is set.
        models: registry names (:mod:`pairkit.rating.registry`) or a mapping name → fit function; default
            :data:`DEFAULT_MODELS` (tie models only when the data have ties).
        folds: K ≥ 2 (ignored with ``split_by`` or ``test``).
        seed: fold assignment.
        prior: passed to every model that takes a ``prior`` (Newman's virtual games), so that each fold has finite
            ratings even when an item only won in its training part; 0 for pure MLE.
        options: per-model extra keyword arguments, e.g. ``{"order": {"ties": "davidson"}}``.
        split_by: (M,) group labels (season, week); groups in their order of first appearance, each predicted
            from all earlier ones (forward validation; the first group is only trained on).
        test: held-out comparisons (matched to the training items by name): fit once on ``comparisons``.

    Returns:
        A :class:`ModelComparison` (``to_json``; reads as its table): one row per model, best log-loss first
        (skipped models last): ``model``, ``log_loss``, ``accuracy``,
        ``brier``, ``ece`` (pooled over all held-out comparisons), ``log_loss_3`` and ``brier_3`` (three-outcome
        scores; NaN for models without a tie probability or data without ties), ``log_loss_sd`` (across folds),
        ``n_test``, ``folds``, ``note`` (why a model was skipped, else empty). ``table.attrs["predictions"]``
        holds each model's held-out ``(expected, outcome, weight)`` for :func:`plot_reliability`.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1] * 4, [1, 2, 0, 1, 2, 2] * 4
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 0, 1] * 4, items=["a", "b", "c"])
    >>> from pairkit.rating import compare_models
    >>> result = compare_models(comps, ['bt', 'elo'], folds=2, seed=0)
    >>> print(result.table[['model', 'log_loss']].round(3).to_string(index=False))
    model  log_loss
      elo     0.696
       bt     0.747
    """
    from pairkit._spec import Spec, options_of
    from pairkit.rating.registry import model_spec

    if not isinstance(comparisons, Comparisons) or len(comparisons) == 0:
        raise InputError("compare_models needs a non-empty Comparisons")
    if test is not None and (not isinstance(test, Comparisons) or len(test) == 0):
        raise InputError("test must be a non-empty Comparisons")
    if int(folds) < 2:
        raise InputError(f"folds must be >= 2, got {folds!r}")
    folds = int(folds)
    has_ties = comparisons.has_ties or (test is not None and test.has_ties)
    if models is None:
        names = [m for m in DEFAULT_MODELS if comparisons.has_ties or m not in ("davidson", "rao_kupper")]
        fits = {name: model_spec(name) for name in names}
    elif isinstance(models, Mapping):
        # a plain function takes the options it declares (pairkit._spec.declare_options), none if it declares none
        fits = {name: Spec(name=name, fn=fit, kind="rating model", options=options_of(fit))
                for name, fit in models.items()}
    else:
        if isinstance(models, str):
            models = [models]
        fits = {name: model_spec(name) for name in models}
    if not fits:
        raise InputError("no models to compare")
    options = dict(options or {})
    # each model's options checked once, before any split (a bad value is the caller's error, not a reason to skip
    # the model); the folds' fits then skip the per-call check
    checked = {
        name: spec.check(
            {**{k: v for k, v in (("prior", prior), ("intervals", "none")) if spec.takes(k)}, **options.get(name, {})},
            where=f"model {name!r}: ",
        )
        for name, spec in fits.items()
    }
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    splits = _splits(comparisons, folds, rng, split_by, test)
    held = [part for _, part in splits]
    outcome = np.concatenate([part.outcome for part in held])
    weight = np.concatenate([part.weight for part in held])
    rows, predictions = [], {}
    for name, spec in fits.items():  # a handful of models × K folds; each fit is vectorised
        kwargs, fit = checked[name], spec.unchecked
        win, tie, fold_loss, note = [], [], [], ""
        for k, (train_rows, part) in enumerate(splits):
            compact, index = _compact(comparisons.subset(train_rows))
            try:
                board = fit(compact, **kwargs)
            except (InputError, EstimationError) as err:
                where = "" if len(splits) == 1 else f" (fold {k + 1} of {len(splits)})"
                note = f"skipped{where}: {str(err).splitlines()[0]}"
                break
            if not board.predicts:  # counting and spectral scores order items but forecast nothing
                note = "skipped: the model orders items but does not define win probabilities"
                break
            p, t = _predictions(board, _index_for(part, comparisons, index), part)
            win.append(p)
            tie.append(t)
            fold_loss.append(prediction_scores(np.clip(p + t / 2, 0, 1), part.outcome, part.weight)["log_loss"])
        if note:
            rows.append({"model": name, "n_test": len(outcome), "folds": len(splits), "note": note})
            continue
        win, tie = np.concatenate(win), np.concatenate(tie)
        expected = np.clip(win + tie / 2, 0.0, 1.0)
        forecasts_ties = has_ties and bool(np.any(tie > 0))
        scores = prediction_scores(expected, outcome, weight, tie_probability=tie if forecasts_ties else None)
        predictions[name] = (expected, outcome, weight)
        rows.append(
            {
                "model": name,
                **scores,
                "log_loss_sd": float(np.std(fold_loss, ddof=1)) if len(fold_loss) > 1 else float("nan"),
                "n_test": len(outcome),
                "folds": len(splits),
                "note": "",
            }
        )
    if not predictions:
        raise InputError("no model could be fitted: " + "; ".join(f"{r['model']}: {r['note']}" for r in rows))
    columns = ["model", "log_loss", "accuracy", "brier", "ece", "log_loss_3", "brier_3", "log_loss_sd", "n_test",
               "folds", "note"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["note"] = frame["note"].fillna("")
    frame = frame.sort_values("log_loss", kind="stable", na_position="last").reset_index(drop=True)
    frame.attrs["predictions"] = predictions
    split = "test" if test is not None else "forward" if split_by is not None else "folds"
    return ModelComparison(frame, n_splits=len(splits), seed=seed if isinstance(seed, int) else None, split=split)


class ModelComparison:
    """What :func:`compare_models` returns: the score table (one row per model, best first) and how it was held
    out, with the JSON contract (:meth:`to_dict`, :meth:`to_json`).

    It reads as its table: ``result.model``, ``result["log_loss"]``, ``result.set_index("model")`` … are the
    :class:`pandas.DataFrame`'s (``result.table``); ``table.attrs["predictions"]`` holds the held-out
    predictions for :func:`plot_reliability`.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1] * 4, [1, 2, 0, 1, 2, 2] * 4
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 0, 1] * 4, items=["a", "b", "c"])
    >>> import json
    >>> from pairkit.rating import compare_models
    >>> result = compare_models(comps, ['bt'], folds=2, seed=0)
    >>> sorted(json.loads(result.to_json()))
    ['folds', 'models', 'seed', 'split']
    """

    def __init__(self, table: pd.DataFrame, *, n_splits: int, seed: int | None, split: str) -> None:
        # attribute names differ from the table's columns (``folds``), which they would hide
        self.table, self.n_splits, self.seed, self.split = table, n_splits, seed, split

    def __getattr__(self, name: str):
        if name == "table":  # not yet set (copying, unpickling): no table to read from
            raise AttributeError(name)
        return getattr(self.table, name)

    def __getitem__(self, key):
        return self.table[key]

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"ModelComparison(split={self.split!r}, n_splits={self.n_splits}, seed={self.seed})\n{self.table!r}"

    def to_dict(self) -> dict:
        """``{"split", "folds", "seed", "models": [one record per model; NaN → null]}``."""
        records = [{k: _finite_or_none(v) for k, v in r.items()} for r in self.table.to_dict(orient="records")]
        return {"split": self.split, "folds": self.n_splits, "seed": self.seed, "models": records}

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        """Serialise :meth:`to_dict` (and write it to ``path`` if given)."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            from pairkit._io import atomic_write_text

            atomic_write_text(path, text + "\n")  # a kill or a full disk leaves the previous file whole
        return text


def _finite_or_none(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def plot_reliability(frame: ModelComparison | pd.DataFrame, path=None, *, bins: int = 10, ax=None):
    """Reliability diagram (both orientations) of every model in a :func:`compare_models` result.

    Points are the bins' mean predicted vs observed expected score, sized by weight; the diagonal is perfect
    calibration. Saves a PNG when ``path`` is given; returns the axes.

    Example:

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> from pairkit import Comparisons
        >>> from pairkit.rating import compare_models, plot_reliability
        >>> comps = Comparisons.from_arrays(["a", "b", "c", "a"] * 10, ["b", "c", "a", "c"] * 10, [1, 1, 0, 1] * 10)
        >>> axes = plot_reliability(compare_models(comps, ["bt", "elo"], folds=2))
    """
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table = frame.table if isinstance(frame, ModelComparison) else frame
    predictions = table.attrs.get("predictions") or {}
    if not predictions:
        raise InputError("no held-out predictions to plot (pass the frame returned by compare_models)")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    for k, (name, (expected, outcome, weight)) in enumerate(predictions.items()):
        _, pb, yb, wb = reliability(expected, outcome, weight, bins=bins)
        keep = wb > 0
        ax.plot(pb[keep], yb[keep], "-o", color=f"C{k % 10}", ms=4, label=name)
    ax.set_xlabel("predicted expected score")
    ax.set_ylabel("observed expected score")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Reliability (held-out, both orientations)")
    ax.legend(loc="upper left", fontsize=8)
    if own:
        fig.tight_layout()
        if path is not None:
            from pairkit._io import save_figure

            save_figure(fig, path)  # a kill or a full disk leaves the previous file whole
    return ax
