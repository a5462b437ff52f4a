"""Bradley–Terry with per-comparison covariates: style control as on the LMArena leaderboard.

Each comparison carries feature differences ``z_k`` (answer length, markdown headers, lists, bold, …); the
log-odds are the strength difference plus ``γ·z``, so the strengths are *controlled* for the features and ``γ``
says how much each feature sways the judges. Coefficients get an L2 penalty ``ridge/2 · ‖γ‖²`` through the
shared solver (the strengths are not penalised).

.. math::

    P(a \\succ b) = \\sigma(\\theta_a - \\theta_b + \\gamma^\\top z),\\qquad
    z_s = \\operatorname{normalize}\\Big(\\frac{f_{a,s} - f_{b,s}}{f_{a,s} + f_{b,s}}\\Big)

References:
    Li, T., Angelopoulos, A. & Chiang, W.-L. (2024). Does style matter? Disentangling style and substance in
    Chatbot Arena. LMSYS blog, 2024-08-28.
    Bradley, R. A. & Terry, M. E. (1952). Rank analysis of incomplete block designs I. Biometrika 39.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pairkit._spec import Interval, Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating._checks import LEVEL, MAX_ITER, PRIOR, TOL
from pairkit.rating._generic import ExtraParam, check_inputs, fit_rows_model, row_stats, start_tie_parameter
from pairkit.rating._pairwise import bradley_terry_rows
from pairkit.rating.bradley_terry import PAIRWISE_INTERVALS, TIES, check_mle_exists, davidson_rows
from pairkit.rating.leaderboard import Leaderboard

__all__ = ["fit_covariate_bt", "style_features"]


def style_features(features_a: np.ndarray, features_b: np.ndarray, *, standardize: bool = True) -> np.ndarray:
    """LMArena's style covariates: ``(f_a − f_b)/(f_a + f_b)`` per feature, then z-scored over comparisons.

    .. math::

        z_{ks} = \\frac{r_{ks} - \\bar r_s}{\\operatorname{sd}(r_s)},\\qquad
        r_{ks} = \\frac{f_{a,ks} - f_{b,ks}}{f_{a,ks} + f_{b,ks}}\\ (0 \\text{ when both are } 0)

    Args:
        features_a, features_b: (M,) or (M, S) non-negative feature values of the two sides (token counts, number
            of headers, lists, bold spans).
        standardize: z-score each column (a constant column is left at 0).

    Returns:
        (M, S) covariates for :func:`fit_covariate_bt`.

    >>> from pairkit.rating import style_features
    >>> print(style_features([300, 100, 200], [100, 300, 200]).round(3))
    [[ 1.225]
     [-1.225]
     [ 0.   ]]
    """
    fa = np.asarray(features_a, dtype=np.float64)
    fb = np.asarray(features_b, dtype=np.float64)
    if fa.shape != fb.shape:
        raise InputError(f"features_a and features_b must have the same shape, got {fa.shape} and {fb.shape}")
    if fa.ndim == 1:
        fa, fb = fa[:, None], fb[:, None]
    if fa.ndim != 2:
        raise InputError(f"features must be (M,) or (M, S), got shape {fa.shape}")
    bad = ~np.isfinite(fa) | ~np.isfinite(fb) | (fa < 0) | (fb < 0)
    if bad.any():
        k, s = np.argwhere(bad)[0]
        raise InputError(
            f"style features must be finite and >= 0: row {k}, feature {s} has ({fa[k, s]!r}, {fb[k, s]!r})"
        )
    total = fa + fb
    ratio = np.divide(fa - fb, total, out=np.zeros_like(total), where=total > 0)
    if not standardize:
        return ratio
    sd = ratio.std(axis=0)
    return np.divide(ratio - ratio.mean(axis=0), sd, out=np.zeros_like(ratio), where=sd > 0)


@declare_options(
    Option("ridge", float, Interval(0, None), doc="L2 penalty on the coefficients"),
    TIES, PRIOR, PAIRWISE_INTERVALS, LEVEL, TOL, MAX_ITER,
)
def fit_covariate_bt(
    comparisons: Comparisons,
    covariates: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    ridge: float = 0.0,
    ties: str = "half",
    prior: float = 0.0,
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit covariate-controlled Bradley–Terry strengths and the covariates' coefficients jointly.

    .. math::

        \\max_{\\theta, \\gamma}\\ \\sum_k w_k \\big[y_k \\log\\sigma(d_k) + (1-y_k)\\log\\sigma(-d_k)\\big]
            - \\tfrac{\\text{ridge}}{2}\\lVert\\gamma\\rVert^2,\\qquad
        d_k = \\theta_{a_k} - \\theta_{b_k} + \\gamma^\\top z_k

    Args:
        comparisons: (M,) comparisons.
        covariates: (M, S) per-comparison covariates ``z`` from ``a``'s side (e.g. :func:`style_features`).
        names: S coefficient names (default ``x0, x1, …``); reported as ``params["coef_<name>"]``.
        ridge: L2 penalty on the coefficients (not on the strengths). scikit-learn's ``C`` is ``1/ridge``.
        ties: ``"half"`` or ``"davidson"``.
        prior, intervals, level, tol, max_iter: as in :func:`pairkit.rating.fit_bradley_terry`.

    Returns:
        A :class:`Leaderboard` of the controlled strengths with the coefficients and their intervals in
        ``params``/``param_intervals``; ``info["beta"]`` holds the coefficient vector.

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> import numpy as np
    >>> from pairkit.rating import fit_covariate_bt
    >>> z = np.array([[1.0], [-1.0], [0.0], [1.0], [0.5], [-0.5]])
    >>> board = fit_covariate_bt(comps, z, names=['length'], ridge=1.0, prior=1.0)
    >>> board.items, sorted(board.params)
    (('a', 'b', 'c'), ['coef_length'])
    """
    check_inputs(comparisons, ties, "covariate_bt")
    Z = np.asarray(covariates, dtype=np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2 or Z.shape[0] != len(comparisons):
        raise InputError(f"covariates must be ({len(comparisons)}, S), got shape {np.shape(covariates)}")
    if not np.all(np.isfinite(Z)):
        k = int(np.argwhere(~np.isfinite(Z))[0, 0])
        raise InputError(f"covariates row {k} is not finite: {Z[k].tolist()}")
    names = [f"x{s}" for s in range(Z.shape[1])] if names is None else [str(x) for x in names]
    if len(names) != Z.shape[1]:
        raise InputError(f"names has {len(names)} entries but covariates have {Z.shape[1]} columns")
    davidson = ties == "davidson"
    if prior == 0:
        check_mle_exists(comparisons.pair_counts(ties="separate" if davidson else "half"), comparisons.items)
    extra = [ExtraParam(f"coef_{name}", s) for s, name in enumerate(names)]
    if davidson:
        extra.append(ExtraParam("tie_nu", Z.shape[1], np.exp))
    lb, fit = fit_rows_model(
        comparisons,
        i=comparisons.a,
        j=comparisons.b,
        X=Z,
        stats=row_stats(comparisons, "separate" if davidson else "half"),
        model=davidson_rows if davidson else bradley_terry_rows,
        model_name="covariate_bt",
        n_eta=1 if davidson else 0,
        eta0=start_tie_parameter(comparisons, ties) if davidson else None,
        prior=prior,
        ridge=ridge,
        intervals=intervals,
        level=level,
        extra=extra,
        aggregate=False,
        predictor=None,
        identification_hint=(
            "A covariate that is constant, duplicates another, or is a combination of the items' own indicators "
            "is confounded with the strengths: drop it, or use ridge > 0 to shrink the coefficients."
        ),
        separation_hint="A covariate predicts every outcome perfectly: use ridge > 0, or drop it.",
        tol=tol,
        max_iter=max_iter,
    )
    # Predictions without covariates are those of two answers with equal style (z = 0).
    if davidson:
        from pairkit.rating.bradley_terry import davidson_predictor

        lb = _with_predictor(lb, davidson_predictor(float(np.exp(fit.eta[0]))))
    lb.info["coef_names"] = names
    return lb


def _with_predictor(lb: Leaderboard, predictor) -> Leaderboard:
    from dataclasses import replace

    return replace(lb, predictor=predictor)
