"""Consistency regularisers against slow references from the papers (FixMatch: Sohn et al. 2020, eq. 4)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _ref_fixmatch(weak, strong, tau, T=1.0):
    total = 0.0
    for w, s in zip(weak, strong):
        q = F.softmax(w / T, 0)
        if float(q.max()) >= tau:
            total += float(-F.log_softmax(s, 0)[int(q.argmax())])
    return total / len(weak)  # over all unlabelled examples, confident or not


@pytest.mark.parametrize("tau, T", [(0.95, 1.0), (0.6, 1.0), (0.6, 0.5), (0.0, 1.0)])
def test_fixmatch_matches_reference(tau, T):
    g = torch.Generator().manual_seed(0)
    weak = torch.randn(12, 4, generator=g, dtype=torch.float64) * 3
    strong = torch.randn(12, 4, generator=g, dtype=torch.float64)
    assert float(L.fixmatch_loss(weak, strong, threshold=tau, temperature=T)) == pytest.approx(
        _ref_fixmatch(weak, strong, tau, T), rel=1e-10
    )


def test_fixmatch_gradient_flows_to_the_strong_view_only():
    g = torch.Generator().manual_seed(1)
    weak = (torch.randn(6, 3, generator=g) * 5).requires_grad_(True)
    strong = torch.randn(6, 3, generator=g).requires_grad_(True)
    loss = L.fixmatch_loss(weak, strong, threshold=0.5)
    gw, gs = torch.autograd.grad(loss, (weak, strong), allow_unused=True)
    assert gw is None and gs.abs().sum() > 0
    with pytest.raises(InputError, match="threshold must be"):
        L.fixmatch_loss(weak, strong, threshold=1.5)


# ------------------------------------------------------------------------------------------- ShrinkMatch


def _authors_shrink(logits_s, logits_w, p_cutoff):
    # consistency_loss_with_shrink of the ShrinkMatch code (STL-10/SVHN), its shrink term, per example
    max_probs = torch.softmax(logits_w, -1).max(-1).values
    sorted_w, idx = logits_w.topk(logits_w.shape[-1], dim=-1, sorted=True)
    sorted_s = logits_s.gather(-1, idx)
    B, C = logits_w.shape
    out = torch.zeros(B, dtype=logits_s.dtype)
    for b in range(B):
        if max_probs[b] >= p_cutoff:
            continue
        for c in range(2, C):
            sub_conf = torch.cat([sorted_w[b, :1], sorted_w[b, c:]]).softmax(0)[0]
            if sub_conf >= p_cutoff or c == C - 1:
                sub_s = torch.cat([sorted_s[b, :1], sorted_s[b, c:]])
                out[b] = -torch.log_softmax(sub_s, 0)[0] * max_probs[b] * (sub_conf >= p_cutoff)
                break
    return out


@pytest.mark.parametrize("tau", [0.95, 0.6, 0.3])
def test_shrinkmatch_matches_authors_loop(tau):
    g = torch.Generator().manual_seed(2)
    weak = torch.randn(40, 7, generator=g, dtype=torch.float64) * 2
    strong = torch.randn(40, 7, generator=g, dtype=torch.float64)
    ref = _authors_shrink(strong, weak, tau)
    assert (ref > 0).any()
    torch.testing.assert_close(L.shrinkmatch_loss(weak, strong, threshold=tau, reduction="none"), ref)
    torch.testing.assert_close(L.shrinkmatch_loss(weak, strong, threshold=tau), ref.mean())


def test_shrinkmatch_certain_ratio_runs_as_the_authors_over_batches():
    # reweighting principle 2: the term times the running fraction of certain rows, r_1 = the first batch's
    # fraction, r_t = 0.999 r_{t-1} + 0.001 (fraction of batch t), by a plain loop in float64
    g = torch.Generator().manual_seed(8)
    tau, r = 0.6, None
    for _ in range(3):
        weak = torch.randn(30, 6, generator=g, dtype=torch.float64) * 2.5
        strong = torch.randn(30, 6, generator=g, dtype=torch.float64)
        certain = sum(1.0 for b in range(30) if max(torch.softmax(weak[b], 0).tolist()) >= tau) / 30
        r = certain if r is None else 0.999 * r + 0.001 * certain
        assert 0 < r < 1
        ref = _authors_shrink(strong, weak, tau).sum() / 30 * r
        torch.testing.assert_close(L.shrinkmatch_loss(weak, strong, threshold=tau, certain_ratio=r), ref)


def test_shrinkmatch_with_two_classes_is_zero():
    z = torch.randn(4, 2, dtype=torch.float64)
    assert float(L.shrinkmatch_loss(z, z)) == 0.0


# ------------------------------------------------------------------------------------------- SimMatchV2


def _unit(x):
    return F.normalize(x, dim=-1)


def _graph_batch(seed=3, n=6, m=10, d=5, k=4):
    g = torch.Generator().manual_seed(seed)
    es, ew, bank = (_unit(torch.randn(r, d, generator=g, dtype=torch.float64)) for r in (n, n, m))
    pw = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * 2, -1)
    bank_p = torch.softmax(torch.randn(m, k, generator=g, dtype=torch.float64), -1)
    return es, ew, bank, pw, bank_p


def test_simmatchv2_edge_and_node_edge_losses_match_authors_formulas():
    es, ew, bank, pw, bank_p = _graph_batch()
    t = 0.1
    relation_k = F.softmax(ew @ bank.T / t, dim=-1)
    relation_q = F.softmax(es @ bank.T / t, dim=1)
    loss_ee = torch.sum(-relation_q.log() * relation_k, dim=1).mean()
    loss_ne = torch.sum(-(relation_q @ bank_p).log() * pw, dim=1).mean()
    torch.testing.assert_close(L.simmatchv2_edge_edge_loss(es, ew, bank), loss_ee)
    torch.testing.assert_close(L.simmatchv2_node_edge_loss(es, pw, bank, bank_p), loss_ne)


def test_simmatchv2_node_node_loss_masks_by_weak_confidence():
    es, ew, bank, pw, bank_p = _graph_batch()
    logits = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    target = torch.softmax(torch.randn(6, 4, dtype=torch.float64), -1)
    mask = (pw.max(-1).values >= 0.5).double()
    ref = (torch.sum(-F.log_softmax(logits, dim=1) * target, dim=1) * mask).mean()
    torch.testing.assert_close(L.simmatchv2_node_node_loss(logits, target, pw, threshold=0.5), ref)


def test_simmatchv2_pseudo_labels_match_the_authors_inverse():
    g = torch.Generator().manual_seed(5)
    ew = _unit(torch.randn(3, 5, generator=g, dtype=torch.float64))
    pw = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), -1)
    lab = _unit(torch.randn(9, 5, generator=g, dtype=torch.float64))
    onehot = F.one_hot(torch.randint(0, 4, (9,), generator=g), 4).double()
    topn, t, alpha = 4, 0.1, 0.1
    idx = torch.topk(ew @ lab.T, k=topn, dim=-1)[1].flatten()
    feats = torch.cat([ew.unsqueeze(1), lab[idx].reshape(3, topn, -1)], dim=1)
    labels = torch.cat([pw.unsqueeze(1), onehot[idx].reshape(3, topn, -1)], dim=1)
    masks = torch.eye(topn + 1, dtype=torch.float64)
    A = F.softmax(feats @ feats.transpose(-2, -1) / t - masks * 1e9, dim=-1)
    A = (1 - alpha) * torch.inverse(masks - alpha * A)
    ref = (A @ labels)[:, 0]
    got = L.simmatchv2_pseudo_labels(ew, pw, lab, onehot, top_n=topn, temperature=t, alpha=alpha)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got.sum(-1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(InputError, match="alpha"):
        L.simmatchv2_pseudo_labels(ew, pw, lab, onehot, alpha=1.0)


# ---------------------------------------------------------------------------------- relation consistency


def _ref_relation_eq5(e, r):
    """Jeon et al. (2023), eq. (5), written out: M = x·xᵀ (dot products, diagonal kept), row-wise softmax,
    KL(Softmax(M_src) ‖ Softmax(M_trg)) summed over each row, averaged over the rows."""
    n = len(e)
    m_src = [[float(r[i] @ r[j]) for j in range(n)] for i in range(n)]
    m_trg = [[float(e[i] @ e[j]) for j in range(n)] for i in range(n)]
    rows = []
    for i in range(n):
        z_src = sum(math.exp(v) for v in m_src[i])
        z_trg = sum(math.exp(v) for v in m_trg[i])
        p = [math.exp(v) / z_src for v in m_src[i]]
        q = [math.exp(v) / z_trg for v in m_trg[i]]
        rows.append(sum(pj * math.log(pj / qj) for pj, qj in zip(p, q)))
    return rows


def test_relation_consistency_default_is_eq5_of_the_paper():
    g = torch.Generator().manual_seed(6)
    e = torch.randn(5, 4, generator=g, dtype=torch.float64)
    r = torch.randn(5, 7, generator=g, dtype=torch.float64)
    ref = torch.tensor(_ref_relation_eq5(e, r), dtype=torch.float64)
    torch.testing.assert_close(L.relation_consistency_loss(e, r, reduction="none"), ref, rtol=1e-10, atol=1e-12)
    assert float(L.relation_consistency_loss(e, r)) == pytest.approx(float(ref.mean()), rel=1e-10)


def test_relation_consistency_old_cosine_reading_is_not_the_default():
    # rows of different norms but the same directions: cosine relations agree (0), dot-product relations do not
    g = torch.Generator().manual_seed(7)
    r = torch.randn(4, 3, generator=g, dtype=torch.float64)
    e = r * torch.tensor([[0.5], [1.0], [2.0], [3.0]], dtype=torch.float64)
    assert float(L.relation_consistency_loss(e, r)) == pytest.approx(sum(_ref_relation_eq5(e, r)) / 4, rel=1e-10)
    assert float(L.relation_consistency_loss(e, r)) > 1e-3
    old = L.relation_consistency_loss(e, r, normalize=True, include_diagonal=False)
    assert float(old) == pytest.approx(0.0, abs=1e-12)
    # the diagonal alone matters too: same directions, cosine relations, self-similarity kept vs dropped
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    with_diag = L.relation_consistency_loss(x, y, normalize=True, reduction="none")
    without = L.relation_consistency_loss(x, y, normalize=True, include_diagonal=False, reduction="none")
    assert not torch.allclose(with_diag, without)


def test_relation_consistency_ojha_options_match_per_row_kl_reference():
    g = torch.Generator().manual_seed(6)
    e = torch.randn(5, 4, generator=g, dtype=torch.float64)
    r = torch.randn(5, 7, generator=g, dtype=torch.float64)
    tau = 0.5
    ref = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        cr = torch.stack([F.cosine_similarity(r[i], r[j], dim=0) for j in others]) / tau
        ce = torch.stack([F.cosine_similarity(e[i], e[j], dim=0) for j in others]) / tau
        p, log_q = F.softmax(cr, 0), F.log_softmax(ce, 0)
        ref.append(float((p * (p.log() - log_q)).sum()))
    got = L.relation_consistency_loss(e, r, temperature=tau, normalize=True, include_diagonal=False,
                                      reduction="none")  # fmt: skip
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))
    # a rotated copy keeps every dot-product relation; a scaled one keeps only the cosine ones
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    assert float(L.relation_consistency_loss(e @ q, e)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.relation_consistency_loss(3.0 * e @ q, e, normalize=True)) == pytest.approx(0.0, abs=1e-12)
    assert float(L.relation_consistency_loss(3.0 * e @ q, e)) > 1e-3
