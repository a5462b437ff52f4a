"""Shared machinery of every pairkit loss: the reduction, input checks, declared inputs and the registry.

Conventions (see ``DESIGN.md``): a loss is a pure function ``f(inputs..., *, options..., reduction="mean")``.
``reduction="none"`` returns per-example values, ``"sum"`` their (weighted) sum and ``"mean"`` their weighted
mean over the valid (unmasked) examples. Empty or fully masked input reduces to ``0`` — never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from pairkit._spec import Input, Interval, Option, Registry, Spec, declare_options
from pairkit.errors import InputError

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def reduce_loss(
    values: torch.Tensor,
    reduction: Reduction = "mean",
    *,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce per-example loss values safely.

    ``mask`` (bool, broadcastable to ``values``) marks valid entries; masked entries contribute exactly zero
    (also to gradients, even where ``values`` is inf/NaN there). ``weights`` multiply each entry; the
    ``"mean"`` divides by the sum of weights over valid entries (the count when unweighted). An empty or
    all-masked input reduces to 0 with the dtype and device of ``values``.

    With ``reduction="none"`` masked entries are returned as 0 and weights are applied.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
        values = values * weights
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=values.device)
        values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if weights is None:
        denom = mask.expand_as(values).sum() if mask is not None else values.numel()
        denom = torch.as_tensor(denom, dtype=values.dtype, device=values.device)
    else:
        w = weights.expand_as(values)
        if mask is not None:
            w = torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
        denom = w.sum()
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, total / safe, torch.zeros_like(total))


def check_same_shape(**tensors: torch.Tensor | None) -> None:
    """Raise :class:`InputError` naming the arguments when the given tensors' shapes differ."""
    given = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(given.values())) > 1:
        desc = ", ".join(f"{k} {list(s)}" for k, s in given.items())
        raise InputError(f"shapes must match: {desc}")


def check_float_tensors(
    mask: torch.Tensor | None = None, weights: torch.Tensor | None = None, *, what: str = "", **tensors
) -> torch.Tensor:
    """Check same-shape floating-point tensors (``None`` skipped) with ``mask``/``weights`` broadcasting to them.

    Returns the first tensor. ``what`` (e.g. ``" of log-probabilities"``) is appended to the dtype error.
    """
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            kind = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name} must be a floating-point torch tensor{what}, got {kind}")
        if first is None:
            first = t
        elif t.shape != first.shape:
            check_same_shape(**tensors)  # raises, naming every shape
    if mask is not None:
        check_broadcastable("mask", mask, first.shape)
    if weights is not None:
        check_broadcastable("weights", weights, first.shape)
    return first


def check_broadcastable(name: str, tensor: torch.Tensor | None, shape: torch.Size | tuple[int, ...]) -> None:
    """Raise :class:`InputError` when ``tensor`` (e.g. a mask or weights) cannot broadcast to ``shape``."""
    if tensor is None:
        return
    try:
        torch.broadcast_shapes(tuple(tensor.shape), tuple(shape))
    except RuntimeError:
        raise InputError(
            f"{name} of shape {list(tensor.shape)} does not broadcast to the input shape {list(shape)}"
        ) from None


# ------------------------------------------------------------------------------------------- declared inputs

# The input kinds of the registered losses (see pairkit._spec.Input); trainers and the behaviour tests build
# tensors from these declarations, never from signatures.
PAIR = (Input("policy_chosen_logps", "logps"), Input("policy_rejected_logps", "logps"))
PAIR_REF = (*PAIR, Input("ref_chosen_logps", "logps"), Input("ref_rejected_logps", "logps"))
UNPAIRED = (Input("policy_logps", "logps"), Input("ref_logps", "logps"), Input("desirable", "binary"))
LIST_REF = (
    Input("policy_logps", "logps", "[batch, list]"),
    Input("ref_logps", "logps", "[batch, list]"),
    Input("labels", "grades", "[batch, list]"),
)
RANKED_LISTS = (Input("scores", "scores", "[batch, list]"), Input("labels", "grades", "[batch, list]"))
REWARD_PAIR = (Input("chosen_rewards", "rewards"), Input("rejected_rewards", "rewards"))
CLASSES = (Input("logits", "logits", "[batch, classes]"), Input("labels", "classes"))
STUDENT_TEACHER = (
    Input("student_logits", "logits", "[batch, classes]"),
    Input("teacher_logits", "logits", "[batch, classes]"),
)
TOKEN_STUDENT_TEACHER = (
    Input("student_logits", "token_logits", "[batch, T, vocab]"),
    Input("teacher_logits", "token_logits", "[batch, T, vocab]"),
)
DISTRIBUTIONS = (
    Input("log_predictions", "log_probs", "[batch, classes]"),
    Input("log_targets", "log_probs", "[batch, classes]"),
)
LABELLED_EMBEDDINGS = (Input("embeddings", "embeddings", "[n, dim]"), Input("labels", "classes", "[n]"))
QUERY_KEYS = (Input("query", "embeddings", "[n, dim]"), Input("keys", "embeddings", "[n, dim]"))


def keyword(name: str, kind: str, shape: str = "[batch]", *, required: bool = False, doc: str = "") -> Input:
    """A tensor passed by keyword (lengths, per-pair targets, token tensors …)."""
    return Input(name, kind, shape, required=required, keyword=True, doc=doc)


