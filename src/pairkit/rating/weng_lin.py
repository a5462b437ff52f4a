"""Weng–Lin Bayesian online ratings (the models of openskill): Bradley–Terry, Thurstone–Mosteller, Plackett–Luce.

Each player has a Gaussian belief ``N(μ, σ²)``; a team's strength is the sum of its players'. After a match
every team ``i`` gets a mean shift ``Ω_i`` and a variance shrinkage ``Δ_i`` from pairwise (or Plackett–Luce)
comparisons with the other teams, shared among its players in proportion to their variance:

.. math::

    \\mu_p \\leftarrow \\mu_p + \\frac{\\sigma_p^2}{\\sigma_i^2}\\,\\Omega_i, \\qquad
    \\sigma_p \\leftarrow \\sigma_p\\sqrt{\\max\\Big(1 - \\frac{\\sigma_p^2}{\\sigma_i^2}\\,\\Delta_i,\\ \\kappa\\Big)}

after the dynamics step ``σ_p² ← σ_p² + τ²``. Matches are updated in rounds of player-disjoint matches
(:mod:`pairkit.rating._online`), so the result is that of the sequential algorithm.

Reference:
    Weng, R. C. & Lin, C.-J. (2011). A Bayesian approximation method for online ranking. JMLR 12, 267–300
    (Algorithms 1–4). Defaults and the partial-pairing window follow openskill 6.x.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from scipy import special

from pairkit._spec import Interval, Option, declare_options, options_of
from pairkit.data.comparisons import Comparisons
from pairkit.errors import EstimationError, InputError
from pairkit.rating._checks import LEVEL
from pairkit.rating._online import (
    Matches,
    as_matches,
    check_scales,
    conservative_z,
    initial_beliefs,
    plan_rounds,
    posterior_leaderboard,
    within_match_pairs,
)
from pairkit.rating.leaderboard import Leaderboard
from pairkit.rating.trueskill import ONLINE_INTERVALS

WengLinModel = Literal[
    "bradley_terry_full",
    "bradley_terry_part",
    "plackett_luce",
    "thurstone_mosteller_full",
    "thurstone_mosteller_part",
]
WENG_LIN_MODELS: tuple[str, ...] = (
    "bradley_terry_full",
    "bradley_terry_part",
    "plackett_luce",
    "thurstone_mosteller_full",
    "thurstone_mosteller_part",
)

__all__ = [
    "WENG_LIN_MODELS",
    "Matches",
    "fit_weng_lin",
    "fit_weng_lin_bradley_terry_full",
    "fit_weng_lin_bradley_terry_part",
    "fit_weng_lin_plackett_luce",
    "fit_weng_lin_thurstone_mosteller_full",
    "fit_weng_lin_thurstone_mosteller_part",
    "weng_lin_predictor",
    "weng_lin_rate",
]

TAIL = -2.0
_EPS = np.finfo(float).eps
_SQRT_2PI = math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------- truncated normal
_math_erf = np.frompyfunc(math.erf, 1, 1)


def _cdf(x: np.ndarray) -> np.ndarray:
    # openskill uses statistics.NormalDist: 0.5·(1 + erf(x/√2)), whose left tail is dominated by the rounding
    # of erf near −1. To reproduce it there, the (rare) tail values use the same libm erf as Python.
    z = np.asarray(x, dtype=float) / math.sqrt(2.0)
    out = special.erf(z)
    tail = z < TAIL
    if tail.any():
        out[tail] = _math_erf(z[tail]).astype(float)
    return 0.5 * (1.0 + out)


def _pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(x * x / -2.0) / _SQRT_2PI


def _thurstone_terms(x: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance terms of each pair: ``±v, w`` at ``±x`` for a win/loss, ``ṽ, w̃`` at ``x`` for a draw.

    ``v = φ(x−t)/Φ(x−t)`` and ``w = v(v + x − t)`` (one-sided truncation), ``ṽ = (φ(−t−|x|) − φ(t−|x|))/B``
    with ``B = Φ(t−|x|) − Φ(−t−|x|)`` (signed like x) and ``w̃ = ((t−|x|)φ(t−|x|) + (t+|x|)φ(t+|x|))/B + ṽ²``
    (two-sided), with openskill's guards where Φ or B underflow. One call of Φ and of φ on all arguments:
    rounds can be small, so the number of numpy calls matters more than their size.
    """
    n = len(x)
    sign = np.where(s == 0.0, -1.0, 1.0)
    win_x = sign * x  # v, w at x for a win, at −x for a loss
    xt = win_x - t
    xx = np.abs(x)
    args = np.concatenate([xt, t - xx, -t - xx])
    cdf, pdf = _cdf(args), _pdf(args)
    d, c_hi, c_lo = cdf[:n], cdf[n : 2 * n], cdf[2 * n :]
    p_xt, p_hi, p_lo = pdf[:n], pdf[n : 2 * n], pdf[2 * n :]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(d < _EPS, -xt, p_xt / d)
        w = np.where(d < _EPS, np.where(win_x < 0, 1.0, 0.0), v * (v + xt))
        b = c_hi - c_lo
        a = p_lo - p_hi
        vt = np.where(b < 1e-5, np.where(x < 0, -x - t, -x + t), np.where(x < 0, -a, a) / b)
        wt = np.where(b < _EPS, 1.0, ((t - xx) * p_hi + (t + xx) * p_lo) / b + vt * vt)
    draw = s == 0.5
    return np.where(draw, vt, sign * v), np.where(draw, wt, w)


