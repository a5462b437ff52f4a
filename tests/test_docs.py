"""The documentation builds with every warning an error, and every public name has a docstring."""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["pairkit.data", "pairkit.rating", "pairkit.judges", "pairkit.select", "pairkit.metrics",
            "pairkit.scale", "pairkit.losses", "pairkit.train", "pairkit.curate"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package):
    module = importlib.import_module(package)
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
    assert not missing, f"{package}: public names without a docstring: {missing}"


@pytest.mark.timeout(900)
def test_docs_build_without_warnings(tmp_path):
    """The site is built once per run; ``PAIRKIT_DOCS_OUT`` keeps it (CI sets it, so the site is an artifact)."""
    pytest.importorskip("sphinx")
    out = Path(os.environ.get("PAIRKIT_DOCS_OUT") or tmp_path / "html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert (out / "losses" / "preference.html").exists() and (out / "tutorials" / "online_loop.html").exists()


def test_readme_overview_is_the_generated_one():
    """README's method overview is exactly what docs/_ext/readme_overview.py generates from the registries."""
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    from readme_overview import END, START, overview

    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme, "README.md lost its generated overview markers"
    block = readme[readme.index(START) : readme.index(END) + len(END)]
    assert block == overview(), "README overview is stale: run python docs/_ext/readme_overview.py and paste it"


def test_readme_points_to_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"`(docs/[\w/.-]+|benchmarks/[\w/.-]+)`", readme)
    linked = re.findall(r"\]\((docs/[^)]+)\)", readme)
    for path in named + linked:
        assert (ROOT / path).exists(), f"README.md points to {path}, which does not exist"


def test_choose_model_page_holds_the_numbers_the_code_gives():
    """docs/choose_model.md's first table is recomputed (shared data) and must match the page to its 4 decimals."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import choose_model
    finally:
        sys.path.remove(str(ROOT / "docs"))
    from tests.shared_data import shared_path

    shared_path("llm_judgments", "arena_hard_battles.jsonl")
    page = (ROOT / "docs" / "choose_model.md").read_text(encoding="utf-8")
    start, end = choose_model.marker("arena_hard_battles")
    on_page = page.split(start)[1].split(end)[0].strip()
    assert on_page == choose_model.markdown(choose_model.model_table("arena_hard_battles"))
    for dataset in choose_model.DATASETS:  # every table generated, none left empty
        start, end = choose_model.marker(dataset)
        assert "| `bt` |" in page.split(start)[1].split(end)[0], dataset
