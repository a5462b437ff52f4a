"""TrueSkill: Bayesian online ratings of players in teams, with draws and partial play.

Each player's skill has a Gaussian belief ``N(μ, σ²)``. In a match the teams' performances
``t_k = Σ_p w_p (s_p + ε_p)`` (``ε_p ~ N(0, β²)``) are compared in finishing order: a win means
``t_k − t_{k+1} > m`` and a draw ``|t_k − t_{k+1}| ≤ m`` with the draw margin
``m = Φ⁻¹((1 + p_draw)/2) · √(n₁ + n₂) · β``. Expectation propagation on the factor graph gives the posterior.
For two teams it is closed form (``c² = Σ_p w_p²(σ_p² + τ² + β²)``):

.. math::

    \\mu_p \\leftarrow \\mu_p \\pm w_p\\frac{\\tilde\\sigma_p^2}{c}\\,v\\Big(\\frac{\\Delta}{c}, \\frac{m}{c}\\Big),
    \\qquad \\sigma_p^2 \\leftarrow \\tilde\\sigma_p^2\\Big(1 - w_p^2\\frac{\\tilde\\sigma_p^2}{c^2}\\,
    w\\Big(\\frac{\\Delta}{c}, \\frac{m}{c}\\Big)\\Big)

with ``σ̃² = σ² + τ²``, ``Δ`` the winner's minus the loser's mean team performance and ``v, w`` the mean and
variance corrections of the truncated Gaussian (one-sided for a win, two-sided for a draw). Two-team matches
are updated a round of player-disjoint matches at a time with numpy (:mod:`pairkit.rating._online`); matches
of three or more teams run the same message schedule as the ``trueskill`` package, one match at a time.

Reference:
    Herbrich, R., Minka, T. & Graepel, T. (2007). TrueSkill™: A Bayesian skill rating system. NIPS 19.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option, declare_options
from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError
from pairkit.rating._checks import LEVEL, TOL, intervals_option, renamed_options
from pairkit.rating._online import (
    Matches,
    as_matches,
    check_scales,
    conservative_z,
    initial_beliefs,
    plan_rounds,
    posterior_leaderboard,
)
from pairkit.rating.leaderboard import Leaderboard

Normal = Literal["exact", "trueskill"]

__all__ = ["fit_trueskill", "trueskill_draw_margin", "trueskill_predictor", "trueskill_rate"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------- normal backends
@dataclass(frozen=True)
class _NormalFunctions:
    cdf: object
    pdf: object
    ppf: object
    cdf1: object  # scalar versions for the one-match-at-a-time multi-team schedule
    pdf1: object


def _erfc_approx1(x: float) -> float:
    z = abs(x)
    t = 1.0 / (1.0 + z / 2.0)
    poly = -0.82215223 + t * 0.17087277
    for coef in (1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly = coef + t * poly
    r = t * math.exp(-z * z - 1.26551223 + t * poly)
    return 2.0 - r if x < 0 else r


def _erfc_approx(x: np.ndarray) -> np.ndarray:
    # Numerical Recipes' Chebyshev fit (|error| < 1.2e-7), the ``trueskill`` package's default backend.
    z = np.abs(x)
    t = 1.0 / (1.0 + z / 2.0)
    poly = -0.82215223 + t * 0.17087277
    for coef in (1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196, 1.00002368):
        poly = coef + t * poly
    r = t * np.exp(-z * z - 1.26551223 + t * poly)
    return np.where(x < 0, 2.0 - r, r)


def _erfcinv_approx(y: float) -> float:
    # The package's inverse: a rational start refined by two Newton steps on the approximate erfc.
    if y >= 2:
        return -100.0
    if y <= 0:
        return 100.0
    lower = y < 1
    if not lower:
        y = 2 - y
    t = math.sqrt(-2 * math.log(y / 2.0))
    x = -0.70711 * ((2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t)
    for _ in range(2):
        err = _erfc_approx1(x) - y
        x += err / (1.12837916709551257 * math.exp(-(x**2)) - x * err)
    return x if lower else -x


_BACKENDS = {
    "exact": _NormalFunctions(
        cdf=special.ndtr,
        pdf=lambda x: np.exp(-(x * x) / 2.0) * _INV_SQRT_2PI,
        ppf=lambda p: float(special.ndtri(p)),
        cdf1=lambda x: 0.5 * math.erfc(-x / _SQRT2),
        pdf1=lambda x: math.exp(-(x * x) / 2.0) * _INV_SQRT_2PI,
    ),
    "trueskill": _NormalFunctions(
        cdf=lambda x: 0.5 * _erfc_approx(-x / _SQRT2),
        pdf=lambda x: _INV_SQRT_2PI * np.exp(-((x * x) / 2.0)),
        ppf=lambda p: -_SQRT2 * _erfcinv_approx(2 * p),
        cdf1=lambda x: 0.5 * _erfc_approx1(-x / _SQRT2),
        pdf1=lambda x: _INV_SQRT_2PI * math.exp(-((x * x) / 2.0)),
    ),
}


def _backend(normal: str) -> _NormalFunctions:
    if normal not in _BACKENDS:
        raise InputError(f"normal must be 'exact' or 'trueskill', got {normal!r}")
    return _BACKENDS[normal]


def _v_w(x: np.ndarray, margin: np.ndarray, drawn: np.ndarray, f: _NormalFunctions):
    """Mean and variance corrections of the truncated Gaussian for a win (x > margin) or a draw (|x| ≤ margin)."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    margin = np.atleast_1d(np.asarray(margin, dtype=float))
    drawn = np.atleast_1d(np.asarray(drawn, dtype=bool))
    n = len(x)
    ax = np.abs(x)
    xm = x - margin
    a, b = margin - ax, -margin - ax
    # One call of each normal function on all arguments: rounds can be small, so the calls dominate.
    args = np.concatenate([xm, a, b])
    cdf, pdf = f.cdf(args), f.pdf(args)
    cdf_x, cdf_a, cdf_b = cdf[:n], cdf[n : 2 * n], cdf[2 * n :]
    pdf_x, pdf_a, pdf_b = pdf[:n], pdf[n : 2 * n], pdf[2 * n :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v_win = np.where(cdf_x > 0, pdf_x / cdf_x, -xm)
        w_win = v_win * (v_win + xm)
        den_d = cdf_a - cdf_b
        v_abs = np.where(den_d != 0, (pdf_b - pdf_a) / den_d, a)
        w_draw = v_abs * v_abs + (a * pdf_a - b * pdf_b) / den_d
    v = np.where(drawn, np.where(x < 0, -v_abs, v_abs), v_win)
    w = np.where(drawn, w_draw, w_win)
    bad = ~((w > 0) & (w < 1)) | ~np.isfinite(v)
    if bad.any():
        raise EstimationError(
            "TrueSkill: the truncated-Gaussian update failed (an outcome far too unlikely under the current "
            f"ratings: standardized difference {float(x[bad][0]):.3g}); use normal='exact' or a larger beta"
        )
    return v, w


def _v_w1(x: float, margin: float, drawn: bool, f: _NormalFunctions) -> tuple[float, float]:
    """Scalar :func:`_v_w` (same formulas) for the iterative multi-team schedule."""
    if drawn:
        ax = abs(x)
        a, b = margin - ax, -margin - ax
        den = f.cdf1(a) - f.cdf1(b)
        pa, pb = f.pdf1(a), f.pdf1(b)
        v_abs = (pb - pa) / den if den else a
        v = -v_abs if x < 0 else v_abs
        w = v_abs * v_abs + (a * pa - b * pb) / den if den else math.nan
    else:
        xm = x - margin
        den = f.cdf1(xm)
        v = f.pdf1(xm) / den if den > 0 else -xm
        w = v * (v + xm)
    if not (0 < w < 1) or not math.isfinite(v):
        raise EstimationError(
            "TrueSkill: the truncated-Gaussian update failed (an outcome far too unlikely under the current "
            f"ratings: standardized difference {x:.3g}); use normal='exact' or a larger beta"
        )
    return v, w


def trueskill_draw_margin(
    draw_probability: float, n_players: int | np.ndarray, *, beta: float = 25.0 / 6.0, normal: Normal = "exact"
) -> np.ndarray:
    """Draw margin ``m`` such that two evenly matched teams with ``n_players`` in total draw with that probability.

    .. math::

        m = \\Phi^{-1}\\Big(\\frac{1 + p_{\\text{draw}}}{2}\\Big)\\,\\sqrt{n}\\,\\beta

    Paper: Herbrich, Minka & Graepel (2007), "TrueSkill™: A Bayesian skill rating system".

    >>> from pairkit.rating import trueskill_draw_margin
    >>> round(float(trueskill_draw_margin(0.1, 2)), 4)
    0.7405
    """
    if not (0.0 <= draw_probability < 1.0):
        raise InputError(f"draw_probability must be in [0, 1), got {draw_probability!r}")
    return _backend(normal).ppf((draw_probability + 1) / 2.0) * np.sqrt(n_players) * beta


# ---------------------------------------------------------------------------------------------- rating
def trueskill_rate(
    data: Matches | Comparisons,
    *,
    mu: float = 25.0,
    sigma: float = 25.0 / 3.0,
    beta: float = 25.0 / 6.0,
    tau: float = 25.0 / 300.0,
    draw_probability: float = 0.10,
    min_delta: float = 1e-4,
    normal: Normal = "exact",
    initial_mu: np.ndarray | None = None,
    initial_sigma: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run TrueSkill over all matches in order; return each player's final ``(μ, σ)``.

    For each team ``k`` of a match with prior performance ``N(μ_k, v_k)`` and expectation-propagation
    posterior ``N(μ'_k, v'_k)``, every player ``p`` of the team is updated by Gaussian conditioning:

    .. math::

        \\mu_p \\leftarrow \\mu_p + w_p\\tilde\\sigma_p^2\\,\\frac{\\mu'_k - \\mu_k}{v_k},\\qquad
        \\sigma_p^2 \\leftarrow \\tilde\\sigma_p^2 - w_p^2\\tilde\\sigma_p^4\\,\\frac{v_k - v'_k}{v_k^2}

    Paper: Herbrich, Minka & Graepel (2007), "TrueSkill™: A Bayesian skill rating system". Defaults are the
    ``trueskill`` package's (μ 25, σ 25/3, β 25/6, τ 25/300, draw probability 0.10, min_delta 1e-4: the
    convergence threshold of the multi-team schedule and the smallest partial-play weight). ``normal="exact"``
    uses exact normal functions (as the package's ``backend="scipy"``); ``"trueskill"`` reproduces the
    package's default approximate erfc (error ~1e-7), to compare with it at its defaults.

    Args:
        data: ``Matches`` (teams, ranks, partial-play weights) or :class:`Comparisons` (1-vs-1 in row
            order; outcome 0.5 is a draw).
        initial_mu, initial_sigma: (n_items,) starting beliefs (default ``mu``, ``sigma`` for everyone).
    Returns:
        ``(μ, σ)``, each of shape (n_items,).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import trueskill_rate
    >>> mu, sigma = trueskill_rate(comps)
    >>> print(mu.round(2), sigma.round(2))
    [28.31 24.19 19.86] [4.75 4.8  4.6 ]
    """
    matches = data if isinstance(data, Matches) else Matches.from_comparisons(data)
    f = _backend(normal)
    check_scales(tau, sigma=sigma, beta=beta, min_delta=min_delta)
    mus, sigmas = initial_beliefs(matches.n_items, mu, sigma, initial_mu, initial_sigma)
    if matches.n_matches == 0:
        return mus, sigmas

    plan = plan_rounds(matches)
    n_teams_of = np.diff(plan.match_ptr)
    team_size = np.diff(plan.team_ptr)
    # Draw margin of each adjacent pair of teams (team k and k+1 in finishing order), indexed by team k.
    pair_players = team_size[:-1] + team_size[1:]
    margins = np.zeros(len(team_size))
    sizes, inverse = np.unique(pair_players, return_inverse=True)
    margins[:-1] = trueskill_draw_margin(draw_probability, sizes, beta=beta, normal=normal)[inverse]
    drawn = np.zeros(len(team_size), dtype=bool)
    drawn[:-1] = plan.rank[:-1] == plan.rank[1:]
    weight = None if plan.weight is None else np.maximum(plan.weight, min_delta)
    first_team = plan.match_ptr[:-1]
    two_team = n_teams_of == 2
    beta2, tau2 = beta * beta, tau * tau

    for r in range(plan.n_rounds):
        m0, m1 = plan.round_match[r], plan.round_match[r + 1]
        s0, s1 = plan.round_slot[r], plan.round_slot[r + 1]
        t0, t1 = plan.round_team[r], plan.round_team[r + 1]
        players = plan.players[s0:s1]
        slot_team = plan.slot_team[s0:s1] - t0
        w = None if weight is None else weight[s0:s1]
        s2 = sigmas[players] ** 2 + tau2
        mu_p = mus[players]
        nt = t1 - t0
        team_mu = np.bincount(slot_team, mu_p if w is None else w * mu_p, nt)
        team_var = np.bincount(slot_team, s2 + beta2 if w is None else w * w * (s2 + beta2), nt)
        post_mu = team_mu.copy()
        post_var = team_var.copy()
        two = two_team[m0:m1]
        if two.any():
            i = first_team[m0:m1][two] - t0
            q = i + 1
            c2 = team_var[i] + team_var[q]
            c = np.sqrt(c2)
            v, wc = _v_w((team_mu[i] - team_mu[q]) / c, margins[t0 + i] / c, drawn[t0 + i], f)
            post_mu[i] += team_var[i] * v / c
            post_mu[q] -= team_var[q] * v / c
            post_var[i] *= 1.0 - team_var[i] / c2 * wc
            post_var[q] *= 1.0 - team_var[q] / c2 * wc
        for m in np.flatnonzero(~two) + m0:  # three or more teams: iterative, one match at a time
            a, b = plan.match_ptr[m] - t0, plan.match_ptr[m + 1] - t0
            post_mu[a:b], post_var[a:b] = _chain_ep(
                team_mu[a:b], team_var[a:b], margins[t0 + a : t0 + b - 1], drawn[t0 + a : t0 + b - 1], f, min_delta
            )
        gain = (post_mu - team_mu) / team_var
        shrink = (team_var - post_var) / (team_var * team_var)
        wp = 1.0 if w is None else w
        mus[players] = mu_p + wp * s2 * gain[slot_team]
        var = s2 - (wp * s2) ** 2 * shrink[slot_team]
        if np.any(var <= 0):
            raise EstimationError("TrueSkill: a posterior variance is not positive (numerical failure)")
        sigmas[players] = np.sqrt(var)
    return mus, sigmas


def _chain_ep(
    mu: np.ndarray, var: np.ndarray, margins: np.ndarray, drawn: np.ndarray, f: _NormalFunctions, min_delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Expectation propagation on the chain of team-performance differences of one match (teams best first).

    Follows the ``trueskill`` package's schedule (forward sweep, backward sweep, at most 10 passes, stop when
    no truncated difference's natural parameters moved by more than ``min_delta``), in natural parameters
    (precision π, precision-adjusted mean τ). Returns the teams' posterior performance means and variances.
    """
    k = len(mu)
    prior = [(1.0 / v, m / v) for m, v in zip(mu.tolist(), var.tolist(), strict=True)]
    zero = (0.0, 0.0)
    team = list(prior)  # marginals of the team performances
    left = [zero] * (k - 1)  # message of difference factor x to team x
    right = [zero] * (k - 1)  # ... to team x + 1
    down = [zero] * (k - 1)  # ... to the difference variable x
    trunc = [zero] * (k - 1)  # truncation factor x to the difference variable x
    diff = [zero] * (k - 1)  # marginals of the differences

    def div(a, b):
        return (a[0] - b[0], a[1] - b[1])

    def mul(a, b):
        return (a[0] + b[0], a[1] + b[1])

    def mean(g):
        return g[0] and g[1] / g[0]

    def sum_message(terms):  # Gaussian of Σ coeff·X for independent cavities (π may be 0: infinite variance)
        total_mu, pi_inv = 0.0, 0.0
        for coeff, g in terms:
            total_mu += coeff * mean(g)
            if pi_inv != math.inf:
                pi_inv = math.inf if g[0] == 0 else pi_inv + coeff**2 / g[0]
        pi = 1.0 / pi_inv
        return (pi, pi * total_mu)

    def send_down(x):
        msg = sum_message([(1.0, div(team[x], left[x])), (-1.0, div(team[x + 1], right[x]))])
        diff[x] = mul(div(diff[x], down[x]), msg)
        down[x] = msg

    def truncate(x):
        cav = div(diff[x], trunc[x])
        sqrt_pi = math.sqrt(cav[0])
        v, w = _v_w1(cav[1] / sqrt_pi, float(margins[x]) * sqrt_pi, bool(drawn[x]), f)
        new = (cav[0] / (1.0 - w), (cav[1] + sqrt_pi * v) / (1.0 - w))
        trunc[x] = div(mul(new, trunc[x]), diff[x])
        old, diff[x] = diff[x], new
        pi_delta = abs(old[0] - new[0])
        return 0.0 if pi_delta == math.inf else max(abs(old[1] - new[1]), math.sqrt(pi_delta))

    def send_up(x, to_left):
        if to_left:
            msg = sum_message([(1.0, div(diff[x], down[x])), (1.0, div(team[x + 1], right[x]))])
            team[x] = mul(div(team[x], left[x]), msg)
            left[x] = msg
        else:
            msg = sum_message([(1.0, div(team[x], left[x])), (-1.0, div(diff[x], down[x]))])
            team[x + 1] = mul(div(team[x + 1], right[x]), msg)
            right[x] = msg

    for _ in range(10):
        delta = 0.0
        for x in range(k - 2):
            send_down(x)
            delta = max(delta, truncate(x))
            send_up(x, to_left=False)
        for x in range(k - 2, 0, -1):
            send_down(x)
            delta = max(delta, truncate(x))
            send_up(x, to_left=True)
        if delta <= min_delta:
            break
    send_up(0, to_left=True)
    send_up(k - 2, to_left=False)
    post = np.array(team)
    return post[:, 1] / post[:, 0], 1.0 / post[:, 0]


# ---------------------------------------------------------------------------------------------- leaderboard
def trueskill_predictor(beta: float = 25.0 / 6.0, draw_margin: float = 0.0, normal: Normal = "exact"):
    """Win and draw probabilities of two players under TrueSkill, integrated over their skill posteriors.

    Player ``p``'s performance is ``s_p + ε_p`` with skill ``s_p ~ N(μ_p, σ_p²)`` and noise ``ε_p ~ N(0, β²)``,
    so the performance difference is ``N(μ_a − μ_b, c²)``; a win is a difference above the draw margin ``m``:

    .. math::

        c^2 = 2\\beta^2 + \\sigma_a^2 + \\sigma_b^2,\\qquad
        P(a \\succ b) = \\Phi\\Big(\\frac{\\mu_a - \\mu_b - m}{c}\\Big),\\qquad
        P(\\text{draw}) = \\Phi\\Big(\\frac{m - (\\mu_a - \\mu_b)}{c}\\Big)
                         - \\Phi\\Big(\\frac{-m - (\\mu_a - \\mu_b)}{c}\\Big)

    With ``m = 0`` this is the ``trueskill`` package's documented win probability (teams: sums of μ and σ² over
    the players and ``n_players · β²`` in ``c²``; here 1-vs-1). The dynamics ``τ`` are not added, as there. A
    player with little data (large σ) gets forecasts nearer ½; ``σ = 0`` gives the point forecast from the means.

    Returns ``predict(mu_a, mu_b, a_first=None, *, sigma_a=0.0, sigma_b=0.0) -> (P(a wins), P(draw))`` on arrays
    of one shape (``a_first`` is ignored). Boards from :func:`fit_trueskill` call it with each item's σ (an
    unseen item: the prior σ).
    Paper: Herbrich, Minka & Graepel (2007), "TrueSkill™: A Bayesian skill rating system".

    >>> import numpy as np
    >>> from pairkit.rating import trueskill_draw_margin, trueskill_predictor
    >>> predict = trueskill_predictor(draw_margin=float(trueskill_draw_margin(0.1, 2)))
    >>> win, draw = predict(np.array([30.0, 30.0]), np.array([25.0, 25.0]), sigma_a=np.array([0.0, 8.0]))
    >>> print(np.round(win, 3), np.round(draw, 3))  # a is a veteran (σ = 0), then a newcomer (σ = 8)
    [0.765 0.666] [0.07  0.052]
    """
    f = _backend(normal)
    noise = 2.0 * beta * beta

    def predict(mu_a: np.ndarray, mu_b: np.ndarray, a_first: np.ndarray | None = None, *,
                sigma_a: np.ndarray | float = 0.0, sigma_b: np.ndarray | float = 0.0):
        d = np.asarray(mu_a, dtype=float) - np.asarray(mu_b, dtype=float)
        c = np.sqrt(noise + np.square(sigma_a) + np.square(sigma_b))
        p_win = f.cdf((d - draw_margin) / c)
        p_draw = f.cdf((draw_margin - d) / c) - f.cdf((-draw_margin - d) / c) if draw_margin else np.zeros_like(p_win)
        return p_win, p_draw

    return predict


POSITIVE = Interval(0, None, closed="neither")
ONLINE_INTERVALS = intervals_option("auto", "posterior", "none")
"""Online models' intervals: μ ± z·σ of the posterior at ``level`` (``"auto"`` = ``"posterior"``)."""


@renamed_options(min_delta="tol")
@declare_options(
    Option("mu", float, doc="prior mean of a new player"),
    Option("sigma", float, POSITIVE, doc="prior standard deviation of a new player"),
    Option("beta", float, POSITIVE, doc="performance noise"),
    Option("tau", float, Interval(0, None), doc="dynamics: variance added before each match"),
    Option("draw_probability", float, Interval(0, 1, closed="left"), doc="draw rate of evenly matched teams"),
    Option("normal", str, choices=("exact", "trueskill"), doc="exact normal functions or the package's erfc"),
    ONLINE_INTERVALS, LEVEL, TOL,
)
def fit_trueskill(
    data: Matches | Comparisons,
    *,
    mu: float = 25.0,
    sigma: float = 25.0 / 3.0,
    beta: float = 25.0 / 6.0,
    tau: float = 25.0 / 300.0,
    draw_probability: float = 0.10,
    normal: Normal = "exact",
    intervals: str = "auto",
    level: float = 0.95,
    tol: float = 1e-4,
    z: float | None = None,
) -> Leaderboard:
    """TrueSkill ratings as a :class:`Leaderboard` (``scores`` = μ on the ``"trueskill mu"`` scale, se = σ).

    .. math::

        \\text{conservative}_p = \\mu_p - 3\\,\\sigma_p

    (the usual leaderboard sort key; the ``trueskill`` package's ``expose`` uses z = μ₀/σ₀ = 3 too). The
    intervals are the posterior's, μ ± z_level·σ. :meth:`Leaderboard.predict` integrates over the posteriors
    (:func:`trueskill_predictor`: a player with large σ gets forecasts nearer ½; an unseen player, with
    ``unknown="prior"``, is a newcomer ``N(mu, sigma²)``). Options as in :func:`trueskill_rate` (``tol`` is its
    ``min_delta``; ``z=`` is deprecated). Paper: Herbrich, Minka & Graepel (2007), "TrueSkill™: A Bayesian
    skill rating system".

    Args:
        data: ``Matches`` or :class:`Comparisons` (n comparisons in the order played).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_trueskill
    >>> board = fit_trueskill(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 28.31), ('b', 24.189), ('c', 19.857)]
    """
    matches = as_matches(data, "trueskill")
    z = conservative_z(z, "fit_trueskill")
    min_delta = tol
    mus, sigmas = trueskill_rate(
        matches,
        mu=mu,
        sigma=sigma,
        beta=beta,
        tau=tau,
        draw_probability=draw_probability,
        min_delta=min_delta,
        normal=normal,
    )
    margin = float(trueskill_draw_margin(draw_probability, 2, beta=beta, normal=normal))
    return posterior_leaderboard(
        matches,
        mus,
        sigmas,
        model="trueskill",
        params={
            "mu": mu,
            "sigma": sigma,
            "beta": beta,
            "tau": tau,
            "draw_probability": draw_probability,
            "draw_margin_1v1": margin,
            "z": z,
        },
        z=z,
        intervals=intervals,
        level=level,
        scale_name="trueskill",
        score_scale="trueskill mu",
        predict=trueskill_predictor(beta, margin, normal),
    )
