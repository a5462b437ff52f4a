import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.train.pairs import best_vs_worst_pairs, curriculum_pairs, read_pairs, sweet_spot_pairs


def samples(rng, n_prompts=20, per=8):
    rows = []
    for p in range(n_prompts):
        for j in range(per):
            rows.append({"prompt": f"p{p}", "response": f"p{p}-r{j}", "score": float(rng.normal())})
    return pd.DataFrame(rows)


def slow_sweet_spot(df, k=2.0):
    """Obvious per-prompt loop (reference for the vectorised version)."""
    out = {}
    for prompt, g in df.groupby("prompt"):
        s = g["score"].to_numpy()
        best = int(np.argmax(s))
        target = s.mean() - k * s.std()
        dist = np.abs(s - target)
        dist[best] = np.inf
        out[prompt] = (g["response"].iloc[best], g["response"].iloc[int(np.argmin(dist))])
    return out


def test_sweet_spot_matches_loop_reference(rng):
    df = samples(rng)
    got = sweet_spot_pairs(df)
    ref = slow_sweet_spot(df)
    assert len(got) == len(ref)
    for row in got.itertuples():
        assert (row.chosen, row.rejected) == ref[row.prompt]
    # the rejected score sits near mu - 2 sigma, far above the minimum on average with 8 samples
    assert (got["rejected_score"] >= df.groupby("prompt")["score"].min().loc[got["prompt"]].to_numpy()).all()


def test_sweet_spot_with_many_samples_hits_target(rng):
    df = samples(rng, n_prompts=5, per=400)
    got = sweet_spot_pairs(df, k_sigma=2.0)
    stats = df.groupby("prompt")["score"].agg(["mean", "std"]).loc[got["prompt"]]
    target = stats["mean"] - 2 * stats["std"] * np.sqrt(399 / 400)
    np.testing.assert_allclose(got["rejected_score"], target, atol=0.15)  # nearest of 400 draws


def test_best_vs_worst_and_dropped_prompts_warn(rng):
    df = samples(rng, n_prompts=6, per=4)
    df.loc[df["prompt"] == "p0", "score"] = 1.0  # all tied: no pair
    df = pd.concat([df, pd.DataFrame([{"prompt": "solo", "response": "x", "score": 0.3}])])
    with pytest.warns(DroppedRowsWarning, match="2 of 7 prompts"):
        got = best_vs_worst_pairs(df)
    assert set(got["prompt"]) == {f"p{i}" for i in range(1, 6)}
    g = df.groupby("prompt")["score"]
    np.testing.assert_allclose(got["chosen_score"], g.max().loc[got["prompt"]])
    np.testing.assert_allclose(got["rejected_score"], g.min().loc[got["prompt"]])
    assert (got["gap"] > 0).all()


def test_curriculum_orders_easy_to_hard(rng):
    df = samples(rng, n_prompts=10, per=4)
    got = curriculum_pairs(df, n_stages=3)
    assert len(got) == 10 * 3  # best vs each of the 3 others
    assert (np.diff(got["gap"].to_numpy()) <= 0).all()
    assert list(np.unique(got["stage"])) == [0, 1, 2]
    assert (np.diff(got["stage"].to_numpy()) >= 0).all()
    best = df.loc[df.groupby("prompt")["score"].idxmax()].set_index("prompt")["response"]
    assert (got["chosen"].to_numpy() == best.loc[got["prompt"]].to_numpy()).all()
    all_pairs = curriculum_pairs(df, chosen="all")
    assert len(all_pairs) == 10 * 6  # 4 choose 2 ordered by score


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=2, max_size=12, unique=True), st.randoms())
def test_rules_invariant_to_row_order(ints, rnd):
    scores = np.asarray(ints, dtype=float)
    dist = np.sort(np.abs(scores - (scores.mean() - 2 * scores.std())))
    assume(len(scores) < 3 or dist[1] - dist[0] > 1e-9)  # no tie for the rejected response
    df = pd.DataFrame({"prompt": "q", "response": [f"r{i}" for i in range(len(scores))], "score": scores})
    shuffled = df.sample(frac=1.0, random_state=rnd.randint(0, 10_000))
    for rule in (best_vs_worst_pairs, sweet_spot_pairs):
        a, b = rule(df), rule(shuffled)
        assert a[["chosen", "rejected"]].equals(b[["chosen", "rejected"]])


def test_bad_scores_and_columns_raise():
    with pytest.raises(InputError, match="row 2, column 'score'"):
        best_vs_worst_pairs({"prompt": ["a", "a"], "response": ["x", "y"], "score": [1.0, "n/a"]})
    with pytest.raises(InputError, match="lack column"):
        sweet_spot_pairs({"prompt": ["a"], "text": ["x"], "score": [1.0]})


def test_read_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b", "p_a": 0.8},
        {"prompt": "q2", "chosen": "c", "rejected": "d"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    df = read_pairs(path)
    assert list(df["chosen"]) == ["a", "c"] and "p_a" in df.columns
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "a"}))
    with pytest.raises(InputError, match="row 1: chosen and rejected are the same"):
        read_pairs(path)
    path.write_text(json.dumps({"prompt": "q", "chosen": "a"}))
    with pytest.raises(InputError, match="'rejected' is missing"):
        read_pairs(path)
