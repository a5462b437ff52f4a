"""Proto-triplet, ICNN, energy confusion and Metrix against slow references written from the papers' equations
(and the authors' code where the paper is silent), closed forms and pytorch-metric-learning where it has a limit."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _data(n=12, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.arange(n) % classes
    return x, y


def _grads(fn, x):
    (g,) = torch.autograd.grad(fn(x), x)
    return g


# ------------------------------------------------------------------------------------------------ proto-triplet


def _proto_triplet_ref(x, y, protos, margin):
    out = []
    for i in range(x.shape[0]):
        dists = [torch.linalg.vector_norm(x[i] - protos[c]) for c in range(protos.shape[0])]
        neg = min(dists[c] for c in range(protos.shape[0]) if c != int(y[i]))
        out.append(torch.clamp(dists[int(y[i])] - neg + margin, min=0))
    return torch.stack(out)


def test_proto_triplet_matches_reference_values_and_gradients():
    x, y = _data()
    protos = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    got = L.proto_triplet(x, y, protos, margin=0.7, reduction="none")
    want = _proto_triplet_ref(x, y, protos, 0.7)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g_got = torch.autograd.grad(got.sum(), (x, protos))
    g_want = torch.autograd.grad(want.sum(), (x, protos))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(L.proto_triplet(x, y, protos, margin=0.7), want.mean())


def test_proto_triplet_closed_forms():
    protos = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[0.0, 1.0], [10.0, 0.0]])
    y = torch.tensor([0, 1])
    assert float(L.proto_triplet(x, y, protos, margin=0.5)) == 0.0  # far inside their own prototypes
    # a query at the wrong prototype: d+ = 10, d- = 0
    assert float(L.proto_triplet(x[1:], torch.tensor([0]), protos, margin=0.5)) == pytest.approx(10.5)
    with pytest.raises(InputError, match="row 1 has label 2"):
        L.proto_triplet(x, torch.tensor([0, 2]), protos)


# ---------------------------------------------------------------------------------------------------------- ICNN


def _icnn_ref(x, y, k=4, ipc=None):
    """Per sample, in plain Python over sorted neighbour lists (the formulas of the docstring)."""
    n = x.shape[0]
    gamma_one = k + 2 >= n
    k = n - 2 if gamma_one else k
    big_k = min(k + 1 if ipc is None else max(ipc, k), n - 1)
    rows = []
    for i in range(n):
        ds = [(float(torch.linalg.vector_norm(x[i] - x[j])), j) for j in range(n) if j != i]
        order = [j for _, j in sorted(ds)][:big_k]
        d = [torch.linalg.vector_norm(x[i] - x[j]) for j in order]
        same = [bool(y[j] == y[i]) for j in order]
        rows.append((d, same))
    sc_terms, dc_rows, dc_all = [], [], []
    for d, same in rows:
        others = [dj for dj, s in zip(d, same) if not s]
        if others:
            nu = min(others)
            ratio = [dj / nu for dj in d[:k]]
            peak = max(ratio, key=float)
            ratio = [r / peak for r in ratio] if float(peak) > 1 else ratio
        else:
            ratio = [torch.zeros((), dtype=x.dtype)] * k
        s_vals = [r for r, s in zip(ratio, same[:k]) if s]
        if s_vals:
            sc_terms.append(sum(s_vals) / len(s_vals))
        o_vals = [dj for dj, s in zip(d[:k], same[:k]) if not s]
        if o_vals:
            dc_rows.append(o_vals)
            dc_all.extend(o_vals)
    lam_sc = 1 - (sum(sc_terms) / len(sc_terms) if sc_terms else 0.0)
    if dc_all:
        top = max(dc_all, key=float)
        lam_dc = sum(sum(v) / top / len(v) for v in dc_rows) / len(dc_rows)
    else:
        lam_dc = 1.0
    gamma = 1.0 if gamma_one else sum(sum(s[:k]) / k for _, s in rows) / n
    return -torch.log(((lam_sc + lam_dc) / 2 + gamma) / 2)


@pytest.mark.parametrize("n, k, ipc", [(12, 4, None), (20, 3, 6), (5, 4, None), (9, 2, 2)])
def test_icnn_matches_reference_values_and_gradients(n, k, ipc):
    x, y = _data(n=n, seed=n)
    got = L.icnn_loss(x, y, k=k, ipc=ipc)
    want = _icnn_ref(x, y, k, ipc)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        _grads(lambda z: L.icnn_loss(z, y, k=k, ipc=ipc), x), _grads(lambda z: _icnn_ref(z, y, k, ipc), x),
        rtol=1e-8, atol=1e-12,
    )


def test_icnn_is_zero_for_separated_classes_and_positive_otherwise():
    centres = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(30) % 3
    x = centres[y] + 0.1 * torch.randn(30, 2, generator=g, dtype=torch.float64)
    assert float(L.icnn_loss(x, y)) == pytest.approx(0.0, abs=1e-12)  # every neighbour of its own class
    mixed = torch.randn(30, 2, generator=g, dtype=torch.float64)
    assert float(L.icnn_loss(mixed, y)) > 0.1
    assert float(L.icnn_loss(x[:2], y[:2])) == 0.0


# ----------------------------------------------------------------------------------------------- energy confusion


def _energy_ref(x, y, normalize=False):
    z = torch.nn.functional.normalize(x, dim=1) if normalize else x
    per_anchor, count = [], 0
    for i in range(z.shape[0]):
        terms = [0.5 * ((z[i] - z[j]) ** 2).sum() for j in range(z.shape[0]) if y[j] != y[i]]
        count += len(terms)
        per_anchor.append(sum(terms) if terms else torch.zeros((), dtype=z.dtype))
    per_anchor = torch.stack(per_anchor)
    return per_anchor, per_anchor.sum() / count


def _energy_release(x, y):
    """The authors' Caffe layer (chenbinghui1/ECAML, src/energy_confusion.cpp) with every negative pair taken:
    E = sum over unordered negative pairs of 0.5 ||x_i - x_j||^2 / (number of them), and the backward pass's
    gradient (their diff_ accumulation, scaled by 1 / E)."""
    n = x.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if y[i] != y[j]]
    energy, diff = 0.0, torch.zeros_like(x)
    for i, j in pairs:
        d = x[i] - x[j]
        energy = energy + 0.5 * float(d @ d) / len(pairs)
        diff[i] += d / len(pairs)
        diff[j] -= d / len(pairs)
    return energy, diff / energy


@pytest.mark.parametrize("normalize", [True, False])
def test_energy_confusion_matches_pairwise_reference(normalize):
    x, y = _data(n=11)
    none_ref, mean_ref = _energy_ref(x, y, normalize)
    torch.testing.assert_close(L.energy_confusion(x, y, normalize=normalize, reduction="none"), none_ref)
    torch.testing.assert_close(L.energy_confusion(x, y, normalize=normalize), mean_ref)
    torch.testing.assert_close(
        _grads(lambda z: L.energy_confusion(z, y, normalize=normalize), x),
        _grads(lambda z: _energy_ref(z, y, normalize)[1], x),
    )


def test_energy_confusion_matches_the_authors_layer_value_and_backward():
    x, y = _data(n=10, classes=4)
    energy, grad = _energy_release(x.detach(), y)
    assert float(L.energy_confusion(x.detach(), y)) == pytest.approx(energy, rel=1e-12)
    assert float(L.energy_confusion(x.detach(), y, log=True)) == pytest.approx(math.log(energy), rel=1e-12)
    torch.testing.assert_close(_grads(lambda z: L.energy_confusion(z, y, log=True), x), grad)
    with pytest.raises(InputError, match="reduction"):
        L.energy_confusion(x, y, log=True, reduction="sum")


def test_energy_confusion_closed_forms():
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert float(L.energy_confusion(x, y)) == pytest.approx((4.0 + 9.0) / 2 / 2)  # 0.5 * mean squared distance
    assert float(L.energy_confusion(x, y, normalize=True)) == pytest.approx(2.0)  # antipodal unit classes
    assert float(L.energy_confusion(x, torch.tensor([0, 0, 0]))) == 0.0  # no negative pair
    assert float(L.energy_confusion(x, torch.tensor([0, 0, 0]), log=True)) == 0.0  # not log 0
    w = torch.tensor([1.0, 0.0, 0.0])
    assert float(L.energy_confusion(x, y, weights=w)) == pytest.approx(2.0)  # only the anchor at (1, 0)


# ---------------------------------------------------------------------------------------------------------- Metrix


def _metrix_ref(x, y, lam, base, pos_margin=0.0, neg_margin=1.0, alpha=2.0, beta=50.0, offset=0.5):
    z = torch.nn.functional.normalize(x, dim=1)
    out = []
    for a in range(z.shape[0]):
        pos = [j for j in range(z.shape[0]) if j != a and y[j] == y[a]]
        neg = [j for j in range(z.shape[0]) if y[j] != y[a]]
        if not pos or not neg:
            continue
        p = min(pos, key=lambda j: float(z[a] @ z[j]))
        q = max(neg, key=lambda j: float(z[a] @ z[j]))
        v = lam * z[p] + (1 - lam) * z[q]
        v = v / torch.linalg.vector_norm(v)
        if base == "contrastive":
            d = torch.linalg.vector_norm(z[a] - v)
            out.append(lam * torch.clamp(d - pos_margin, min=0) + (1 - lam) * torch.clamp(neg_margin - d, min=0))
        else:
            s = z[a] @ v
            out.append(
                torch.log(1 + lam * torch.exp(-alpha * (s - offset))) / alpha
                + torch.log(1 + (1 - lam) * torch.exp(beta * (s - offset))) / beta
            )
    return torch.stack(out).mean()


@pytest.mark.parametrize("base", ["contrastive", "multi_similarity"])
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_metrix_matches_reference(base, lam):
    x, y = _data(n=10, classes=3, seed=4)
    got = L.metrix(x, y, lam=lam, base=base)
    torch.testing.assert_close(got, _metrix_ref(x, y, lam, base))
    torch.testing.assert_close(
        _grads(lambda z: L.metrix(z, y, lam=lam, base=base), x), _grads(lambda z: _metrix_ref(z, y, lam, base), x)
    )


def test_metrix_at_lam_one_is_pml_contrastive_on_the_hardest_positives():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.reducers import MeanReducer

    x, y = _data(n=10, classes=3, seed=5)
    z = torch.nn.functional.normalize(x, dim=1).detach()
    sims = z @ z.T
    same = y[:, None] == y[None, :]
    eye = torch.eye(10, dtype=torch.bool)
    anchors = torch.arange(10)
    hardest = sims.masked_fill(~same | eye, float("inf")).argmin(1)
    empty = torch.zeros(0, dtype=torch.long)
    pml = pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=1.0, reducer=MeanReducer())
    want = pml(x, y, indices_tuple=(anchors, hardest, empty, empty))
    got = L.metrix(x, y, lam=1.0, pos_margin=0.1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    g_want = _grads(lambda e: pml(e, y, indices_tuple=(anchors, hardest, empty, empty)), x)
    g_got = _grads(lambda e: L.metrix(e, y, lam=1.0, pos_margin=0.1), x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=1e-6)


def test_metrix_given_pairs_and_reductions():
    x, y = _data(n=6, classes=2, seed=6)
    pairs = (torch.tensor([0, 0, 1]), torch.tensor([2, 4, 3]), torch.tensor([1, 3, 0]))
    none = L.metrix(x, y, pairs=pairs, lam=0.4, reduction="none")
    assert none.shape == (6,) and float(none[2:].abs().sum()) == 0.0
    torch.testing.assert_close(none.sum(), L.metrix(x, y, pairs=pairs, lam=0.4, reduction="sum"))
    assert math.isfinite(float(L.metrix(x, y, pairs=pairs, lam=0.4, base="multi_similarity")))


# ------------------------------------------------------------------------------------------ Metrix, input level


def _metrix_input_ref(inputs, y, encoder, lam, base, pairs, pos_margin=0.0, neg_margin=1.0, alpha=2.0, beta=50.0,
                      offset=0.5):  # fmt: skip
    """Mix the inputs of each (anchor, positive, negative), embed the mixture, and score it against the anchor."""
    per_anchor = {}
    for a, p, q in zip(*(i.tolist() for i in pairs)):
        za = torch.nn.functional.normalize(encoder(inputs[a][None]), dim=1)[0]
        v = torch.nn.functional.normalize(encoder((lam * inputs[p] + (1 - lam) * inputs[q])[None]), dim=1)[0]
        if base == "contrastive":
            d = torch.linalg.vector_norm(za - v)
            term = lam * torch.clamp(d - pos_margin, min=0) + (1 - lam) * torch.clamp(neg_margin - d, min=0)
            per_anchor.setdefault(a, []).append(term)
        else:
            per_anchor.setdefault(a, []).append(za @ v)
    if base == "contrastive":
        return torch.stack([t for terms in per_anchor.values() for t in terms]).mean()
    out = []
    for sims in per_anchor.values():
        s = torch.stack(sims)
        out.append(torch.log(1 + (lam * torch.exp(-alpha * (s - offset))).sum()) / alpha
                   + torch.log(1 + ((1 - lam) * torch.exp(beta * (s - offset))).sum()) / beta)  # fmt: skip
    return torch.stack(out).mean()


@pytest.mark.parametrize("base", ["contrastive", "multi_similarity"])
def test_metrix_input_mixup_matches_a_loop_over_mixed_inputs_values_and_encoder_gradients(base):
    g = torch.Generator().manual_seed(7)
    inputs = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.arange(9) % 3
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4)).double()
    pairs = (torch.tensor([0, 0, 1, 4]), torch.tensor([3, 6, 4, 1]), torch.tensor([1, 2, 0, 5]))
    mixed, used = L.metrix_mix_inputs(inputs, y, lam=0.3, pairs=pairs)
    assert all(torch.equal(u, p) for u, p in zip(used, pairs)) and mixed.shape == (4, 5)
    got = L.metrix(encoder(inputs), y, lam=0.3, base=base, pairs=used, mixed_embeddings=encoder(mixed))
    want = _metrix_input_ref(inputs, y, encoder, 0.3, base, pairs)
    torch.testing.assert_close(got, want)
    g_got = torch.autograd.grad(got, list(encoder.parameters()))
    g_want = torch.autograd.grad(want, list(encoder.parameters()))
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b)


def test_metrix_input_mixup_with_an_identity_encoder_on_the_sphere_is_the_embedding_mixup():
    x, y = _data(n=10, classes=3, seed=8)
    x = torch.nn.functional.normalize(x.detach(), dim=1).requires_grad_(True)
    mixed, pairs = L.metrix_mix_inputs(x, y, lam=0.6, embeddings=x)  # the hardest pairs, as metrix picks them
    torch.testing.assert_close(L.metrix(x, y, lam=0.6, pairs=pairs, mixed_embeddings=mixed), L.metrix(x, y, lam=0.6))


def test_metrix_input_mixup_refusals():
    x, y = _data(n=6, classes=2)
    pairs = (torch.tensor([0]), torch.tensor([2]), torch.tensor([1]))
    with pytest.raises(InputError, match="needs the pairs"):
        L.metrix(x, y, mixed_embeddings=x[:1])
    with pytest.raises(InputError, match="one row per mixture"):
        L.metrix(x, y, pairs=pairs, mixed_embeddings=x[:2])
    with pytest.raises(InputError, match="columns"):
        L.metrix(x, y, pairs=pairs, mixed_embeddings=x[:1, :3])
    with pytest.raises(InputError, match="token ids"):
        L.metrix_mix_inputs(torch.arange(6), y, lam=0.5, pairs=pairs)
    with pytest.raises(InputError, match="lam"):
        L.metrix_mix_inputs(x, y, lam=1.5, pairs=pairs)
    with pytest.raises(InputError, match="give pairs"):
        L.metrix_mix_inputs(x, y, lam=0.5)
