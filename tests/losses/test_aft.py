"""AFT's constraint alignment loss against a slow float64 loop over the equations, and its gradient properties."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402


def _slow(s, pos, valid, constraint, gamma):
    out = []
    for i in range(s.shape[0]):
        P = [float(s[i, k]) for k in range(s.shape[1]) if valid[i, k] and pos[i, k]]
        N = [float(s[i, k]) for k in range(s.shape[1]) if valid[i, k] and not pos[i, k]]
        if not P or not N:
            out.append(0.0)
            continue
        value = math.log(1 + sum(math.exp(n - p) for p in P for n in N))
        if constraint == "boundary":
            b = min(P) - gamma
            value += math.log(1 + sum(math.exp(b - n) for n in N))
        out.append(value)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("constraint", ["boundary", "detach", "none"])
@pytest.mark.parametrize("gamma", [0.0, 0.7])
def test_aft_equals_slow_loop(constraint, gamma):
    g = torch.Generator().manual_seed(0)
    s = -torch.rand(8, 5, generator=g, dtype=torch.float64) * 3
    pos = torch.rand(8, 5, generator=g) > 0.5
    pos[0] = True  # a question without negatives
    valid = torch.rand(8, 5, generator=g) > 0.2
    got = L.aft_loss(s, pos, constraint=constraint, gamma=gamma, mask=valid, reduction="none")
    torch.testing.assert_close(got, _slow(s, pos, valid, constraint, gamma), rtol=1e-12, atol=1e-12)
    assert float(got[0]) == 0.0


def test_aft_gradients_detach_and_boundary():
    s = torch.tensor([[-1.0, -2.0, -6.0]], dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[True, False, False]])
    L.aft_loss(s, pos, constraint="detach").backward()
    assert s.grad[0, 0] < 0 and torch.all(s.grad[0, 1:] == 0)  # only the positive moves (up)
    s.grad = None
    L.aft_loss(s, pos, constraint="none").backward()
    assert torch.all(s.grad[0, 1:] > 0)  # a plain ranking loss pushes every negative down
    s.grad = None
    L.aft_loss(s, pos, constraint="boundary", gamma=1.0).backward()
    assert s.grad[0, 2] < 0  # the negative far below the boundary (B = -2) is pulled back up
    # the boundary's positive score carries no gradient of its own: only L_A moves s_0
    s2 = s.detach().clone().requires_grad_(True)
    L.aft_loss(s2, pos, constraint="none").backward()
    torch.testing.assert_close(s.grad[0, 0], s2.grad[0, 0])
    assert L.spec("constraint_alignment").name == "aft"


def test_aft_length_normalises_the_log_likelihoods():
    g = torch.Generator().manual_seed(1)
    logps = -torch.rand(4, 3, generator=g, dtype=torch.float64) * 20
    lengths = torch.tensor([[5, 9, 2], [4, 4, 4], [7, 1, 3], [2, 6, 8]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]])
    got = L.aft_loss(logps, labels, lengths=lengths, reduction="none")
    want = _slow(logps / lengths, labels > 0, torch.ones(4, 3, dtype=torch.bool), "boundary", 1.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(Exception, match="lengths must be positive"):
        L.aft_loss(logps, labels, lengths=lengths * 0)
    with pytest.raises(Exception, match="lengths must have the shape"):
        L.aft_loss(logps, labels, lengths=lengths[:, :2])
