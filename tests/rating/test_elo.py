from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from pairkit.data import read_comparisons
from pairkit.errors import InputError
from pairkit.rating import elo_ratings, fit_elo
from tests.shared_data import shared_path


def fastchat_compute_elo(battles: pd.DataFrame, K=4, SCALE=400, BASE=10, INIT_RATING=1000):
    """A straightforward sequential reference written as FastChat's elo_analysis.compute_elo is."""
    rating = defaultdict(lambda: INIT_RATING)
    for model_a, model_b, winner in battles[["model_a", "model_b", "winner"]].itertuples(index=False):
        ra, rb = rating[model_a], rating[model_b]
        ea = 1 / (1 + BASE ** ((rb - ra) / SCALE))
        eb = 1 / (1 + BASE ** ((ra - rb) / SCALE))
        sa = 1 if winner == "model_a" else 0 if winner == "model_b" else 0.5
        rating[model_a] += K * (sa - ea)
        rating[model_b] += K * (1 - sa - eb)
    return dict(rating)


@pytest.mark.parametrize("k, base, scale", [(4, 10, 400), (32, 10, 400), (16, np.e, 1.0)])
def test_elo_equals_sequential_reference_on_arena_hard(k, base, scale):
    path = shared_path("llm_judgments", "arena_hard_battles.jsonl")
    battles = pd.read_json(path, lines=True)
    c = read_comparisons(battles, a="model_a", b="model_b", outcome="winner")
    ref = fastchat_compute_elo(battles, K=k, BASE=base, SCALE=scale)
    ours = elo_ratings(c, k=k, base=base, scale=scale)
    np.testing.assert_allclose(ours, [ref[name] for name in c.items], rtol=0, atol=1e-9)


def test_elo_leaderboard_scale_and_order():
    c = read_comparisons(shared_path("sports", "computer_chess_8k.json"))
    board = fit_elo(c)
    np.testing.assert_allclose(board.ratings, elo_ratings(c), atol=1e-9)
    assert board.ratings.mean() == pytest.approx(1000)  # each update moves both sides by the same amount
    assert board.to_dict()["scale"] == "elo"


def test_elo_rejects_bad_settings():
    c = read_comparisons(pd.DataFrame({"winner": ["a"], "loser": ["b"]}))
    with pytest.raises(InputError):
        fit_elo(c, base=1.0)
    with pytest.raises(InputError):
        fit_elo(c, k=np.nan)
