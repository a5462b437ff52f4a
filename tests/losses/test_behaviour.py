"""One behaviour matrix over every registered loss, built from the specs' declared inputs.

Each declared input kind has a builder (a registered loss whose input kind or shape has none fails
``test_every_input_kind_has_a_builder``). For every loss: finite values and gradients at ±1e4 in fp32 and bf16;
empty (and all-masked) input reduces to 0; ``mask`` equals slicing; ``reduction="none"`` sums to ``"sum"``;
mismatched shapes raise InputError; gradcheck in float64; declared options out of range raise InputError naming
the option.
"""

from __future__ import annotations

import inspect
import math

import pytest

torch = pytest.importorskip("torch")

import pairkit.losses as L  # noqa: E402
from pairkit._spec import Input  # noqa: E402
from pairkit.errors import InputError  # noqa: E402

B, K, T, V, C, D = 5, 4, 6, 7, 3, 6  # all different from B, so slicing finds the batch axis
SPECS = {s.name: s for s in L.specs()}
NAMES = sorted(SPECS)

# dimensions of the declared shapes (n = batch for embeddings, m = n + 1 keys)
DIMS = {
    "batch": None, "n": None, "m": 1, "list": K, "T": T, "vocab": V, "classes": C, "dim": D, "2k": D, "centers": 2,
    "teacher_dim": D + 2, "views": 3, "prototypes": 2, "latent": 4, "target": 2, "runs": 2, "novel": 2,
    "clusters": 2, "mixtures": 2,
}  # fmt: skip


def _shape(inp: Input, b: int) -> tuple[int, ...]:
    out = []
    for dim in inp.shape.strip("[]").split(","):
        dim = dim.strip()
        if dim not in DIMS:
            raise KeyError(f"no size for dimension {dim!r} of {inp.name} {inp.shape}")
        out.append(b + DIMS[dim] if dim == "m" else (b if DIMS[dim] is None else DIMS[dim]))
    return tuple(out)


def _normal(g, shape, scale, dtype):
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


# input kind -> builder(generator, shape, scale, dtype); "scaled" kinds are model outputs (gradient leaves)
BUILDERS = {
    "logps": lambda g, s, scale, d: -_normal(g, s, scale, d).abs() - 0.1,
    "token_logps": lambda g, s, scale, d: -_normal(g, s, scale, d).abs() - 0.1,
    "scores": lambda g, s, scale, d: _normal(g, s, scale, d),
    "rewards": lambda g, s, scale, d: _normal(g, s, scale, d),
    "logits": lambda g, s, scale, d: _normal(g, s, scale, d),
    "token_logits": lambda g, s, scale, d: _normal(g, s, scale, d),
    "embeddings": lambda g, s, scale, d: _normal(g, s, scale, d),
    "proxies": lambda g, s, scale, d: _normal(g, s, scale, d),
    "views": lambda g, s, scale, d: _normal(g, s, scale, d),
    "log_probs": lambda g, s, scale, d: torch.log_softmax(_normal(g, s, scale, torch.float64), -1).to(d),
    "probs": lambda g, s, scale, d: (
        torch.softmax(torch.randn(s, generator=g, dtype=torch.float64), -1)
        if len(s) > 1
        else torch.rand(s, generator=g)
    ).to(d),
    "classes": lambda g, s, scale, d: torch.arange(s[0]) % 3 if len(s) == 1 else None,
    "binary": lambda g, s, scale, d: (
        (torch.arange(math.prod(s)).reshape(s) % 2 == 0) | (torch.rand(s, generator=g) > 0.5)
    ),
    "grades": lambda g, s, scale, d: torch.randint(0, 4, s, generator=g).to(d),
    "outcomes": lambda g, s, scale, d: (torch.randint(0, 3, s, generator=g) / 2.0).to(d),
    "stds": lambda g, s, scale, d: (torch.rand(s, generator=g) + 0.1).to(d),
    "lengths": lambda g, s, scale, d: torch.randint(1, T + 1, s, generator=g).to(d),
    "margins": lambda g, s, scale, d: torch.randn(s, generator=g).to(d),
    "nll": lambda g, s, scale, d: torch.rand(s, generator=g).to(d),
    "token_kl": lambda g, s, scale, d: _normal(g, s, scale, d).abs(),
    "token_weights": lambda g, s, scale, d: torch.rand(s, generator=g).to(d),
    "token_mask": lambda g, s, scale, d: (
        torch.arange(s[1])[None, :] < torch.randint(1, s[1] + 1, (s[0], 1), generator=g)
    ),
    "similarity": lambda g, s, scale, d: torch.rand(s, generator=g).to(d),
    "step_index": lambda g, s, scale, d: torch.randint(0, 3, s, generator=g),
    "cost": lambda g, s, scale, d: torch.rand(s, generator=g).to(d),
    "denoising_errors": lambda g, s, scale, d: _normal(g, s, scale, d).abs(),
    "cluster_ids": lambda g, s, scale, d: torch.randint(0, 3, s, generator=g),
    "span_ids": lambda g, s, scale, d: torch.randint(-1, 2, s, generator=g),
    "regression_targets": lambda g, s, scale, d: (torch.rand(s, generator=g) * 0.6).to(d),
}
SCALED = {
    "denoising_errors",
    "logps",
    "token_logps",
    "scores",
    "rewards",
    "logits",
    "token_logits",
    "embeddings",
    "log_probs",
    "proxies",
    "views",
}

