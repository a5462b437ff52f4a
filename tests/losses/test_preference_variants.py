"""FLAT against the authors' ``get_contrastive_loss`` (UCSC-REAL/FLAT), applied one example at a time, and against
f-GAN's table (Nowozin et al. 2016) for the three divergences where the authors' code departs from it."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402

# the authors' (activation, conjugate) pairs, written out: loss = activation(P_e) - conjugate(P_f)
AUTHORS = {
    "kl": (lambda x: -x, lambda x: -math.exp(x - 1.0)),
    # f-GAN: g(v) = -exp(-v), f*(t) = -1 - log(-t)
    "reverse_kl": (lambda x: math.exp(-x), lambda x: -(-1.0 - math.log(math.exp(-x)))),
    "jeffrey": (lambda x: -x, lambda x: -(x + x * x / 4.0 + x**3 / 16.0)),
    # f-GAN: g(v) = 1 - exp(-v), f*(t) = t / (1 - t)
    "squared_hellinger": (lambda x: -(1.0 - math.exp(-x)), lambda x: -(1.0 - math.exp(-x)) / math.exp(-x)),
    "pearson": (lambda x: -x, lambda x: -(x * x / 4.0 + x)),
    # f-GAN: g(v) = 1 - exp(-v), f*(t) = 2 - 2 sqrt(1 - t)
    "neyman": (lambda x: -(1.0 - math.exp(-x)), lambda x: -(2.0 - 2.0 * math.sqrt(1.0 - (1.0 - math.exp(-x))))),
    "jensen_shannon": (
        lambda x: math.log(1.0 + math.exp(-x)) - math.log(2.0),
        lambda x: -(x + math.log(1.0 + math.exp(-x))) + math.log(2.0),
    ),
    "total_variation": (lambda x: -math.tanh(x) / 2.0, lambda x: -math.tanh(x) / 2.0),
}


def _tokens(seed=0, b=4, t=6):
    g = torch.Generator().manual_seed(seed)
    good = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    bad = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    cm = torch.arange(t)[None, :] < torch.tensor([[6], [3], [5], [1]])
    rm = torch.arange(t)[None, :] < torch.tensor([[2], [6], [4], [6]])
    return good, bad, cm, rm


@pytest.mark.parametrize("divergence", sorted(AUTHORS))
def test_flat_matches_authors_loss_per_example(divergence):
    good, bad, cm, rm = _tokens()
    act, conj = AUTHORS[divergence]
    ref = []
    for i in range(len(good)):
        p_e = float(good[i][cm[i]].exp().mean())  # = -ProbLossStable(...).mean() on the unpadded answer
        p_f = float(bad[i][rm[i]].exp().mean())
        ref.append(act(p_e) - conj(p_f))
    got = L.flat_loss(good, bad, chosen_mask=cm, rejected_mask=rm, divergence=divergence, reduction="none")
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_flat_learns_the_template_and_forgets_the_answer():
    good, bad, cm, rm = _tokens(1)
    good, bad = good.clone().requires_grad_(True), bad.clone().requires_grad_(True)
    for divergence in AUTHORS:
        gg, gb = torch.autograd.grad(L.flat_loss(good, bad, chosen_mask=cm, rejected_mask=rm, divergence=divergence),
                                     (good, bad))  # fmt: skip
        assert (gg[cm] <= 0).all() and (gb[rm] >= 0).all(), divergence  # descent raises P_e, lowers P_f
        assert (gg[~cm] == 0).all() and (gb[~rm] == 0).all()
    with pytest.raises(InputError, match="divergence must be one of"):
        L.flat_loss(good, bad, divergence="hellinger")


# ------------------------------------------------------------------------------------------------ TPO


def _authors_step_weights(hidden, step_index):
    b_, n_, _, _ = hidden.shape
    w = torch.zeros(b_, n_, int(step_index.max()) + 1, dtype=hidden.dtype)
    for b in range(b_):
        for n in range(n_):
            for step in range(1, int(step_index.max()) + 1):
                m = step_index[b, n] == step
                if m.sum() == 0:
                    continue
                mr = step_index[b, 0] == step
                if mr.sum() == 0:
                    continue
                a, c = hidden[b, n][m].mean(0), hidden[b, 0][mr].mean(0)
                w[b, n, step] = torch.nn.functional.cosine_similarity(a, c, dim=0) + 1
    return w


def _authors_weighted_logits(logit, w, step_index):
    b_, n_, _ = logit.shape
    out = torch.zeros(b_, n_, dtype=logit.dtype)
    for b in range(b_):
        for n in range(n_):
            total, acc = 0.0, 0.0
            for step in range(1, w.shape[2]):
                m = step_index[b, n] == step
                if m.sum() == 0:
                    continue
                acc = acc + w[b, n, step] * logit[b, n][m].mean()
                total = total + w[b, n, step]
            if total > 0:
                out[b, n] = acc / total
    return out


def _tree(seed=0, b=2, k=4, t=7, d=3):
    g = torch.Generator().manual_seed(seed)
    pol = -torch.rand(b, k, t, generator=g, dtype=torch.float64) * 3
    ref = -torch.rand(b, k, t, generator=g, dtype=torch.float64) * 3
    steps = torch.randint(0, 4, (b, k, t), generator=g)
    hidden = torch.randn(b, k, t, d, generator=g, dtype=torch.float64)
    labels = torch.tensor([[3.0, 1.0, 2.0, 1.0], [0.0, 2.0, 1.0, 3.0]])
    return pol, ref, steps, hidden, labels


def test_adaptive_step_rewards_equal_authors_loops():
    pol, ref, steps, hidden, _ = _tree()
    w = _authors_step_weights(hidden, steps)
    ref_rewards = _authors_weighted_logits(pol - ref, w, steps)
    torch.testing.assert_close(L.adaptive_step_rewards(pol - ref, steps, hidden), ref_rewards)


def test_tpo_is_the_pairwise_logistic_ranking_loss_on_beta_scaled_step_rewards():
    pol, ref, steps, hidden, labels = _tree(1)
    r = 0.5 * L.adaptive_step_rewards(pol - ref, steps, hidden)
    expected = []
    for ri, yi in zip(r, labels):
        pairs = [(i, j) for i in range(4) for j in range(4) if yi[i] > yi[j]]
        expected.append(sum(math.log1p(math.exp(-(float(ri[i]) - float(ri[j])))) for i, j in pairs) / len(pairs))
    got = L.tpo_loss(pol, ref, labels, steps, hidden, beta=0.5, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
