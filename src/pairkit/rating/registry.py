"""Rating models by name: what ``pairkit rank --model NAME`` and ``pairkit compare-models`` can fit.

Every model is a :class:`~pairkit._spec.Spec` (kind ``"rating model"``) in one :class:`~pairkit._spec.Registry`:
its fit function ``fit(data, *, <model options>, prior, intervals, level, tol, max_iter) -> Leaderboard``, the data
it takes, its declared options (with their valid ranges) and its aliases. Callers read the spec — which options a
model takes, whether it predicts win probabilities — and never a function signature. :func:`fit_model` is the one
entry point by name (what the CLI calls): it resolves ``ties="rao_kupper"`` for ``bt`` to the Rao–Kupper model and
picks the fast bootstrap when there is one.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from pairkit._spec import Option, Registry, Spec, options_of, unchecked
from pairkit.data.comparisons import Comparisons
from pairkit.errors import InputError
from pairkit.rating._checks import BY, LEVEL, N_BOOT
from pairkit.rating.leaderboard import Leaderboard

__all__ = [
    "MODELS",
    "fit_bayeselo_defaults",  # noqa: F822 - module __getattr__ (defined in _defaults)
    "fit_davidson",  # noqa: F822
    "fit_model",
    "get_model",
    "model_names",
    "model_spec",
    "models",
    "register_model",
]


_REGISTRY = Registry("rating model")


def register_model(
    name: str,
    fit: Callable[..., Leaderboard],
    *,
    data: str = "comparisons",
    options: tuple[Option, ...] | None = None,
    aliases: tuple[str, ...] = (),
    family: str = "",
    replace: bool = False,
    **extra: Any,
) -> Spec:
    """Register ``fit`` under ``name`` (an :class:`InputError` if the name is taken and ``replace`` is False).

    ``options`` defaults to those declared on ``fit`` with :func:`pairkit._spec.declare_options`; a model that
    declares none is passed no options. ``extra``: ``predicts`` (False for models without win probabilities),
    ``ties_models`` (``{"rao_kupper": "rao_kupper"}``: a ``ties`` value that selects another model),
    ``fast_bootstrap`` (a function used instead of refitting each replicate), ``row_order`` (True for models that
    update rating by rating in the order of the rows, so pair counts cannot stand in for the rows).

    >>> from pairkit import Comparisons
    >>> a, b = [0, 1, 2, 0, 0, 1], [1, 2, 0, 1, 2, 2]
    >>> comps = Comparisons.from_arrays(a, b, [1, 1, 1, 1, 1, 1], items=["a", "b", "c"])
    >>> from pairkit.rating import fit_win_rate, model_names, register_model
    >>> from pairkit.rating.registry import fit_model
    >>> spec = register_model('my_win_rate', fit_win_rate, family='counting', predicts=False)
    >>> fit_model(comps, 'my_win_rate').items
    ('a', 'b', 'c')
    >>> from pairkit.rating import MODELS
    >>> del MODELS['my_win_rate']  # unregister
    """
    if not callable(fit):
        raise InputError(f"fit for model {name!r} must be callable")
    if not replace:  # a built-in not imported yet still owns its name and aliases
        _load([key for key, (_, kw) in list(_PENDING.items()) if key in (name, *aliases)
               or set(kw.get("aliases", ())) & {name, *aliases}])
    spec = Spec(name=name, fn=fit, kind="rating model", data=data, options=options or options_of(fit),
                aliases=tuple(aliases), family=family, extra=dict(extra))
    return _REGISTRY.add(spec, replace=replace)


def model_spec(name: str) -> Spec:
    """The spec of the model registered under ``name`` or an alias (raises :class:`InputError` listing the names).

    >>> from pairkit.rating import model_spec
    >>> spec = model_spec('openskill')
    >>> spec.name, spec.family, 'level' in spec.option_names
    ('weng_lin', 'online', True)
    """
    if name not in _REGISTRY:
        _load_for(name)
    return _REGISTRY.get(name)


def models() -> list[Spec]:
    """Specs of the registered models, sorted by name.

    >>> from pairkit.rating import models
    >>> sorted({spec.family for spec in models()})
    ['counting', 'likelihood', 'online', 'spectral']
    """
    _load(list(_PENDING))
    return _REGISTRY.specs()


def model_names() -> list[str]:
    """Names (and aliases) of the registered models, sorted.

    >>> from pairkit.rating import model_names
    >>> 'bt' in model_names(), 'openskill' in model_names()
    (True, True)
    """
    _load(list(_PENDING))
    return _REGISTRY.names(aliases=True)


def get_model(name: str) -> Callable[..., Leaderboard]:
    """The fit function registered under ``name`` (raises :class:`InputError` listing the names).

    >>> from pairkit.rating import get_model
    >>> get_model('bt').__name__
    'fit_bradley_terry'
    """
    return model_spec(name).fn


class _Models(MutableMapping):
    """``MODELS[name]`` → fit function: a mapping view of the registry (kept for code written against a dict)."""

    def __getitem__(self, name: str) -> Callable[..., Leaderboard]:
        if name not in _REGISTRY:
            _load_for(name)
        if name not in _REGISTRY:
            raise KeyError(name)
        return _REGISTRY.get(name).fn

    def __setitem__(self, name: str, fit: Callable[..., Leaderboard]) -> None:
        register_model(name, fit, replace=True)

    def __delitem__(self, name: str) -> None:
        _load_for(name)
        _REGISTRY.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(model_names())

    def __len__(self) -> int:
        return len(model_names())


MODELS: MutableMapping[str, Callable[..., Leaderboard]] = _Models()
"""Model name → fit function (a view of the registry)."""


def resolve(name: str, options: Mapping[str, Any]) -> tuple[Spec, dict[str, Any]]:
    """The spec to fit and its options: ``ties`` values that name another model select it (``bt`` with
    ``ties="rao_kupper"`` is the Rao–Kupper model)."""
    spec = model_spec(name)
    options = dict(options)
    other = spec.extra.get("ties_models", {}).get(options.get("ties"))
    if other is not None:
        options.pop("ties")
        spec = model_spec(other)
    return spec, options


def fit_model(
    comparisons: Comparisons,
    model: str = "bt",
    *,
    bootstrap_replicates: int = 0,
    by: str = "row",
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    checked: bool = False,
    replicate_weights: Any = None,
    **more_options: Any,
) -> Leaderboard:
    """Fit the model registered as ``model`` with ``options`` (each checked against the model's declared options;
    one it does not take raises :class:`InputError` naming the ones it does).

    Options may be given as keywords or as the ``options`` mapping — the way to pass a model option whose name is
    also one of this function's (blade-chest's ``seed``: ``options={"seed": 3}``; ``seed=`` seeds the bootstrap).

    With ``bootstrap_replicates`` > 0 the intervals come from a bootstrap (resampling ``by`` rows or clusters):
    the model's fast bootstrap when it has one for these options (Bradley–Terry with ties as half wins), else
    a refit of every replicate. ``replicate_weights`` (comparisons × replicates, e.g. the Poisson-bootstrap weights of
    a ``pairkit count --bootstrap`` file) replaces the resampling: every replicate is refitted with its weights
    (:func:`~pairkit.rating.bootstrap.bootstrap_from_weights`), ``bootstrap_replicates`` of them.

    Every value is checked once: here, or — with ``checked=True`` — by the caller, which already ran the spec's
    :meth:`~pairkit._spec.Spec.check` on them and checked ``bootstrap_replicates`` and ``by`` (``pairkit rank``
    does, before it reads any data); the fits and the replicates are then called without their per-call check.

    >>> from pairkit import Comparisons
    >>> from pairkit.rating import fit_model
    >>> comps = Comparisons.from_arrays([0, 1, 2, 0], [1, 2, 0, 2], [1, 1, 0, 1], items=["x", "y", "z"])
    >>> board = fit_model(comps, "bt", prior=1.0)
    >>> board.model, board.to_pandas()["item"].tolist()
    ('bradley_terry', ['x', 'y', 'z'])
    """
    spec, options = resolve(model, {**(options or {}), **more_options})
    # The bootstrap's level, also for a model that has no intervals of its own (not a model option: checked here).
    boot_level = options.pop("level", 0.95) if bootstrap_replicates and not spec.takes("level") else None
    spec.check_names(options, where=f"model {spec.name!r}: ")
    if not checked and bootstrap_replicates:  # checked once here, then every replicate runs unchecked
        N_BOOT.check(bootstrap_replicates)  # the bootstrap's own arguments (``pairkit rank`` checks them itself)
        BY.check(by)
        options, checked = spec.check(options), True
    fit = spec.unchecked if checked else spec.fn
    if not bootstrap_replicates:
        return fit(comparisons, **options)
    level = options.get("level", 0.95) if boot_level is None else LEVEL.check(boot_level)
    from pairkit.rating.bootstrap import REPLICATE_PRIOR, bootstrap

    fast = spec.extra.get("fast_bootstrap")
    if replicate_weights is not None:
        fast = None
    if fast is not None and options.get("ties", "half") == "half" and set(options) <= {"ties", "prior", "level"}:
        return unchecked(fast)(comparisons, n_boot=bootstrap_replicates, by=by, prior=options.get("prior", 0.0),
                               level=level, seed=seed)
    if spec.takes("intervals"):
        options["intervals"] = "none"  # the bootstrap replaces them
    fallback = None
    if spec.takes("prior") and not options.get("prior"):  # a replicate without an MLE: refit it, never drop it
        with_prior = {**options, "prior": REPLICATE_PRIOR}
        fallback = functools.partial(fit, **with_prior)
    if replicate_weights is not None:
        import numpy as np

        from pairkit.rating.bootstrap import bootstrap_from_weights

        return bootstrap_from_weights(comparisons, lambda c: fit(c, **options),
                                      np.asarray(replicate_weights)[:, :bootstrap_replicates], level=level,
                                      fallback=fallback)
    return unchecked(bootstrap)(comparisons, lambda c: fit(c, **options), n_boot=bootstrap_replicates, by=by,
                                level=level, seed=seed, fallback=fallback)


_ONLINE = "comparisons or matches"


class _Ref:
    """``module:name``, imported when its model is first asked for."""

    def __init__(self, where: str) -> None:
        self.module, self.name = where.split(":")

    def load(self):
        return getattr(importlib.import_module(f"pairkit.rating.{self.module}"), self.name)


_PENDING: dict[str, tuple[_Ref, dict[str, Any]]] = {}
"""Built-in models not imported yet (name → fit function, :func:`register_model` arguments): a model's module, and
its dependencies, load when that model is first asked for, so ``pairkit rank --model elo`` imports Elo alone."""


def _lazy(name: str, where: str, **kwargs: Any) -> None:
    _PENDING[name] = (_Ref(where), kwargs)


def _load(names) -> None:
    for name in names:
        entry = _PENDING.pop(name, None)
        if entry is not None:
            ref, kwargs = entry
            extra = {k: v.load() if isinstance(v, _Ref) else v for k, v in kwargs.items()}
            register_model(name, ref.load(), replace=True, **extra)


def _load_for(name: str) -> None:
    """Import the pending model called ``name`` (or by an alias); every pending model when no name matches, so
    that an unknown name's error lists them all."""
    for key, (_, kwargs) in list(_PENDING.items()):
        if name == key or name in kwargs.get("aliases", ()):
            _load([key])
            return
    if name not in _REGISTRY:
        _load(list(_PENDING))


