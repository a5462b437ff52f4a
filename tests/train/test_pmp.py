"""Preference-model pre-training: the PMP pair builders against a by-hand example, and the two-stage run."""

import copy
import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pairkit.errors import DroppedRowsWarning, InputError  # noqa: E402
from pairkit.train import (  # noqa: E402
    TrainConfig,
    pmp_pairs,
    pretrain_preference_model,
    read_pmp_pairs,
    reddit_pairs,
    stack_exchange_pairs,
    stack_exchange_scores,
    train_reward_model,
    wikipedia_pairs,
)

VOTED = [
    {"question": "Q1", "answers": ["a", "b", "c"], "upvotes": [10, 0, -2], "accepted": [False, True, False]},
    {"question": "Q2", "answers": ["d", "e"], "upvotes": [1, 2], "accepted": [True, False]},  # both score 2: a tie
    {"question": "Q3", "answers": ["f"], "upvotes": [5]},
]


def test_scores_by_hand():
    # round(log2 11) = 3; log2 1 = 0, +1 accepted; negative votes -> -1; round(log2 2)+1 = 2; round(log2 3) = 2
    assert stack_exchange_scores([10, 0, -2, 1, 2], [0, 1, 0, 1, 0]).tolist() == [3, 1, -1, 2, 2]
    assert stack_exchange_scores([-5], [True]).tolist() == [-1]  # reading taken: negative wins over accepted
    with pytest.raises(InputError):
        stack_exchange_scores([np.nan])


def test_ranked_and_binary_pairs_match_a_by_hand_example():
    with pytest.warns(DroppedRowsWarning, match="2 of 3 questions"):
        ranked = pmp_pairs(VOTED, mode="ranked")
    # scores a=3, b=1, c=-1: a>b, a>c, b>c; Q2 ties, Q3 has one answer
    assert ranked[["prompt", "chosen", "rejected"]].values.tolist() == [
        ["Q1", "a", "b"], ["Q1", "a", "c"], ["Q1", "b", "c"]]  # fmt: skip
    assert ranked["chosen_score"].tolist() == [3, 3, 1] and ranked["rejected_score"].tolist() == [1, -1, -1]
    with pytest.warns(DroppedRowsWarning):
        binary = pmp_pairs(VOTED)
    assert binary[["chosen", "rejected"]].values.tolist() == [
        ["GOOD: a", "BAD: a"], ["BAD: b", "GOOD: b"],   # a > b
        ["GOOD: a", "BAD: a"], ["BAD: c", "GOOD: c"],   # a > c
        ["GOOD: b", "BAD: b"], ["BAD: c", "GOOD: c"],   # b > c
    ]  # fmt: skip
    assert (binary["prompt"] == "Q1").all()


def test_given_scores_and_sampling_pairs_per_question():
    rows = [{"prompt": "P", "answers": list("wxyz"), "scores": [4.0, 3.0, 2.0, 1.0]}]
    assert len(pmp_pairs(rows, mode="ranked", score="given")) == 6
    some = pmp_pairs(rows, mode="ranked", score="given", pairs_per_question=2, seed=1)
    assert len(some) == 2 and (some["chosen_score"] > some["rejected_score"]).all()
    assert some.equals(pmp_pairs(rows, mode="ranked", score="given", pairs_per_question=2, seed=1))
    with pytest.raises(InputError, match="upvotes"):
        pmp_pairs(rows)
    with pytest.raises(InputError, match="mode"):
        pmp_pairs(rows, mode="listwise")


def _classifier(tokenizer, seed=0):
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return transformers.LlamaForSequenceClassification(config)


def test_two_stage_run_starts_stage_two_from_stage_one_weights(tokenizer, tmp_path):
    voted = [{"question": f"q{i}", "answers": ["good answer", "bad", "meh"], "upvotes": [8, -1, 1]}
             for i in range(4)]  # fmt: skip
    finetune = [{"prompt": "hi", "chosen": "yes good", "rejected": "no bad"}] * 4
    pmp_cfg = TrainConfig(batch_size=8, max_steps=3, lr=1e-2, output_dir=str(tmp_path / "pmp"))
    ft_cfg = TrainConfig(batch_size=4, epochs=2, lr=1e-2, output_dir=str(tmp_path / "ft"))
    model = _classifier(tokenizer)
    start = copy.deepcopy(model)
    first, second = pretrain_preference_model(model, tokenizer, voted, finetune, pmp_config=pmp_cfg, config=ft_cfg)
    assert len(first.history) == 3 and len(second.history) == 2
    assert (tmp_path / "pmp" / "metrics.jsonl").exists() and (tmp_path / "ft" / "metrics.jsonl").exists()
    # the same two stages by hand give the same weights: stage 2 started from stage 1's
    by_hand = copy.deepcopy(start)
    train_reward_model(by_hand, pmp_pairs(voted), tokenizer=tokenizer, config=pmp_cfg)
    after_pmp = copy.deepcopy(by_hand)
    train_reward_model(by_hand, finetune, tokenizer=tokenizer, config=ft_cfg)
    for (k, a), b in zip(model.state_dict().items(), by_hand.state_dict().values()):
        assert torch.equal(a, b), k
    # and not from the initial weights
    no_pmp = copy.deepcopy(start)
    train_reward_model(no_pmp, finetune, tokenizer=tokenizer, config=ft_cfg)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), no_pmp.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(after_pmp.state_dict().values(), start.state_dict().values()))


