"""The judge registry: every declared option of every judge type is checked, and errors name file, key and value."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from pairkit._spec import Option
from pairkit.errors import InputError
from pairkit.judges import SimulatedJudge
from pairkit.judges.config import JUDGES, judge_from_config

CHAT = {"type": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "api_key": "t"}


def good(option: Option):
    """A valid value of ``option`` for the required keys (a chat for protocols)."""
    if option.name == "chat":
        return CHAT
    kind = option.kinds()[0]
    return {Mapping: {"a": 1.0}, str: "x", list: ["q"], int: 1, float: 1.0, bool: True}[kind]


def bad_values(option: Option):
    """Values ``option`` must refuse: outside its range, not one of its choices, the wrong type."""
    kinds = option.kinds()
    out = []
    if option.range is not None and option.range.low is not None:
        out.append(option.range.low - 1)
    if option.range is not None and option.range.high is not None:
        out.append(option.range.high + 1)
    if option.choices:
        out.append("no-such-choice")
    if float in kinds:
        out.append(float("nan"))
    if bool in kinds and len(kinds) == 1:
        out.append("yes")
    if not option.none and str in kinds:
        out.append(None)
    return out


CASES = [
    (spec.name, option, value)
    for spec in JUDGES.specs()
    for option in spec.options
    for value in bad_values(option)
]


def test_every_judge_type_declares_options_and_a_documented_class():
    assert {"simulated", "openai", "huggingface", "portia", "cgcot", "pointwise", "seq2seq"} <= set(JUDGES)
    for spec in JUDGES.specs():
        assert spec.summary and spec.options, spec.name
        assert all(o.doc or o.range or o.choices for o in spec.options), spec.name
    assert len(CASES) > 60


@pytest.mark.parametrize(("kind", "option", "value"), CASES, ids=[f"{k}.{o.name}={v!r}" for k, o, v in CASES])
def test_a_bad_option_names_the_file_the_key_the_range_and_the_value(kind, option, value):
    spec = JUDGES.get(kind)
    config = {"type": kind, **{k: good(spec.option(k)) for k in spec.extra["required"]}, option.name: value}
    with pytest.raises(InputError) as err:
        judge_from_config(config, source="judges/my_judge.json")
    message = str(err.value)
    assert message.startswith("judges/my_judge.json: "), message
    assert f"{option.name} must be {option.describe()}, got {value!r}" in message


def test_unknown_and_missing_keys_and_unknown_types():
    with pytest.raises(InputError, match=r"^j.json: a 'simulated' judge has no option 'nosie'; it takes: cost_per.*"
                                         r"\(did you mean 'noise'\?\)$"):
        judge_from_config({"type": "simulated", "strengths": {"a": 1}, "nosie": 1}, source="j.json")
    with pytest.raises(InputError, match=r"^j.json: a 'cgcot' judge needs 'concept', 'questions'"):
        judge_from_config({"type": "cgcot", "chat": CHAT}, source="j.json")
    with pytest.raises(InputError, match=r"^j.json: unknown judge type 'gpt'; use bsm, cdr, "):
        judge_from_config({"type": "gpt"}, source="j.json")


def test_an_existing_config_file_still_builds_the_same_judge(tmp_path):
    path = tmp_path / "judge.json"
    path.write_text(json.dumps({"type": "simulated", "strengths": {"a": 1.0, "b": -1.0}, "noise": 2, "seed": 3}))
    judge = judge_from_config(json.loads(path.read_text()), texts={"a": ["ans a"], "b": ["ans b"]}, source=str(path))
    direct = SimulatedJudge({"ans a": 1.0, "ans b": -1.0}, noise=2.0, seed=3)
    assert isinstance(judge, SimulatedJudge) and judge.strengths == direct.strengths and judge.noise == 2.0
    assert judge.judge("q", "ans a", "ans b").p_a == direct.judge("q", "ans a", "ans b").p_a


@pytest.mark.parametrize("kind", ["openai", "human", "portia", "bsm", "cgcot", "few_shot", "pointwise"])
def test_each_type_builds_its_class_from_its_required_keys(kind):
    spec = JUDGES.get(kind)
    config = {"type": kind, **{k: good(spec.option(k)) for k in spec.extra["required"]}}
    if kind == "few_shot":
        config["exemplars"] = [{"context": "q", "chosen": "a", "rejected": "b"}]
    judge = judge_from_config(config, source="j.json")
    assert isinstance(judge, spec.fn) and isinstance(judge.judge_id, str)
