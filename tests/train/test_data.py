import gzip
import json

import pytest

from pairkit.errors import InputError
from pairkit.train.data import encode_completion, read_records, to_listwise, to_pairs, to_unpaired
from tests.shared_data import shared_path


def test_llama_factory_pairs_become_chat_messages():
    rows = read_records(shared_path("preference_pairs", "dpo_en_demo.json"))
    pairs = to_pairs(rows)
    assert len(pairs) == len(rows) == 300
    first = pairs[0]
    assert first["prompt"][0]["role"] == "user"
    assert first["prompt"][0]["content"] == rows[0]["conversations"][0]["value"]
    assert first["chosen"] == rows[0]["chosen"]["value"] and first["rejected"] == rows[0]["rejected"]["value"]


def test_hh_rlhf_shared_prefix_is_the_prompt():
    path = shared_path("preference_pairs", "hh_rlhf_harmless_test.jsonl.gz")
    rows = read_records(path)
    pairs = to_pairs(rows[:200])
    for raw, p in zip(rows[:200], pairs):
        assert p["prompt"].endswith("\n\nAssistant:")
        assert p["prompt"] + p["chosen"] == raw["chosen"] and p["prompt"] + p["rejected"] == raw["rejected"]
        assert "\n\nAssistant:" not in p["chosen"][:1]
    with gzip.open(path, "rt") as fh:
        assert sum(1 for _ in fh) == len(rows)


def test_kto_demo_unpaired_rows():
    rows = to_unpaired(read_records(shared_path("preference_pairs", "kto_en_demo.json")))
    assert len(rows) == 300
    assert {r["label"] for r in rows} == {True, False}
    assert rows[0]["prompt"][-1]["role"] == "user" and isinstance(rows[0]["completion"], str)


def test_listwise_ranks_become_scores():
    rows = to_listwise([{"prompt": "q", "responses": ["a", "b", "c"], "ranks": [2, 1, 3]}])
    assert rows[0]["scores"] == [-2.0, -1.0, -3.0]
    with pytest.raises(InputError, match="row 1.*finite"):
        to_listwise([{"prompt": "q", "responses": ["a", "b"], "scores": [1.0, float("nan")]}])


def test_bad_rows_and_files(tmp_path):
    with pytest.raises(InputError, match="row 2: needs 'chosen' and 'rejected'"):
        to_pairs([{"prompt": "a", "chosen": "x", "rejected": "y"}, {"prompt": "b", "chosen": "x"}])
    with pytest.raises(InputError, match="column 'label'"):
        to_unpaired([{"prompt": "a", "completion": "x", "label": "maybe"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(InputError, match="line 2"):
        read_records(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_records(tmp_path / "missing.json")


def test_parquet_and_truncation(tmp_path, tokenizer):
    import pandas as pd

    path = tmp_path / "p.parquet"
    pd.DataFrame([{"prompt": "say alpha", "chosen": " alpha", "rejected": " beta"}]).to_parquet(path)
    assert to_pairs(read_records(path))[0]["chosen"] == " alpha"
    prompt_ids, comp_ids = encode_completion(tokenizer, "alpha " * 50, " beta" * 50, max_length=40)
    assert len(prompt_ids) + len(comp_ids) <= 40 and comp_ids
    chat_p, chat_c = encode_completion(tokenizer, [{"role": "user", "content": "say alpha"}], " alpha")
    assert chat_p[0] == tokenizer.bos_token_id and chat_c[-1] == tokenizer.eos_token_id
