"""Ranking candidates with an LLM judge on a budget, with the judge's position bias measured and removed.

A simulated judge stands in for an LLM here (a real one is a ``{"type": "openai", ...}`` config away): it knows the
true strengths of 24 candidates, answers with noise, and prefers whichever answer it sees first. Active selection
asks it about the most informative pairs, showing each pair in both orders, within 300 calls.
"""

import numpy as np

from pairkit.judges import SimulatedJudge
from pairkit.metrics import kendall_tau
from pairkit.select import Pool, select

rng = np.random.default_rng(0)
truth = {f"model-{i:02d}": s for i, s in enumerate(rng.normal(0, 1.5, 24))}
judge = SimulatedJudge(truth, position_bias=0.8, seed=1)  # +0.8 log-odds for the answer shown first

sel = select("active", judge, Pool.single(list(truth)), policy="both_average", budget=300, seed=2)
scores = sel.scores()
print(f"calls: {sel.calls}, stopped: {sel.stopped}")
print(f"Kendall tau to the truth: {kendall_tau(scores, np.array(list(truth.values()))):.3f}")
# prior=1: candidates that never lost in so few calls still get finite ratings.
print(sel.leaderboard(prior=1.0).to_pandas().head(5).to_string(index=False))
