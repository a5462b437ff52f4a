"""Rating models by name: what ``pairkit rank --model NAME`` and ``pairkit compare-models`` can fit.

Every entry maps a name to a function ``fit(comparisons, **options) -> Leaderboard``. Callers pass only the
options a function's signature accepts (``ties``, ``prior``, ``level``, …), so the wrappers below expose exactly
the options that make sense for their model (bayeselo keeps its own prior of 2 virtual draws).
"""

from __future__ import annotations

from collections.abc import Callable

from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating.bayeselo import fit_bayeselo
from pairkit.rating.bradley_terry import fit_bradley_terry
from pairkit.rating.counting import fit_borda, fit_copeland, fit_duot5, fit_enhanced_borda, fit_win_rate
from pairkit.rating.elo import fit_elo
from pairkit.rating.intransitive import fit_blade_chest
from pairkit.rating.leaderboard import Leaderboard
from pairkit.rating.order import fit_order_advantage
from pairkit.rating.robust import fit_robust_bt
from pairkit.rating.spectral import fit_eigenvector, fit_pagerank, fit_rank_centrality
from pairkit.rating.ties import fit_rao_kupper
from pairkit.rating.trueskill import fit_trueskill
from pairkit.rating.weng_lin import fit_weng_lin

__all__ = ["MODELS", "get_model", "model_names", "register_model"]


def fit_davidson(
    comparisons: Comparisons, *, prior: float = 0.0, intervals: str = "auto", level: float = 0.95
) -> Leaderboard:
    """Bradley–Terry with Davidson's (1970) tie parameter (``fit_bradley_terry(ties="davidson")``)."""
    return fit_bradley_terry(comparisons, ties="davidson", prior=prior, intervals=intervals, level=level)


def fit_bayeselo_defaults(comparisons: Comparisons, *, level: float = 0.95) -> Leaderboard:
    """bayeselo with its defaults (advantage 32.8, drawelo 97.3, prior 2 virtual draws, ``mm`` with fixed
    constants); ratings on bayeselo's printed scale."""
    return fit_bayeselo(comparisons, level=level)


MODELS: dict[str, Callable[..., Leaderboard]] = {
    "bt": fit_bradley_terry,
    "elo": fit_elo,
    "davidson": fit_davidson,
    "rao_kupper": fit_rao_kupper,
    "order": fit_order_advantage,
    "bayeselo": fit_bayeselo_defaults,
    "robust": fit_robust_bt,
    "blade_chest": fit_blade_chest,
    "trueskill": fit_trueskill,
    "weng_lin": fit_weng_lin,
    "openskill": fit_weng_lin,
    "rank_centrality": fit_rank_centrality,
    "pagerank": fit_pagerank,
    "eigenvector": fit_eigenvector,
    "win_rate": fit_win_rate,
    "borda": fit_borda,
    "copeland": fit_copeland,
    "duot5": fit_duot5,
    "enhanced_borda": fit_enhanced_borda,
}
"""Model name → fit function."""

def register_model(name: str, fit: Callable[..., Leaderboard], *, replace: bool = False) -> None:
    """Add a model under ``name`` (an :class:`InputError` if the name is taken and ``replace`` is False)."""
    if not callable(fit):
        raise InputError(f"fit for model {name!r} must be callable")
    if name in MODELS and not replace:
        raise InputError(f"model name {name!r} is already registered; pass replace=True to override")
    MODELS[name] = fit


def model_names() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(MODELS)


def get_model(name: str) -> Callable[..., Leaderboard]:
    """The fit function registered under ``name`` (raises :class:`InputError` listing the names)."""
    if name not in MODELS:
        raise InputError(f"unknown model {name!r}; available: {', '.join(model_names())}")
    return MODELS[name]
