"""Consistency regularisers against slow references from the papers (FixMatch: Sohn et al. 2020, eq. 4)."""

from __future__ import annotations

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
