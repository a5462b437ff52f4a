"""The package surface: explicit ``__all__`` lists that match what the packages import (the choix/optax style), and
no private name imported from another module."""

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import pairkit

SRC = Path(pairkit.__file__).parent
PACKAGES = ["pairkit"] + sorted(info.name for info in pkgutil.walk_packages(pairkit.__path__, "pairkit.") if info.ispkg)


def _init_tree(name: str) -> ast.Module:
    return ast.parse(Path(importlib.import_module(name).__file__).read_text())


def test_every_package_is_listed():
    assert {"pairkit.cli", "pairkit.losses", "pairkit.train", "pairkit.rating"} <= set(PACKAGES)


# the root package is lazy (``import pairkit`` loads no torch or pandas): its names are the literal ``_LAZY`` mapping
@pytest.mark.parametrize("name", [n for n in PACKAGES if n != "pairkit"])
def test_every_package_has_an_explicit_all_whose_names_resolve(name):
    tree = _init_tree(name)
    stars = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.names[0].name == "*"]
    assert not stars, f"{name} star-imports {stars}: re-export the names explicitly"
    literal = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    ]
    assert len(literal) == 1, f"{name} has no single __all__ assignment"
    value = literal[0]
    assert isinstance(value, ast.List) and all(isinstance(e, ast.Constant) for e in value.elts), (
        f"{name}.__all__ must be a literal list of names"
    )
    package = importlib.import_module(name)
    missing = [n for n in package.__all__ if not hasattr(package, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_gives_exactly_all(name):
    package = importlib.import_module(name)
    assert package.__all__ == sorted(set(package.__all__)), "__all__ is sorted and has no duplicates"
    namespace: dict = {}
    exec(f"from {name} import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(package.__all__)


@pytest.mark.parametrize("name", [n for n in PACKAGES if n not in ("pairkit", "pairkit.cli")])
def test_package_re_exports_every_public_module_name(name):
    package = importlib.import_module(name)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{name}.{info.name}")
        missing = sorted(set(getattr(module, "__all__", ())) - set(package.__all__))
        assert not missing, f"{name}.{info.name} exports {missing}, which {name}.__all__ does not list"


# Shared private helpers live in private modules (``_steps.py``, ``_chat.py``, ``_shapes.py``, ``_tables.py``, …)
# under names without an underscore; importing a ``_name`` from another module fails the test.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def _private_imports() -> set[tuple[str, str, str]]:
    """(file, module, name) of every ``from pairkit.x import _name`` whose ``_name`` is not a submodule."""
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pairkit")):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not _is_module(f"{node.module}.{alias.name}"):
                    found.add((path.relative_to(SRC).as_posix(), node.module, alias.name))
    return found


def test_no_private_name_is_imported_from_another_module():
    found = _private_imports()
    new = sorted(found - KNOWN_PRIVATE_IMPORTS)
    assert not new, f"private names imported across modules (make them public in a shared _x.py module): {new}"


def test_rating_star_import_gives_the_fits():
    namespace: dict = {}
    exec("from pairkit.rating import *", namespace)  # noqa: S102
    assert {"fit_bradley_terry", "fit_elo", "fit_trueskill", "model_spec", "Leaderboard"} <= set(namespace)


def test_no_import_cycle_between_comparisons_and_readers():
    source = Path(importlib.import_module("pairkit.data.comparisons").__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "pairkit.data.readers" not in imported, "Comparisons must stay free of I/O"
    assert pairkit.__all__


def test_nothing_reads_signatures_at_run_time():
    """Specs say what a callable takes; only :func:`pairkit._spec.declare_options` reads a signature, once, at import
    (to cross-check the declared options against the ``def`` and record their defaults)."""
    readers = ("inspect.signature", "getfullargspec", "getargspec", "__code__", "__signature__")
    found = sorted(
        f"{path.relative_to(SRC).as_posix()}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(r in line for r in readers)
    )
    assert len(found) == 1 and found[0].startswith("_spec.py:"), found
