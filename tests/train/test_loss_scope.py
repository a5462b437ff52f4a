"""Scoped loss options ``"<loss>.<option>"``: one term of a composite loss gets its own value of an option."""

import pytest

torch = pytest.importorskip("torch")

from pairkit import losses  # noqa: E402
from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, check_loss, train_semi_supervised  # noqa: E402
from pairkit.train._loop import check_options, options_for  # noqa: E402
from pairkit.train._steps import combine_losses  # noqa: E402


def _pairs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    names = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    return {k: -torch.rand(n, generator=g, dtype=torch.float64) * 5 for k in names}


def test_a_scoped_beta_reaches_its_term_only_and_equals_each_loss_by_hand():
    inputs = _pairs()
    args = list(inputs.values())
    checked = check_loss("dpo+0.5*ipo", beta=0.1, loss_options={"ipo.beta": 0.5})
    got = combine_losses(checked.terms, inputs, checked.options)
    dpo, ipo = losses.get("dpo"), losses.get("ipo")
    want = dpo(*args, beta=0.1, reduction="none") + 0.5 * ipo(*args, beta=0.5, reduction="none")
    assert torch.equal(got, want)
    # the unscoped value would differ: the test can fail
    same = check_loss("dpo+0.5*ipo", beta=0.1)
    assert not torch.equal(combine_losses(same.terms, inputs, same.options), want)
    # a scoped key overrides the unscoped one for its term, whichever order they come in
    both = check_loss("dpo+0.5*ipo", beta=0.3, loss_options={"ipo.beta": 0.5, "beta": 0.1})
    assert torch.equal(combine_losses(both.terms, inputs, both.options), want)


def test_an_alias_in_the_scope_is_the_loss():
    # "sigmoid" is an alias of dpo and "hinge" of slic; the checked key is under the registered name
    assert check_options(["sigmoid", "slic"], {"beta": 0.1, "hinge.beta": 2.0}) == {"beta": 0.1, "slic.beta": 2.0}
    options = check_options(["dpo", "hinge"], {"dpo.beta": 0.2, "beta": 0.7})
    assert options_for("sigmoid", options) == {"beta": 0.2}
    assert options_for("slic", options) == {"beta": 0.7}
    inputs = _pairs(seed=1)
    args = list(inputs.values())
    got = combine_losses([("sigmoid", 1.0, None), ("hinge", 1.0, None)], inputs, options)
    want = losses.get("dpo")(*args, beta=0.2, reduction="none") + losses.get("slic")(*args, beta=0.7, reduction="none")
    assert torch.equal(got, want)


def test_refusals_name_the_loss_the_option_and_the_value():
    with pytest.raises(InputError, match=r"'kto' is not a loss of this run; its losses are \['dpo', 'ipo'\]"):
        check_options(["dpo", "ipo"], {"kto.beta": 0.5})
    with pytest.raises(InputError, match=r"'no_such_loss' is not a loss of this run"):
        check_options(["dpo"], {"no_such_loss.beta": 0.5})
    with pytest.raises(InputError, match=r"loss 'dpo' has no option 'label_smoothing'; it accepts \['beta', 'f_alpha'"):
        check_options(["dpo", "robust_dpo"], {"dpo.label_smoothing": 0.1})
    with pytest.raises(InputError, match=r"loss 'ipo'.*beta.*-1"):
        check_options(["dpo", "ipo"], {"ipo.beta": -1.0})
    with pytest.raises(InputError, match="'<loss>.<option>'"):
        check_options(["dpo"], {"bogus": 1.0})
    with pytest.raises(InputError, match="is not a loss of this run"):
        check_loss("dpo", loss_options={"ipo.beta": 0.5})


def _rows(n_lab=4, n_unl=8, dim=5, classes=3, seed=13):
    g = torch.Generator().manual_seed(seed)
    lab = [{"features": torch.randn(dim, generator=g, dtype=torch.float64), "label": i % classes} for i in range(n_lab)]
    unl = [{"features": torch.randn(dim, generator=g, dtype=torch.float64)} for _ in range(n_unl)]
    return lab, unl


def _run(loss, options):
    torch.manual_seed(13)
    encoder = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh()).double()
    torch.manual_seed(14)
    head = torch.nn.Linear(4, 3).double()
    lab, unl = _rows()
    res = train_semi_supervised(encoder, lab, unl, strong_augment=lambda x: 0.6 * x.flip(-1) - 0.1, head=head,
                                ratio=2, bank_size=8, loss=loss, loss_options=options,
                                config=TrainConfig(batch_size=4, max_steps=1, lr=5e-2))  # fmt: skip
    return res.history[0]


def test_semi_supervised_scoped_temperature_reaches_that_term_only():
    fix, edge = "fixmatch_loss", "simmatchv2_edge_edge_loss"
    options = {"temperature": 0.5, "threshold": 0.0, f"{edge}.temperature": 0.2}
    both = _run(f"{fix}+{edge}", options)
    # step one of each term does not depend on the other: the edge term equals its run alone at 0.2, FixMatch its
    # value when both terms are given 0.5 (the old behaviour, which gives another edge value: the test can fail)
    shared = _run(f"{fix}+{edge}", {"temperature": 0.5, "threshold": 0.0})
    assert both[edge] == _run(edge, {"temperature": 0.2})[edge]
    assert both[fix] == shared[fix]
    assert shared[edge] != both[edge]


def test_cli_passes_a_dotted_loss_option_through(tmp_path, model_dir):
    pytest.importorskip("transformers")
    import json

    from typer.testing import CliRunner

    from pairkit.cli import app
    from tests.train.conftest import write_jsonl

    words = ["alpha beta", "gamma delta", "good bad", "yes no", "user assistant", "system human"]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": w, "positive": w + " " + w.split()[0]} for w in words])
    base = ["train", "contrastive", "--model", str(model_dir), "--data", str(pairs), "--batch-size", "3",
            "--max-steps", "1", "--loss", "infonce"]  # fmt: skip

    def first_loss(out, option):
        res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / out), "--loss-option", option])
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / out / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    scoped = first_loss("scoped", "info_nce.temperature=0.05")  # an alias of infonce in the scope
    assert scoped == first_loss("plain", "temperature=0.05")
    assert scoped != first_loss("default", "temperature=0.5")
    res = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "bad"), "--loss-option", "kto.beta=0.5"])
    assert res.exit_code != 0 and "'kto' is not a loss of this run" in res.output


def test_a_value_the_trainer_sets_for_every_term_drops_the_scoped_ones():
    # CREAM sets label_smoothing each round: a user's scoped value must not override it for that term
    from pairkit.train._loop import set_for_all

    options = check_options(["robust_dpo", "dpo"], {"beta": 0.1, "robust.label_smoothing": 0.2})
    assert options_for("robust_dpo", options) == {"beta": 0.1, "label_smoothing": 0.2}
    round_options = set_for_all(options, "label_smoothing", 0.4)
    assert options_for("robust_dpo", round_options) == {"beta": 0.1, "label_smoothing": 0.4}
