"""Cross-validated comparison of every registered rating model on the shared real data, for docs/choose_model.md.

Run from the repository root, with ``../shared`` beside it::

    python docs/choose_model.py            # rewrites the tables between the markers in docs/choose_model.md

``tests/test_docs.py`` recomputes the smallest data set's table and checks the page against it, so the numbers on
the page are the numbers this code gives.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAGE = ROOT / "docs" / "choose_model.md"
FOLDS = 5
SEED = 0
PRIOR = 1.0
SKIP = {"duot5"}
"""duoT5 aggregation reads each outcome as a probability from a reranker, not a game result."""


def _chess():
    from pairkit.data import read_comparisons

    return read_comparisons(SHARED / "sports" / "computer_chess_8k.json")  # [white, black, result], white first


def _icehockey():
    from dataclasses import replace

    from pairkit.data import read_comparisons

    comps = read_comparisons(SHARED / "sports" / "icehockey.csv", a="visitor", b="opponent", outcome="result",
                             a_first="home.ice")
    return replace(comps, a_first=~comps.a_first)  # home.ice: the game was on the opponent's ice


def _football():
    from pairkit import Comparisons

    frame = pd.read_csv(SHARED / "sports" / "international_football_results.csv")
    frame = frame[(frame["date"] >= "2010-01-01") & ~frame["neutral"].astype(bool)]
    frame = frame.dropna(subset=["home_score", "away_score"])
    outcome = np.sign(frame["home_score"].to_numpy() - frame["away_score"].to_numpy()) / 2 + 0.5
    return Comparisons.from_arrays(frame["home_team"].to_numpy(), frame["away_team"].to_numpy(), outcome,
                                   a_first=np.ones(len(frame), dtype=bool))


def _arena_hard():
    from pairkit.data import read_comparisons

    return read_comparisons(SHARED / "llm_judgments" / "arena_hard_battles.jsonl", a="model_a", b="model_b",
                            outcome="winner")


DATASETS = {
    "arena_hard_battles": ("2,136 GPT-judged battles of 5 LLMs, with ties", _arena_hard),
    "icehockey": ("1,083 college ice-hockey games, home ice and ties", _icehockey),
    "computer_chess_8k": ("7,999 games of 17 chess engines, white moves first, 1,681 draws", _chess),
    "football_home_2010": ("international football since 2010, home games only (not neutral), draws", _football),
}


def model_table(dataset: str) -> pd.DataFrame:
    """Every registered pairwise rating model, cross-validated on one shared data set."""
    from pairkit.rating import compare_models, model_names, model_spec

    names = [n for n in model_names() if model_spec(n).name == n and n not in SKIP]
    comps = DATASETS[dataset][1]()
    return compare_models(comps, names, folds=FOLDS, seed=SEED, prior=PRIOR).table


def markdown(table: pd.DataFrame) -> str:
    def num(x, digits=4):
        return "" if pd.isna(x) else f"{x:.{digits}f}"

    lines = ["| model | log-loss | ± (folds) | accuracy | Brier | ECE | log-loss (3 outcomes) | note |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        # the first words of the reason (compare-models prints all of it)
        note = textwrap.shorten(row.note.split(". ")[0], 110, placeholder=" …")
        lines.append(f"| `{row.model}` | {num(row.log_loss)} | {num(row.log_loss_sd)} | {num(row.accuracy)} | "
                     f"{num(row.brier)} | {num(row.ece)} | {num(row.log_loss_3)} | {note} |")
    return "\n".join(lines)


def marker(dataset: str) -> tuple[str, str]:
    return f"<!-- table:{dataset} -->", f"<!-- /table:{dataset} -->"


def main() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for dataset in DATASETS:
        start, end = marker(dataset)
        head, rest = text.split(start)
        _, tail = rest.split(end)
        text = f"{head}{start}\n{markdown(model_table(dataset))}\n{end}{tail}"
        print(f"{dataset}: done", file=sys.stderr)
    PAGE.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