# --- builders from files of the paper's three sources (one answer / reply / edit per row) ---

SE_CSV = """question_id,question,answer,upvotes,accepted
1,How to sort?,use sorted,15,false
1,How to sort?,bubble sort,2,true
1,How to sort?,no idea,-3,false
1,How to sort?,use list.sort,1,false
2,Why?,because,0,false
3,What?,this,4,false
3,What?,that,5,false
3,What?,other,3,no
"""
# scores by hand: round(log2 16) = 4; round(log2 3) + 1 = 3 (accepted); -3 votes -> -1; round(log2 2) = 1;
# Q2 has one answer; Q3: round(log2 5) = 2, round(log2 6) = 3, round(log2 4) = 2 (a tie: no pair)
SE_RANKED = [
    ["How to sort?", "use sorted", "bubble sort", 4, 3], ["How to sort?", "use sorted", "no idea", 4, -1],
    ["How to sort?", "use sorted", "use list.sort", 4, 1], ["How to sort?", "bubble sort", "no idea", 3, -1],
    ["How to sort?", "bubble sort", "use list.sort", 3, 1], ["How to sort?", "use list.sort", "no idea", 1, -1],
    ["What?", "that", "this", 3, 2], ["What?", "that", "other", 3, 2],
]  # fmt: skip


def _ranked(frame):
    return frame[["prompt", "chosen", "rejected", "chosen_score", "rejected_score"]].values.tolist()