# required options without a default, and values the paper needs to be meaningful
NEEDS = {
    "isogclr": {"temperature": 0.1, "rho": 0.5},
    "top_k_kl_divergence": {"k": 3},
    "ps_kd_loss": {"alpha": 0.5},
    "bco": {"delta": 0.3},
    "reward_bradley_terry": {"center_rewards_coefficient": 0.01},
    "pointwise_sigmoid_loss": {"max_label": 3.0},  # the grades run to 3
    "token_graph_kd_loss": {"k": 3, "sigma": 4.0},
}
# built although optional: the KL reference point of KTO, the per-pair margin of reward BT
OPTIONAL_BUILT = {
    "kto": ("policy_kl_logps", "ref_kl_logps"),
    "reward_bradley_terry": ("margin",),
    "spo": ("degree_logits", "degree_labels"),
    "bmc": ("chosen_edit_mask", "rejected_edit_mask"),
    "rise": ("chosen_edit_mask", "rejected_edit_mask"),
    "meow": ("clusters",),
}


def _build(name, *, b=B, scale=1.0, dtype=torch.float32, seed=0, groups=None):
    """Positional args, keyword args and the gradient leaves of one call, from the spec's declared inputs.

    ``groups``: the labels of a batch of embeddings (``[n]`` classes) take this many values, so that anchors have
    several positives (by default most have one)."""
    spec = SPECS[name]
    g = torch.Generator().manual_seed(seed)
    args, kwargs, leaves = [], dict(NEEDS.get(name, {})), []
    for inp in spec.input_specs:
        if not inp.required and inp.name not in OPTIONAL_BUILT.get(name, ()):
            continue
        x = BUILDERS[inp.kind](g, _shape(inp, b), scale, dtype)
        if groups and inp.kind == "classes" and inp.shape == "[n]":
            x = torch.arange(b) % groups
        if inp.kind in SCALED:
            x = x.detach().requires_grad_(True)
            leaves.append(x)
        if inp.keyword:
            kwargs[inp.name] = x
        else:
            args.append(x)
    return args, kwargs, leaves


def _call(name, args, kwargs, **extra):
    return SPECS[name].fn(*args, **kwargs, **extra)


def _takes(name, keyword):
    """Whether the spec says the loss takes ``mask``, ``weights`` or ``reduction``."""
    return keyword in SPECS[name].keywords


def _mask_kind(name):
    """'rows' ([batch]), 'elements' (the shape of the first input) or None (the loss takes no mask)."""
    if not _takes(name, "mask"):
        return None
    first = SPECS[name].input_specs[0]
    if first.shape == "[batch, T, vocab]":
        return "tokens"
    return "elements" if first.shape in ("[batch, list]", "[batch, T]") and name not in _ROW_MASKED else "rows"


def _full_mask(name, args, kwargs):
    like = args[0] if args else next(iter(kwargs.values()))
    shape = {"rows": (B,), "elements": like.shape, "tokens": like.shape[:2]}[_mask_kind(name)]
    return torch.ones(shape, dtype=torch.bool)


# token-level pair losses: [batch, T] inputs, one value (and mask entry) per pair
_ROW_MASKED = {"tdpo1", "tdpo2", "sparse_po", "flat", "bmc", "rise"}


def test_every_registered_loss_has_a_builder_for_each_input():
    missing = [
        (s.name, i.name, i.kind, i.shape)
        for s in SPECS.values()
        for i in s.input_specs
        if i.kind not in BUILDERS or any(d.strip() not in DIMS for d in i.shape.strip("[]").split(","))
    ]
    assert not missing, f"no builder for {missing}: add one to BUILDERS/DIMS"
    assert set(NAMES) == set(L.names()) and len(NAMES) > 100


