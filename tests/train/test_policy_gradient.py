"""The online methods' objectives against TRL's trainers on the same tensors, and against slow references."""

import itertools
import math
import types
from collections import defaultdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pairkit.train.policy_gradient import (  # noqa: E402
    cream_consistency,
    group_advantages,
    grpo_loss,
    p3o_loss,
    rloo_loss,
    score_function_kl,
    sppo_loss,
    superhf_loss,
    win_rates,
)


def _tensors(seed=0, b=6, t=5):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logps + 0.4 * torch.randn(b, t, generator=g, dtype=torch.float64)  # ratios well outside 1 ± 0.2
    ref = logps + 0.3 * torch.randn(b, t, generator=g, dtype=torch.float64)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    mask[4, 1:] = False
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    return logps, old, ref, mask, adv


def _trl_stub(trainer_cls, logps, **attrs):
    """A bare TRL trainer object whose model forward returns ``logps`` (TRL's loss code runs unchanged)."""
    stub = types.SimpleNamespace(
        aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", use_vllm=False, model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)), args=types.SimpleNamespace(delta=None,
        use_bias_correction_kl=False), accelerator=types.SimpleNamespace(
            gather=lambda x: x, reduce=lambda x, reduction="sum": x, num_processes=1, sync_gradients=True),
        **attrs,
    )  # fmt: skip
    stub._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    return stub


def _inputs(mask, **extra):
    b, t = mask.shape
    return {"prompt_ids": torch.zeros(b, 2, dtype=torch.long), "prompt_mask": torch.ones(b, 2, dtype=torch.long),
            "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask.long(), **extra}  # fmt: skip


@pytest.mark.parametrize(("loss_type", "aggregation"), [("grpo", "sequence"), ("bnpo", "token"),
                                                         ("dr_grpo", "constant")])  # fmt: skip
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_equals_trl(loss_type, aggregation, beta):
    from trl.trainer.grpo_trainer import GRPOTrainer

    logps, old, ref, mask, adv = _tensors()
    stub = _trl_stub(GRPOTrainer, logps, loss_type=loss_type, beta=beta, epsilon_low=0.2, epsilon_high=0.28,
                     max_completion_length=5)  # fmt: skip
    inputs = _inputs(mask, advantages=adv, old_per_token_logps=old, ref_per_token_logps=ref)
    theirs = GRPOTrainer._compute_loss(stub, None, inputs)
    mine = grpo_loss(logps, old, adv, mask, ref_logps=ref, beta=beta, epsilon_low=0.2, epsilon_high=0.28,
                     aggregation=aggregation, max_length=5).mean()  # fmt: skip
    torch.testing.assert_close(mine, theirs.to(mine.dtype), rtol=1e-12, atol=1e-12)


def test_rloo_loss_equals_trl():
    from trl.trainer.rloo_trainer import RLOOTrainer

    logps, old, _, mask, adv = _tensors(seed=1)
    old_seq = (old * mask).sum(-1)
    stub = _trl_stub(RLOOTrainer, logps, epsilon_low=0.2, epsilon_high=0.2)
    theirs = RLOOTrainer._compute_loss(stub, None, _inputs(mask, advantages=adv, old_logps=old_seq))
    torch.testing.assert_close(rloo_loss(logps, old, adv, mask).mean(), theirs, rtol=1e-12, atol=1e-12)


def test_group_advantages_match_loops():
    r = torch.tensor([[1.0, 0.0, 2.0, 0.5], [3.0, 3.0, 1.0, -1.0]], dtype=torch.float64)
    grpo = group_advantages(r)
    loo = group_advantages(r, baseline="leave_one_out", scale="none")
    for i, j in itertools.product(range(2), range(4)):
        row = r[i].tolist()
        mean = sum(row) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / 3)
        assert grpo[i, j].item() == pytest.approx((row[j] - mean) / (std + 1e-4), rel=1e-12)
        others = [x for n, x in enumerate(row) if n != j]
        assert loo[i, j].item() == pytest.approx(row[j] - sum(others) / 3, rel=1e-12)
    # RLOO advantages sum to zero in each group; GRPO's too
    torch.testing.assert_close(loo.sum(1), torch.zeros(2, dtype=torch.float64))
    normed = group_advantages(r, baseline="leave_one_out", scale="batch")
    assert normed.mean().item() == pytest.approx(0, abs=1e-12)


