"""An LLM leaderboard from judged battles: Bradley–Terry, bootstrap intervals, the Elo scale and rank ranges.

Arena-Hard battles from the shared data: each row is a question, two models and a verdict (``model_a``,
``model_b`` or a tie). The leaderboard shows each model's rating on the Elo scale LMArena uses, a 95% bootstrap
interval resampled by question (battles about one question are not independent), and the range of ranks
compatible with the data.
"""

import sys
from pathlib import Path

import pairkit
from pairkit.rating import bootstrap_bradley_terry, fit_bradley_terry

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "llm_judgments/arena_hard_battles.jsonl"

comps = pairkit.read_comparisons(data, a="model_a", b="model_b", outcome="winner", cluster="question_id")
print(f"{len(comps)} battles of {comps.n_items} models")

point = fit_bradley_terry(comps)  # exact maximum likelihood; ties count half a win each
boot = bootstrap_bradley_terry(comps, n_boot=200, by="cluster", seed=0)  # resample whole questions
board = boot.scale("elo")
print(board.to_pandas().to_string(index=False))
assert set(point.items) == set(board.items)
board.plot("arena-leaderboard.png")
