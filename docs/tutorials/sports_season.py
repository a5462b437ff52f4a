"""A football season: home advantage and draws, fitted jointly, with honest intervals.

International football results (1872–2026) from the shared data: every match has a home and an away team, a score
and a flag for neutral venues. Bradley–Terry with an order (home) advantage and Davidson ties estimates team
strengths, how much playing at home is worth, and how often near-equal teams draw — then predicts a match.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import pairkit
from pairkit.rating import fit_order_advantage

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "sports/international_football_results.csv"

# Recent matches only (ratings drift over 150 years); a neutral venue has no home advantage.
matches = pd.read_csv(data, parse_dates=["date"])
matches = matches[matches["date"] >= "2018-01-01"].reset_index(drop=True)
comps = pairkit.read_comparisons(
    matches, a="home_team", b="away_team", score_a="home_score", score_b="away_score", a_first=True
)
print(f"{len(comps)} matches, {comps.n_items} teams, {np.mean(comps.outcome == 0.5):.1%} draws")

# prior=1: one virtual win and one virtual loss against an average team, so teams that never lost (or never won)
# still get a finite rating and an interval that reflects how little is known about them.
board = fit_order_advantage(
    comps, ties="davidson", neutral=matches["neutral"].to_numpy(bool), prior=1.0
)
print(board.to_pandas().head(10).to_string(index=False))
print({name: round(value, 3) for name, value in board.params.items() if isinstance(value, float)})

# What the model says about one match (a is the home side).
a, b = "Argentina", "France"
p_win, p_draw = (float(p[0]) for p in board.predict(a, b))
print(f"{a} at home against {b}: P(win) = {p_win:.2f}, P(draw) = {p_draw:.2f}, P(loss) = {1 - p_win - p_draw:.2f}")
