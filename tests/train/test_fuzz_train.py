"""Training fuzz (issue 18): trainer options and malformed pair files give a pairkit error or a correct run —
never another exception, never NaN weights or metrics, never a traceback from the CLI."""

import json
import math
import warnings

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pairkit.errors import InputError, PairkitError  # noqa: E402
from pairkit.train import TrainConfig, train_preference  # noqa: E402
from tests.train.tiny import CharTokenizer, TinyCausalLM  # noqa: E402

ODD_NUMBERS = st.sampled_from([0, -1, 1, 2, 0.5, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf, 2**63])
ODD_VALUES = st.one_of(ODD_NUMBERS, st.sampled_from([None, True, "3", "", [1], {"a": 1}]), st.integers(-5, 50))
OPTIONS = ["epochs", "batch_size", "grad_accum", "lr", "weight_decay", "warmup_steps", "max_grad_norm", "max_steps",
           "seed", "save_every", "max_length", "max_prompt_length", "max_completion_length", "chunk_size"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(OPTIONS), ODD_VALUES, max_size=4))
def test_train_config_accepts_valid_options_or_names_the_bad_one(options):
    try:
        config = TrainConfig(**options)
    except InputError as exc:
        assert any(name in str(exc) for name in options), str(exc)
        return
    for name, value in options.items():  # accepted: every value is a finite number of the right kind
        if value is not None:
            assert not isinstance(value, (bool, str, list, dict)) and math.isfinite(float(getattr(config, name)))


OUTCOMES: dict[str, int] = {}  # what the fuzz saw (printed with -s by test_fuzz_outcomes_cover_both_kinds)

TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\x00", "é" * 30, "a"]), st.integers(), st.none(),
                 st.lists(st.text(max_size=3), max_size=2))  # fmt: skip
ROW = st.one_of(
    st.fixed_dictionaries({"prompt": TEXT, "chosen": TEXT, "rejected": TEXT}),
    st.dictionaries(st.sampled_from(["prompt", "chosen", "rejected", "question", "answer"]), TEXT, max_size=3),
    st.sampled_from([1, "x", [], None]),
)
LINE = st.one_of(
    ROW.map(lambda r: json.dumps(r).encode()),
    st.sampled_from([b"", b"{", b"7", b'{"prompt": "p", "chosen": "a"', b"\xff\xfe", b"\xef\xbb\xbf{}"]),
)


WORD = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
VALID = st.fixed_dictionaries({"prompt": WORD, "chosen": WORD, "rejected": WORD}).map(lambda r: json.dumps(r).encode())
# mostly valid rows, sometimes followed by one malformed line
LINES = st.tuples(st.lists(VALID, max_size=4), st.lists(LINE, max_size=1)).map(lambda t: t[0] + t[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=LINES,
    loss=st.sampled_from(["dpo", "ipo", "hinge", "sppo_hard", "simpo", "dpo+0.5*sft"]),
    beta=st.sampled_from([0.1, 1.0, 1e-12, 1e6]),
    lr=st.sampled_from([1e-3, 10.0, 1e30]),
    max_length=st.sampled_from([1, 2, 8, 64]),
)
def test_train_preference_on_malformed_files_errors_clearly_or_trains_finite(tmp_path, lines, loss, beta, lr,
                                                                             max_length):  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n".join(lines))
    model = TinyCausalLM(seed=0)
    config = TrainConfig(batch_size=2, max_steps=2, lr=lr, max_length=max_length)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = train_preference(model, CharTokenizer(), path, loss=loss, beta=beta, config=config)
    except PairkitError as exc:  # InputError for the data or options, EstimationError for a non-finite step
        OUTCOMES[type(exc).__name__] = OUTCOMES.get(type(exc).__name__, 0) + 1
        assert str(exc) and "\n" not in str(exc).strip()[:200]
        assert all(torch.isfinite(p).all() for p in model.parameters())  # a refused step changed nothing to NaN
        return
    OUTCOMES["trained"] = OUTCOMES.get("trained", 0) + 1
    assert result.history and all(math.isfinite(v) for row in result.history for v in row.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES, beta=st.sampled_from(["0.1", "nan", "-1", "1e6"]))
def test_cli_train_dpo_never_prints_a_traceback(tmp_path_factory, model_dir, lines, beta):
    from typer.testing import CliRunner

    from pairkit.cli import app

    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "pairs.jsonl").write_bytes(b"\n".join(lines))
    res = CliRunner().invoke(app, ["train", "dpo", "--model", str(model_dir), "--data", str(tmp / "pairs.jsonl"),
                                   "--output", str(tmp / "run"), "--batch-size", "2", "--max-steps", "1",
                                   "--beta", beta])  # fmt: skip
    assert res.exit_code in (0, 2), res.output  # 1 would be an uncaught exception
    assert "Traceback" not in res.output
    if res.exit_code == 0:
        from safetensors.torch import load_file

        weights = load_file(tmp / "run" / "final" / "model.safetensors")
        assert all(torch.isfinite(v).all() for v in weights.values())


def test_fuzz_outcomes_cover_both_kinds():
    """The file fuzz above is not vacuous: some cases train, some are refused (run in the same session)."""
    if not OUTCOMES:
        pytest.skip("run with the file fuzz")
    print(OUTCOMES)
    assert OUTCOMES.get("trained", 0) > 0 and OUTCOMES.get("InputError", 0) > 0


ONLINE = ["rounds", "prompts_per_round", "k", "max_new_tokens", "temperature", "top_p", "prior", "eval_every",
          "epochs"]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(ONLINE), ODD_VALUES, max_size=3),
    st.sampled_from(["grpo", "rloo", "p3o", "hypo", "spin", "step_dpo"]),
    st.dictionaries(st.sampled_from(["epsilon_low", "epsilon_high", "epsilon", "kl_weight", "alpha", "depth",
                                     "scale", "clipping", "delimiter", "nope"]), ODD_VALUES, max_size=2),
)  # fmt: skip
def test_online_options_are_accepted_or_the_bad_one_is_named(options, method, method_options):
    from pairkit.train import OnlineConfig
    from pairkit.train._online_methods import method_options as check_method_options

    for build, given_ in ((lambda: OnlineConfig(**options), options),
                          (lambda: check_method_options(method, method_options), method_options)):  # fmt: skip
        try:
            built = build()
        except InputError as exc:
            assert any(name in str(exc) for name in given_), str(exc)
            continue
        values = built.values() if isinstance(built, dict) else [getattr(built, k) for k in options]
        for v in values:
            assert isinstance(v, str) or v is None or math.isfinite(float(v))
