"""The ``>>>`` examples in the docstrings run, and print what they say they print.

Every module of the public packages is searched (a module that cannot be imported here fails the test, it is not
skipped); the main entry points and every public function and class of the rating, judges, select and metrics
packages (the names in their ``__all__``) must carry an example, so a deleted or missing example fails too.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import pairkit

PACKAGES = ("pairkit.data", "pairkit.rating", "pairkit.judges", "pairkit.select", "pairkit.metrics", "pairkit.losses")
MUST_HAVE_EXAMPLE = {
    "pairkit.data.comparisons.Comparisons.from_arrays",
    "pairkit.rating.bradley_terry.fit_bradley_terry",
    "pairkit.rating.elo.fit_elo",
    "pairkit.rating.bootstrap.bootstrap_bradley_terry",
    "pairkit.select.strategies.select",
    "pairkit.judges.base.CallableJudge",
    "pairkit.metrics.ranking.ndcg",
    "pairkit.metrics.ranking.kendall_tau",
    "pairkit.losses.preference.dpo_loss",
    "pairkit.losses.ranking.listmle_loss",
    "pairkit.losses.ranking.pairwise_logistic_loss",
    "pairkit.losses.contrastive.ntxent",
}


# Every public function and class of these packages needs an example (issue 17).
EVERY_NAME_PACKAGES = ("pairkit.rating", "pairkit.judges", "pairkit.select", "pairkit.metrics")
# Still without one (debt): this set may only shrink — a name that gains an example must leave it (tested below).
NOT_YET: set[str] = set()


def _public_callables() -> set[str]:
    names = set()
    for package in EVERY_NAME_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                names.add(f"{obj.__module__}.{obj.__qualname__}")
    return names


def _modules():
    names = []
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    return sorted(set(names))


def _examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for name in _modules():
        for test in finder.find(importlib.import_module(name), name):
            if test.examples and test.name not in found:
                found[test.name] = test
    return found


EXAMPLES = _examples()


def test_main_entry_points_have_examples():
    missing = sorted(MUST_HAVE_EXAMPLE - set(EXAMPLES))
    assert not missing, f"no >>> example in the docstring of: {missing}"


def test_every_public_function_and_class_has_an_example():
    missing = sorted(_public_callables() - set(EXAMPLES) - NOT_YET)
    assert not missing, f"public names without a >>> example in their docstring: {missing}"


def test_not_yet_lists_only_names_still_without_an_example():
    done = sorted(NOT_YET & set(EXAMPLES))
    assert not done, f"these have an example now; remove them from NOT_YET: {done}"
    gone = sorted(NOT_YET - _public_callables())
    assert not gone, f"no longer public names; remove them from NOT_YET: {gone}"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_example(name):
    test = EXAMPLES[name]
    failures: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    test.globs = {"np": np, "pairkit": pairkit}
    with np.printoptions(legacy=False, precision=8, suppress=False):
        runner.run(test, out=lambda text: failures.append(text))
    assert runner.failures == 0, "".join(failures)
