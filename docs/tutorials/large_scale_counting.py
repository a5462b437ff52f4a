"""Large-scale counting: a leaderboard from files too large for memory, through per-pair counts.

Bradley–Terry depends on the data only through how often each pair was played and who won, so ten million
battle rows reduce to a few thousand count rows. Here the international football results (the shared data) are
resampled into a partitioned Parquet data set of 4 million rows; DuckDB counts it in one streaming pass with
bounded memory, and the fit from the counts equals the fit from the rows to the last digit.
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pairkit.rating import fit_bradley_terry
from pairkit.scale import count_pairs, counts_to_comparisons

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "sports/international_football_results.csv"

matches = pd.read_csv(data)
decided = matches[matches.home_score != matches.away_score]
winner = np.where(decided.home_score > decided.away_score, decided.home_team, decided.away_team)
loser = np.where(decided.home_score > decided.away_score, decided.away_team, decided.home_team)

# A partitioned data set: 8 Parquet files of 500,000 rows, resampled from the real results.
rng = np.random.default_rng(0)
out = Path("battles")
out.mkdir(exist_ok=True)
for part in range(8):
    pick = rng.integers(0, len(winner), 500_000)
    pd.DataFrame({"winner": winner[pick], "loser": loser[pick]}).to_parquet(out / f"part-{part}.parquet")

start = time.perf_counter()
counts = count_pairs(out, winner="winner", loser="loser", engine="duckdb", memory_limit="1GB")
print(f"{int(counts['n'].sum()):,} rows -> {len(counts):,} count rows in {time.perf_counter() - start:.1f} s")
print(counts.head().to_string(index=False))

board = fit_bradley_terry(counts_to_comparisons(counts), prior=1.0)
print(board.scale("elo").to_pandas().head(10)[["rank", "item", "rating", "ci_low", "ci_high", "n"]].round(1))

# The same fit from the rows, read into memory: identical, because the likelihood only sees the counts.
from pairkit import read_comparisons  # noqa: E402

rows = pd.concat(pd.read_parquet(f) for f in sorted(out.glob("*.parquet")))
direct = fit_bradley_terry(read_comparisons(rows, winner="winner", loser="loser"), prior=1.0)
order = [direct.items.index(name) for name in board.items]
gap = np.abs(board.log_strength - direct.log_strength[order]).max()
print(f"largest difference between the fit from counts and the fit from rows: {gap:.1e}")
assert gap < 1e-8
