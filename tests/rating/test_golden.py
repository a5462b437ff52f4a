"""Golden fixtures (the choix style): every registered rating model on the shared real data, against stored numbers.

``tests/data/golden/<dataset>.golden.json`` (named apart from the shared data file it is computed from) holds each
model's scores (and fitted parameters, log-likelihood) as computed when the fixture was written; a change that
moves any number by more than the tolerance fails here and must say why. Correctness against peers and references
is tested per model (test_bradley_terry.py, test_bayeselo.py, …); these fixtures pin every model at once, including
the ones without a peer. A registered model missing from a fixture fails :func:`test_fixtures_cover_every_model`.

Rewrite the fixtures (after a deliberate, explained change):
``PAIRKIT_WRITE_GOLDEN=1 pytest tests/rating/test_golden.py``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pairkit.data import read_comparisons
from pairkit.rating import model_names, model_spec
from tests.shared_data import shared_path

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
DATASETS = {
    "chess_8k": ("sports", "computer_chess_8k.json"),
    "icehockey": ("sports", "icehockey.csv"),
}
OPTIONS = {"bt": {"prior": 0.0}, "robust": {"epsilon": 0.05}}
"""Options per model (the rest at their defaults); duoT5 reads the outcome as the first-shown side's probability."""
ATOL = 1e-6


def _load(dataset: str):
    path = shared_path(*DATASETS[dataset])
    if dataset != "icehockey":
        return read_comparisons(path)  # chess: [white, black, result], white first
    # home.ice: the game was on the opponent's ice, so the visitor (a) played "first" (at home) when it is False
    comps = read_comparisons(path, a="visitor", b="opponent", outcome="result", a_first="home.ice")
    return replace(comps, a_first=~comps.a_first)


def _record(board) -> dict:
    def num(x):
        return None if x is None or not math.isfinite(float(x)) else round(float(x), 10)

    return {
        "model": board.model,
        "score_scale": board.score_scale,
        "items": list(board.items),
        "scores": [num(x) for x in board.scores],
        "params": {k: num(v) for k, v in board.params.items() if isinstance(v, (int, float))},
        "log_likelihood": num(board.log_likelihood),
    }


def _fit_all(dataset: str) -> dict:
    comps = _load(dataset)
    out = {}
    for name in model_names():
        spec = model_spec(name)
        if name != spec.name:  # an alias: the same model
            continue
        out[name] = _record(spec.fn(comps, **OPTIONS.get(name, {})))
    return out


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_models_reproduce_the_golden_numbers(dataset):
    path = GOLDEN / f"{dataset}.golden.json"
    fitted = _fit_all(dataset)
    if os.environ.get("PAIRKIT_WRITE_GOLDEN") == "1":
        path.write_text(json.dumps({"dataset": "/".join(DATASETS[dataset]), "options": OPTIONS, "models": fitted},
                                   indent=1) + "\n", encoding="utf-8")
    golden = json.loads(path.read_text(encoding="utf-8"))["models"]
    for name, expected in golden.items():
        got = fitted[name]
        assert got["items"] == expected["items"], name
        assert got["model"] == expected["model"] and got["score_scale"] == expected["score_scale"], name
        np.testing.assert_allclose(np.array(got["scores"], dtype=float), np.array(expected["scores"], dtype=float),
                                   atol=ATOL, rtol=1e-8, err_msg=f"{dataset}: {name} scores moved")
        for key, value in expected["params"].items():
            if value is not None:
                np.testing.assert_allclose(got["params"][key], value, atol=ATOL, rtol=1e-8, err_msg=f"{name} {key}")
        if expected["log_likelihood"] is not None:
            np.testing.assert_allclose(got["log_likelihood"], expected["log_likelihood"], atol=1e-5, rtol=1e-9)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_fixtures_cover_every_model(dataset):
    golden = json.loads((GOLDEN / f"{dataset}.golden.json").read_text(encoding="utf-8"))["models"]
    canonical = {model_spec(name).name for name in model_names()}
    assert sorted(canonical - set(golden)) == [], "registered models without golden numbers"
