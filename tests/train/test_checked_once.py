"""The walk from a JSONL preference pair to a DPO gradient step checks each value exactly once (issue 11): the
command line checks ``--beta`` and the loss options before the model is loaded, and the trainer, the loop and the
loss take them as checked."""

import collections

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

import pairkit._spec  # noqa: E402
import pairkit.cli.train  # noqa: E402, F401  (imported first: import-time checks of declared defaults are not counted)
import pairkit.losses  # noqa: E402, F401
import pairkit.train._loop  # noqa: E402
import pairkit.train._steps  # noqa: E402
from pairkit.cli import app  # noqa: E402
from tests.train.conftest import write_jsonl  # noqa: E402
from tests.train.test_trainers import echo_pairs  # noqa: E402


@pytest.fixture
def checks(monkeypatch):
    """Counts of the checks of each named value: ``check_number`` (the trainer options) and every declared
    :class:`~pairkit._spec.Option` (the loss options, the command-line options)."""
    counts: collections.Counter = collections.Counter()
    number = pairkit.train._loop.check_number

    def counted_number(name, value, **kw):
        counts[name] += 1
        return number(name, value, **kw)

    option_check = pairkit._spec.Option.check

    def counted_option(self, value, **kw):
        counts[self.name] += 1
        return option_check(self, value, **kw)

    for module in (pairkit.train._loop, pairkit.train._steps):
        monkeypatch.setattr(module, "check_number", counted_number)
    monkeypatch.setattr(pairkit._spec.Option, "check", counted_option)
    return counts


def test_jsonl_pair_to_a_dpo_step_checks_each_value_once(tmp_path, model_dir, checks):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(4, 0))
    args = ["train", "dpo", "--model", str(model_dir), "--data", str(data), "--output", str(tmp_path / "run"),
            "--batch-size", "4", "--beta", "0.2", "--max-steps", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert checks["beta"] == 1, dict(checks)
    twice = {name: n for name, n in checks.items() if n > 1}
    assert not twice, f"checked more than once on the walk: {twice}"


def test_a_bad_beta_fails_before_the_model_is_loaded(tmp_path, checks):
    data = write_jsonl(tmp_path / "pairs.jsonl", echo_pairs(2, 0))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")  # not a model: loading it would fail differently
    (model / "tokenizer.json").write_text("{}")
    res = CliRunner().invoke(app, ["train", "dpo", "--model", str(model), "--data", str(data), "--beta", "0"])
    assert res.exit_code != 0
    assert "beta must be a finite number in (0, inf), got 0.0" in res.output
    assert checks["beta"] == 1
