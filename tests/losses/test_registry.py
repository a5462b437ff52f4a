"""The loss registry: every loss is a Spec whose declared inputs and options match its function."""

import inspect

import pytest

torch = pytest.importorskip("torch")

from pairkit import losses  # noqa: E402
from pairkit._spec import Spec  # noqa: E402
from pairkit.errors import InputError  # noqa: E402

SPECS = losses.specs()


def test_lookups_return_the_specs_callables():
    assert len(SPECS) == len(losses.names()) > 100
    for spec in SPECS:
        assert isinstance(spec, Spec) and spec.kind == "loss"
        assert losses.get(spec.name) is spec.fn and losses.spec(spec.name) is spec
        for alias in spec.aliases:
            assert losses.get(alias) is spec.fn and losses.canonical_name(alias) == spec.name
    assert losses.get("sigmoid") is losses.dpo_loss and losses.spec("Sigmoid").name == "dpo"
    assert losses.family_of("ranknet") == "ranking"
    with pytest.raises(InputError, match="did you mean"):
        losses.get("dpoo")


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_declared_inputs_and_options_are_parameters(spec):
    params = inspect.signature(spec.fn).parameters
    assert spec.input_specs, f"{spec.name} declares no inputs"
    positional = [p.name for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert list(spec.inputs) == positional[: len(spec.inputs)]
    for i in spec.input_specs:
        p = params[i.name]
        assert (p.kind is p.KEYWORD_ONLY) == i.keyword, i.name
        if i.required and not i.keyword:
            assert p.default is p.empty, i.name
    # every positional parameter is a declared input
    assert set(positional) <= {i.name for i in spec.input_specs}
    for option in spec.options:
        assert params[option.name].kind is inspect.Parameter.KEYWORD_ONLY


def test_batch_coupled_losses_are_declared():
    coupled = {s.name for s in SPECS if s.batch_coupled}
    assert {"dr_dpo", "aot", "aot_unpaired", "pair_sft", "kto", "infonce", "supcon", "clip"} <= coupled
    assert not coupled & {"dpo", "ipo", "listmle_loss", "cross_entropy", "reward_bradley_terry"}
