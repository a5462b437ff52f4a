"""Rating models: every model returns a :class:`Leaderboard`; :mod:`pairkit.rating.registry` finds them by name.

The names below are imported on first use (PEP 562): ``import pairkit.rating.trueskill`` or
``pairkit rank --model trueskill`` loads that model's module, not every model's dependencies.
"""

from __future__ import annotations

import importlib
import sys
import types

_MODULES = {
    "bayeselo": ("bayeselo_elo_scale", "bayeselo_virtual_draws", "fit_bayeselo"),
    "bootstrap": ("BootstrapWarning", "REPLICATE_PRIOR", "bootstrap", "bootstrap_bradley_terry",
                  "bootstrap_from_weights", "divergent_items"),
    "bradley_terry": (
        "check_decisive", "check_mle_exists", "davidson_predictor", "davidson_rows", "fit_bradley_terry",
        "newman_iteration"
    ),
    "counting": (
        "borda_scores", "copeland_scores", "duot5_scores", "enhanced_borda_scores", "fit_borda", "fit_copeland",
        "fit_duot5", "fit_enhanced_borda", "fit_peer_rank", "fit_win_rate", "peer_rank", "transitive_closure",
        "wilson_interval"
    ),
    "covariates": ("fit_covariate_bt", "style_features"),
    "elo": ("elo_ratings", "fit_elo"),
    "intransitive": (
        "UnidentifiedMatchupWarning", "blade_chest_objective", "check_blade_chest_identified",
        "count_intransitive_triads", "fit_blade_chest", "intransitive_triads"
    ),
    "leaderboard": (
        "ELO_FACTOR", "LOG_STRENGTH", "Leaderboard", "PairPredictor", "Predictor", "bradley_terry_predictor"
    ),
    "model_selection": (
        "DEFAULT_MODELS", "ModelComparison", "compare_models", "plot_reliability", "prediction_scores", "reliability"
    ),
    "order": ("fit_order_advantage", "order_predictor"),
    "plackett_luce": ("check_pl_mle_exists", "fit_plackett_luce", "plackett_luce_loglik"),
    "registry": (
        "MODELS", "fit_bayeselo_defaults", "fit_davidson", "fit_model", "get_model", "model_names", "model_spec",
        "models", "register_model"
    ),
    "robust": ("fit_robust_bt", "robust_predictor", "robust_rows"),
    "spectral": (
        "fit_eigenvector", "fit_pagerank", "fit_rank_centrality", "pagerank_scores", "perron_vector",
        "rank_centrality_scores", "stationary_distribution"
    ),
    "ties": ("fit_rao_kupper", "rao_kupper_predictor", "rao_kupper_rows"),
    "trueskill": ("fit_trueskill", "trueskill_draw_margin", "trueskill_predictor", "trueskill_rate"),
    "weng_lin": (
        "Matches", "WENG_LIN_MODELS", "fit_weng_lin", "fit_weng_lin_bradley_terry_full",
        "fit_weng_lin_bradley_terry_part", "fit_weng_lin_plackett_luce", "fit_weng_lin_thurstone_mosteller_full",
        "fit_weng_lin_thurstone_mosteller_part", "weng_lin_predictor", "weng_lin_rate"
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}
"""Public name → the submodule that defines it."""


__all__ = [
    "BootstrapWarning",
    "DEFAULT_MODELS",
    "ELO_FACTOR",
    "LOG_STRENGTH",
    "Leaderboard",
    "MODELS",
    "Matches",
    "ModelComparison",
    "PairPredictor",
    "Predictor",
    "REPLICATE_PRIOR",
    "UnidentifiedMatchupWarning",
    "WENG_LIN_MODELS",
    "bayeselo_elo_scale",
    "bayeselo_virtual_draws",
    "blade_chest_objective",
    "bootstrap",
    "bootstrap_bradley_terry",
    "bootstrap_from_weights",
    "borda_scores",
    "bradley_terry_predictor",
    "check_blade_chest_identified",
    "check_decisive",
    "check_mle_exists",
    "check_pl_mle_exists",
    "compare_models",
    "copeland_scores",
    "count_intransitive_triads",
    "davidson_predictor",
    "davidson_rows",
    "divergent_items",
    "duot5_scores",
    "elo_ratings",
    "enhanced_borda_scores",
    "fit_bayeselo",
    "fit_bayeselo_defaults",
    "fit_blade_chest",
    "fit_borda",
    "fit_bradley_terry",
    "fit_copeland",
    "fit_covariate_bt",
    "fit_davidson",
    "fit_duot5",
    "fit_eigenvector",
    "fit_elo",
    "fit_enhanced_borda",
    "fit_model",
    "fit_order_advantage",
    "fit_pagerank",
    "fit_peer_rank",
    "fit_plackett_luce",
    "fit_rank_centrality",
    "fit_rao_kupper",
    "fit_robust_bt",
    "fit_trueskill",
    "fit_weng_lin",
    "fit_weng_lin_bradley_terry_full",
    "fit_weng_lin_bradley_terry_part",
    "fit_weng_lin_plackett_luce",
    "fit_weng_lin_thurstone_mosteller_full",
    "fit_weng_lin_thurstone_mosteller_part",
    "fit_win_rate",
    "get_model",
    "intransitive_triads",
    "model_names",
    "model_spec",
    "models",
    "newman_iteration",
    "order_predictor",
    "pagerank_scores",
    "peer_rank",
    "perron_vector",
    "plackett_luce_loglik",
    "plot_reliability",
    "prediction_scores",
    "rank_centrality_scores",
    "rao_kupper_predictor",
    "rao_kupper_rows",
    "register_model",
    "reliability",
    "robust_predictor",
    "robust_rows",
    "stationary_distribution",
    "style_features",
    "transitive_closure",
    "trueskill_draw_margin",
    "trueskill_predictor",
    "trueskill_rate",
    "weng_lin_predictor",
    "weng_lin_rate",
    "wilson_interval",
]


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        if not name.startswith("__"):  # a submodule (``pairkit.rating.registry``), as after eager imports
            try:
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{__name__}.{name}":
                    raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    types.ModuleType.__setattr__(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``pairkit.rating.bootstrap`` stays the function (as with eager imports) when its submodule is imported."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return  # the submodule is in sys.modules; the package's attribute of that name is the public function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