CHOSEN_LENGTHS = keyword("chosen_lengths", "lengths")
REJECTED_LENGTHS = keyword("rejected_lengths", "lengths")
CHOSEN_NLL = keyword("chosen_nll", "nll")
TOKEN_MASKS = (
    keyword("chosen_mask", "token_mask", "[batch, T]"),
    keyword("rejected_mask", "token_mask", "[batch, T]"),
)
TOKEN_PAIR_REF = (
    *(Input(i.name, "token_logps", "[batch, T]") for i in PAIR_REF),
    Input("chosen_kl", "token_kl", "[batch, T]"),
    Input("rejected_kl", "token_kl", "[batch, T]"),
    *TOKEN_MASKS,
)


def xlogy_rel(p: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Elementwise ``p (log p - log q)`` with the convention ``0 * log(0 / q) = 0``.

    The double ``where`` keeps gradients finite where ``p == 0`` and ``log_q == -inf``.
    """
    pos = p > 0
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    diff = torch.where(pos, log_p - torch.where(pos, log_q, zero), zero)
    return torch.where(pos, p * diff, zero)


def kl_logspace(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-position ``KL(p || q)`` from log-probabilities (``-inf`` entries of ``log_p`` contribute 0)."""
    p = torch.exp(log_p)
    if bool(torch.isfinite(log_p).all()):
        # common case (log-softmax outputs): no zero-mass classes, so the plain product is exact and
        # avoids the masked path's extra [..., vocab] temporaries
        return (p * (log_p - log_q)).sum(-1)
    return xlogy_rel(p, log_p, log_q).sum(-1)


def label_logp(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.gather(log_probs, -1, labels.unsqueeze(-1)).squeeze(-1)


# ------------------------------------------------------------------------------------------ declared options

# Ranges shared by the options of the registered losses (every numeric option declares one; ``REAL`` says "any
# finite number" on purpose). Values are checked once, by the spec, before the loss runs.
REAL = Interval()
POSITIVE = Interval(0, None, closed="neither")
NON_NEGATIVE = Interval(0, None)
UNIT = Interval(0, 1)
AT_LEAST_ONE = Interval(1, None)


def weight_option(name: str, doc: str = "weight of the term") -> Option:
    """A non-negative weight of one term of a loss."""
    return Option(name, float, NON_NEGATIVE, doc=doc)


NORMALIZE = Option("normalize", bool, doc="L2-normalise the embeddings first (cosine similarities)")
CHUNK_SIZE = Option("chunk_size", int, AT_LEAST_ONE, none=True, doc="rows per chunk (None: chosen for memory)")
TOP_K = Option("k", int, AT_LEAST_ONE, none=True, doc="cut-off k (None: the whole list)")
GAIN = Option("gain", str, choices=("exp2", "linear"), doc="gain of a relevance grade: 2**y - 1 or y")
TEMPERATURE = Option("temperature", float, POSITIVE, doc="softmax temperature τ")


# ----------------------------------------------------------------------------------------------- registry

REGISTRY = Registry("loss")


def register(
    name: str,
    *,
    family: str,
    inputs: tuple[Input, ...],
    aliases: tuple[str, ...] = (),
    options: tuple[Option, ...] = (),
    batch_coupled: bool = False,
    keywords: tuple[str, ...] = ("mask", "weights", "reduction"),
    data: str = "",
    extra: dict | None = None,
) -> Callable:
    """Decorator: register a loss as a :class:`~pairkit._spec.Spec`.

    ``inputs`` declares its tensor inputs; ``options`` its keyword options (checked on every call, see
    :func:`~pairkit._spec.declare_options`); ``batch_coupled`` that one example's value depends on the others
    in the batch (so it must be computed on the whole batch); ``keywords`` which of ``mask``, ``weights`` and
    ``reduction`` it takes. ``aliases`` are peers' spellings. ``extra`` holds
    what a trainer may need beyond the loss (``pair_logits``: the model's own pairwise verdict, for accuracy).
    """

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        checked = declare_options(*options)(fn) if options else fn
        REGISTRY.add(
            Spec(
                name,
                checked,
                kind="loss",
                data=data or family,
                input_specs=tuple(inputs),
                aliases=tuple(aliases),
                family=family,
                batch_coupled=batch_coupled,
                keywords=tuple(k for k in keywords if k not in {i.name for i in inputs}),
                extra=dict(extra or {}),
            )  # fmt: skip
        )
        return checked

    return wrap


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def spec(name: str) -> Spec:
    """The :class:`~pairkit._spec.Spec` of the loss registered under ``name`` or one of its aliases."""
    if not isinstance(name, str):
        raise InputError(f"a loss name must be a string, got {type(name).__name__}")
    return REGISTRY.get(_key(name))


def specs(family: str | None = None) -> list[Spec]:
    """Every registered loss spec (of one ``family``), sorted by name."""
    return [s for s in REGISTRY.specs() if family is None or s.family == family]


def get(name: str) -> Callable[..., torch.Tensor]:
    """Return the loss function registered under ``name`` or one of its aliases."""
    return spec(name).fn


def names(family: str | None = None, *, aliases: bool = False) -> list[str]:
    """Sorted registered loss names, optionally of one family; ``aliases=True`` includes the aliases."""
    return REGISTRY.names(family=family, aliases=aliases)


def canonical_name(name: str) -> str:
    """The registered name that ``name`` (possibly an alias) refers to."""
    return spec(name).name


def family_of(name: str) -> str:
    """The family ('preference', 'ranking', ...) of a registered loss."""
    return spec(name).family
