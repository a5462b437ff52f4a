"""BMC and RISE against slow per-token references written from the papers' equations (and the authors' weights)."""

import math

import pytest

torch = pytest.importorskip("torch")

from pairkit.errors import InputError  # noqa: E402
from pairkit.losses import bmc_loss, dpo_loss, rise_loss, token_edit_masks  # noqa: E402


def _inputs(seed=0, b=4, t=6):
    g = torch.Generator().manual_seed(seed)
    lp = [-(torch.rand(b, t, generator=g, dtype=torch.float64) * 3 + 0.01) for _ in range(4)]
    lengths = torch.randint(2, t + 1, (2, b), generator=g)
    cm = torch.arange(t)[None] < lengths[0][:, None]
    rm = torch.arange(t)[None] < lengths[1][:, None]
    ce = torch.rand(b, t, generator=g) > 0.5
    re = torch.rand(b, t, generator=g) > 0.5
    return lp, cm, rm, ce, re


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def _bmc_reference(lp, cm, rm, ce, re, beta, delta):
    pc, pr, rc, rr = (x.tolist() for x in lp)
    out = []
    for i in range(len(pc)):
        margin = 0.0
        for t in range(len(pc[i])):
            if cm[i, t]:
                w = 1 + (min(1 / math.exp(pc[i][t]), delta) if ce[i, t] else 0.0)
                margin += w * (pc[i][t] - rc[i][t])
            if rm[i, t]:
                w = 1 + (min(1 / math.exp(pr[i][t]), delta) if re[i, t] else 0.0)
                margin -= w * (pr[i][t] - rr[i][t])
        out.append(-_log_sigmoid(beta * margin))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("delta", [1.0, 2.0, 50.0])
def test_bmc_matches_a_per_token_reference(delta):
    lp, cm, rm, ce, re = _inputs()
    got = bmc_loss(*lp, chosen_edit_mask=ce, rejected_edit_mask=re, chosen_mask=cm, rejected_mask=rm,
                   beta=0.3, delta=delta, reduction="none")  # fmt: skip
    torch.testing.assert_close(got, _bmc_reference(lp, cm, rm, ce, re, 0.3, delta), rtol=1e-12, atol=1e-12)


def test_bmc_weights_are_not_differentiated_and_unedited_pairs_are_dpo():
    lp, cm, rm, _, _ = _inputs(1)
    none = torch.zeros_like(cm)
    got = bmc_loss(*lp, chosen_edit_mask=none, rejected_edit_mask=none, chosen_mask=cm, rejected_mask=rm,
                   reduction="none")  # fmt: skip
    seq = [torch.where(m, x, torch.zeros((), dtype=x.dtype)).sum(-1) for x, m in zip(lp, (cm, rm, cm, rm))]
    torch.testing.assert_close(got, dpo_loss(*seq, reduction="none"))
    leaf = lp[0].clone().requires_grad_(True)
    bmc_loss(leaf, *lp[1:], chosen_mask=cm, rejected_mask=rm, delta=1e6, reduction="none").sum().backward()
    # the gradient of -log σ(β Σ w ρ) in log π_t is -β σ(-βm) w_t with w_t held fixed
    lc = lp[0].detach()
    w = 1 + torch.exp(-lc)
    m = ((w * (lc - lp[2])) * cm).sum(-1) - ((1 + torch.exp(-lp[1])) * (lp[1] - lp[3]) * rm).sum(-1)
    expected = -0.1 * torch.sigmoid(-0.1 * m)[:, None] * w * cm
    torch.testing.assert_close(leaf.grad, expected)


def test_rise_matches_a_reference_and_restricts_the_margin_to_edited_tokens():
    lp, cm, rm, ce, re = _inputs(2)
    pc, pr, rc, rr = lp
    got = rise_loss(*lp, chosen_edit_mask=ce, rejected_edit_mask=re, chosen_mask=cm, rejected_mask=rm,
                    beta=0.5, alpha=0.7, reduction="none")  # fmt: skip
    ref = []
    for i in range(pc.shape[0]):
        m = sum(pc[i, t] - rc[i, t] for t in range(pc.shape[1]) if cm[i, t] and ce[i, t])
        m -= sum(pr[i, t] - rr[i, t] for t in range(pc.shape[1]) if rm[i, t] and re[i, t])
        toks = [pc[i, t].item() for t in range(pc.shape[1]) if cm[i, t]]
        ref.append(-_log_sigmoid(0.5 * float(m)) - 0.7 * sum(toks) / len(toks))
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    # tokens outside the edit masks do not move the loss
    moved = [x.clone() for x in lp]
    moved[0] = torch.where(ce, moved[0], moved[0] - 5.0)
    again = rise_loss(*moved, chosen_edit_mask=ce, rejected_edit_mask=re, chosen_mask=cm, rejected_mask=rm,
                      beta=0.5, reduction="none")  # fmt: skip
    base = rise_loss(*lp, chosen_edit_mask=ce, rejected_edit_mask=re, chosen_mask=cm, rejected_mask=rm,
                     beta=0.5, reduction="none")  # fmt: skip
    torch.testing.assert_close(again, base)


def test_token_edit_masks_mark_replaced_inserted_and_deleted_tokens():
    chosen, rejected = token_edit_masks([[1, 2, 3, 4, 5], [7, 8]], [[1, 2, 9, 4], [7, 8]], ignore={5})
    assert chosen == [[False, False, True, False, False], [False, False]]  # 3 replaced 9; 5 inserted but ignored
    assert rejected == [[False, False, True, False], [False, False]]
    with pytest.raises(InputError, match="pair up"):
        token_edit_masks([[1]], [])
    with pytest.raises(InputError, match="chosen_edit_mask must be a bool"):
        lp, cm, rm, ce, re = _inputs()
        bmc_loss(*lp, chosen_edit_mask=ce.double())