def test_every_spec_declares_exactly_the_signature_with_ranged_options():
    """Callers read the specs, never signatures: so each spec must say what its function takes, and every
    numeric option a range (``REAL`` on purpose for "any finite number"), every string option its choices."""
    problems = []
    for s in SPECS.values():
        params = inspect.signature(s.unchecked).parameters
        positional = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword_only = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        declared = {*s.option_names, *s.keywords, *(i.name for i in s.input_specs if i.keyword)}
        if positional != list(s.inputs):
            problems.append((s.name, "positional inputs", positional, s.inputs))
        if keyword_only != declared:
            problems.append(
                (s.name, "undeclared keywords", sorted(keyword_only - declared), sorted(declared - keyword_only))
            )
        for o in s.options:
            if (float in o.kinds() or int in o.kinds()) and o.range is None:
                problems.append((s.name, o.name, "no range"))
            if str in o.kinds() and not o.choices:
                problems.append((s.name, o.name, "no choices"))
            if not o.doc:
                problems.append((s.name, o.name, "no doc"))
    assert not problems, problems


# ----------------------------------------------------------------------------------------------- finite


# chi-squared between such distributions is beyond the float range: its true value overflows
UNBOUNDED = {"chi_squared_divergence"}


@pytest.mark.parametrize("name", [n for n in NAMES if n not in UNBOUNDED])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_inputs_give_finite_values_and_gradients(name, dtype, scale):
    args, kwargs, leaves = _build(name, scale=scale, dtype=dtype)
    loss = _call(name, args, kwargs)
    assert torch.isfinite(loss).all(), (name, loss)
    if not loss.requires_grad:  # sinkhorn takes probabilities, not model outputs
        return
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is None or torch.isfinite(leaf.grad).all(), name


# ------------------------------------------------------------------------------------- empty and masked


@pytest.mark.parametrize("name", NAMES)
def test_empty_input_is_zero(name):
    args, kwargs, leaves = _build(name, b=0)
    reductions = ("mean", "sum") if _takes(name, "reduction") else ("mean",)
    for reduction in reductions:
        extra = {"reduction": reduction} if _takes(name, "reduction") else {}
        out = _call(name, args, kwargs, **extra)
        assert out.shape == () and float(out.detach()) == 0.0, (name, reduction, out)


@pytest.mark.parametrize("name", [n for n in NAMES if _mask_kind(n)])
def test_all_masked_is_zero_with_zero_gradient(name):
    args, kwargs, leaves = _build(name)
    kwargs["mask"] = torch.zeros_like(_full_mask(name, args, kwargs))
    out = _call(name, args, kwargs)
    assert float(out.detach()) == 0.0 and not torch.isnan(out), (name, out)
    if not out.requires_grad:
        return
    out.backward()
    for leaf in leaves:
        assert leaf.grad is None or torch.all(leaf.grad == 0), name


def _rows(x, keep):
    return x[keep] if isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == B else x


@pytest.mark.parametrize("name", [n for n in NAMES if _mask_kind(n)])
def test_mask_equals_slicing(name):
    args, kwargs, leaves = _build(name, seed=7)
    keep = torch.tensor([True, False, True, True, False])
    masked = dict(kwargs)
    if _mask_kind(name) == "rows":
        masked["mask"] = keep
    else:
        masked["mask"] = kwargs.get("mask", _full_mask(name, args, kwargs)) & keep[:, None]
    full = _call(name, args, masked)
    sliced = _call(name, [_rows(a, keep) for a in args], {k: _rows(v, keep) for k, v in kwargs.items()})
    torch.testing.assert_close(full, sliced, rtol=1e-5, atol=1e-6)
    if not leaves:
        return
    grads_full = torch.autograd.grad(full, leaves, allow_unused=True)
    grads_sliced = torch.autograd.grad(sliced, leaves, allow_unused=True)
    for gf, gs in zip(grads_full, grads_sliced):
        if gf is None or gs is None:
            assert gf is None or torch.all(gf == 0)
            continue
        torch.testing.assert_close(gf, gs, rtol=1e-5, atol=1e-6)
        if gf.shape[:1] == keep.shape:  # inputs without a batch axis (prototypes, class centres) are shared
            assert torch.all(gf[~keep] == 0)


# ------------------------------------------------------------------------------------------- reductions


# every loss, no exceptions: the per-example values of "none" add up to "sum" (pair- and triplet-based losses give
# each anchor the sum over its pairs; labels in two groups give anchors several positives, so a per-anchor mean
# would not pass)
@pytest.mark.parametrize("name", [n for n in NAMES if _takes(n, "reduction")])
def test_reduction_none_sums_to_sum(name):
    args, kwargs, _ = _build(name, seed=3, groups=2)
    none = _call(name, args, kwargs, reduction="none")
    assert none.dim() >= 1, name
    torch.testing.assert_close(none.sum(), _call(name, args, kwargs, reduction="sum"), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="reduction"):
        _call(name, args, kwargs, reduction="avg")


