"""Position diagnostics and aggregation on real judgments (Vicuna-80 human votes, Arena-Hard GPT-4 battles)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pairkit.judges import Judgment
from pairkit.rating import fit_bradley_terry
from pairkit.select import Pool, Record, Selection, position_stats
from tests.shared_data import shared_path


def vicuna_frame() -> pd.DataFrame:
    folder = shared_path("llm_judgments", "vicuna80_human")
    frames = []
    for path in sorted(folder.glob("answer_*-vs-answer_*-*.jsonl")):
        x, y = re.match(r"answer_(.+?)-vs-answer_(.+?)-human", path.name).groups()
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        frames.append(pd.DataFrame(rows).assign(first=x, second=y))
    return pd.concat(frames, ignore_index=True)


def records_of(df: pd.DataFrame, score: np.ndarray, judge: str) -> list[Record]:
    items = sorted(set(df["first"]) | set(df["second"]))
    idx = {m: k for k, m in enumerate(items)}
    return [
        Record(int(q), idx[f], idx[s], Judgment(p_a=float(v == 1), p_tie=float(v == 0.5), judge=judge))
        for q, f, s, v in zip(df["question_id"], df["first"], df["second"], score)
    ]


def direct_flip_rate(df: pd.DataFrame, score: np.ndarray) -> tuple[int, float]:
    """The k-th vote on (q, X first, Y second) against the k-th on (q, Y first, X second), by pandas."""
    fwd = (df["first"] < df["second"]).to_numpy()
    df = df.assign(
        winner=np.where(score == 0.5, "tie", np.where(score == 1, df["first"], df["second"])),
        lo=np.where(fwd, df["first"], df["second"]),
        hi=np.where(fwd, df["second"], df["first"]),
        fwd=fwd,
    )
    df["k"] = df.groupby(["question_id", "first", "second"]).cumcount()
    merged = df[df.fwd].merge(df[~df.fwd], on=["question_id", "lo", "hi", "k"])
    return len(merged), float((merged.winner_x != merged.winner_y).mean()) if len(merged) else float("nan")


def test_position_stats_of_human_raters_match_direct_computation():
    df = vicuna_frame()
    score = df["score"].map({1: 1.0, 2: 0.0, 3: 0.5}).to_numpy()
    assert not np.isnan(score).any()
    stats = position_stats(records_of(df, score, "human"))["human"]
    assert stats["calls"] == len(df) == 7040
    assert stats["first_position_win_rate"] == pytest.approx(score.mean(), abs=1e-12)
    # each (question, pair) was shown to the raters in one order only, so no flip rate is defined
    n_both, _ = direct_flip_rate(df, score)
    assert stats["pairs_both_orders"] == n_both == 0 and np.isnan(stats["flip_rate"])


def test_flip_rate_matches_direct_computation_on_random_votes():
    rng = np.random.default_rng(0)
    m = 3000
    models = np.array(["a", "b", "c", "d"])
    first = rng.integers(4, size=m)
    second = (first + rng.integers(1, 4, size=m)) % 4
    df = pd.DataFrame({"question_id": rng.integers(5, size=m), "first": models[first], "second": models[second]})
    score = rng.choice([1.0, 0.0, 0.5], size=m, p=[0.5, 0.3, 0.2])
    stats = position_stats(records_of(df, score, "sim"))["sim"]
    n_both, rate = direct_flip_rate(df, score)
    assert stats["pairs_both_orders"] == n_both > 500
    assert stats["flip_rate"] == pytest.approx(rate, abs=1e-12)


def test_selection_leaderboard_on_arena_hard_battles_matches_direct_fit():
    rows = [json.loads(line) for line in shared_path("llm_judgments", "arena_hard_battles.jsonl").open()]
    df = pd.DataFrame(rows)
    df = df[df.winner.isin(["model_a", "model_b", "tie"])]
    models = tuple(sorted(set(df.model_a) | set(df.model_b)))
    idx = {m: k for k, m in enumerate(models)}
    outcome = df.winner.map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5}).to_numpy()
    qs = sorted(set(df.question_id))
    pool = Pool(models, tuple(map(str, qs)), tuple(map(str, qs)), tuple(tuple(models) for _ in qs))
    qpos = {q: k for k, q in enumerate(qs)}
    decisions = [
        (qpos[q], idx[a], idx[b], s, None) for q, a, b, s in zip(df.question_id, df.model_a, df.model_b, outcome)
    ]
    sel = Selection("imported", pool, "random", [], decisions)
    board = sel.leaderboard()
    from pairkit.data import Comparisons

    direct = fit_bradley_terry(
        Comparisons.from_arrays(
            df.model_a.to_numpy(), df.model_b.to_numpy(), outcome, cluster=df.question_id.to_numpy()
        )
    )
    np.testing.assert_allclose(board.log_strength, direct.log_strength, atol=1e-8)
    np.testing.assert_allclose(board.se, direct.se, rtol=1e-6)
