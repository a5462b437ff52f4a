"""bayeselo: published bayeselo output on computer_chess_8k, a loop-by-loop MM reference and scipy."""

import numpy as np
import pytest

from pairkit import read_comparisons
from pairkit.data import Comparisons
from pairkit.errors import InputError
from pairkit.rating.bayeselo import NAT, bayeselo_elo_scale, fit_bayeselo
from tests.rating._reference import maximise
from tests.shared_data import shared_path

# bayeselo's printed ratings (mm with default advantage 32.8, drawelo 97.3, prior 2; offset 0) for this file, as
# recorded next to the same 7,999 games in the poprank project's tests of its bayeselo port.
BAYESELO_PRINTED = {
    "Hiarcs 11.1": 215,
    "Hiarcs 11": 201,
    "Shredder 10": 200,
    "Loop for Chess960": 186,
    "Hiarcs X54": 179,
    "Spike 1.2 Turin": 155,
    "Fruit 2.2.1": 152,
    "Naum 2.1": 108,
    "Glaurung 1.2.1": 71,
    "Pharaon 3.5.1": -29,
    "Ufim 8.02": -78,
    "Movei 00.8.383": -94,
    "Movei 00.8.366": -136,
    "Hermann 1.9": -216,
    "Hermann 1.7": -283,
    "Aice 0.99.2": -303,
    "Ayito 0.2.994": -328,
}


def chess():
    return read_comparisons(shared_path("sports", "computer_chess_8k.json"))


def test_reproduces_bayeselo_printed_ratings():
    lb = fit_bayeselo(chess())
    ours = dict(zip(lb.items, lb.ratings))
    for name, printed in BAYESELO_PRINTED.items():
        assert abs(ours[name] - printed) <= 1.0, name
        assert round(ours[name]) == printed, name


@pytest.mark.parametrize(("outcome", "printed"), [(1.0, 41), (0.5, -5), (0.0, -48)])
def test_single_game_matches_bayeselo(outcome, printed):
    # one game, white first: bayeselo prints +41/-41 for a white win, -5/+5 for a draw, -48/+48 for a loss
    lb = fit_bayeselo(Comparisons.from_arrays(["w"], ["b"], [outcome], a_first=[True]))
    assert round(lb.ratings[lb.items.index("w")]) == printed


def mm_reference(white, black, result, n, *, advantage=32.8, drawelo=97.3, prior=2.0, sweeps=20000):
    """Hunter's (2004) MM for the Rao–Kupper/home-advantage model with bayeselo's virtual draws, in plain loops."""
    tw, td = 10 ** (advantage / 400), 10 ** (drawelo / 400)
    # counts[i][j] = [white i wins, draws, black j wins] with i white
    counts = {}
    games = np.zeros(n)
    pair_games = {}
    for w, b, r in zip(white, black, result):
        c = counts.setdefault((w, b), [0.0, 0.0, 0.0])
        c[{1.0: 0, 0.5: 1, 0.0: 2}[r]] += 1
        games[w] += 1
        games[b] += 1
        key = (min(w, b), max(w, b))
        pair_games[key] = pair_games.get(key, 0) + 1
    for (i, j), g in pair_games.items():
        v = prior * g * (0.25 / games[i] + 0.25 / games[j])
        for key in ((i, j), (j, i)):
            counts.setdefault(key, [0.0, 0.0, 0.0])[1] += v
    gamma = np.ones(n)
    for _ in range(sweeps):
        num = np.zeros(n)
        den = np.zeros(n)
        for (i, j), (wins, draws, losses) in counts.items():
            # i white: P(i wins) = tw γi/(tw γi + td γj); P(j wins) = γj/(td tw γi + γj)
            num[i] += wins + draws
            num[j] += losses + draws
            den[i] += (wins + draws) * tw / (tw * gamma[i] + td * gamma[j])
            den[i] += (losses + draws) * td * tw / (td * tw * gamma[i] + gamma[j])
            den[j] += (wins + draws) * td / (tw * gamma[i] + td * gamma[j])
            den[j] += (losses + draws) / (td * tw * gamma[i] + gamma[j])
        new = num / den
        if np.max(np.abs(new - gamma) / (new + gamma)) < 1e-13:
            gamma = new
            break
        gamma = new
    elo = 400 * np.log10(gamma)
    return elo - elo.mean()


def test_matches_loop_mm_reference():
    c = chess()
    ref = mm_reference(c.a, c.b, c.outcome, c.n_items, sweeps=3000)
    lb = fit_bayeselo(c)
    raw_elo = lb.log_strength / NAT
    np.testing.assert_allclose(raw_elo, ref, atol=1e-4)


def test_estimated_constants_match_scipy():
    c = chess()
    lb = fit_bayeselo(c, estimate_advantage=True, estimate_drawelo=True, prior=0.0)
    n = c.n_items
    y = c.outcome

    def neg(p):  # parameters in natural log-odds units (Elo = p / NAT) for a well-scaled optimisation
        elo, adv, draw = p[:n] / NAT, p[n] / NAT, np.exp(p[n + 1]) / NAT
        d = elo[c.a] - elo[c.b] + adv
        f = lambda x: 1 / (1 + 10 ** (-x / 400))  # noqa: E731
        pw, pl = f(d - draw), f(-d - draw)
        return -np.sum(np.where(y == 1, np.log(pw), np.where(y == 0, np.log(pl), np.log(1 - pw - pl))))

    p = maximise(neg, np.r_[np.zeros(n), 0.2, np.log(0.5)])
    np.testing.assert_allclose(lb.log_strength, p[:n] - p[:n].mean(), atol=1e-5)
    assert lb.params["advantage"] * NAT == pytest.approx(p[n], abs=1e-5)
    assert lb.params["drawelo"] * NAT == pytest.approx(np.exp(p[n + 1]), abs=1e-5)
    assert lb.params["elo_scale"] == pytest.approx(bayeselo_elo_scale(np.exp(p[n + 1]) / NAT), abs=1e-6)


def test_needs_colours():
    with pytest.raises(InputError, match="white"):
        fit_bayeselo(Comparisons.from_arrays([0, 1], [1, 0], [1, 0]))
