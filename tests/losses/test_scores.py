"""Losses as score adapters over shared cores: the identities the refactor rests on, in float64."""

import inspect

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _pairs(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [-5 * torch.rand(n, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_dpo_is_bradley_terry_on_implicit_rewards_and_pairwise_logistic_on_two_item_lists(beta):
    pc, pr, rc, rr = _pairs()
    dpo = L.dpo_loss(pc, pr, rc, rr, beta=beta, reduction="none")
    chosen, rejected = L.implicit_rewards(pc, rc, beta=beta), L.implicit_rewards(pr, rr, beta=beta)
    torch.testing.assert_close(dpo, L.bradley_terry_reward_loss(chosen, rejected, reduction="none"))
    lists = torch.stack([chosen, rejected], -1)
    labels = torch.tensor([1.0, 0.0], dtype=torch.float64).expand_as(lists)
    torch.testing.assert_close(dpo, L.pairwise_logistic_loss(lists, labels, reduction="none"))
    # and the K = 2 listwise losses
    pol, ref = torch.stack([pc, pr], -1), torch.stack([rc, rr], -1)
    torch.testing.assert_close(dpo, L.dpo_plackett_luce_loss(pol, ref, labels, beta=beta, reduction="none"))
    torch.testing.assert_close(dpo, L.lipo_loss(pol, ref, labels, beta=beta, lambda_weights=False, reduction="none"))


def test_listwise_preference_losses_are_the_ranking_losses_on_implicit_rewards():
    g = torch.Generator().manual_seed(1)
    pol, ref = (-5 * torch.rand(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    labels = torch.randint(0, 4, (6, 4), generator=g).double()
    s = L.implicit_rewards(pol, ref, beta=0.3)
    torch.testing.assert_close(L.dpo_plackett_luce_loss(pol, ref, labels, beta=0.3), L.listmle_loss(s, labels))
    torch.testing.assert_close(L.plackett_luce_reward_loss(s, labels), L.listmle_loss(s, labels))
    torch.testing.assert_close(
        L.lipo_softmax_loss(pol, ref, labels, beta=0.3, label_temperature=2.0), L.listnet_loss(s, labels / 2.0)
    )


def test_soft_label_cores():
    z = torch.linspace(-30, 30, 13, dtype=torch.float64)
    torch.testing.assert_close(L.sigmoid_binary_cross_entropy(z, 1.0), L.logistic_loss(z))
    p = torch.rand(13, dtype=torch.float64)
    want = -(p * torch.sigmoid(z).log() + (1 - p) * torch.sigmoid(-z).log())
    torch.testing.assert_close(L.sigmoid_binary_cross_entropy(z, p), want)
    pc, pr, rc, rr = _pairs()
    cdpo = L.conservative_dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.2, reduction="none")
    margin = L.implicit_rewards(pc, rc, beta=0.5) - L.implicit_rewards(pr, rr, beta=0.5)
    torch.testing.assert_close(cdpo, L.sigmoid_binary_cross_entropy(margin, 0.8))


def test_f_divergence_scores_are_callables_and_names_resolve_once():
    pc, pr, rc, rr = _pairs()
    by_name = L.dpo_loss(pc, pr, rc, rr, f_divergence="js_divergence")
    torch.testing.assert_close(by_name, L.dpo_loss(pc, pr, rc, rr, f_divergence=L.js_divergence_score))
    alpha = L.f_divergence_score("alpha_divergence", 0.3)
    torch.testing.assert_close(
        L.dpo_loss(pc, pr, rc, rr, f_divergence="alpha_divergence", f_alpha=0.3),
        L.dpo_loss(pc, pr, rc, rr, f_divergence=alpha),
    )
    with pytest.raises(InputError, match="f_divergence must be one of 'reverse_kl'.*got 'chi2'"):
        L.dpo_loss(pc, pr, rc, rr, f_divergence="chi2")


def test_cpo_terms_are_callables():
    pc, pr, *_ = _pairs()
    for name, term in L.CPO_LOSSES.items():
        torch.testing.assert_close(L.cpo_loss(pc, pr, loss_type=name), L.cpo_loss(pc, pr, loss_type=term))


@pytest.mark.parametrize("fn", [L.dpo_loss, L.ipo_loss, L.mmpo_loss, L.sppo_hard_loss, L.rpo_loss, L.irepo_loss])
def test_losses_are_plain_functions_with_real_signatures(fn):
    source = inspect.getsource(fn)
    assert f"def {fn.__name__}(" in source and "policy_chosen_logps: torch.Tensor" in source
    hints = inspect.signature(fn).parameters
    assert hints["beta"].annotation == "float" and hints["reduction"].default == "mean"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a: L.dpo_loss(*a, beta=0.0), r"beta must be a number > 0, got 0.0"),
        (lambda a: L.dpo_loss(*a, beta=float("nan")), r"beta must be a number > 0, got nan"),
        (lambda a: L.ipo_loss(*a, beta=-1), r"beta must be a number > 0, got -1"),
        (lambda a: L.dr_dpo_loss(*a, beta_prime=float("inf")), r"beta_prime must be a number > 0, got inf"),
        (lambda a: L.robust_dpo_loss(*a, label_smoothing=0.5), r"label_smoothing must be a number in \[0, 0.5\)"),
        (lambda a: L.discopop_loss(*a, tau=0), r"tau must be a number > 0, got 0"),
        (lambda a: L.dpo_loss(*a, label_smoothing=0.1), r"dpo_loss has no option 'label_smoothing'"),
        (lambda a: L.mmpo_loss(*a), r"mmpo_loss needs quality_margins"),
    ],
)
def test_option_errors_name_option_range_and_value(call, message):
    with pytest.raises(InputError, match=message):
        call(_pairs())
