"""MEOW, CACR, DBPM and GroCo against slow per-row references from the papers' equations, pytorch-metric-learning's
NT-Xent (DBPM without history) and closed forms."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402

F = torch.nn.functional


def _views(n=8, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    k = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    return q, k


def _grads(fn, *xs):
    return torch.autograd.grad(fn(*xs), xs)


def _close_with_grads(fn, ref, *xs, **tol):
    torch.testing.assert_close(fn(*xs), ref(*xs), **tol)
    for a, b in zip(_grads(fn, *xs), _grads(ref, *xs)):
        torch.testing.assert_close(a, b, **tol)


# -------------------------------------------------------------------------------------------------------- MEOW


def _meow_ref(q, k, w, tau):
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    out = []
    for i in range(q.shape[0]):
        pos = torch.exp(q[i] @ k[i] / tau)
        neg = sum(w[i][j] * torch.exp(q[i] @ k[j] / tau) for j in range(q.shape[0]) if j != i)
        out.append(-torch.log(pos / neg))
    return torch.stack(out).mean()


def test_meow_cluster_weights_match_reference_and_explicit_weights():
    q, k = _views()
    clusters = torch.tensor([[0, 1], [0, 0], [1, 1], [1, 0], [2, 1], [0, 1], [2, 2], [1, 1]])
    w = [[sum(int(clusters[i, r] != clusters[j, r]) for r in range(2)) for j in range(8)] for i in range(8)]
    _close_with_grads(lambda a, b: L.meow(a, b, clusters=clusters, temperature=0.3),
                      lambda a, b: _meow_ref(a, b, w, 0.3), q, k)
    dense = torch.tensor(w, dtype=torch.float64)
    _close_with_grads(lambda a, b: L.meow(a, b, negative_weights=dense, temperature=0.3),
                      lambda a, b: _meow_ref(a, b, w, 0.3), q, k)
    chunked = L.meow(q, k, clusters=clusters, temperature=0.3, chunk_size=3)
    torch.testing.assert_close(chunked, L.meow(q, k, clusters=clusters, temperature=0.3))


def _proto_nce_release(z, clusters, prototypes, densities):
    """ProtoNCE as the authors' code (jianxiangyu/MEOW, code/module/contrast.py): per clustering, the mean over
    nodes of -log(exp(z . c_own / phi_own) / (N * mean_k exp(z . c_k / phi_k))), averaged over clusterings."""
    z = F.normalize(z, dim=1)
    total = 0.0
    for r, (protos, phi) in enumerate(zip(prototypes, densities)):
        protos = F.normalize(protos, dim=1)
        terms = []
        for i in range(z.shape[0]):
            own = int(clusters[i, r])
            pos = torch.exp(z[i] @ protos[own] / phi[own])
            neg = sum(torch.exp(z[i] @ protos[k] / phi[k]) for k in range(protos.shape[0])) / protos.shape[0]
            terms.append(-torch.log(pos / (neg * z.shape[0])))
        total = total + torch.stack(terms).mean()
    return total / len(prototypes)


def test_meow_prototype_term_matches_the_authors_proto_nce():
    q, k = _views()
    g = torch.Generator().manual_seed(11)
    clusters = torch.tensor([[0, 1], [0, 0], [1, 1], [1, 0], [2, 1], [0, 1], [2, 2], [1, 3]])
    protos = [torch.randn(3, q.shape[1], generator=g, dtype=torch.float64),
              torch.randn(4, q.shape[1], generator=g, dtype=torch.float64)]  # fmt: skip
    phis = [torch.tensor(v, dtype=torch.float64) for v in ([0.2, 0.3, 0.25], [0.3, 0.1, 0.4, 0.2])]
    w = [[sum(int(clusters[i, r] != clusters[j, r]) for r in range(2)) for j in range(8)] for i in range(8)]
    offset = (math.log(8 / 3) + math.log(8 / 4)) / 2  # the release's N / K_r factor: a constant per clustering
    _close_with_grads(
        lambda a, b: L.meow(a, b, clusters=clusters, prototypes=protos, concentrations=phis, temperature=0.3,
                            proto_weight=0.5),
        lambda a, b: _meow_ref(a, b, w, 0.3) + 0.5 * (_proto_nce_release(a, clusters, protos, phis) - offset),
        q, k,
    )  # fmt: skip
    # default concentrations: the temperature for every prototype; one clustering as a plain tensor
    one = clusters[:, :1]
    tau = [torch.full((3,), 0.3, dtype=torch.float64)]
    _close_with_grads(
        lambda a, b: L.meow(a, b, clusters=one, prototypes=protos[0], temperature=0.3),
        lambda a, b: (_meow_ref(a, b, [[int(one[i, 0] != one[j, 0]) for j in range(8)] for i in range(8)], 0.3)
                      + _proto_nce_release(a, one, protos[:1], tau) - math.log(8 / 3)),
        q, k,
    )  # fmt: skip
    # proto_weight 0 is MEOW without the term; the term moves the query only
    torch.testing.assert_close(L.meow(q, k, clusters=clusters, prototypes=protos, proto_weight=0.0),
                               L.meow(q, k, clusters=clusters))  # fmt: skip
    with pytest.raises(InputError, match="need clusters"):
        L.meow(q, k, prototypes=protos[0])
    with pytest.raises(InputError, match="one each"):
        L.meow(q, k, clusters=clusters, prototypes=protos[0])
    with pytest.raises(InputError, match=r"clusters\[:, 1\] must index the 3"):
        L.meow(q, k, clusters=clusters, prototypes=[protos[0], protos[0]])
    with pytest.raises(InputError, match="positive finite"):
        L.meow(q, k, clusters=clusters, prototypes=protos, concentrations=[phis[0], -phis[1]])


def test_meow_limits():
    q, k = _views(seed=1)
    ones = [[1.0] * 8 for _ in range(8)]
    # no weights: every negative weight 1 (decoupled contrastive loss); one cluster for everything: no negatives
    _close_with_grads(lambda a, b: L.meow(a, b, temperature=0.2), lambda a, b: _meow_ref(a, b, ones, 0.2), q, k)
    assert float(L.meow(q, k, clusters=torch.zeros(8, dtype=torch.long))) == 0.0
    separated = L.meow(q, k, clusters=torch.arange(8), temperature=0.2)
    torch.testing.assert_close(separated, L.meow(q, k, temperature=0.2))
    # twice the same clustering doubles every weight: the loss grows by log 2
    twice = L.meow(q, k, clusters=torch.arange(8)[:, None].repeat(1, 2), temperature=0.2)
    torch.testing.assert_close(twice, separated + math.log(2))
    with pytest.raises(InputError, match="not both"):
        L.meow(q, k, clusters=torch.arange(8), negative_weights=torch.ones(8, 8))
    with pytest.raises(InputError, match="clusters must have shape"):
        L.meow(q, k, clusters=torch.arange(7))


# -------------------------------------------------------------------------------------------------------- CACR


def _cacr_ref(x, y, t_pos, t_neg):
    z = F.normalize(x, dim=1)
    out = []
    for i in range(z.shape[0]):
        pos = [((z[i] - z[j]) ** 2).sum() for j in range(z.shape[0]) if j != i and y[j] == y[i]]
        neg = [((z[i] - z[j]) ** 2).sum() for j in range(z.shape[0]) if y[j] != y[i]]
        term = torch.zeros((), dtype=x.dtype)
        if pos:
            c = torch.stack(pos)
            term = term + (torch.softmax(t_pos * c, 0) * c).sum()
        if neg:
            c = torch.stack(neg)
            term = term - (torch.softmax(-t_neg * c, 0) * c).sum()
        out.append(term)
    return torch.stack(out).mean()


@pytest.mark.parametrize("t_pos, t_neg", [(1.0, 1.0), (0.0, 0.0), (3.0, 0.5)])
def test_cacr_matches_reference(t_pos, t_neg):
    x, _ = _views(n=10, seed=2)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    _close_with_grads(lambda e: L.cacr(e, y, t_pos=t_pos, t_neg=t_neg), lambda e: _cacr_ref(e, y, t_pos, t_neg), x)


def test_cacr_uniform_weights_are_mean_positive_minus_mean_negative_cost():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    # row 0: positive cost 2, negative cost 4; row 1: 2 and 2; row 2: no positive, negatives 4 and 2 -> mean 3
    want = torch.tensor([2 - 4.0, 2 - 2.0, -3.0])
    torch.testing.assert_close(L.cacr(x, y, t_pos=0.0, t_neg=0.0, reduction="none"), want)


# -------------------------------------------------------------------------------------------------------- DBPM


def test_dbpm_without_history_is_pml_ntxent():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.reducers import MeanReducer

    q, k = _views(seed=3)
    labels = torch.arange(8).repeat(2)
    pml = pml_losses.NTXentLoss(temperature=0.2, reducer=MeanReducer())
    _close_with_grads(lambda a, b: L.dbpm(a, b), lambda a, b: pml(torch.cat([a, b]), labels), q, k,
                      rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(L.dbpm(q, k, chunk_size=3), L.dbpm(q, k))


def test_dbpm_reweights_only_the_bad_pairs_by_the_normal_density():
    q, k = _views(seed=4)
    plain = L.dbpm(q, k, reduction="none").detach()
    history = torch.tensor([0.0, 4.9, 2.0, 2.1, 1.9, 10.0, 2.0, 2.0], dtype=torch.float64)
    mu, sd = 2.0, 1.0
    got = L.dbpm(q, k, pair_history=history, history_mean=mu, history_std=sd, reduction="none")
    for i in range(8):
        bad = history[i] <= mu - 2 * sd or history[i] >= mu + 3 * sd
        w = math.exp(-0.5 * ((float(plain[i]) - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)) if bad else 1.0
        assert float(got[i]) == pytest.approx(w * float(plain[i]), rel=1e-12)
    assert {i for i in range(8) if float(got[i]) != float(plain[i])} == {0, 5}
    with pytest.raises(InputError, match="history_mean and history_std"):
        L.dbpm(q, k, pair_history=history)


def test_dbpm_statistics_weights_later_epochs_more():
    h = torch.tensor([[1.0, 2.0, 3.0], [3.0, 3.0, 3.0]], dtype=torch.float64)
    summary, mu, sd = L.dbpm_statistics(h, max_epochs=6)
    want = torch.tensor([(1 * 1 + 2 * 2 + 3 * 3) / 6 / 3, (3 + 6 + 9) / 6 / 3], dtype=torch.float64)
    torch.testing.assert_close(summary, want)
    assert mu == pytest.approx(float(want.mean())) and sd == pytest.approx(float(want.std(unbiased=False)))
    with pytest.raises(InputError, match="max_epochs"):
        L.dbpm_statistics(h, max_epochs=2)


# ------------------------------------------------------------------------------------------------------- GroCo


def _neural_sort_ref(s, tau):
    n = s.shape[0]
    a = (s[:, None] - s[None, :]).abs().sum(1)
    rows = [torch.softmax(((n + 1 - 2 * r) * s - a) / tau, 0) for r in range(1, n + 1)]
    return torch.stack(rows)


def _groco_ref(x, y, m, tau, stop_grad=False):
    z = F.normalize(x, dim=1)
    other_side = z.detach() if stop_grad else z
    out = []
    for i in range(z.shape[0]):
        pos = [j for j in range(z.shape[0]) if j != i and y[j] == y[i]]
        others = [j for j in range(z.shape[0]) if y[j] != y[i]]
        neg = sorted(others, key=lambda j: -float(z[i] @ z[j]))[:m]
        if not pos or not neg:
            continue
        group = pos + neg
        p_hat = _neural_sort_ref(torch.stack([z[i] @ other_side[j] for j in group]), tau)
        k = len(pos)
        terms = [torch.log(p_hat[r, :k].sum()) if r < k else torch.log(p_hat[r, k:].sum()) for r in range(len(group))]
        out.append(-torch.stack(terms).mean())
    return torch.stack(out).mean()


@pytest.mark.parametrize("m, tau, stop", [(3, 0.5, False), (8, 0.1, False), (1, 1.0, False), (3, 0.5, True)])
def test_groco_matches_reference(m, tau, stop):
    x, _ = _views(n=11, seed=5)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4])
    _close_with_grads(lambda e: L.groco(e, y, num_negatives=m, temperature=tau, stop_grad=stop),
                      lambda e: _groco_ref(e, y, m, tau, stop), x)


def test_groco_is_near_zero_for_ordered_groups_and_large_for_reversed_ones():
    angle = torch.tensor([0.0, 0.05, 3.0, 3.05])
    x = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    assert float(L.groco(x, torch.tensor([0, 0, 1, 1]), temperature=0.01)) < 1e-6
    assert float(L.groco(x, torch.tensor([0, 1, 0, 1]), temperature=0.01)) > 10


def test_groco_anchor_chunks_equal_one_pass(monkeypatch):
    import pairkit.losses.contrastive_weighted as W

    x, _ = _views(n=40, seed=6)
    y = torch.arange(40) % 2  # two classes: groups of 27 (19 or 20 positives + 8 negatives)
    full = L.groco(x, y, num_negatives=8)
    (g_full,) = torch.autograd.grad(full, x)
    monkeypatch.setattr(W, "_GROUP_ELEMENTS", 3 * 27 * 27)  # chunks of 3 anchors, recomputed in the backward pass
    chunked = L.groco(x, y, num_negatives=8)
    (g_chunked,) = torch.autograd.grad(chunked, x)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(g_chunked, g_full)
