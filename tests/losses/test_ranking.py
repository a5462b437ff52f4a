"""Tests of pairkit.losses.ranking against allRank-definition references, closed forms and invariances."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

import pairkit.losses as losses
from pairkit.errors import InputError
from pairkit.losses import ranking as R
from tests.losses import allrank_reference as ref
from tests.shared_data import shared_path


def _stds(y):
    return 0.3 + 0.2 * torch.as_tensor(y).abs()


def _fidelity(scores, labels, **kw):
    return R.thurstone_fidelity_loss(scores, labels, stds=_stds(labels), **kw)


def _fidelity_ref(s, y):
    return ref.thurstone_fidelity(s, 0.3 + 0.2 * np.abs(y), y)


def _fidelity_soft(scores, labels, **kw):
    return R.thurstone_fidelity_loss(scores, labels, stds=_stds(labels), label_stds=0.5 * _stds(labels), **kw)


def _fidelity_soft_ref(s, y):
    sd = 0.3 + 0.2 * np.abs(y)
    return ref.thurstone_fidelity(s, sd, y, 0.5 * sd)


def _bce(s, y, top):
    t = y / top
    return float(np.mean(np.logaddexp(0, s) - t * s))


# name: (pairkit loss, reference on one unpadded list, label kind, tolerance, shift-invariant)
CASES = {
    # allRank adds eps=1e-10 inside the log; pairkit computes the exact log-softmax
    "listnet": (R.listnet_loss, partial(ref.listnet, eps=0.0), "graded", 1e-10, True),
    "softmax": (R.softmax_loss, partial(ref.binary_listnet, eps=0.0), "graded", 1e-10, True),
    "poly1_softmax": (
        partial(R.poly1_softmax_loss, epsilon=2.0),
        partial(ref.poly1_softmax, epsilon=2.0),
        "graded",
        1e-10,
        True,
    ),
    "ranknet": (R.pairwise_logistic_loss, ref.ranknet, "graded", 1e-10, True),
    "ranknet_sigma": (
        partial(R.pairwise_logistic_loss, sigma=2.5),
        partial(ref.pairwise, phi=lambda d: np.logaddexp(0, -2.5 * d)),
        "graded",
        1e-10,
        True,
    ),
    "hinge": (R.pairwise_hinge_loss, partial(ref.pairwise, phi=lambda d: max(0.0, 1.0 - d)), "graded", 1e-10, True),
    "soft_zero_one": (
        partial(R.pairwise_soft_zero_one_loss, sigma=2.0),
        partial(ref.pairwise, phi=lambda d: expit(-2.0 * d)),
        "graded",
        1e-10,
        True,
    ),
    "listmle": (R.listmle_loss, ref.listmle, "continuous", 1e-10, True),
    "listmle_top3": (partial(R.listmle_loss, k=3), partial(ref.listmle, k=3), "continuous", 1e-10, True),
    "lambdaloss_pp": (R.lambda_loss, partial(ref.lambdaloss, scheme="ndcgLoss2PP"), "graded", 1e-9, True),
    "lambdaloss_pp_k3": (
        partial(R.lambda_loss, k=3, sigma=0.7),
        partial(ref.lambdaloss, scheme="ndcgLoss2PP", k=3, sigma=0.7),
        "graded",
        1e-9,
        True,
    ),
    "lambdarank": (R.lambdarank_loss, partial(ref.lambdaloss, scheme="lambdaRank"), "graded", 1e-9, True),
    "lambdarank_k3": (
        partial(R.lambdarank_loss, k=3),
        partial(ref.lambdaloss, scheme="lambdaRank", k=3),
        "graded",
        1e-9,
        True,
    ),
    "ndcg_loss2": (R.ndcg_loss2, partial(ref.lambdaloss, scheme="ndcgLoss2"), "graded", 1e-9, True),
    "ndcg_loss2_k3": (
        partial(R.ndcg_loss2, k=3),
        partial(ref.lambdaloss, scheme="ndcgLoss2", k=3),
        "graded",
        1e-9,
        True,
    ),
    "approx_ndcg": (R.approx_ndcg_loss, ref.approx_ndcg, "graded", 1e-8, True),
    "approx_ndcg_alpha3": (
        partial(R.approx_ndcg_loss, alpha=3.0),
        partial(ref.approx_ndcg, alpha=3.0),
        "graded",
        1e-8,
        True,
    ),
    "neural_ndcg": (
        partial(R.neural_ndcg_loss, sinkhorn_tol=0.0),
        partial(ref.neural_ndcg, tol=0.0),
        "graded",
        1e-9,
        True,
    ),
    "neural_ndcg_k3_t05_linear": (
        partial(R.neural_ndcg_loss, sinkhorn_tol=0.0, k=3, temperature=0.5, gain="linear"),
        partial(ref.neural_ndcg, tol=0.0, k=3, tau=0.5, exp2=False),
        "graded",
        1e-9,
        True,
    ),
    "neural_ndcg_transposed_k4": (
        partial(R.neural_ndcg_loss, sinkhorn_tol=0.0, k=4, transposed=True),
        partial(ref.neural_ndcg, tol=0.0, k=4, transposed=True),
        "graded",
        1e-9,
        True,
    ),
    "margin_mse": (R.margin_mse_loss, ref.margin_mse, "continuous", 1e-10, True),
    "fidelity": (_fidelity, _fidelity_ref, "graded", 1e-10, True),
    "fidelity_soft_targets": (_fidelity_soft, _fidelity_soft_ref, "graded", 1e-10, True),
    "pointwise_mse": (R.pointwise_mse_loss, lambda s, y: float(np.mean((s - y) ** 2)), "graded", 1e-10, False),
    "pointwise_sigmoid": (
        partial(R.pointwise_sigmoid_loss, max_label=4.0),
        partial(_bce, top=4.0),
        "graded",
        1e-10,
        False,
    ),
}
NAMES = sorted(CASES)


def _labels(rng, kind, shape):
    if kind == "graded":
        return rng.integers(0, 5, shape).astype(float)
    return rng.normal(size=shape)


def _batch(rng, kind, b=7, n=8):
    """Random scores/labels with masks at random positions, incl. an all-masked row and a one-item row."""
    s = rng.normal(scale=2.0, size=(b, n))
    y = _labels(rng, kind, (b, n))
    mask = rng.random((b, n)) < 0.7
    mask[0] = False
    mask[1] = False
    mask[1, 3] = True
    mask[2] = True
    return s, y, mask


def _per_list_ref(fn, s, y, mask):
    return np.array([fn(s[i][mask[i]], y[i][mask[i]]) if mask[i].any() else 0.0 for i in range(len(s))])


def _call(fn, s, y, mask=None, **kw):
    t = lambda a: None if a is None else torch.as_tensor(a)  # noqa: E731
    return fn(t(s), t(y), mask=t(mask), **kw)


@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_on_random_lists(name, rng):
    fn, reference, kind, tol, _ = CASES[name]
    for _ in range(3):
        s, y, mask = _batch(rng, kind)
        got = _call(fn, s, y, mask, reduction="none").numpy()
        want = _per_list_ref(reference, s, y, mask)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        assert got[0] == 0.0


def test_neural_ndcg_default_tolerance_matches_reference(rng):
    s, y, mask = _batch(rng, "graded")
    got = _call(R.neural_ndcg_loss, s, y, mask, reduction="none").numpy()
    np.testing.assert_allclose(got, _per_list_ref(ref.neural_ndcg, s, y, mask), atol=1e-5)


@pytest.fixture(scope="module")
def ltr_test_scores():
    """Scores of a least-squares linear model fitted on rank.train, on the 50 queries of rank.test."""
    from pairkit.data.letor import read_letor

    train = read_letor(shared_path("ltr", "rank.train"), n_features=300, dtype=np.float64)
    test = read_letor(shared_path("ltr", "rank.test"), n_features=300, dtype=np.float64)
    x = train.features[train.mask]
    w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], train.labels[train.mask], rcond=None)
    scores = test.features @ w[:-1] + w[-1]
    return scores, test.labels, test.mask


@pytest.mark.parametrize(
    "name", ["listnet", "softmax", "ranknet", "lambdaloss_pp", "lambdarank_k3", "approx_ndcg", "neural_ndcg", "hinge"]
)
def test_matches_reference_on_real_ltr_data(name, ltr_test_scores):
    fn, reference, _, tol, _ = CASES[name]
    s, y, mask = ltr_test_scores
    got = _call(fn, s, y, mask, reduction="none").numpy()
    np.testing.assert_allclose(got, _per_list_ref(reference, s, y, mask), rtol=tol, atol=tol)


def test_listmle_on_real_data_with_tie_free_labels(ltr_test_scores):
    s, y, mask = ltr_test_scores
    y = y + np.linspace(0, 0.5, y.shape[-1])  # break label ties so allRank's random tie order is irrelevant
    got = _call(R.listmle_loss, s, y, mask, reduction="none").numpy()
    np.testing.assert_allclose(got, _per_list_ref(ref.listmle, s, y, mask), rtol=1e-10)


# ------------------------------------------------------------------------------------- properties

seeds = st.integers(0, 2**32 - 1)
PROPS = settings(max_examples=15, deadline=None)


@PROPS
@given(seed=seeds, n=st.integers(1, 7), name=st.sampled_from(NAMES))
def test_masking_equals_slicing_and_padding_is_inert(seed, n, name):
    fn, _, kind, _, _ = CASES[name]
    rng = np.random.default_rng(seed)
    s, y = rng.normal(size=n), _labels(rng, kind, n)
    mask = rng.random(n) < 0.6
    s_pad, y_pad = s.copy(), y.copy()
    s_pad[~mask], y_pad[~mask] = np.nan, np.inf  # garbage in padding must not matter
    x = torch.tensor(s_pad[None], requires_grad=True)
    full = fn(x, torch.tensor(y_pad[None]), mask=torch.tensor(mask[None]), reduction="sum")
    full.backward()
    sliced = _call(fn, s[mask][None], y[mask][None], reduction="sum") if mask.any() else torch.tensor(0.0)
    assert torch.isfinite(full)
    np.testing.assert_allclose(full.item(), sliced.item(), rtol=1e-9, atol=1e-12)
    assert torch.isfinite(x.grad).all() and (x.grad[0][~torch.tensor(mask)] == 0).all()


@PROPS
@given(seed=seeds, n=st.integers(2, 7), name=st.sampled_from(NAMES))
def test_permutation_invariance(seed, n, name):
    fn, _, kind, _, _ = CASES[name]
    rng = np.random.default_rng(seed)
    s, y = rng.normal(size=(3, n)), _labels(rng, kind, (3, n))
    mask = rng.random((3, n)) < 0.8
    perm = rng.permutation(n)
    a = _call(fn, s, y, mask, reduction="none")
    b = _call(fn, s[:, perm], y[:, perm], mask[:, perm], reduction="none")
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@PROPS
@given(seed=seeds, shift=st.floats(-50, 50), name=st.sampled_from([k for k in NAMES if CASES[k][4]]))
def test_shift_invariance(seed, shift, name):
    fn, _, kind, _, _ = CASES[name]
    rng = np.random.default_rng(seed)
    s, y, mask = _batch(rng, kind, b=3, n=6)
    a = _call(fn, s, y, mask, reduction="none")
    b = _call(fn, s + shift, y, mask, reduction="none")
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


# none-summed == sum and weights == none * w are in the registry-driven matrix (test_behaviour.py)
@pytest.mark.parametrize("name", NAMES)
def test_mean_is_the_mean_over_lists(name, rng):
    fn, _, kind, _, _ = CASES[name]
    s, y, mask = _batch(rng, kind)
    full = np.ones_like(mask)
    torch.testing.assert_close(_call(fn, s, y, full, reduction="mean"), _call(fn, s, y, full, reduction="none").mean())


def test_batch_axes_are_independent(rng):
    s, y = rng.normal(size=(2, 3, 5)), rng.integers(0, 3, (2, 3, 5)).astype(float)
    for fn in (R.lambda_loss, R.neural_ndcg_loss, R.listmle_loss, R.pairwise_logistic_loss):
        got = _call(fn, s, y, reduction="none")
        assert got.shape == (2, 3)
        torch.testing.assert_close(got.reshape(-1), _call(fn, s.reshape(6, 5), y.reshape(6, 5), reduction="none"))


# ----------------------------------------------------------------------------------- known values


def test_rax_documented_values():
    # Rax docstring examples (sum-reduced there; pairkit's pairwise and pointwise losses average per list).
    s, y = torch.tensor([[2.0, 1.0, 3.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert R.softmax_loss(s, y).item() == pytest.approx(1.4076059, abs=1e-6)
    assert R.pairwise_hinge_loss(s, y).item() * 2 == pytest.approx(2.0)
    assert R.pairwise_logistic_loss(s, y).item() * 2 == pytest.approx(1.6265235, abs=1e-6)
    assert R.pointwise_sigmoid_loss(s, y).item() * 3 == pytest.approx(4.488777, abs=1e-5)
    assert R.pointwise_mse_loss(s, y).item() * 3 == pytest.approx(11.0)


def test_margin_mse_is_the_papers_pos_neg_loss(rng):
    s, t = rng.normal(size=(16, 2)), rng.normal(size=(16, 2))
    want = torch.nn.functional.mse_loss(torch.tensor(s[:, 0] - s[:, 1]), torch.tensor(t[:, 0] - t[:, 1]))
    torch.testing.assert_close(R.margin_mse_loss(torch.tensor(s), torch.tensor(t)), want)


def test_poly1_with_zero_epsilon_is_softmax_loss(rng):
    s, y, mask = _batch(rng, "graded")
    torch.testing.assert_close(
        _call(partial(R.poly1_softmax_loss, epsilon=0.0), s, y, mask), _call(R.softmax_loss, s, y, mask)
    )


def test_listmle_breaks_label_ties_by_list_order():
    s, y = torch.tensor([[0.3, -1.0, 2.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert R.listmle_loss(s, y).item() == pytest.approx(ref.listmle(s[0].numpy(), y[0].numpy()))


def test_perfect_ranking_gives_best_ndcg_losses():
    y = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    good, bad = 10 * y, -10 * y
    for fn in (R.approx_ndcg_loss, partial(R.neural_ndcg_loss, temperature=0.01)):
        assert fn(good, y).item() == pytest.approx(-1.0, abs=1e-3)
        assert fn(bad, y).item() > -0.8


def test_lambda_loss_gradient_raises_relevant_items(rng):
    x = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.0, 3.0, 1.0, 0.0]], dtype=torch.float64)
    R.lambda_loss(x, y).backward()
    assert x.grad[0, 1] < 0 and x.grad[0, 0] > 0


def test_registry_names_and_aliases():
    assert set(losses.names("ranking")) >= {
        "listnet_loss",
        "listmle_loss",
        "lambda_loss",
        "approx_ndcg_loss",
        "neural_ndcg_loss",
        "pairwise_logistic_loss",
        "margin_mse_loss",
        "thurstone_fidelity_loss",
    }
    for alias, fn in {
        "listNet": R.listnet_loss,
        "listMLE": R.listmle_loss,
        "approxNDCGLoss": R.approx_ndcg_loss,
        "neuralNDCG": R.neural_ndcg_loss,
        "lambdaLoss": R.lambda_loss,
        "rank_net": R.pairwise_logistic_loss,
        "rankNet": R.pairwise_logistic_loss,
        "approx_ndcg": R.approx_ndcg_loss,
        "poly1_softmax_loss": R.poly1_softmax_loss,
    }.items():
        assert losses.get(alias) is fn
        assert losses.family_of(alias) == "ranking"


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: R.listnet_loss(torch.zeros(2, 3), torch.zeros(2, 4)), "shapes must match"),
        (lambda: R.listnet_loss(torch.zeros(2, 3), torch.zeros(2, 3), mask=torch.ones(2, 3)), "boolean"),
        (lambda: R.listnet_loss(torch.zeros(2, 3), torch.zeros(2, 3), mask=torch.ones(3, 3).bool()), "broadcast"),
        (lambda: R.listnet_loss(torch.zeros(1, 2), torch.tensor([[0.0, float("nan")]])), r"labels\[0, 1\]"),
        (lambda: R.lambda_loss(torch.zeros(1, 2), torch.tensor([[1.0, -1.0]])), "non-negative"),
        (lambda: R.neural_ndcg_loss(torch.zeros(1, 2), torch.zeros(1, 2), k=0), r"k must be an integer >= 1 or None"),
        (lambda: R.listmle_loss(torch.zeros(1, 2), torch.zeros(1, 2), k=2.5), r"k must be an integer >= 1 or None"),
        (lambda: R.pointwise_sigmoid_loss(torch.zeros(1, 2), torch.tensor([[0.0, 3.0]])), "max_label"),
        (lambda: R.listnet_loss(torch.zeros(1, 2), torch.zeros(1, 2), reduction="avg"), "reduction"),
        (lambda: R.listnet_loss(torch.tensor(1.0), torch.tensor(1.0)), "list axis"),
        (lambda: R.approx_ndcg_loss(torch.zeros(1, 2), torch.zeros(1, 2), gain="log"), "gain"),
        (lambda: R.listnet_loss(torch.zeros(2, 3), torch.zeros(2, 3), weights=torch.ones(3)), "weights"),
        (
            lambda: R.thurstone_fidelity_loss(torch.zeros(1, 2), torch.zeros(1, 2), stds=torch.tensor([[1.0, -1.0]])),
            "stds",
        ),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