def test_stack_exchange_file_gives_the_hand_computed_pairs(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(SE_CSV)
    with pytest.warns(DroppedRowsWarning, match=r"1 of 3 questions give no pair \(1 with a single answer.*1 pairs "
                      "with equal scores"):  # fmt: skip
        ranked = stack_exchange_pairs(path, question_id="question_id", mode="ranked")
    assert _ranked(ranked) == SE_RANKED
    with pytest.warns(DroppedRowsWarning):  # grouped by the question text: the same pairs
        assert _ranked(stack_exchange_pairs(path, mode="ranked")) == SE_RANKED
    with pytest.warns(DroppedRowsWarning):
        binary = stack_exchange_pairs(path, question_id="question_id")
    assert binary[["chosen", "rejected"]].values.tolist()[:4] == [
        ["GOOD: use sorted", "BAD: use sorted"], ["BAD: bubble sort", "GOOD: bubble sort"],
        ["GOOD: use sorted", "BAD: use sorted"], ["BAD: no idea", "GOOD: no idea"],
    ]  # fmt: skip
    assert len(binary) == 2 * len(SE_RANKED)
    with pytest.warns(DroppedRowsWarning):  # without acceptance: bubble sort scores round(log2 3) = 2
        plain = stack_exchange_pairs(path, accepted=None, mode="ranked")
    assert _ranked(plain)[0] == ["How to sort?", "use sorted", "bubble sort", 4, 2]


def test_reddit_and_wikipedia_files_give_the_hand_computed_pairs(tmp_path):
    comments = [
        {"parent_id": "t3_a", "parent_text": "Best topping?", "body": "basil", "score": 12},
        {"parent_id": "t3_a", "parent_text": "Best topping?", "body": "pineapple", "score": -4},
        {"parent_id": "t3_a", "parent_text": "Best topping?", "body": "mushroom", "score": 12},
        {"parent_id": "t1_b", "parent_text": "I agree", "body": "me too", "score": 1},
    ]
    path = tmp_path / "comments.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in comments))
    with pytest.warns(DroppedRowsWarning, match=r"1 of 2 parents give no pair \(1 with a single reply.*1 pairs"):
        ranked = reddit_pairs(path, mode="ranked")
    assert _ranked(ranked) == [["Best topping?", "basil", "pineapple", 12, -4],
                               ["Best topping?", "mushroom", "pineapple", 12, -4]]  # fmt: skip
    edits = pd.DataFrame({
        "title": ["Moon", "Sun", "Mars"],
        "before": ["The Moon orbits Earth.", "The Sun is a star.", "Mars is red."],
        "after": ["The Moon is cheese.", "The Sun is a big star.", "Mars is red."],
        "vandalism": [True, False, True],
        "reverted_by": ["Reverted edits by X (vandalism)", None, "rv VANDALISM"],
    })  # fmt: skip
    pq = tmp_path / "edits.parquet"
    edits.to_parquet(pq)
    with pytest.warns(DroppedRowsWarning, match="1 of 3 edits were not reverted as vandalism .* and 1 left the text"):
        wiki = wikipedia_pairs(pq, mode="ranked")
    assert wiki.values.tolist() == [["Moon", "The Moon orbits Earth.", "The Moon is cheese."]]
    with pytest.warns(DroppedRowsWarning, match="1 of 3 edits"):  # the same edits found from the revert's summary
        by_comment = wikipedia_pairs(pq, revert_comment="reverted_by")
    assert by_comment.values.tolist() == [
        ["Moon", "GOOD: The Moon orbits Earth.", "BAD: The Moon orbits Earth."],
        ["Moon", "BAD: The Moon is cheese.", "GOOD: The Moon is cheese."],
    ]  # fmt: skip
    with pytest.warns(DroppedRowsWarning):
        assert read_pmp_pairs(pq, "wikipedia", columns={"vandalism": "vandalism"}, mode="ranked").equals(wiki)


@pytest.mark.parametrize(
    ("edit", "kwargs", "match"),
    [
        (("15", "lots"), {}, r"answers.csv, row 2, column 'upvotes': expected a finite number, got 'lots'"),
        (("use list.sort,1,false", "use list.sort,1,yes"), {}, r"row 5, column 'accepted': a second accepted"),
        (("use sorted,15,false", ",15,false"), {}, r"row 2, column 'answer': expected text, got missing"),
        (("1,How to sort?,no idea", "1,How to shuffle?,no idea"), {"question_id": "question_id"},
         r"row 4, column 'question': differs from the first row of the same 'question_id'"),
        (("false\n2", "perhaps\n2"), {}, r"column 'accepted': expected true/false"),
        (("question_id,question,answer", "question_id,question,text"), {}, r"no column answer='answer'.*'text'"),
    ],
)
def test_stack_exchange_bad_input_names_file_row_column_value(tmp_path, edit, kwargs, match):
    path = tmp_path / "answers.csv"
    path.write_text(SE_CSV.replace(*edit, 1))
    with pytest.raises(InputError, match=match):
        stack_exchange_pairs(path, **kwargs)


def test_read_pmp_pairs_names_bad_sources_columns_and_options(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text(SE_CSV)
    with pytest.raises(InputError, match="unknown PMP source 'quora'"):
        read_pmp_pairs(path, "quora")
    with pytest.raises(InputError, match="unknown column option 'body'"):
        read_pmp_pairs(path, "stackexchange", columns={"body": "answer"})
    with pytest.raises(InputError, match="'pattern' does not apply"):
        read_pmp_pairs(path, "stackexchange", pattern="x")
    with pytest.raises(InputError, match="no question gives a pair"), pytest.warns(DroppedRowsWarning):
        stack_exchange_pairs(pd.DataFrame({"question": ["Q"], "answer": ["a"], "upvotes": [1], "accepted": [0]}))


def test_cli_train_pmp_end_to_end(tmp_path, model_dir):
    from typer.testing import CliRunner

    from pairkit.cli import app

    path = tmp_path / "answers.csv"
    path.write_text(SE_CSV.replace("question,answer,upvotes", "Title,Body,Score"))
    finetune = tmp_path / "ft.jsonl"
    finetune.write_text("\n".join(json.dumps({"prompt": "hi", "chosen": "yes good", "rejected": "no bad"})
                                  for _ in range(4)))  # fmt: skip
    base = ["train", "pmp", "--model", str(model_dir), "--data", str(path), "--source", "stackexchange",
            "--column", "question=Title", "--column", "answer=Body", "--column", "upvotes=Score",
            "--batch-size", "8", "--max-steps", "1"]  # fmt: skip
    res = CliRunner().invoke(app, [*base, "--mode", "ranked", "--save-pairs", str(tmp_path / "pairs.jsonl"),
                                   "--output", str(tmp_path / "run")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "8 PMP pairs" in res.output and (tmp_path / "run" / "final" / "config.json").exists()
    saved = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    keys = ["prompt", "chosen", "rejected", "chosen_score", "rejected_score"]
    assert [[r[k] for k in keys] for r in saved] == SE_RANKED
    res = CliRunner().invoke(app, [*base, "--finetune-data", str(finetune), "--output", str(tmp_path / "two")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "two" / "pmp" / "metrics.jsonl").exists() and (tmp_path / "two" / "metrics.jsonl").exists()
    assert (tmp_path / "two" / "final" / "config.json").exists()
    res = CliRunner().invoke(app, [*base[:7], "reddit", "--column", "karma=Score"])
    assert res.exit_code == 2 and "no column parent='parent_id'" in res.output