_lazy("bt", "bradley_terry:fit_bradley_terry", family="likelihood", ties_models={"rao_kupper": "rao_kupper"},
      fast_bootstrap=_Ref("bootstrap:bootstrap_bradley_terry"))
_lazy("davidson", "_defaults:fit_davidson", family="likelihood")
_lazy("rao_kupper", "ties:fit_rao_kupper", family="likelihood")
_lazy("order", "order:fit_order_advantage", family="likelihood")
_lazy("bayeselo", "_defaults:fit_bayeselo_defaults", family="likelihood")
_lazy("robust", "robust:fit_robust_bt", family="likelihood")
_lazy("blade_chest", "intransitive:fit_blade_chest", family="likelihood")
_lazy("elo", "elo:fit_elo", family="online", row_order=True)
_lazy("trueskill", "trueskill:fit_trueskill", data=_ONLINE, family="online", row_order=True)
_lazy("weng_lin", "weng_lin:fit_weng_lin", data=_ONLINE, aliases=("openskill",), family="online", row_order=True)
_lazy("rank_centrality", "spectral:fit_rank_centrality", family="spectral")
_lazy("pagerank", "spectral:fit_pagerank", family="spectral", predicts=False)
_lazy("eigenvector", "spectral:fit_eigenvector", family="spectral", predicts=False)
_lazy("win_rate", "counting:fit_win_rate", family="counting", predicts=False)
_lazy("borda", "counting:fit_borda", family="counting", predicts=False)
_lazy("copeland", "counting:fit_copeland", family="counting", predicts=False)
_lazy("duot5", "counting:fit_duot5", family="counting", predicts=False)
_lazy("enhanced_borda", "counting:fit_enhanced_borda", family="counting", predicts=False)


def __getattr__(name: str):
    if name in ("fit_davidson", "fit_bayeselo_defaults"):
        from pairkit.rating import _defaults

        return getattr(_defaults, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
