"""The package surface: explicit ``__all__`` lists that match what the packages import (the choix/optax style)."""

import importlib
import pkgutil

import pytest

import pairkit

EXPLICIT = [
    "pairkit",
    "pairkit.curate",
    "pairkit.data",
    "pairkit.judges",
    "pairkit.metrics",
    "pairkit.rating",
    "pairkit.select",
]


@pytest.mark.parametrize("name", EXPLICIT)
def test_star_import_gives_exactly_all(name):
    package = importlib.import_module(name)
    assert package.__all__ == sorted(set(package.__all__)), "__all__ is sorted and has no duplicates"
    namespace: dict = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(package.__all__)


@pytest.mark.parametrize("name", [n for n in EXPLICIT if n != "pairkit"])
def test_package_re_exports_every_public_module_name(name):
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        missing = sorted(set(getattr(module, "__all__", ())) - set(package.__all__))
        assert not missing, f"{name}.{info.name} exports {missing}, which {name}.__all__ does not list"


def test_rating_star_import_gives_the_fits():
    namespace: dict = {}
    exec("from pairkit.rating import *", namespace)  # noqa: S102
    assert {"fit_bradley_terry", "fit_elo", "fit_trueskill", "model_spec", "Leaderboard"} <= set(namespace)


def test_no_import_cycle_between_comparisons_and_readers():
    import ast
    from pathlib import Path

    source = Path(importlib.import_module("pairkit.data.comparisons").__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "pairkit.data.readers" not in imported, "Comparisons must stay free of I/O"
    assert pairkit.__all__
