"""Sphinx configuration of the pairkit documentation.

Sphinx rather than MkDocs because pairkit's docstrings are reStructuredText (``.. math::`` blocks, ``:class:``
roles) with Google-style argument sections, which Sphinx renders natively (autodoc + napoleon + mathjax) and checks
(``-W``: every warning is an error; ``nitpicky``: every cross-reference inside pairkit must resolve).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "_ext"))

import pairkit  # noqa: E402

project = "pairkit"
release = version = pairkit.__version__
copyright = "pairkit authors"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "pairkit_registry",
]
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"pairkit {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Every reference to a pairkit object must resolve; references to other libraries' objects cannot (no network for
# intersphinx at build time), so those are the only ones allowed to dangle.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|np|numpy|pd|pandas|scipy|pyarrow|pa|typing|collections|datetime|pathlib|os|asyncio|"
     r"transformers|httpx|duckdb|ray|typer|rich|matplotlib|sqlite3|concurrent|dataclasses|enum|re|io)(\..*)?"),
    (r"py:.*", r".*\._[A-Za-z].*|_.*"),  # private helpers are not documented
    # Module constants and instance attributes have no reference entries; napoleon reads the prose of a ``#:``
    # constant comment that contains a colon as a type (phrases with spaces).
    (r"py:(data|attr)", r".*"),
    (r"py:class", r".* .*"),
    (r"py:.*", r"(Tensor|ndarray|DataFrame|Path|Callable|Iterable|Iterator|Sequence|Mapping|Any|Literal|Generator|"
     r"Awaitable|Coroutine|ArrayLike|NDArray|PathLike|Self|optional|callable|array-like|dtype|float|int|str|bool)"),
]

extensions.append("myst_parser")
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns += ["tutorials/README.md"]


def _write_api_pages() -> None:
    """One reference page per package, listing every public module it has now (new modules appear by themselves)."""
    import pkgutil

    out = ROOT / "api"
    out.mkdir(exist_ok=True)
    packages = ["data", "rating", "scale", "judges", "select", "arena", "losses", "train", "curate", "metrics"]
    index = ["API reference", "=============", "", ".. toctree::", "   :maxdepth: 1", ""]
    for package in packages:
        try:
            module = __import__(f"pairkit.{package}", fromlist=["_"])
        except ImportError:
            continue
        names = [f"pairkit.{package}"] + sorted(
            m.name for m in pkgutil.walk_packages(module.__path__, f"pairkit.{package}.")
            if not any(part.startswith("_") for part in m.name.split("."))
        )
        lines = [f"pairkit.{package}", "=" * len(f"pairkit.{package}"), ""]
        lines += [f".. automodule:: {names[0]}", "   :no-members:", ""]
        for name in names[1:]:
            lines += [name, "-" * len(name), "", f".. automodule:: {name}", "   :members:", "   :no-index:"
                      if False else "", ""]
        (out / f"{package}.rst").write_text("\n".join(lines))
        index.append(f"   {package}")
    index += ["   errors", ""]
    (out / "errors.rst").write_text("pairkit.errors\n==============\n\n.. automodule:: pairkit.errors\n   :members:\n")
    (out / "index.rst").write_text("\n".join(index))


def _write_tutorial_pages() -> None:
    """A page per tutorial script: its docstring as the introduction, then the script itself."""
    import ast

    folder = ROOT / "tutorials"
    for script in sorted(folder.glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or script.stem
        title, _, body = doc.partition("\n")
        page = [title, "=" * len(title), "", body.strip(), "", f"Run it: ``python docs/tutorials/{script.name}``", "",
                f".. literalinclude:: {script.name}", "   :language: python", "   :lines: "
                f"{len(ast.get_docstring(ast.parse(script.read_text()), clean=False).splitlines()) + 2}-", ""]
        (folder / f"{script.stem}.rst").write_text("\n".join(page))


def _write_tutorial_pages() -> None:
    """A page per tutorial script: its docstring as the introduction, then the script itself."""
    import ast

    folder = ROOT / "tutorials"
    for script in sorted(folder.glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text())) or script.stem
        title, _, body = doc.partition("\n")
        page = [title, "=" * len(title), "", body.strip(), "", f"Run it: ``python docs/tutorials/{script.name}``", "",
                f".. literalinclude:: {script.name}", "   :language: python", "   :lines: "
                f"{len(ast.get_docstring(ast.parse(script.read_text()), clean=False).splitlines()) + 2}-", ""]
        (folder / f"{script.stem}.rst").write_text("\n".join(page))


_write_api_pages()
_write_tutorial_pages()
