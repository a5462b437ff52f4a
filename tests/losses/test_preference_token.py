"""Token-level losses against slow references written from the TDPO / SparsePO papers, and identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses import sparse_po_loss, tdpo1_loss, tdpo2_loss, token_kl, token_nll_loss

B, T, V = 4, 7, 11


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    logits = {k: torch.randn(B, T, V, generator=g, dtype=torch.float64) for k in ("pc", "pr", "rc", "rr")}
    toks = {k: torch.randint(0, V, (B, T), generator=g) for k in ("c", "r")}
    lens_c, lens_r = torch.randint(1, T + 1, (B,), generator=g), torch.randint(1, T + 1, (B,), generator=g)
    cm = torch.arange(T)[None] < lens_c[:, None]
    rm = torch.arange(T)[None] < lens_r[:, None]
    return logits, toks, cm, rm


def _gather(logits, toks):
    return F.log_softmax(logits, -1).gather(-1, toks[..., None])[..., 0]


def _slow_kl(ref_logits, logits, b, t):
    p = torch.softmax(ref_logits[b, t], -1)
    q = torch.softmax(logits[b, t], -1)
    return sum(p[v].item() * math.log(p[v].item() / q[v].item()) for v in range(V))


def _slow_tdpo(logits, toks, cm, rm, beta, alpha, tdpo2):
    """Direct transcription of TDPO's loss (Zeng et al. 2024, Eq. for TDPO1/TDPO2) with explicit loops."""
    out = []
    for b in range(B):
        margin, kl_c, kl_r = 0.0, 0.0, 0.0
        for t in range(T):
            if cm[b, t]:
                c = toks["c"][b, t]
                margin += (
                    F.log_softmax(logits["pc"][b, t], -1)[c].item() - F.log_softmax(logits["rc"][b, t], -1)[c].item()
                )
                kl_c += _slow_kl(logits["rc"], logits["pc"], b, t)
            if rm[b, t]:
                r = toks["r"][b, t]
                margin -= (
                    F.log_softmax(logits["pr"][b, t], -1)[r].item() - F.log_softmax(logits["rr"][b, t], -1)[r].item()
                )
                kl_r += _slow_kl(logits["rr"], logits["pr"], b, t)
        z = beta * (margin - (alpha if tdpo2 else 1.0) * (kl_r - kl_c))
        out.append(math.log1p(math.exp(-z)))
    return torch.tensor(out, dtype=torch.float64)


def _args(logits, toks):
    pc, pr = _gather(logits["pc"], toks["c"]), _gather(logits["pr"], toks["r"])
    rc, rr = _gather(logits["rc"], toks["c"]), _gather(logits["rr"], toks["r"])
    return pc, pr, rc, rr, token_kl(logits["rc"], logits["pc"]), token_kl(logits["rr"], logits["pr"])


def test_token_kl_matches_kl_div_and_loops():
    logits, _, _, _ = _batch(0)
    got = token_kl(logits["rc"], logits["pc"])
    want = F.kl_div(F.log_softmax(logits["pc"], -1), F.log_softmax(logits["rc"], -1), log_target=True, reduction="none")
    torch.testing.assert_close(got, want.sum(-1))
    assert got[1, 2].item() == pytest.approx(_slow_kl(logits["rc"], logits["pc"], 1, 2), rel=1e-10)
    assert torch.all(got >= -1e-12)


@pytest.mark.parametrize("seed", [1, 2])
def test_tdpo_matches_slow_reference(seed):
    logits, toks, cm, rm = _batch(seed)
    args = _args(logits, toks)
    kw = {"chosen_mask": cm, "rejected_mask": rm, "reduction": "none"}
    torch.testing.assert_close(
        tdpo1_loss(*args, beta=0.3, **kw), _slow_tdpo(logits, toks, cm, rm, 0.3, 1.0, tdpo2=False)
    )
    torch.testing.assert_close(
        tdpo2_loss(*args, beta=0.3, alpha=0.6, **kw), _slow_tdpo(logits, toks, cm, rm, 0.3, 0.6, tdpo2=True)
    )


def test_tdpo_gradients_and_identities():
    logits, toks, cm, rm = _batch(3)
    pc, pr, rc, rr, kc, kr = _args(logits, toks)
    kc, kr = kc.detach().requires_grad_(True), kr.detach().requires_grad_(True)
    kw = {"chosen_mask": cm, "rejected_mask": rm}
    tdpo2_loss(pc, pr, rc, rr, kc, kr, alpha=0.5, **kw).backward()
    assert kc.grad is None  # TDPO2 stops the chosen-side KL gradient
    assert torch.all(kr.grad[~rm] == 0) and torch.all(kr.grad[rm] > 0)  # descent lowers the rejected KL
    kc2 = kc.detach().requires_grad_(True)
    tdpo1_loss(pc, pr, rc, rr, kc2, kr.detach(), **kw).backward()
    assert torch.all(kc2.grad[cm] < 0) and torch.all(kc2.grad[~cm] == 0)
    # alpha = 1 gives TDPO1's value; zero KL gives DPO on summed log-probs
    torch.testing.assert_close(
        tdpo2_loss(pc, pr, rc, rr, kc, kr, alpha=1.0, **kw), tdpo1_loss(pc, pr, rc, rr, kc, kr, **kw)
    )
    zeros = torch.zeros_like(pc)
    sc = torch.where(cm, pc - rc, 0).sum(-1)
    sr = torch.where(rm, pr - rr, 0).sum(-1)
    dpo = -F.logsigmoid(0.1 * (sc - sr)).mean()
    torch.testing.assert_close(tdpo1_loss(pc, pr, rc, rr, zeros, zeros, **kw), dpo)