def test_p3o_gradient_on_policy_is_half_the_reward_gap_times_the_score_difference():
    logps = torch.tensor([-3.0, -2.0, -4.0], dtype=torch.float64, requires_grad=True)
    rewards = torch.tensor([1.0, 0.2, -0.5], dtype=torch.float64)
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2]])
    for clipping in ("joint", "separate"):
        (g,) = torch.autograd.grad(p3o_loss(logps, logps.detach(), rewards, pairs, clipping=clipping).sum(), logps)
        # d/dlogp of -sum (r_i - r_j)/2 (logp_i - logp_j): each sample's reward gap to the others, halved
        expected = -torch.tensor([(0.8 + 1.5) / 2, (-0.8 + 0.7) / 2, (-1.5 - 0.7) / 2], dtype=torch.float64)
        torch.testing.assert_close(g, expected)
    # far off-policy the joint ratio is clipped: no gradient through the clipped side
    off = p3o_loss(logps, logps.detach() - torch.tensor([1.0, 0.0, 0.0]), rewards, pairs[:1])
    (g,) = torch.autograd.grad(off.sum(), logps)
    assert g.abs().sum() == 0 and off.item() == pytest.approx(-1.2 * 0.4)


def test_win_rates_count_self_as_a_tie_and_average_repeats():
    decisions = [(0, 0, 1, 1.0, None), (0, 0, 2, 0.5, None), (0, 1, 2, 0.0, None), (0, 1, 2, 1.0, None)]
    p = win_rates(decisions, 1, 3)
    # sample 0: (0.5 + 1 + 0.5)/3; sample 1: (0 + 0.5 + 0.5)/3; sample 2: (0.5 + 0.5 + 0.5)/3
    np.testing.assert_allclose(p, [[2 / 3, 1 / 3, 0.5]])


def test_sppo_hard_limit_is_trls_sppo_hard():
    from pairkit import losses

    g = torch.Generator().manual_seed(3)
    pc, pr, rc, rr = (-torch.rand(5, generator=g, dtype=torch.float64) * 4 for _ in range(4))
    mine = sppo_loss(pc, rc, torch.ones(5), beta=0.3) + sppo_loss(pr, rr, torch.zeros(5), beta=0.3)
    ref = losses.get("sppo_hard")(pc, pr, rc, rr, beta=0.3, reduction="none")
    torch.testing.assert_close(mine, ref)


def test_superhf_is_token_mean_nll_plus_beta_token_mean_kl():
    logps = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]])
    kl = torch.tensor([[0.1, 0.3, 7.0], [0.2, 0.2, 0.2]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = superhf_loss(logps, kl, mask, beta=0.5)
    torch.testing.assert_close(out, torch.tensor([1.5 + 0.5 * 0.2, 0.5 + 0.5 * 0.2]))


def test_score_function_kl_gradient_is_the_exact_kl_gradient_on_a_categorical():
    theta = torch.tensor([0.3, -1.0, 0.8, 0.0], dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.0, 0.5, -0.2, 0.1], dtype=torch.float64), 0)
    logp = torch.log_softmax(theta, 0)
    exact = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta)[0]
    # the expectation over y ~ pi, written as the pi-weighted sum over all four outcomes
    logp = torch.log_softmax(theta, 0)
    surrogate = (logp.exp().detach() * score_function_kl(logp, ref)).sum()
    torch.testing.assert_close(torch.autograd.grad(surrogate, theta)[0], exact)


def test_cream_consistency_is_kendall_tau_rescaled():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    a[1, :2] = 0.0  # ties: tau-b (scipy's default)
    b[2, 1:3] = 1.0
    expected = np.mean([(kendalltau(x, y).statistic + 1) / 2 for x, y in zip(a, b)])
    assert cream_consistency(a, b) == pytest.approx(expected, rel=1e-12)
    assert cream_consistency(a, a) == 1.0 and cream_consistency(a, -a) == 0.0
    assert cream_consistency(np.zeros((1, 3)), a[:1, :3]) == 0.5  # one ranking ties everything: tau = 0
