"""The shared spec machinery: options checked in one place, specs and registries."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pairkit._spec import Interval, Option, Registry, Spec, declare_options, options_of
from pairkit.errors import InputError


@declare_options(
    Option("level", float, Interval(0, 1, closed="neither"), doc="coverage"),
    Option("max_iter", int, Interval(1, None)),
    Option("ties", str, choices=("half", "davidson")),
    Option("prior", float, Interval(0, None), none=True),
    Option("link", (str, callable), choices=("logistic",)),
)
def fit(data, *, level=0.95, max_iter=100, ties="half", prior=None, link="logistic"):
    """Fit something."""
    return dict(level=level, max_iter=max_iter, ties=ties, prior=prior, link=link)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"level": 1.5}, r"level must be a number in \(0, 1\), got 1.5"),
        ({"level": 0.0}, r"level must be a number in \(0, 1\), got 0.0"),
        ({"level": math.nan}, "level must be"),
        ({"level": "0.9"}, "level must be"),
        ({"level": True}, "level must be"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"max_iter": 2.5}, "max_iter must be"),
        ({"ties": "rao"}, r"ties must be one of 'half', 'davidson', got 'rao'"),
        ({"prior": -1}, r"prior must be a number >= 0 or None, got -1"),
        ({"prior": math.inf}, "prior must be"),
        ({"link": "probit"}, "link must be one of 'logistic' or a callable"),
    ],
)
def test_bad_options_raise_naming_option_range_and_value(kwargs, message):
    with pytest.raises(InputError, match=message):
        fit(None, **kwargs)


def test_good_options_pass_and_convert():
    out = fit(None, level=np.float32(0.5), max_iter=np.int64(3), prior=1, link=abs)
    assert out["level"] == 0.5 and isinstance(out["level"], float)
    assert out["max_iter"] == 3 and isinstance(out["max_iter"], int)
    assert out["prior"] == 1.0 and isinstance(out["prior"], float)
    assert out["link"] is abs
    assert fit(None, prior=None)["prior"] is None


def test_wrapper_keeps_name_doc_signature_and_options():
    import inspect

    assert fit.__name__ == "fit" and fit.__doc__ == "Fit something."
    assert list(inspect.signature(fit).parameters)[:2] == ["data", "level"]
    assert [o.name for o in options_of(fit)] == ["level", "max_iter", "ties", "prior", "link"]


def test_declaring_an_option_the_function_lacks_or_an_invalid_default_fails_at_import():
    with pytest.raises(TypeError, match="not a keyword-only"):
        declare_options(Option("x", float))(lambda data, x=1.0: x)
    with pytest.raises(InputError, match="default of level"):
        declare_options(Option("level", float, Interval(0, 1)))(lambda data, *, level=2.0: level)


@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(list(("both", "left", "right", "neither"))))
def test_interval_membership_matches_its_description(x, closed):
    r = Interval(0.0, 1.0, closed=closed)
    lo_ok = x > 0 or (x == 0 and closed in ("both", "left"))
    hi_ok = x < 1 or (x == 1 and closed in ("both", "right"))
    assert (x in r) == (lo_ok and hi_ok)


def test_registry_names_aliases_and_errors():
    reg = Registry("loss")
    spec = reg.add(Spec("dpo", fit, kind="loss", aliases=("sigmoid",), family="preference", inputs=("a", "b")))
    assert spec.summary == "Fit something." and spec.option_names[0] == "level"
    assert reg.get("sigmoid") is spec and "sigmoid" in reg and len(reg) == 1
    assert reg.names() == ["dpo"] and reg.names(aliases=True) == ["dpo", "sigmoid"]
    assert reg.names(family="ranking") == []
    with pytest.raises(InputError, match="did you mean 'dpo'"):
        reg.get("dpoo")
    with pytest.raises(InputError, match="already registered"):
        reg.add(Spec("ipo", fit, kind="loss", aliases=("dpo",)))
    with pytest.raises(InputError, match="cannot go into"):
        reg.add(Spec("x", fit, kind="strategy"))
    assert spec.check({"level": 0.5}) == {"level": 0.5}
    with pytest.raises(InputError, match="has no option"):
        spec.check({"beta": 1})
    assert spec(None, level=0.3)["level"] == 0.3


def test_input_specs_give_the_positional_inputs():
    from pairkit._spec import Input

    spec = Spec(
        "x", fit, kind="loss", input_specs=(Input("a", "logps"), Input("n", "lengths", keyword=True, required=False))
    )
    assert spec.inputs == ("a",) and spec.input("n").kind == "lengths" and not spec.input("n").required
    with pytest.raises(InputError, match="has no input 'b'"):
        spec.input("b")


_SPEC = Spec(name="toy", fn=fit, kind="rating model")


@pytest.mark.parametrize(
    "texts, expected",
    [
        (["level=0.9"], {"level": 0.9}),
        (["max_iter=7", "ties=davidson"], {"max_iter": 7, "ties": "davidson"}),
        (["prior=none"], {"prior": None}),
        (["prior=2"], {"prior": 2.0}),
        (["max-iter = 3"], {"max_iter": 3}),
    ],
)
def test_command_line_options_are_parsed_to_their_declared_kind(texts, expected):
    parsed = _SPEC.parse_options(texts)
    assert parsed == expected
    assert {k: type(v) for k, v in parsed.items()} == {k: type(v) for k, v in expected.items()}
    assert fit(None, **parsed) == {**fit(None), **expected}  # what the wrapper's own check accepts


@pytest.mark.parametrize(
    "texts, message",
    [
        (["level=1.5"], r"rating model 'toy': --option level must be a number in \(0, 1\), got '1.5'"),
        (["max_iter=2.5"], r"--option max_iter must be an integer >= 1, got '2.5'"),
        (["ties=rao"], r"--option ties must be one of 'half', 'davidson', got 'rao'"),
        (["prior=-1"], r"--option prior must be a number >= 0 or None, got '-1'"),
        (["k=32"], r"rating model 'toy' has no option\(s\) k; it accepts: level, max_iter, ties, prior, link"),
        (["level"], r"--option expects NAME=VALUE, got 'level'"),
        (["level=0.5", "level=0.6"], r"level is given twice"),
        (["link=probit"], r"link must be one of 'logistic' or a callable, got 'probit'"),
    ],
)
def test_bad_command_line_options_name_option_range_and_value(texts, message):
    with pytest.raises(InputError, match=message):
        _SPEC.parse_options(texts)


@given(st.sampled_from(["1", "yes", "true", "on", "0", "no", "false", "off", "maybe"]))
def test_bool_options_parse_the_usual_spellings(text):
    option = Option("flag", bool)
    if text == "maybe":
        with pytest.raises(InputError, match="flag must be true or false, got 'maybe'"):
            option.parse(text)
    else:
        assert option.parse(text) is (text in ("1", "yes", "true", "on"))