def test_tdpo_padding_is_ignored_and_equals_truncation():
    logits, toks, cm, rm = _batch(4)
    args = [a.detach() for a in _args(logits, toks)]
    junk = [
        torch.where(m, a, torch.tensor(float("inf"), dtype=a.dtype)) for a, m in zip(args, (cm, rm, cm, rm, cm, rm))
    ]
    junk = [a.requires_grad_(True) for a in junk]
    kw = {"chosen_mask": cm, "rejected_mask": rm}
    out = tdpo1_loss(*junk, **kw)
    torch.testing.assert_close(out, tdpo1_loss(*args, **kw))
    out.backward()
    for a, m in zip(junk, (cm, rm, cm, rm, cm, rm)):
        assert torch.all(a.grad[~m] == 0) and torch.isfinite(a.grad).all()
    # all masks true up to t: same as slicing the time axis to t
    t = 3
    full = torch.ones(B, T, dtype=torch.bool)
    cut = full.clone()
    cut[:, t:] = False
    torch.testing.assert_close(
        tdpo2_loss(*args, chosen_mask=cut, rejected_mask=cut),
        tdpo2_loss(*[a[:, :t] for a in args], chosen_mask=full[:, :t], rejected_mask=full[:, :t]),
    )


def test_sparse_po_identities_and_learned_mask():
    logits, toks, cm, rm = _batch(5)
    pc, pr, rc, rr, kc, kr = _args(logits, toks)
    ones = torch.ones(B, T, dtype=torch.float64)
    kw = {"chosen_mask": cm, "rejected_mask": rm}
    torch.testing.assert_close(
        sparse_po_loss(
            pc, pr, rc, rr, chosen_token_weights=ones, rejected_token_weights=ones, chosen_kl=kc, rejected_kl=kr, **kw
        ),
        tdpo1_loss(pc, pr, rc, rr, kc, kr, **kw),
    )
    zeros = torch.zeros_like(pc)
    torch.testing.assert_close(
        sparse_po_loss(pc, pr, rc, rr, chosen_token_weights=ones, rejected_token_weights=ones, **kw),
        tdpo1_loss(pc, pr, rc, rr, zeros, zeros, **kw),
    )
    # a 0/1 token mask equals dropping those tokens through the token masks
    g = torch.Generator().manual_seed(0)
    drop_c, drop_r = torch.rand(B, T, generator=g) > 0.5, torch.rand(B, T, generator=g) > 0.5
    torch.testing.assert_close(
        sparse_po_loss(
            pc,
            pr,
            rc,
            rr,
            chosen_token_weights=drop_c.double(),
            rejected_token_weights=drop_r.double(),
            chosen_kl=kc,
            rejected_kl=kr,
            **kw,
        ),
        tdpo1_loss(pc, pr, rc, rr, kc, kr, chosen_mask=cm & drop_c, rejected_mask=rm & drop_r),
    )
    # the slow formula with soft weights
    wc, wr = torch.rand(B, T, generator=g, dtype=torch.float64), torch.rand(B, T, generator=g, dtype=torch.float64)
    want = []
    for b in range(B):
        u = sum(wc[b, t] * (pc[b, t] - rc[b, t]) for t in range(T) if cm[b, t]) - sum(
            wr[b, t] * (pr[b, t] - rr[b, t]) for t in range(T) if rm[b, t]
        )
        d = sum(wr[b, t] * kr[b, t] for t in range(T) if rm[b, t]) - sum(
            wc[b, t] * kc[b, t] for t in range(T) if cm[b, t]
        )
        want.append(-F.logsigmoid(0.2 * (u - d)))
    got = sparse_po_loss(
        pc,
        pr,
        rc,
        rr,
        chosen_token_weights=wc,
        rejected_token_weights=wr,
        chosen_kl=kc,
        rejected_kl=kr,
        beta=0.2,
        reduction="none",
        **kw,
    )
    torch.testing.assert_close(got, torch.stack(want))
    # a learned mask head receives gradient through the loss
    head = torch.zeros(B, T, dtype=torch.float64, requires_grad=True)
    sparse_po_loss(
        pc, pr, rc, rr, chosen_token_weights=torch.sigmoid(head), rejected_token_weights=ones, **kw
    ).backward()
    assert torch.any(head.grad != 0) and torch.all(head.grad[~cm] == 0)
    with pytest.raises(InputError, match="both"):
        sparse_po_loss(pc, pr, rc, rr, chosen_token_weights=ones, rejected_token_weights=ones, chosen_kl=kc)


def test_token_nll_reference_and_masks():
    g = torch.Generator().manual_seed(6)
    logps = -torch.rand(3, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    per = token_nll_loss(logps, mask=mask, reduction="none")
    torch.testing.assert_close(per, torch.stack([-logps[0, :3].mean(), -logps[1].mean(), torch.tensor(0.0)]))
    torch.testing.assert_close(token_nll_loss(logps, mask=mask), per[:2].mean())  # the empty row is left out
    torch.testing.assert_close(
        token_nll_loss(logps, mask=mask, length_normalize=False, reduction="sum"), -logps[mask].sum()
    )
    torch.testing.assert_close(
        token_nll_loss(logps[:, :3], mask=mask[:, :3]), token_nll_loss(logps, mask=mask & (torch.arange(5) < 3))
    )
    with pytest.raises(InputError, match="bool"):
        token_nll_loss(logps, mask=mask.float())
    with pytest.raises(InputError, match=r"\[batch, time\]"):
        token_nll_loss(logps[0])