# ---------------------------------------------------------------------------------------------- the update
def weng_lin_rate(
    data: Matches | Comparisons,
    *,
    model: WengLinModel = "plackett_luce",
    mu: float = 25.0,
    sigma: float = 25.0 / 3.0,
    beta: float = 25.0 / 6.0,
    kappa: float = 1e-4,
    tau: float = 25.0 / 300.0,
    epsilon: float = 0.1,
    window_size: int = 4,
    limit_sigma: bool = False,
    initial_mu: np.ndarray | None = None,
    initial_sigma: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the Weng–Lin updates over all matches in order; return each player's final ``(μ, σ)``.

    For team ``i`` with team mean ``μ_i = Σ_p μ_p`` and variance ``σ_i² = Σ_p σ_p²`` (after ``σ_p² += τ²``),
    the pairwise models use ``c_iq = √(σ_i² + σ_q² + 2β²)`` (twice that for Thurstone–Mosteller partial),
    ``γ = σ_i / c_iq`` and, with ``s = 1, ½, 0`` as ``i`` finished ahead of, level with or behind ``q``:

    .. math::

        \\text{BT:}\\ p_{iq} = \\frac{1}{1 + e^{(\\mu_q-\\mu_i)/c_{iq}}},\\quad
        \\Omega_i = \\sum_q \\frac{\\sigma_i^2}{c_{iq}}(s - p_{iq}),\\quad
        \\Delta_i = \\sum_q \\gamma\\frac{\\sigma_i^2}{c_{iq}^2} p_{iq}(1-p_{iq})

    Thurstone–Mosteller replaces ``s − p`` and ``p(1−p)`` by the truncated-Gaussian ``v, w`` (win/loss) or
    ``ṽ, w̃`` (draw) at ``((μ_i−μ_q)/c_iq, ε/c_iq)``. "Full" sums over all other teams; "part" averages over
    the teams within ``window_size`` places in the finishing order. Plackett–Luce (Algorithm 4) uses
    ``c = √(Σ_i (σ_i² + β²))`` and the choice probabilities ``e^{μ_i/c} / Σ_{s: r(s) ≥ r(q)} e^{μ_s/c}``.

    Paper: Weng & Lin (2011), "A Bayesian approximation method for online ranking". The defaults are
    openskill's (μ 25, σ 25/3, β 25/6, κ 1e-4, τ 25/300, ε 0.1, window 4, no σ limit); results equal
    openskill's ``rate`` called match by match (without ``weights``, ``scores``/``margin`` or ``balance``,
    which are not implemented here). Ranks are compared as given (openskill's Plackett–Luce truncates
    fractional ranks to integers first).

    Args:
        data: :class:`Matches` (teams, ranks) or :class:`Comparisons` (1-vs-1 in row order, 0.5 = draw).
        initial_mu, initial_sigma: (n_items,) starting beliefs (default ``mu``, ``sigma`` for all).
    Returns:
        ``(μ, σ)``, each of shape (n_items,).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import weng_lin_rate
    >>> mu, sigma = weng_lin_rate(comps)
    >>> print(mu.round(2), sigma.round(2))
    [29.2  25.   20.49] [7.36 7.35 7.34]
    """
    matches = data if isinstance(data, Matches) else Matches.from_comparisons(data)
    if model not in WENG_LIN_MODELS:
        raise InputError(f"model must be one of {list(WENG_LIN_MODELS)}, got {model!r}")
    if matches.weight is not None:
        raise InputError("weng_lin_rate: per-player weights (partial play) are not supported; drop `weights`")
    check_scales(tau, sigma=sigma, beta=beta, kappa=kappa)
    if int(window_size) < 1:
        raise InputError(f"window_size must be at least 1, got {window_size!r}")
    mus, sigmas = initial_beliefs(matches.n_items, mu, sigma, initial_mu, initial_sigma)
    if matches.n_matches == 0:
        return mus, sigmas

    plan = plan_rounds(matches)
    pi, pq = within_match_pairs(plan)
    if model == "plackett_luce":
        keep = plan.rank[pi] >= plan.rank[pq]
    elif model.endswith("_full"):
        keep = pi != pq
    else:
        pos = np.arange(len(plan.rank)) - plan.match_ptr[plan.team_match]  # teams are sorted by rank
        keep = (pi != pq) & (np.abs(pos[pi] - pos[pq]) <= int(window_size))
    pi, pq = pi[keep], pq[keep]
    # s: 1 if i finished ahead of q, ½ level, 0 behind.
    s = np.where(plan.rank[pq] > plan.rank[pi], 1.0, np.where(plan.rank[pq] == plan.rank[pi], 0.5, 0.0))
    n_teams = len(plan.rank)
    if model == "plackett_luce":
        tied = np.bincount(pq, plan.rank[pi] == plan.rank[pq], n_teams)  # A_q, including q itself
        pair_div = tied[pq]
    else:
        team_div = np.maximum(np.bincount(pi, minlength=n_teams), 1) if model.endswith("_part") else None
    round_pair = np.searchsorted(pi, plan.round_team)
    beta2 = beta * beta
    tau2 = tau * tau
    c_factor = 2.0 if model == "thurstone_mosteller_part" else 1.0
    thurstone = model.startswith("thurstone")

    for r in range(plan.n_rounds):
        s0, s1 = plan.round_slot[r], plan.round_slot[r + 1]
        t0, t1 = plan.round_team[r], plan.round_team[r + 1]
        p0, p1 = round_pair[r], round_pair[r + 1]
        players = plan.players[s0:s1]
        slot_team = plan.slot_team[s0:s1] - t0
        nt = t1 - t0
        old_sigma = sigmas[players]
        sig = np.sqrt(old_sigma * old_sigma + tau2)
        sig2 = sig * sig  # squared back from σ, as openskill does, so that roundings agree
        mu_p = mus[players]
        team_mu = np.bincount(slot_team, mu_p, nt)
        team_s2 = np.bincount(slot_team, sig2, nt)
        i, q = pi[p0:p1] - t0, pq[p0:p1] - t0
        if model == "plackett_luce":
            match = plan.team_match[t0:t1] - plan.team_match[t0]
            c = np.sqrt(np.bincount(match, team_s2 + beta2))[match]  # per team
            e_mu = np.exp(team_mu / c)
            sum_q = np.bincount(q, e_mu[i], nt)
            ratio = e_mu[i] / sum_q[q]
            div = pair_div[p0:p1]
            delta = np.bincount(i, ratio * (1.0 - ratio) / div, nt)
            omega = np.bincount(i, ((i == q) - ratio) / div, nt)
            omega *= team_s2 / c
            delta *= team_s2 / (c * c)
            delta *= np.sqrt(team_s2) / c
        else:
            c = c_factor * np.sqrt(team_s2[i] + team_s2[q] + 2.0 * beta2)
            s2_over_c = team_s2[i] / c
            gamma = np.sqrt(team_s2[i]) / c
            if thurstone:
                x = (team_mu[i] - team_mu[q]) / c
                t = epsilon / c
                om, de = _thurstone_terms(x, t, s[p0:p1])
            else:
                p = 1.0 / (1.0 + np.exp((team_mu[q] - team_mu[i]) / c))
                om = s[p0:p1] - p
                de = p * (1.0 - p)
            omega = np.bincount(i, s2_over_c * om, nt)
            delta = np.bincount(i, gamma * s2_over_c / c * de, nt)
            if team_div is not None:  # partial pairing averages over the compared neighbours
                omega /= team_div[t0:t1]
                delta /= team_div[t0:t1]
        share = sig2 / team_s2[slot_team]
        mus[players] = mu_p + share * omega[slot_team]
        new_sigma = sig * np.sqrt(np.maximum(1.0 - share * delta[slot_team], kappa))
        sigmas[players] = np.minimum(new_sigma, old_sigma) if limit_sigma else new_sigma

    if not (np.all(np.isfinite(mus)) and np.all(np.isfinite(sigmas))):
        bad = np.flatnonzero(~(np.isfinite(mus) & np.isfinite(sigmas)))
        raise EstimationError(
            f"Weng–Lin {model}: non-finite ratings for {[matches.items[k] for k in bad[:5]]} "
            "(team means too large for exp(μ/c)?); rescale mu/beta"
        )
    return mus, sigmas


# ---------------------------------------------------------------------------------------------- leaderboard
def weng_lin_predictor(beta: float = 25.0 / 6.0, link: Literal["probit", "logistic"] = "probit"):
    """P(a beats b) integrated over both players' posteriors, as the Weng–Lin updates compute it; no draw probability.

    With ``c² = 2β² + σ_a² + σ_b²`` (each performance ``N(μ, σ² + β²)``, the skill integrated out):

    .. math::

        \\text{probit:}\\ P(a \\succ b) = \\Phi\\Big(\\frac{\\mu_a - \\mu_b}{c}\\Big),\\qquad
        \\text{logistic:}\\ P(a \\succ b) = \\frac{1}{1 + e^{-(\\mu_a - \\mu_b)/c}}

    ``"probit"`` is openskill's ``predict_win`` (which it uses for every model) and the Thurstone–Mosteller
    models' own probability; ``"logistic"`` is the probability ``p_iq`` that the Bradley–Terry and Plackett–Luce
    updates use (:func:`weng_lin_rate`), and what :func:`fit_weng_lin` boards of those models forecast with: their μ
    are on that scale (held-out log-loss, chess first 80 % → last 20 %: 0.717 against openskill's 0.761; football
    before/after 2010: 0.606 against 0.665). A player with little data (large σ) gets forecasts nearer ½;
    ``σ = 0`` gives the point forecast from the means. The dynamics ``τ`` are not added (as in openskill). The tie
    probability is 0: the updates score a draw as half a win, and openskill's ``predict_draw`` (a margin for a draw
    rate of one over the number of players) is not a probability of the fitted model — it does not add up to one
    with ``predict_win``.

    Returns ``predict(mu_a, mu_b, a_first=None, *, sigma_a=0.0, sigma_b=0.0) -> (P(a wins), 0)`` on arrays of one
    shape (``a_first`` is ignored). Boards from :func:`fit_weng_lin` call it with each item's σ (an unseen item:
    the prior σ).
    Paper: Weng & Lin (2011), "A Bayesian approximation method for online ranking".

    >>> import numpy as np
    >>> from pairkit.rating import weng_lin_predictor
    >>> win, tie = weng_lin_predictor()(np.array([30.0, 30.0]), np.array([25.0, 25.0]), sigma_a=np.array([0.0, 8.0]))
    >>> print(np.round(win, 3), np.round(tie, 3))
    [0.802 0.693] [0. 0.]
    """
    if link not in ("probit", "logistic"):
        raise InputError(f"link must be 'probit' or 'logistic', got {link!r}")
    cdf = special.ndtr if link == "probit" else special.expit
    noise = 2.0 * beta * beta

    def predict(mu_a: np.ndarray, mu_b: np.ndarray, a_first: np.ndarray | None = None, *,
                sigma_a: np.ndarray | float = 0.0, sigma_b: np.ndarray | float = 0.0):
        d = np.asarray(mu_a, dtype=float) - np.asarray(mu_b, dtype=float)
        p = cdf(d / np.sqrt(noise + np.square(sigma_a) + np.square(sigma_b)))
        return p, np.zeros_like(p)

    return predict


_POSITIVE = Interval(0, None, closed="neither")


@declare_options(
    Option("model", str, choices=WENG_LIN_MODELS, doc="which of Weng & Lin's update rules"),
    Option("mu", float, doc="prior mean of a new player"),
    Option("sigma", float, _POSITIVE, doc="prior standard deviation of a new player"),
    Option("beta", float, _POSITIVE, doc="performance noise"),
    Option("kappa", float, _POSITIVE, doc="smallest variance factor"),
    Option("tau", float, Interval(0, None), doc="dynamics: variance added before each match"),
    Option("epsilon", float, _POSITIVE, doc="draw margin of the Thurstone–Mosteller rules"),
    Option("window_size", int, Interval(1, None), doc="neighbours compared in the partial-pairing rules"),
    Option("limit_sigma", bool, doc="never let σ grow"),
    ONLINE_INTERVALS, LEVEL,
)
def fit_weng_lin(
    data: Matches | Comparisons,
    *,
    model: WengLinModel = "plackett_luce",
    mu: float = 25.0,
    sigma: float = 25.0 / 3.0,
    beta: float = 25.0 / 6.0,
    kappa: float = 1e-4,
    tau: float = 25.0 / 300.0,
    epsilon: float = 0.1,
    window_size: int = 4,
    limit_sigma: bool = False,
    intervals: str = "auto",
    level: float = 0.95,
    z: float | None = None,
) -> Leaderboard:
    """Weng–Lin online ratings as a :class:`Leaderboard` (``scores`` = μ on the ``"openskill mu"`` scale).

    .. math::

        \\text{conservative}_p = \\mu_p - 3\\,\\sigma_p

    (openskill's ``ordinal``). ``se`` is σ, so the intervals are the posterior's, μ ± z_level·σ (``z=`` is
    deprecated). :meth:`Leaderboard.predict` integrates over the posteriors (:func:`weng_lin_predictor` with the
    model's own link: logistic for Bradley–Terry and Plackett–Luce, probit — openskill's ``predict_win`` — for
    Thurstone–Mosteller; an unseen player, with ``unknown="prior"``, is a newcomer ``N(mu, sigma²)``). Options and
    paper as in :func:`weng_lin_rate` (Weng & Lin 2011, "A Bayesian approximation method for online ranking").

    Args:
        data: :class:`Matches` or :class:`Comparisons` (n comparisons in the order played).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_weng_lin
    >>> board = fit_weng_lin(comps)
    >>> [(item, round(float(s), 3)) for item, s in zip(board.items, board.scores)]
    [('a', 29.197), ('b', 24.996), ('c', 20.49)]
    """
    matches = as_matches(data, "weng_lin")
    z = conservative_z(z, "fit_weng_lin")
    mus, sigmas = weng_lin_rate(
        matches,
        model=model,
        mu=mu,
        sigma=sigma,
        beta=beta,
        kappa=kappa,
        tau=tau,
        epsilon=epsilon,
        window_size=window_size,
        limit_sigma=limit_sigma,
    )
    params = {"mu": mu, "sigma": sigma, "beta": beta, "kappa": kappa, "tau": tau, "z": z}
    if model.startswith("thurstone"):
        params["epsilon"] = epsilon
    if model.endswith("_part"):
        params["window_size"] = float(window_size)
    return posterior_leaderboard(
        matches,
        mus,
        sigmas,
        model=f"weng_lin_{model}",
        params=params,
        z=z,
        intervals=intervals,
        level=level,
        scale_name="openskill",
        score_scale="openskill mu",
        predict=weng_lin_predictor(beta, "probit" if model.startswith("thurstone") else "logistic"),
    )


def _variant(name: str):
    def fit(data: Matches | Comparisons, **options) -> Leaderboard:
        return fit_weng_lin(data, model=name, **options)

    fit.__pairkit_options__ = tuple(o for o in options_of(fit_weng_lin) if o.name != "model")
    fit.__name__ = f"fit_weng_lin_{name}"
    fit.__qualname__ = fit.__name__
    fit.__doc__ = (
        f"Weng–Lin {name.replace('_', ' ')} online ratings (openskill's model of that name); options and "
        "formulas as in :func:`fit_weng_lin` and :func:`weng_lin_rate`.\n\n"
        'Paper: Weng & Lin (2011), "A Bayesian approximation method for online ranking".\n\n'
        ">>> from pairkit import Comparisons\n"
        f">>> from pairkit.rating import fit_weng_lin_{name}\n"
        ">>> comps = Comparisons.from_arrays([0, 1, 0], [1, 2, 2], [1, 1, 1], items=['a', 'b', 'c'])\n"
        f">>> board = fit_weng_lin_{name}(comps)\n"
        ">>> board.model, board.to_pandas()['item'].tolist()\n"
        f"('weng_lin_{name}', ['a', 'b', 'c'])\n"
    )
    return fit


fit_weng_lin_bradley_terry_full = _variant("bradley_terry_full")
fit_weng_lin_bradley_terry_part = _variant("bradley_terry_part")
fit_weng_lin_plackett_luce = _variant("plackett_luce")
fit_weng_lin_thurstone_mosteller_full = _variant("thurstone_mosteller_full")
fit_weng_lin_thurstone_mosteller_part = _variant("thurstone_mosteller_part")
