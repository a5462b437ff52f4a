"""Behaviour matrix over every loss registered by the unpaired, token-level, listwise and reward modules.

Extreme inputs stay finite (values and gradients, fp32 and bf16); empty and fully masked input reduce to 0;
``reduction="none"`` sums to ``"sum"``; mismatched shapes raise InputError; masking equals slicing.
"""

from __future__ import annotations

import pytest
import torch

import pairkit.losses as L
from pairkit.errors import InputError
from pairkit.losses import _core

MODULES = {
    "pairkit.losses.preference_unpaired",
    "pairkit.losses.preference_token",
    "pairkit.losses.preference_listwise",
    "pairkit.losses.reward",
}
B, T, K, D = 5, 6, 4, 6


def _rand(g, *shape, scale=1.0, dtype=torch.float32):
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def _labels(g, b):
    lab = torch.rand(b, generator=g) > 0.5
    if b >= 2:
        lab[0], lab[1] = True, False
    return lab


def _unpaired(extra=None):
    def build(g, b, scale, dtype):
        args = (_rand(g, b, scale=scale, dtype=dtype), _rand(g, b, scale=scale, dtype=dtype), _labels(g, b))
        return args, dict(extra(g, b, scale, dtype) if extra else {})

    return build


def _kto_kl(g, b, scale, dtype):
    return {"policy_kl_logps": _rand(g, b, scale=scale, dtype=dtype), "ref_kl_logps": _rand(g, b, dtype=dtype)}


def _two(g, b, scale, dtype):
    return (_rand(g, b, scale=scale, dtype=dtype), _rand(g, b, scale=scale, dtype=dtype)), {}


def _token_pair(kl: bool, sparse: bool):
    def build(g, b, scale, dtype):
        args = [_rand(g, b, T, scale=scale, dtype=dtype) for _ in range(4)]
        kw = {
            "chosen_mask": torch.arange(T)[None, :] < torch.randint(1, T + 1, (b, 1), generator=g),
            "rejected_mask": torch.arange(T)[None, :] < torch.randint(1, T + 1, (b, 1), generator=g),
        }
        kls = [(_rand(g, b, T, scale=scale, dtype=dtype)).abs() for _ in range(2)]
        if sparse:
            kw["chosen_token_weights"] = torch.rand(b, T, generator=g).to(dtype)
            kw["rejected_token_weights"] = torch.rand(b, T, generator=g).to(dtype)
            kw["chosen_kl"], kw["rejected_kl"] = kls
        elif kl:
            args += kls
        return tuple(args), kw

    return build


def _token_nll(g, b, scale, dtype):
    mask = torch.arange(T)[None, :] < torch.randint(0, T + 1, (b, 1), generator=g)
    return (-_rand(g, b, T, scale=scale, dtype=dtype).abs(),), {"mask": mask}


def _listwise(g, b, scale, dtype):
    mask = torch.arange(K)[None, :] < torch.randint(1, K + 1, (b, 1), generator=g)
    labels = torch.randint(0, 4, (b, K), generator=g)
    return (_rand(g, b, K, scale=scale, dtype=dtype), _rand(g, b, K, scale=scale, dtype=dtype), labels), {"mask": mask}


def _reward_pl(g, b, scale, dtype):
    mask = torch.arange(K)[None, :] < torch.randint(1, K + 1, (b, 1), generator=g)
    return (_rand(g, b, K, scale=scale, dtype=dtype), torch.randint(0, 4, (b, K), generator=g)), {"mask": mask}


def _dro(g, b, scale, dtype):
    args = (_rand(g, b, scale=scale, dtype=dtype), _rand(g, b, scale=scale, dtype=dtype), _rand(g, b, dtype=dtype))
    return args, {"values": _rand(g, b, dtype=dtype)}


def _pointwise(g, b, scale, dtype):
    return (
        _rand(g, b, scale=scale, dtype=dtype),
        _rand(g, b, scale=scale, dtype=dtype),
        torch.rand(b, generator=g),
    ), {}


def _with(kw_fn):
    def build(g, b, scale, dtype):
        args, _ = _two(g, b, scale, dtype)
        return args, kw_fn(g, b, scale, dtype)

    return build