# weights that do not multiply per-example values, by design: AOT refuses them (it sorts the batch) and Dr. DPO's
# enter its weighted soft minimum over the batch (each pair's "none" value is its share of that)
WEIGHTS_IN_THE_OBJECTIVE = {"aot", "aot_unpaired", "dr_dpo"}


@pytest.mark.parametrize(
    "name", [n for n in NAMES if _takes(n, "reduction") and _takes(n, "weights") and n not in WEIGHTS_IN_THE_OBJECTIVE]
)
def test_weights_multiply_the_per_example_values(name):
    args, kwargs, _ = _build(name, seed=4, groups=2)
    none = _call(name, args, kwargs, reduction="none")
    w = torch.rand(none.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(none.dtype)
    weighted = _call(name, args, kwargs, reduction="none", weights=w)
    torch.testing.assert_close(weighted, none * w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        _call(name, args, kwargs, reduction="sum", weights=w), weighted.sum(), rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_shapes_raise(name):
    args, kwargs, _ = _build(name)
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim() >= 1]
    if len(tensors) >= 2:
        bad = list(args)
        bad[tensors[1]] = bad[tensors[1]][:-1]  # one example fewer in the second input
        with pytest.raises(InputError):
            _call(name, bad, kwargs)
    if _takes(name, "weights"):
        with pytest.raises(InputError):
            _call(name, args, kwargs, weights=torch.ones(B + 2))


# --------------------------------------------------------------------------------------------- gradients

# stop-gradient by design (as in the papers/peers): a detached weight, target or gate makes finite differences
# disagree with the (intended) analytic gradient
STOP_GRADIENT = {
    "aldr_kl_loss", "circle", "cwcl", "diffusion_kto", "kto", "nkd_loss", "p2c_loss", "pairwise_cringe", "ps_kd_loss",
    "uskd_loss", "groco",
    "simmatchv2_edge_edge_loss", "simmatchv2_node_edge_loss", "tpo", "bmc", "aft",
}  # fmt: skip
NOT_GRADCHECKED = STOP_GRADIENT


# option settings gradchecked besides the defaults: other branches of a loss (p2c without its stop-gradient
# diversity term is gradcheckable)
GRADCHECK_VARIANTS = [
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("ldr_kl_loss", {"normalize_scores": False, "lam": 0.5}),
    ("comp_sum_loss", {"tau": 0.0}),
    ("p2c_loss", {"lambda_div": 0.0}),
    ("bmc", {"delta": 1.0}),  # 1/π >= 1 = δ: the stop-gradient weights are the constant 2
    ("groco", {"stop_grad": False}),
    ("aft", {"constraint": "none"}),  # the boundary and the detaching constraint stop gradients
]
GRADCHECK_CASES = [(n, {}) for n in NAMES if n not in NOT_GRADCHECKED] + GRADCHECK_VARIANTS


@pytest.mark.parametrize("name, options", GRADCHECK_CASES, ids=[n + "-" + "-".join(o) for n, o in GRADCHECK_CASES])
def test_gradcheck_float64(name, options):
    args, kwargs, leaves = _build(name, dtype=torch.float64, seed=5)
    kwargs.update(options)
    if not leaves:
        pytest.skip(f"{name} has no differentiable model-output input")
    positions = [i for i, a in enumerate(args) if any(a is leaf for leaf in leaves)]
    keys = [k for k, v in kwargs.items() if any(v is leaf for leaf in leaves)]

    def f(*xs):
        a = list(args)
        for i, x in zip(positions, xs[: len(positions)]):
            a[i] = x
        kw = dict(kwargs)
        kw.update(zip(keys, xs[len(positions) :]))
        return _call(name, a, kw)

    inputs = tuple(args[i] for i in positions) + tuple(kwargs[k] for k in keys)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- options


def _bad_values(option):
    out = []
    if float in option.kinds() or int in option.kinds():
        out.append(math.nan)
        r = option.range
        if r is not None and r.low is not None:
            out.append(r.low - 1)
            if r.closed in ("right", "neither"):
                out.append(r.low)
        if r is not None and r.high is not None:
            out.append(r.high + 1)
    if option.choices:
        out.append("no-such-choice")
    return out


OPTION_CASES = [(s.name, o.name, v) for s in SPECS.values() for o in s.options for v in _bad_values(o)]


@pytest.mark.parametrize("name, option, value", OPTION_CASES, ids=[f"{n}-{o}-{v}" for n, o, v in OPTION_CASES])
def test_out_of_range_options_raise_naming_option_and_value(name, option, value):
    args, kwargs, _ = _build(name)
    kwargs[option] = value
    with pytest.raises(InputError, match=rf"{option} must be .*got {value!r}"):
        _call(name, args, kwargs)
