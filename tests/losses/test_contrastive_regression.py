"""ConR against a slow per-anchor reference written from the paper's equation, and its limits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit.errors import InputError  # noqa: E402

F = torch.nn.functional


def _batch(n=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.rand(n, generator=g, dtype=torch.float64)
    y_hat = y + 0.4 * torch.randn(n, generator=g, dtype=torch.float64)
    eta = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    return x, y, y_hat, eta


def _conr_ref(x, y, y_hat, eta, w=0.2, tau=0.07, eps=0.2):
    z = F.normalize(x, dim=1)
    n = z.shape[0]
    out = []
    for j in range(n):
        pos = [i for i in range(n) if i != j and abs(float(y[i] - y[j])) <= w]
        neg = [q for q in range(n) if abs(float(y[q] - y[j])) > w and abs(float(y_hat[q] - y_hat[j])) <= w]
        if not pos or not neg:
            out.append(torch.zeros((), dtype=x.dtype))
            continue
        denom = sum(torch.exp(z[j] @ z[p] / tau) for p in pos)
        denom = denom + sum(eps * eta[j] * abs(y[j] - y[q]) * torch.exp(z[j] @ z[q] / tau) for q in neg)
        out.append(-sum(torch.log(torch.exp(z[j] @ z[i] / tau) / denom) for i in pos) / len(pos))
    return torch.stack(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conr_matches_reference_values_and_gradients(seed):
    x, y, y_hat, eta = _batch(seed=seed)
    got = L.conr(x, y, y_hat, pushing_weights=eta, reduction="none")
    want = _conr_ref(x, y, y_hat, eta)
    assert int((want != 0).sum()) >= 3  # the batch has anchors with confused negatives
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g_got, g_want = (torch.autograd.grad(v.mean(), x)[0] for v in (got, want))
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(L.conr(x, y, y_hat, pushing_weights=eta), want.mean())


def test_conr_limits():
    x, y, y_hat, eta = _batch(seed=3)
    # predictions far apart: no confusions, no anchors; a zero pushing scale drops the negatives too
    assert float(L.conr(x, y, y_hat * 1000)) == 0.0
    assert float(L.conr(x, y, y_hat, push_scale=0.0)) == 0.0
    # with eta = 1 and an explicit ones vector the result is the same
    torch.testing.assert_close(L.conr(x, y, y_hat), L.conr(x, y, y_hat, pushing_weights=torch.ones_like(y)))
    with pytest.raises(InputError, match="predictions must be a float tensor"):
        L.conr(x, y, y_hat[:-1])
    with pytest.raises(InputError, match="non-negative"):
        L.conr(x, y, y_hat, pushing_weights=-eta)


# ----------------------------------------------------------------------------------------------------- SupReMix


def _supremix_ref(x, y, tau=0.3, alpha=0.2, window=None, tol=0.0):
    """Builds every mixture vector explicitly and normalises it (the method's definition, not the Gram shortcut)."""
    z = F.normalize(x, dim=1)
    n = z.shape[0]
    out, has = [], []
    for i in range(n):
        cands, pos = [], []
        for j in range(n):
            if j != i:
                cands.append(z[i] @ z[j])
                if abs(float(y[j] - y[i])) <= tol:
                    pos.append(cands[-1])
        for k in range(n):
            if abs(float(y[k] - y[i])) > tol:
                m = alpha * z[i] + (1 - alpha) * z[k]
                cands.append(z[i] @ (m / torch.linalg.vector_norm(m)))
        near = [window is None or abs(float(y[j] - y[i])) <= window for j in range(n)]
        below = [j for j in range(n) if float(y[j]) < float(y[i]) - tol and near[j]]
        above = [k for k in range(n) if float(y[k]) > float(y[i]) + tol and near[k]]
        if below and above:
            j = max(below, key=lambda b: float(y[b]))
            k = min(above, key=lambda a: float(y[a]))
            beta = (y[k] - y[i]) / (y[k] - y[j])
            m = beta * z[j] + (1 - beta) * z[k]
            s = z[i] @ (m / torch.linalg.vector_norm(m))
            cands.append(s)
            pos.append(s)
        if not pos:
            out.append(torch.zeros((), dtype=x.dtype))
            has.append(False)
            continue
        lse = torch.logsumexp(torch.stack(cands) / tau, 0)
        out.append(lse - torch.stack(pos).mean() / tau)
        has.append(True)
    return torch.stack(out), torch.tensor(has)


@pytest.mark.parametrize("window, tol", [(None, 0.0), (0.3, 0.0), (None, 0.05)])
def test_supremix_matches_explicit_mixtures(window, tol):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.tensor([0.1, 0.1, 0.2, 0.35, 0.35, 0.5, 0.52, 0.7, 0.9, 0.9, 0.15, 0.6], dtype=torch.float64)
    got = L.supremix(x, y, window=window, tolerance=tol, reduction="none")
    want, has = _supremix_ref(x, y, window=window, tol=tol)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    mean = L.supremix(x, y, window=window, tolerance=tol)
    torch.testing.assert_close(mean, want[has].mean())
    g_got, g_want = (torch.autograd.grad(v, x)[0] for v in (mean, want[has].mean()))
    torch.testing.assert_close(g_got, g_want, rtol=1e-9, atol=1e-12)


def test_supremix_without_mixtures_is_supcon_on_equal_targets():
    # all targets equal: no negative and no positive mixture, so it is SupCon over the batch
    g = torch.Generator().manual_seed(8)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.zeros(6, dtype=torch.float64)
    labels = torch.zeros(6, dtype=torch.long)
    torch.testing.assert_close(L.supremix(x, y), L.supcon(x, labels, temperature=0.3))
