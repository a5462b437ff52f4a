"""TRG's token-level losses against slow loop references written from the formulas, and closed forms.

Zhang, Liu & He (2023), "Knowledge Distillation via Token-level Relationship Graph": the contextual loss
(row-softmax of F F^T / sqrt(D), mean squared error) and the local-preserving loss on the batch's k-NN token
graph (Gaussian edges, softmax over the teacher's k neighbours, KL(student || teacher)), in float64 loops.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402


def _tokens(b=3, t=4, ds=5, dt=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, ds, generator=g, dtype=torch.float64)
    return s, torch.randn(b, t, dt, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ contextual


def _ref_contextual(s, t):
    out = []
    for b in range(s.shape[0]):
        maps = []
        for x in (t[b].tolist(), s[b].tolist()):
            d = len(x[0])
            rows = []
            for xi in x:
                logits = [sum(a * c for a, c in zip(xi, xj)) / math.sqrt(d) for xj in x]
                top = max(logits)
                z = sum(math.exp(v - top) for v in logits)
                rows.append([math.exp(v - top) / z for v in logits])
            maps.append(rows)
        n = len(maps[0])
        out.append(sum((maps[0][i][j] - maps[1][i][j]) ** 2 for i in range(n) for j in range(n)) / n**2)
    return out


def test_contextual_matches_loop_reference():
    s, t = _tokens()
    got = L.token_contextual_kd_loss(s, t, reduction="none")
    assert got.tolist() == pytest.approx(_ref_contextual(s, t), rel=1e-12, abs=1e-15)
    assert float(L.get("trg_contextual")(s, t)) == pytest.approx(sum(_ref_contextual(s, t)) / 3, rel=1e-12)


def test_contextual_closed_form_scaled_identity_against_zero_features():
    # student tokens c * e_i (T = D): the map's diagonal is e^a / (e^a + T - 1), a = c^2 / sqrt(D);
    # teacher tokens all zero: the uniform map 1/T
    n, c = 4, 1.7
    s = (c * torch.eye(n, dtype=torch.float64)).unsqueeze(0)
    t = torch.zeros(1, n, 3, dtype=torch.float64)
    a = c * c / math.sqrt(n)
    diag, off = math.exp(a) / (math.exp(a) + n - 1), 1 / (math.exp(a) + n - 1)
    want = (n * (diag - 1 / n) ** 2 + n * (n - 1) * (off - 1 / n) ** 2) / n**2
    assert float(L.token_contextual_kd_loss(s, t)) == pytest.approx(want, rel=1e-12)


def test_contextual_sees_only_the_gram_matrix():
    s, _ = _tokens(dt=5)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    assert float(L.token_contextual_kd_loss(s, s @ q)) == pytest.approx(0.0, abs=1e-14)  # rotated copy
    assert float(L.token_contextual_kd_loss(s, 2 * s)) > 1e-4  # but not a rescaled one
    one_token = torch.randn(2, 1, 3, dtype=torch.float64)
    assert float(L.token_contextual_kd_loss(one_token, torch.randn(2, 1, 6, dtype=torch.float64))) == 0.0


# ---------------------------------------------------------------------------------------- token graph


def _sq(u, v):
    return sum((a - c) ** 2 for a, c in zip(u, v))


def _teacher_neighbours(t_flat, k):
    out = []
    for i, ti in enumerate(t_flat):
        order = sorted((_sq(ti, tj), j) for j, tj in enumerate(t_flat) if j != i)
        out.append([j for _, j in order[: min(k, len(t_flat) - 1)]])
    return out


def _ref_graph(s, t, k, sigma):
    b, n = s.shape[:2]
    s_flat = s.reshape(b * n, -1).tolist()
    t_flat = t.reshape(b * n, -1).tolist()
    kl = []
    for i, nb in enumerate(_teacher_neighbours(t_flat, k)):
        dists = []
        for x in (s_flat, t_flat):
            edge = [math.exp(-_sq(x[i], x[j]) / (2 * sigma)) for j in nb]
            z = sum(math.exp(e) for e in edge)
            dists.append([math.exp(e) / z for e in edge])
        p_s, p_t = dists
        kl.append(sum(ps * math.log(ps / pt) for ps, pt in zip(p_s, p_t)))
    return [sum(kl[e * n : (e + 1) * n]) / n for e in range(b)]


def test_graph_matches_loop_reference_with_teacher_neighbours():
    s, t = _tokens(b=3, t=4, ds=2, dt=2, seed=1)
    # the student's own nearest neighbours differ from the teacher's here: the reference takes the teacher's
    flat = lambda x: x.reshape(12, -1).tolist()  # noqa: E731
    assert _teacher_neighbours(flat(s), 3) != _teacher_neighbours(flat(t), 3)
    for k, sigma in ((3, 1.0), (5, 0.5), (1, 2.0)):
        got = L.token_graph_kd_loss(s, t, k=k, sigma=sigma, reduction="none")
        assert got.tolist() == pytest.approx(_ref_graph(s, t, k, sigma), rel=1e-11, abs=1e-15), (k, sigma)


def test_graph_k_beyond_the_graph_uses_every_other_token():
    s, t = _tokens(b=2, t=3, seed=2)
    every = L.token_graph_kd_loss(s, t, k=5, sigma=3.0)
    torch.testing.assert_close(L.token_graph_kd_loss(s, t, k=50, sigma=3.0), every, rtol=0, atol=0)
    assert float(every) == pytest.approx(sum(_ref_graph(s, t, 5, 3.0)) / 2, rel=1e-11)
    single = torch.randn(1, 1, 4, dtype=torch.float64)
    assert float(L.token_graph_kd_loss(single, single * 3, k=2, sigma=1.0)) == 0.0  # one token: no edges


def test_graph_is_zero_for_a_translated_copy_and_positive_for_a_rescaled_one():
    _, t = _tokens(seed=4)
    assert float(L.token_graph_kd_loss(t + 5.0, t, k=3, sigma=2.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(L.token_graph_kd_loss(3.0 * t, t, k=3, sigma=2.0)) > 1e-3


def test_graph_links_tokens_across_examples():
    s, t = _tokens(b=3, t=2, seed=5)
    before = L.token_graph_kd_loss(s, t, k=3, sigma=4.0, reduction="none")
    s2 = s.clone()
    s2[2] = s2[2] + torch.randn(2, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    after = L.token_graph_kd_loss(s2, t, k=3, sigma=4.0, reduction="none")
    # moving example 2's student tokens changes the other examples' values through their shared edges
    assert not torch.allclose(before[:2], after[:2])
    masked = L.token_graph_kd_loss(s, t, k=3, sigma=4.0, mask=torch.tensor([True, True, False]), reduction="none")
    torch.testing.assert_close(masked[:2], L.token_graph_kd_loss(s[:2], t[:2], k=3, sigma=4.0, reduction="none"))
    assert float(masked[2]) == 0.0


def test_token_losses_gradients_match_finite_differences():
    s, t = _tokens(b=2, t=3, ds=3, dt=4, seed=7)
    s.requires_grad_(True)
    t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, c: L.token_graph_kd_loss(a, c, k=2, sigma=1.5), (s, t))
    assert torch.autograd.gradcheck(lambda a, c: L.token_contextual_kd_loss(a, c), (s, t))


def test_token_losses_reject_bad_inputs():
    s, t = _tokens()
    with pytest.raises(InputError, match=r"same \[batch, T\]"):
        L.token_contextual_kd_loss(s, t[:, :3])
    with pytest.raises(InputError, match="batch, T, dim"):
        L.token_graph_kd_loss(s[:, 0], t[:, 0], k=2, sigma=1.0)
    with pytest.raises(InputError, match="k"):
        L.token_graph_kd_loss(s, t, k=0, sigma=1.0)
    with pytest.raises(InputError, match="sigma"):
        L.token_graph_kd_loss(s, t, k=2, sigma=0.0)
    with pytest.raises(InputError, match="needs sigma"):
        L.token_graph_kd_loss(s, t, k=2)  # no default: the value is the caller's
    with pytest.raises(InputError, match="mask"):
        L.token_contextual_kd_loss(s, t, mask=torch.ones(3, 4, dtype=torch.bool))


def test_a_student_trained_on_the_token_losses_moves_towards_the_teacher():
    """The losses are training objectives on features the caller collects: a few optimiser steps on a student
    projection lower both (there is no built-in trainer for feature distillation; see collect_hidden_states)."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 5, 6, generator=g)
    teacher = torch.tanh(x @ torch.randn(6, 8, generator=g))
    torch.manual_seed(0)
    student = torch.nn.Linear(6, 3)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)

    def objective():
        s = student(x)
        return L.token_graph_kd_loss(s, teacher, k=4, sigma=1.0) + L.token_contextual_kd_loss(s, teacher)

    start = float(objective())
    for _ in range(60):
        opt.zero_grad()
        objective().backward()
        opt.step()
    assert float(objective()) < 0.5 * start
