"""Contrastive / metric-learning losses: vs pytorch-metric-learning, vs slow references, chunked == dense."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses._chunked import row_logsumexp

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning import miners, reducers  # noqa: E402

F64 = dict(rtol=1e-9, atol=1e-10)  # pml in float64: same maths, different summation order
F32 = dict(rtol=2e-5, atol=2e-6)  # float32


def _batch(n=24, d=6, classes=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return x, labels


def _value_and_grad(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x, *args, **kwargs)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


# ------------------------------------------------------------------------------------ vs pml (labelled)

MEAN = reducers.MeanReducer
PML_CASES = {
    # pairkit call, pml loss (pml's default reducer replaced where it averages only the non-zero terms)
    "ntxent": (lambda x, y: L.ntxent(x, y), lambda: pml_losses.NTXentLoss()),
    "ntxent_t": (lambda x, y: L.ntxent(x, y, temperature=0.5), lambda: pml_losses.NTXentLoss(temperature=0.5)),
    "supcon": (lambda x, y: L.supcon(x, y), lambda: pml_losses.SupConLoss()),
    "supcon_t": (lambda x, y: L.supcon(x, y, temperature=0.3), lambda: pml_losses.SupConLoss(temperature=0.3)),
    "triplet_all": (
        lambda x, y: L.triplet_margin(x, y, margin=0.2),
        lambda: pml_losses.TripletMarginLoss(margin=0.2, reducer=MEAN()),
    ),
    "triplet_swap_smooth": (
        lambda x, y: L.triplet_margin(x, y, swap=True, smooth=True),
        lambda: pml_losses.TripletMarginLoss(swap=True, smooth_loss=True, reducer=MEAN()),
    ),
    "contrastive": (
        lambda x, y: L.contrastive(x, y, pos_margin=0.2, neg_margin=1.1),
        lambda: pml_losses.ContrastiveLoss(pos_margin=0.2, neg_margin=1.1, reducer=MEAN()),
    ),
    "multi_similarity": (lambda x, y: L.multi_similarity(x, y), lambda: pml_losses.MultiSimilarityLoss()),
    "multi_similarity_p": (
        lambda x, y: L.multi_similarity(x, y, alpha=3.0, beta=20.0, base=0.3),
        lambda: pml_losses.MultiSimilarityLoss(alpha=3.0, beta=20.0, base=0.3),
    ),
    "circle": (lambda x, y: L.circle(x, y), lambda: pml_losses.CircleLoss()),
    "circle_p": (lambda x, y: L.circle(x, y, m=0.25, gamma=30.0), lambda: pml_losses.CircleLoss(m=0.25, gamma=30)),
    "tcm": (lambda x, y: L.threshold_consistent_margin(x, y), lambda: pml_losses.ThresholdConsistentMarginLoss()),
    "tcm_p": (
        lambda x, y: L.threshold_consistent_margin(x, y, lambda_plus=0.5, margin_plus=0.3, margin_minus=-0.1),
        lambda: pml_losses.ThresholdConsistentMarginLoss(lambda_plus=0.5, margin_plus=0.3, margin_minus=-0.1),
    ),
}


@pytest.mark.parametrize("case", sorted(PML_CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pml_value_and_gradient(case, seed):
    ours_fn, pml_factory = PML_CASES[case]
    x, y = _batch(seed=seed)
    ours, g_ours = _value_and_grad(ours_fn, x, y)
    theirs, g_theirs = _value_and_grad(pml_factory(), x, y)
    assert float(ours) > 0  # the comparison is not between two zeros
    torch.testing.assert_close(ours, theirs, **F64)
    torch.testing.assert_close(g_ours, g_theirs, **F64)


@pytest.mark.parametrize("case", ["ntxent", "supcon", "triplet_all", "circle", "multi_similarity"])
def test_matches_pml_float32(case):
    ours_fn, pml_factory = PML_CASES[case]
    x, y = _batch(n=64, d=16, classes=8, seed=3, dtype=torch.float32)
    torch.testing.assert_close(ours_fn(x, y), pml_factory()(x, y), **F32)


@pytest.mark.parametrize("seed", range(3))
def test_batch_hard_triplet_matches_pml_miner(seed):
    x, y = _batch(seed=seed)
    ours, g_ours = _value_and_grad(lambda e, lab: L.triplet_margin(e, lab, mining="batch_hard", margin=0.1), x, y)
    miner = miners.BatchHardMiner()
    pml_loss = pml_losses.TripletMarginLoss(margin=0.1, reducer=MEAN())
    theirs, g_theirs = _value_and_grad(lambda e, lab: pml_loss(e, lab, miner(e, lab)), x, y)
    assert float(ours) > 0
    torch.testing.assert_close(ours, theirs, **F64)
    torch.testing.assert_close(g_ours, g_theirs, **F64)


def test_simclr_two_views_matches_pml_and_cross_entropy():
    n = 16
    gen = torch.Generator().manual_seed(5)
    views = torch.randn(2 * n, 8, generator=gen, dtype=torch.float64)
    labels = torch.arange(n).repeat(2)
    ours = L.ntxent(views, labels, temperature=0.2)
    torch.testing.assert_close(ours, pml_losses.NTXentLoss(temperature=0.2)(views, labels), **F64)
    # SimCLR written out: softmax over the 2n - 1 other rows, the partner view as target.
    z = F.normalize(views, dim=1)
    logits = (z @ z.T / 0.2).fill_diagonal_(float("-inf"))
    partner = torch.arange(2 * n).roll(n)
    torch.testing.assert_close(ours, F.cross_entropy(logits, partner), **F64)
    # One positive per anchor: the per-anchor values average to the pair mean.
    torch.testing.assert_close(L.ntxent(views, labels, temperature=0.2, reduction="none").mean(), ours, **F64)


def test_supcon_slow_reference_and_anchor_without_positive():
    x, y = _batch(n=10, classes=4, seed=2)
    y[0] = 99  # anchor 0 has no positive: left out of the mean
    z = F.normalize(x, dim=1)
    s = z @ z.T / 0.1
    per = []
    for i in range(10):
        pos = [p for p in range(10) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = torch.logsumexp(torch.stack([s[i, a] for a in range(10) if a != i]), 0)
        per.append(-sum(s[i, p] - denom for p in pos) / len(pos))
    expected = torch.stack(per).mean()
    torch.testing.assert_close(L.supcon(x, y), expected, **F64)
    none = L.supcon(x, y, reduction="none")
    assert none.shape == (10,) and none[0] == 0


# ------------------------------------------------------------------------------ chunked == dense (exact)

CHUNKED = {
    "ntxent": lambda x, y, **kw: L.ntxent(x, y, temperature=0.3, **kw),
    "supcon": lambda x, y, **kw: L.supcon(x, y, temperature=0.3, **kw),
    "infonce": lambda x, y, **kw: L.infonce(x[:20], x[20:], temperature=0.3, **kw),
    "clip": lambda x, y, **kw: L.clip(x[:20], x[20:40], temperature=0.3, **kw),
}


@pytest.mark.parametrize("name", sorted(CHUNKED))
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_dense_float64(name, chunk):
    x, y = _batch(n=45, d=5, classes=6, seed=11)
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    fn = CHUNKED[name]

    def run(**kw):
        xx = x.clone().requires_grad_(True)
        value = fn(xx, y, **kw) if name != "ntxent" else L.ntxent(xx, y, temperature=temperature, **kw)
        return (value.detach(), *torch.autograd.grad(value, [xx, temperature], allow_unused=True))

    dense, chunked = run(), run(chunk_size=chunk)
    torch.testing.assert_close(chunked[0], dense[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked[1], dense[1], rtol=1e-10, atol=1e-12)
    if name == "ntxent":  # gradient with respect to a learnable temperature
        torch.testing.assert_close(chunked[2], dense[2], rtol=1e-10, atol=1e-12)


def test_chunked_equals_dense_float32():
    x, y = _batch(n=300, d=32, classes=150, seed=4, dtype=torch.float32)
    dense = _value_and_grad(lambda e, lab: L.ntxent(e, lab), x, y)
    chunked = _value_and_grad(lambda e, lab: L.ntxent(e, lab, chunk_size=37), x, y)
    # float32: the chunked and dense log-sum-exps sum in a different order (stated tolerance 1e-5)
    torch.testing.assert_close(chunked[0], dense[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked[1], dense[1], rtol=1e-5, atol=1e-6)


def test_row_logsumexp_gradcheck_and_empty_rows():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(9, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    s = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    rl, cl = torch.tensor([0, 1, 1, 2, 3, 0, 1]), torch.tensor([0, 1, 2, 2, 3, 0, 1, 1, 3])

    def f(q, k, s):
        return row_logsumexp(q, k, s, row_labels=rl, col_labels=cl, self_offset=1, chunk_size=3)

    assert torch.autograd.gradcheck(f, (q, k, s))
    # every column shares row 0's label -> -inf with zero gradient, never NaN
    out = row_logsumexp(q, k, s, row_labels=torch.zeros(7), col_labels=torch.zeros(9), chunk_size=2)
    assert torch.isneginf(out).all()
    out.clamp_min(-1.0).sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("chunk", [None, 2])
def test_ntxent_without_negatives_is_zero_not_nan(chunk):
    x, _ = _batch(n=6)
    value, grad = _value_and_grad(lambda e, lab: L.ntxent(e, lab, chunk_size=chunk), x, torch.zeros(6))
    assert float(value) == 0.0 and torch.isfinite(grad).all()


# ------------------------------------------------------------------------- paired views vs references


def _paired(n=12, m=None, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=gen, dtype=torch.float64)
    k = torch.randn(m or n, d, generator=gen, dtype=torch.float64)
    return q, k


def test_infonce_and_clip_vs_cross_entropy():
    q, k = _paired(m=12)
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.1
    target = torch.arange(12)
    torch.testing.assert_close(L.infonce(q, k, temperature=0.1), F.cross_entropy(logits, target), **F64)
    clip_ref = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(L.clip(q, k, temperature=0.1), clip_ref, **F64)
    # extra keys act as negatives (MoCo queue)
    q2, k2 = _paired(n=5, m=9, seed=1)
    logits2 = F.normalize(q2, dim=1) @ F.normalize(k2, dim=1).T / 0.1
    torch.testing.assert_close(L.infonce(q2, k2, temperature=0.1), F.cross_entropy(logits2, torch.arange(5)))


def test_siglip_vs_loop():
    q, k = _paired(n=6)
    t, b = torch.tensor(7.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    total = 0.0
    for i in range(6):
        for j in range(6):
            y = 1.0 if i == j else -1.0
            total -= math.log(1 / (1 + math.exp(-y * (float(t) * float(qn[i] @ kn[j]) + float(b)))))
    torch.testing.assert_close(L.siglip(q, k, logit_scale=t, logit_bias=b), torch.tensor(total / 6, dtype=q.dtype))
    qq, tt, bb = q.clone().requires_grad_(), t.clone().requires_grad_(), b.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s, c: L.siglip(a, k, logit_scale=s, logit_bias=c), (qq, tt, bb))


def test_cwcl_reference_and_identity_weights():
    q, k = _paired(n=8)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logp = torch.log_softmax(qn @ kn.T / 0.2, dim=1)
    w = 0.5 * (1 + kn @ kn.T)
    expected = torch.stack([-(w[i] * logp[i]).sum() / w[i].sum() for i in range(8)]).mean()
    torch.testing.assert_close(L.cwcl(q, k, temperature=0.2), expected, **F64)
    eye = torch.eye(8, dtype=torch.float64)
    torch.testing.assert_close(L.cwcl(q, k, temperature=0.2, similarity=eye), L.infonce(q, k, temperature=0.2))


def test_decoupled_softmax_reference_and_single_positive():
    q, k = _paired(n=6, m=10)
    gen = torch.Generator().manual_seed(3)
    targets = torch.rand(6, 10, generator=gen) < 0.3
    targets[0] = False  # a query without positives contributes nothing
    targets[1, :4] = True
    s = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.1
    terms = []
    for i in range(6):
        negs = [j for j in range(10) if not targets[i, j]]
        for p in range(10):
            if targets[i, p]:
                denom = torch.logsumexp(torch.stack([s[i, p]] + [s[i, j] for j in negs]), 0)
                terms.append(denom - s[i, p])
    torch.testing.assert_close(L.decoupled_softmax(q, k, targets, temperature=0.1), torch.stack(terms).mean())
    # one positive each: the ordinary InfoNCE softmax
    q2, k2 = _paired(n=7)
    torch.testing.assert_close(L.decoupled_softmax(q2, k2, torch.eye(7, dtype=torch.bool)), L.infonce(q2, k2))


def test_isogclr_reference_and_temperature_gradient():
    q, k = _paired(n=7)
    tau = torch.linspace(0.1, 0.7, 7, dtype=torch.float64)
    s = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T
    expected = []
    for i in range(7):
        inner = sum(math.exp((float(s[i, j]) - float(s[i, i])) / float(tau[i])) for j in range(7) if j != i) / 6
        expected.append(float(tau[i]) * (math.log(inner) + 0.5))
    got = L.isogclr(q, k, temperature=tau, rho=0.5, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    t = tau.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda tt: L.isogclr(q, k, temperature=tt, rho=0.5), (t,))


def test_alignment_uniformity_vs_wang_isola():
    q, k = _paired(n=9)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    torch.testing.assert_close(L.alignment(q, k), (qn - kn).norm(dim=1).pow(2).mean())
    torch.testing.assert_close(L.alignment(q, k, alpha=1.0), (qn - kn).norm(dim=1).mean())
    torch.testing.assert_close(L.uniformity(q, t=2.0), torch.pdist(qn).pow(2).mul(-2.0).exp().mean().log())


# ------------------------------------------------------------------------------------------- gradcheck

# --------------------------------------------------------------------------------- hypothesis properties

LABELLED = {
    "ntxent": lambda x, y, **kw: L.ntxent(x, y, **kw),
    "ntxent_chunked": lambda x, y, **kw: L.ntxent(x, y, chunk_size=3, **kw),
    "supcon": lambda x, y, **kw: L.supcon(x, y, **kw),
    "supcon_chunked": lambda x, y, **kw: L.supcon(x, y, chunk_size=3, **kw),
    "triplet_margin": lambda x, y, **kw: L.triplet_margin(x, y, **kw),
    "triplet_hard": lambda x, y, **kw: L.triplet_margin(x, y, mining="batch_hard", **kw),
    "contrastive": lambda x, y, **kw: L.contrastive(x, y, **kw),
    "multi_similarity": lambda x, y, **kw: L.multi_similarity(x, y, **kw),
    "circle": lambda x, y, **kw: L.circle(x, y, **kw),
    "tcm": lambda x, y, **kw: L.threshold_consistent_margin(x, y, **kw),
}
PAIRED = {
    "infonce": lambda q, k: L.infonce(q, k),
    "clip": lambda q, k: L.clip(q, k),
    "clip_chunked": lambda q, k: L.clip(q, k, chunk_size=2),
    "siglip": lambda q, k: L.siglip(q, k),
    "cwcl": lambda q, k: L.cwcl(q, k),
    "isogclr": lambda q, k: L.isogclr(q, k, temperature=0.3, rho=1.0),
    "alignment": lambda q, k: L.alignment(q, k),
    "decoupled_softmax": lambda q, k: L.decoupled_softmax(q, k, torch.eye(q.shape[0], dtype=torch.bool)),
}
PROP = settings(max_examples=15, deadline=None)


@st.composite
def labelled_batches(draw, min_n=2):
    n = draw(st.integers(min_n, 9))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    perm = torch.randperm(n, generator=gen)
    return x, labels, perm


@PROP
@given(batch=labelled_batches(), name=st.sampled_from(sorted(LABELLED)))
def test_labelled_permutation_invariant(batch, name):
    x, y, perm = batch
    fn = LABELLED[name]
    torch.testing.assert_close(fn(x[perm], y[perm]), fn(x, y), rtol=1e-9, atol=1e-9)
    # per-anchor values move with their rows
    torch.testing.assert_close(
        fn(x[perm], y[perm], reduction="none"), fn(x, y, reduction="none")[perm], rtol=1e-9, atol=1e-9
    )


@PROP
@given(batch=labelled_batches(), name=st.sampled_from(sorted(LABELLED)), log_c=st.floats(-8, 8))
def test_labelled_scale_invariant(batch, name, log_c):
    x, y, _ = batch
    fn = LABELLED[name]
    torch.testing.assert_close(fn(x * math.exp(log_c), y), fn(x, y), rtol=1e-8, atol=1e-9)


@PROP
@given(batch=labelled_batches(), name=st.sampled_from(sorted(PAIRED)), log_c=st.floats(-8, 8))
def test_paired_permutation_and_scale_invariant(batch, name, log_c):
    x, _, perm = batch
    gen = torch.Generator().manual_seed(x.shape[0])
    k = x + torch.randn(x.shape, generator=gen, dtype=x.dtype)
    fn = PAIRED[name]
    torch.testing.assert_close(fn(x[perm], k[perm]), fn(x, k), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fn(x * math.exp(log_c), k), fn(x, k), rtol=1e-8, atol=1e-9)


# ------------------------------------------------------------------------------------- bad input, names


def test_bad_input_raises_input_error():
    x, y = _batch(n=6)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(InputError, match="row 2, column 1"):
        L.ntxent(bad, y)
    with pytest.raises(InputError, match="labels must have shape"):
        L.supcon(x, y[:4])
    with pytest.raises(InputError, match="temperature"):
        L.infonce(x, x, temperature=0.0)
    with pytest.raises(InputError, match="mining"):
        L.triplet_margin(x, y, mining="semihard")
    with pytest.raises(InputError, match="chunk_size"):
        L.clip(x, x, chunk_size=0)
    with pytest.raises(InputError, match="same number of rows"):
        L.clip(x, x[:3])
    with pytest.raises(InputError, match="embedding dimension"):
        L.siglip(x, x[:, :2])
    with pytest.raises(InputError, match="targets"):
        L.decoupled_softmax(x, x, torch.ones(2, 2))
    with pytest.raises(InputError, match="sums to 0"):
        L.cwcl(x, x, similarity=torch.zeros(6, 6))
    with pytest.raises(InputError, match="reduction"):
        L.ntxent(x, y, reduction="avg")


@pytest.mark.parametrize(
    "alias,fn",
    [
        ("ntxent_loss", L.ntxent),
        ("sup_con_loss", L.supcon),
        ("triplet_margin_loss", L.triplet_margin),
        ("contrastive_loss", L.contrastive),
        ("multi_similarity_loss", L.multi_similarity),
        ("circle_loss", L.circle),
        ("threshold_consistent_margin_loss", L.threshold_consistent_margin),
        ("tcm", L.threshold_consistent_margin),
        ("dexml", L.decoupled_softmax),
        ("clip", L.clip),
        ("siglip", L.siglip),
    ],
)
def test_registry_names(alias, fn):
    assert L.get(alias) is fn
    assert L.family_of(alias) == "contrastive"


def test_supcon_mean_is_the_weighted_mean_over_anchors():
    # (weights == none * w and none-summed == sum for every loss: the registry-driven matrix, test_behaviour.py)
    x, y = _batch(n=12, classes=3, seed=9)
    w = torch.rand(12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(L.supcon(x, y, weights=w), (L.supcon(x, y, reduction="none") * w).sum() / w.sum())


# --------------------------------------------------------------------------------------- real inputs


@functools.lru_cache(maxsize=1)
def _ltr_documents(limit=64):
    """Feature vectors and relevance grades of the first documents of the shared learning-to-rank sample."""
    from tests.shared_data import shared_path

    rows, grades = [], []
    with open(shared_path("ltr", "rank.test")) as fh:
        for line in fh:
            label, *feats = line.split()
            vec = torch.zeros(300, dtype=torch.float64)
            for item in feats:
                idx, val = item.split(":")
                vec[int(idx) - 1] = float(val)
            rows.append(vec)
            grades.append(int(label))
            if len(rows) == limit:
                break
    x = torch.stack(rows)
    return (x - x.mean(0)) / x.std(0).clamp_min(1e-6), torch.tensor(grades)


@pytest.mark.parametrize(
    "case", ["ntxent", "supcon", "triplet_all", "contrastive", "multi_similarity", "circle", "tcm"]
)
def test_matches_pml_on_real_features(case):
    # 300 standardised document features as embeddings, relevance grades (0-4) as classes
    x, y = _ltr_documents()
    ours_fn, pml_factory = PML_CASES[case]
    ours, g_ours = _value_and_grad(ours_fn, x, y)
    theirs, g_theirs = _value_and_grad(pml_factory(), x, y)
    torch.testing.assert_close(ours, theirs, **F64)
    torch.testing.assert_close(g_ours, g_theirs, **F64)


@pytest.mark.parametrize("swap", [False, True])
def test_all_triplets_in_anchor_chunks_equal_pml_and_one_chunk(monkeypatch, swap):
    """mining="all" sums each anchor's triplets in chunks (no N^3 tensor): several chunks == pml == one chunk."""
    import sys

    C = sys.modules["pairkit.losses.contrastive"]  # the package's attribute of that name is the loss function
    x, y = _batch(n=30, d=5, classes=4, seed=3)
    w = torch.rand(30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fn = lambda e, lab, **kw: L.triplet_margin(e, lab, margin=0.2, swap=swap, **kw)  # noqa: E731

    def summed(r):
        return _value_and_grad(lambda e, lab: fn(e, lab, reduction=r, weights=w).sum(), x, y)

    one = {r: summed(r) for r in ("mean", "sum", "none")}
    plain = _value_and_grad(fn, x, y)
    monkeypatch.setattr(C, "DENSE_ELEMENTS", 30 * 30 * 7)  # 7 anchors a chunk: 5 chunks, the last short
    pml = pml_losses.TripletMarginLoss(margin=0.2, swap=swap, reducer=MEAN())
    for got, want in zip(_value_and_grad(fn, x, y), _value_and_grad(pml, x, y)):
        torch.testing.assert_close(got, want, **F64)
    for got, want in zip(_value_and_grad(fn, x, y), plain):
        torch.testing.assert_close(got, want, **F64)
    for r, (v, g) in one.items():
        chunked = summed(r)
        torch.testing.assert_close(chunked[0], v, **F64)
        torch.testing.assert_close(chunked[1], g, **F64)
