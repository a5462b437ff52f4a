""":func:`~pairkit.rating.registry.fit_model` checks every option of every registered model once — not again in
the fit it delegates to, nor in each bootstrap replicate (issue 11)."""

import collections
import warnings

import numpy as np
import pytest

import pairkit._spec
from pairkit import Comparisons
from pairkit.rating.registry import fit_model, model_spec, models


@pytest.fixture
def checks(monkeypatch):
    counts: collections.Counter = collections.Counter()
    check = pairkit._spec.Option.check

    def counted(self, value, **kw):
        counts[self.name] += 1
        return check(self, value, **kw)

    monkeypatch.setattr(pairkit._spec.Option, "check", counted)
    return counts


def _comparisons():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (2, 80))
    keep = a != b
    y = rng.choice([0.0, 0.5, 1.0], keep.sum())
    return Comparisons.from_arrays(a[keep], b[keep], y, items=list("wxyz"), a_first=np.ones(keep.sum(), bool))


@pytest.mark.parametrize("replicates", [0, 5])
@pytest.mark.parametrize("name", [s.name for s in models()])
def test_every_option_is_checked_once(name, replicates, checks):
    spec = model_spec(name)
    if replicates and spec.extra.get("row_order"):
        pytest.skip("online ratings process each row once: no weighted bootstrap")
    options = {k: v for k, v in (("prior", 1.0), ("level", 0.9), ("tol", 1e-8)) if spec.takes(k)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_model(_comparisons(), name, bootstrap_replicates=replicates, options=options)
    assert all(checks[k] == 1 for k in options), dict(checks)
    twice = {k: n for k, n in checks.items() if n > 1}
    assert not twice, f"{name}: checked more than once: {twice}"


def test_the_bootstrap_arguments_are_checked_once(checks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_model(_comparisons(), "bt", bootstrap_replicates=5, options={"prior": 1.0})
    assert checks["n_boot"] == 1 and checks["by"] == 1 and checks["prior"] == 1, dict(checks)