# name -> (builder, mask kind): "rows" = mask [batch]; "elements" = the builder's own [batch, ...] mask.
CASES = {
    "kto": (_unpaired(_kto_kl), "rows"),
    "apo_zero_unpaired": (_unpaired(), "rows"),
    "bco": (_unpaired(lambda g, b, s, d: {"delta": 0.3}), "rows"),
    "pointwise_dpo": (_pointwise, "rows"),
    "ulma": (_unpaired(), "rows"),
    "dro": (_dro, "rows"),
    "npo": (_two, "rows"),
    "tdpo1": (_token_pair(kl=True, sparse=False), "rows"),
    "tdpo2": (_token_pair(kl=True, sparse=False), "rows"),
    "sparse_po": (_token_pair(kl=True, sparse=True), "rows"),
    "token_nll": (_token_nll, "elements"),
    "lipo": (_listwise, "elements"),
    "lipo_softmax": (_listwise, "elements"),
    "dpo_plackett_luce": (_listwise, "elements"),
    "reward_bradley_terry": (
        _with(lambda g, b, s, d: {"margin": torch.rand(b, generator=g).to(d), "center_rewards_coefficient": 0.01}),
        "rows",
    ),
    "reward_centering": (_two, "rows"),
    "soft_bradley_terry": (_with(lambda g, b, s, d: {"target_probs": torch.rand(b, generator=g).to(d)}), "rows"),
    "regression_bradley_terry": (
        _with(
            lambda g, b, s, d: {
                "chosen_targets": _rand(g, b, dtype=d),
                "rejected_targets": _rand(g, b, dtype=d),
                "strength": _rand(g, b, dtype=d),
            }
        ),
        "rows",
    ),
    "reward_plackett_luce": (_reward_pl, "elements"),
    "gpm": (lambda g, b, s, d: ((_rand(g, b, D, scale=s, dtype=d), _rand(g, b, D, scale=s, dtype=d)), {}), "rows"),
}


def _ours():
    return sorted(s.name for s in _core.specs() if s.fn.__module__ in MODULES)


def test_every_registered_loss_is_in_the_matrix():
    assert _ours() == sorted(CASES)


def _build(name, b=B, scale=1.0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    args, kw = CASES[name][0](g, b, scale, dtype)
    leaves = []
    args = list(args)
    for i, a in enumerate(args):
        if a.is_floating_point() and a.dim() >= 1:
            args[i] = a.detach().requires_grad_(True)
            leaves.append(args[i])
    return args, kw, leaves


def _call(name, args, kw, **extra):
    return L.get(name)(*args, **kw, **extra)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_inputs_finite(name, dtype, scale):
    args, kw, leaves = _build(name, scale=scale, dtype=dtype)
    loss = _call(name, args, kw)
    assert torch.isfinite(loss).all(), loss
    loss.backward()
    for leaf in leaves:
        # TDPO2 stops the chosen KL's gradient: no gradient at all is fine, a non-finite one is not
        assert leaf.grad is None or torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_and_all_masked_give_zero(name):
    args, kw, leaves = _build(name, b=0)
    for reduction in ("mean", "sum"):
        out = _call(name, args, kw, reduction=reduction)
        assert out.shape == () and out.item() == 0.0
    args, kw, leaves = _build(name)
    if CASES[name][1] == "rows":
        kw["mask"] = torch.zeros(B, dtype=torch.bool)
    else:
        kw["mask"] = torch.zeros_like(kw["mask"])
    out = _call(name, args, kw)
    assert out.item() == 0.0 and not torch.isnan(out)
    out.backward()
    for leaf in leaves:
        assert leaf.grad is None or torch.all(leaf.grad == 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduction_none_sums_to_sum_and_mean(name):
    args, kw, _ = _build(name)
    none = _call(name, args, kw, reduction="none")
    assert none.shape == (B,)
    total = _call(name, args, kw, reduction="sum")
    torch.testing.assert_close(none.sum(), total, rtol=1e-6, atol=1e-6)
    w = torch.rand(B, generator=torch.Generator().manual_seed(3)) + 0.5
    weighted = _call(name, args, kw, reduction="none", weights=w)
    torch.testing.assert_close(weighted, none * w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mismatched_shapes_raise(name):
    args, kw, _ = _build(name)
    bad, bad_kw = list(args), dict(kw)
    if len(bad) > 1:
        bad[1] = bad[1][:-1]  # one example fewer in the second input
    else:
        bad_kw["mask"] = kw["mask"][:, :-1]
    with pytest.raises(InputError):
        _call(name, bad, bad_kw)
    with pytest.raises(InputError):
        _call(name, args, kw, weights=torch.ones(B + 2))
    with pytest.raises(InputError):
        _call(name, args, kw, reduction="avg")


def _slice(x, keep):
    if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == B:
        return x[keep]
    return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_masking_equals_slicing(name):
    args, kw, leaves = _build(name, seed=7)
    keep = torch.tensor([True, False, True, True, False])
    masked_kw = dict(kw)
    if CASES[name][1] == "rows":
        masked_kw["mask"] = keep
    else:
        masked_kw["mask"] = kw["mask"] & keep[:, None]
    full = _call(name, args, masked_kw)
    sliced = _call(name, [_slice(a, keep) for a in args], {k: _slice(v, keep) for k, v in kw.items()})
    torch.testing.assert_close(full, sliced, rtol=1e-6, atol=1e-6)
    grads_full = torch.autograd.grad(full, leaves, allow_unused=True)
    grads_sliced = torch.autograd.grad(sliced, leaves, allow_unused=True)
    for gf, gs in zip(grads_full, grads_sliced):
        if gf is None:
            assert gs is None
            continue
        torch.testing.assert_close(gf, gs, rtol=1e-6, atol=1e-7)
        assert torch.all(gf[~keep] == 0)
