"""Pairwise, sequence-level preference-optimisation losses (DPO and its relatives).

Inputs are per-sequence log-probabilities of shape ``[batch]``: the policy's and the frozen reference
model's for the chosen (preferred) and the rejected response of each pair. Reference-free losses (SimPO,
CPO, ORPO) take only the policy's. Every loss returns per-pair values with ``reduction="none"`` and is
registered under its name and the TRL ``DPOTrainer.loss_type`` spelling (``pairkit.losses.get("sigmoid")``
is :func:`dpo_loss`).

With :math:`\\rho_c = \\log\\pi(y_c) - \\log\\pi_{ref}(y_c)`, :math:`\\rho_r` likewise and
:math:`\\Delta = \\rho_c - \\rho_r`, most losses here are a function of the logit :math:`\\beta\\Delta`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from pairkit.errors import InputError
from pairkit.losses._core import (
    CHOSEN_LENGTHS,
    CHOSEN_NLL,
    PAIR,
    PAIR_REF,
    REJECTED_LENGTHS,
    Reduction,
    check_broadcastable,
    check_float_tensors,
    check_same_shape,
    keyword,
    reduce_loss,
    register,
)

__all__ = [
    "aot_loss",
    "aot_unpaired_loss",
    "apo_down_loss",
    "apo_zero_loss",
    "bco_pair_loss",
    "bco_reward_shift",
    "combine",
    "conservative_dpo_loss",
    "cpo_loss",
    "cpo_simpo_loss",
    "cringe_positive_logits",
    "discopop_loss",
    "dpo_loss",
    "dr_dpo_loss",
    "exo_pair_loss",
    "ipo_loss",
    "irepo_loss",
    "ld_dpo_logps",
    "logratio_scores",
    "mmpo_loss",
    "nca_pair_loss",
    "orpo_loss",
    "pair_sft_loss",
    "pairwise_cringe_loss",
    "preference_logits",
    "robust_dpo_loss",
    "rpo_loss",
    "sigmoid_norm_loss",
    "simpo_loss",
    "slic_loss",
    "sppo_hard_loss",
    "token_log_sum_sq_probs",
    "weighted_sum",
    "wpo_weights",
]

_FAMILY = "preference"
_F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# exp() of anything above this stays finite in the dtype (TRL uses the same bounds for the alpha-divergence)
_EXP_CLAMP = {torch.float16: 11.0, torch.bfloat16: 80.0, torch.float32: 80.0, torch.float64: 700.0}


# ------------------------------------------------------------------------------------------- shared cores


def _check(mask: torch.Tensor | None = None, weights: torch.Tensor | None = None, **tensors) -> torch.Tensor:
    """Validate the per-pair inputs (same shape, floating point) and return the first one."""
    return check_float_tensors(mask, weights, what=" of log-probabilities", **tensors)


def _lengths(name: str, lengths, like: torch.Tensor) -> torch.Tensor:
    """Completion lengths as a float tensor like ``like``, clamped at 1 (as TRL does) so empty ones stay finite."""
    lengths = torch.as_tensor(lengths, dtype=like.dtype, device=like.device)
    check_broadcastable(name, lengths, like.shape)
    return lengths.clamp(min=1.0)


def logratio_scores(logratios: torch.Tensor, *, f_divergence: str = "reverse_kl", f_alpha: float = 0.5) -> torch.Tensor:
    """Map log density ratios :math:`u = \\log(\\pi/\\pi_{ref})` to :math:`f'(e^u)` for f-DPO.

    .. math::

        \\text{reverse\\_kl}: u \\qquad \\text{forward\\_kl}: 1 - e^{-u} \\qquad
        \\text{js\\_divergence}: \\log 2 + \\log\\sigma(u) \\qquad
        \\text{alpha\\_divergence}: \\frac{e^{(\\alpha-1)u} - 1}{\\alpha - 1}

    Wang et al. (2023), "Beyond Reverse KL: Generalizing Direct Preference Optimization with Diverse
    Divergence Constraints". Same convention as TRL's ``f_divergence_type`` / ``f_alpha_divergence_coef``
    (the exponent is clamped so the score stays finite in the input dtype; α → 1 falls back to reverse KL).

    Args: ``logratios`` any shape. Returns the same shape.
    """
    if f_divergence == "reverse_kl":
        return logratios
    limit = _EXP_CLAMP.get(logratios.dtype, 80.0)
    if f_divergence == "forward_kl":
        return 1.0 - torch.exp((-logratios).clamp(max=limit))
    if f_divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratios)
    if f_divergence == "alpha_divergence":
        if abs(f_alpha - 1.0) < 1e-6:
            return logratios
        t = ((f_alpha - 1.0) * logratios).float().clamp(max=limit)
        return torch.expm1(t).to(logratios.dtype) / (f_alpha - 1.0)
    raise InputError(f"f_divergence must be one of {_F_DIVERGENCES}, got {f_divergence!r}")


def preference_logits(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    f_divergence: str = "reverse_kl",
    f_alpha: float = 0.5,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """The implicit-reward margin :math:`\\Delta` (before the β scale) shared by the DPO family.

    .. math::

        \\Delta = \\frac{f'(\\pi_c/\\pi^{ref}_c)}{|y_c|} - \\frac{f'(\\pi_r/\\pi^{ref}_r)}{|y_r|}

    with :math:`f'` from :func:`logratio_scores` (the log ratio itself for reverse KL, i.e. DPO) and the
    length division only when ``chosen_lengths``/``rejected_lengths`` are given (token-averaged margin).
    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward Model".

    Args: four ``[batch]`` log-probability tensors; lengths ``[batch]`` (token counts). Returns ``[batch]``.
    """
    chosen, rejected = _pair_scores(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, None, None,
        f_divergence=f_divergence, f_alpha=f_alpha,
    )  # fmt: skip
    chosen, rejected = _length_normalised(chosen, rejected, chosen_lengths, rejected_lengths)
    return chosen - rejected


def _pair_scores(
    pc: torch.Tensor,
    pr: torch.Tensor,
    rc: torch.Tensor,
    rr: torch.Tensor,
    mask: torch.Tensor | None,
    weights: torch.Tensor | None,
    *,
    f_divergence: str = "reverse_kl",
    f_alpha: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the four ``[batch]`` inputs and return the chosen and rejected (f-)log-ratio scores."""
    _check(mask, weights, **_named(pc, pr, rc, rr))
    chosen = logratio_scores(pc - rc, f_divergence=f_divergence, f_alpha=f_alpha)
    rejected = logratio_scores(pr - rr, f_divergence=f_divergence, f_alpha=f_alpha)
    return chosen, rejected


def _named(pc, pr, rc=None, rr=None) -> dict[str, torch.Tensor | None]:
    return {
        "policy_chosen_logps": pc,
        "policy_rejected_logps": pr,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }


def _logistic(logits: torch.Tensor, label_smoothing: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` against the soft target ``1 - label_smoothing``."""
    if isinstance(label_smoothing, (int, float)) and label_smoothing == 0.0:
        return -F.logsigmoid(logits)
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def _margin_loss(kind: str, delta: torch.Tensor, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """The three classic losses of a reward margin ``delta``: logistic, hinge (SLiC) and squared (IPO)."""
    if kind == "sigmoid":
        return _logistic(beta * delta, label_smoothing)
    if kind == "hinge":
        return torch.relu(1.0 - beta * delta)
    if kind == "ipo":
        return (delta - 1.0 / (2.0 * beta)) ** 2
    raise InputError(f"loss_type must be one of 'sigmoid', 'hinge', 'ipo' (or 'simpo' for CPO), got {kind!r}")


def _check_smoothing(name: str, value: float, low: float, high: float, hint: str) -> None:
    if not (low <= value < high):
        raise InputError(f"{name} must be in [{low}, {high}), got {value!r}; {hint}")


def _nll(policy_chosen_logps: torch.Tensor, chosen_nll, chosen_lengths) -> torch.Tensor:
    """The SFT term: ``chosen_nll`` when given, else the (length-normalised) NLL of the chosen response."""
    if isinstance(chosen_nll, torch.Tensor) and chosen_nll.dim() == 0:
        return chosen_nll.to(policy_chosen_logps.dtype)  # a batch-level term (e.g. TRL's token-mean NLL)
    if chosen_nll is not None:
        nll = torch.as_tensor(chosen_nll, dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)
        check_broadcastable("chosen_nll", nll, policy_chosen_logps.shape)
        return nll
    if chosen_lengths is not None:
        return -policy_chosen_logps / _lengths("chosen_lengths", chosen_lengths, policy_chosen_logps)
    return -policy_chosen_logps


def _reduce(values: torch.Tensor, reduction: Reduction, mask=None, weights=None) -> torch.Tensor:
    """:func:`reduce_loss`, with the common unmasked, unweighted mean done in one kernel."""
    if reduction == "mean" and mask is None and weights is None and values.numel() > 0:
        return values.mean()
    return reduce_loss(values, reduction, mask=mask, weights=weights)


def _reduce_plus(values, extra, reduction: Reduction, mask=None, weights=None) -> torch.Tensor:
    """Reduce ``values + extra``; a 0-d ``extra`` (a batch-level term) is added after an unweighted mean."""
    if extra.dim() == 0 and reduction == "mean" and mask is None and weights is None and values.numel() > 0:
        return values.mean() + extra
    return _reduce(values + extra, reduction, mask, weights)


def _required(name: str, value):
    if value is None:
        raise InputError(f"{name} is required by this loss (got None)")
    return value


# ------------------------------------------------------------------------------- the reference-based losses

_REQUIRED = inspect.Parameter.empty
_F_OPTIONS = {"f_divergence": "reverse_kl", "f_alpha": 0.5}
_INPUTS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _ref_loss(name: str, *, aliases: tuple[str, ...] = (), f_divergence: bool = False, **options):
    """Register ``core(chosen_scores, rejected_scores, **options) -> [batch]`` as a four-input loss.

    The registered function is ``f(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
    ref_rejected_logps, *, **options, mask=None, weights=None, reduction="mean")``: it checks the inputs,
    forms the log ratios (through :func:`logratio_scores` when ``f_divergence`` is on), calls the core and
    reduces. Options whose default is ``_REQUIRED`` must be given. A core that names
    ``policy_chosen_logps`` also receives it (for SFT terms).
    """
    defaults = {**options, **(_F_OPTIONS if f_divergence else {})}

    def wrap(core: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        wants_policy = "policy_chosen_logps" in inspect.signature(core).parameters

        def loss(
            policy_chosen_logps,
            policy_rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            *,
            mask=None,
            weights=None,
            reduction: Reduction = "mean",
            **kwargs,
        ):
            unknown = set(kwargs) - set(defaults)
            if unknown:
                raise InputError(f"{name} got unknown options {sorted(unknown)}; it takes {sorted(defaults)}")
            opts = {**defaults, **kwargs}
            missing = [k for k, v in opts.items() if v is _REQUIRED]
            if missing:
                raise InputError(f"{name} needs {missing} (keyword arguments)")
            f_opts = {k: opts.pop(k) for k in _F_OPTIONS if f_divergence}
            chosen, rejected = _pair_scores(
                policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights,
                **f_opts,
            )  # fmt: skip
            if wants_policy:
                opts["policy_chosen_logps"] = policy_chosen_logps
            return _reduce(core(chosen, rejected, **opts), reduction, mask, weights)

        kw_only = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in _INPUTS]
        params += [inspect.Parameter(k, kw_only, default=v) for k, v in defaults.items() if v is _REQUIRED]
        params += [inspect.Parameter(k, kw_only, default=v) for k, v in defaults.items() if v is not _REQUIRED]
        params += [
            inspect.Parameter("mask", kw_only, default=None),
            inspect.Parameter("weights", kw_only, default=None),
            inspect.Parameter("reduction", kw_only, default="mean"),
        ]
        loss.__signature__ = inspect.Signature(params)
        for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(loss, attr, getattr(core, attr))
        tensors = {
            "chosen_lengths": CHOSEN_LENGTHS,
            "rejected_lengths": REJECTED_LENGTHS,
            "chosen_nll": CHOSEN_NLL,
            "quality_margins": keyword("quality_margins", "margins", required=True),
            "preference_probs": keyword("preference_probs", "probs", required=True),
        }
        inputs = (
            *PAIR_REF,
            *(dataclasses.replace(tensors[k], required=v is _REQUIRED) for k, v in defaults.items() if k in tensors),
        )
        return register(name, inputs=inputs, family=_FAMILY, aliases=aliases)(loss)

    return wrap


def _length_normalised(chosen, rejected, chosen_lengths, rejected_lengths):
    if (chosen_lengths is None) != (rejected_lengths is None):
        raise InputError("give both chosen_lengths and rejected_lengths, or neither")
    if chosen_lengths is None:
        return chosen, rejected
    return (
        chosen / _lengths("chosen_lengths", chosen_lengths, chosen),
        rejected / _lengths("rejected_lengths", rejected_lengths, rejected),
    )


@_ref_loss("dpo", aliases=("sigmoid", "f_dpo"), f_divergence=True, beta=0.1)
def dpo_loss(chosen, rejected, *, beta):
    """Direct Preference Optimization: logistic loss on the implicit-reward margin.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\Delta), \\qquad
        \\Delta = \\log\\frac{\\pi(y_c)}{\\pi_{ref}(y_c)} - \\log\\frac{\\pi(y_r)}{\\pi_{ref}(y_r)}

    Rafailov et al. (2023), "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model". With ``f_divergence`` other than ``"reverse_kl"`` the log ratios become :math:`f'` scores
    (f-DPO; Wang et al. 2023, "Beyond Reverse KL"); see :func:`logratio_scores`. TRL: ``loss_type="sigmoid"``
    (``f_divergence`` = TRL's ``f_divergence_type``, ``f_alpha`` = ``f_alpha_divergence_coef``).
    For WPO pass ``weights=wpo_weights(...)``; for LD-DPO build the log-probs with :func:`ld_dpo_logps`.

    Args: four ``[batch]`` sequence log-probabilities (summed over completion tokens).
    Returns ``[batch]`` with ``reduction="none"``, else a scalar.
    """
    return _margin_loss("sigmoid", chosen - rejected, beta)


@_ref_loss("conservative_dpo", aliases=("cdpo",), f_divergence=True, beta=0.1, label_smoothing=0.1)
def conservative_dpo_loss(chosen, rejected, *, beta, label_smoothing):
    """Conservative DPO: DPO with labels flipped with probability ε (label smoothing).

    .. math::

        \\ell = -(1-\\varepsilon)\\log\\sigma(\\beta\\Delta) - \\varepsilon\\log\\sigma(-\\beta\\Delta)

    Mitchell (2023), "A note on DPO with noisy preferences & relationship to IPO" (cDPO).
    ``label_smoothing=0`` is :func:`dpo_loss`.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    _check_smoothing("label_smoothing", label_smoothing, 0.0, 1.0, "it is the assumed label-flip rate")
    return _margin_loss("sigmoid", chosen - rejected, beta, label_smoothing)


@_ref_loss("robust_dpo", aliases=("robust",), f_divergence=True, beta=0.1, label_smoothing=0.1)
def robust_dpo_loss(chosen, rejected, *, beta, label_smoothing):
    """Robust DPO: the unbiased estimate of the clean DPO loss under label-flip noise of rate ε.

    .. math::

        \\ell = \\frac{-(1-\\varepsilon)\\log\\sigma(\\beta\\Delta) + \\varepsilon\\log\\sigma(-\\beta\\Delta)}
                     {1 - 2\\varepsilon}

    Chowdhury, Kini & Natarajan (2024), "Provably Robust DPO: Aligning Language Models with Noisy
    Feedback". TRL: ``loss_type="robust"``. ``label_smoothing=0`` is :func:`dpo_loss`.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    _check_smoothing("label_smoothing", label_smoothing, 0.0, 0.5, "rDPO needs a flip rate below 1/2")
    z = beta * (chosen - rejected)
    eps = label_smoothing
    return (-(1.0 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps)


@_ref_loss("slic", aliases=("hinge",), f_divergence=True, beta=0.1)
def slic_loss(chosen, rejected, *, beta):
    """Hinge (SLiC) loss on the implicit-reward margin, with margin :math:`1/\\beta`.

    .. math::

        \\ell = \\max(0,\\, 1 - \\beta\\Delta)

    Zhao et al. (2023), "SLiC-HF: Sequence Likelihood Calibration with Human Feedback" (reference-
    normalised as in TRL's ``loss_type="hinge"``).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    return _margin_loss("hinge", chosen - rejected, beta)


@_ref_loss("ipo", f_divergence=True, beta=0.1, chosen_lengths=None, rejected_lengths=None)
def ipo_loss(chosen, rejected, *, beta, chosen_lengths, rejected_lengths):
    """Identity Preference Optimisation: regress the margin onto :math:`1/(2\\tau)` (τ = ``beta``).

    .. math::

        \\ell = \\Big(\\Delta - \\frac{1}{2\\beta}\\Big)^2

    Azar et al. (2023), "A General Theoretical Paradigm to Understand Learning from Human Preferences"
    (Eq. 17). With ``chosen_lengths``/``rejected_lengths`` the log ratios are first divided by the completion
    lengths — the token-averaged form TRL's ``loss_type="ipo"`` always uses (and the IPO authors' results).

    Args: four ``[batch]`` sequence log-probabilities; optional ``[batch]`` lengths. Returns ``[batch]`` or a
    scalar.
    """
    chosen, rejected = _length_normalised(chosen, rejected, chosen_lengths, rejected_lengths)
    return _margin_loss("ipo", chosen - rejected, beta)


@_ref_loss(
    "sigmoid_norm",
    aliases=("length_normalized_dpo", "ln_dpo"),
    f_divergence=True,
    chosen_lengths=_REQUIRED,
    rejected_lengths=_REQUIRED,
    beta=0.1,
)
def sigmoid_norm_loss(chosen, rejected, *, chosen_lengths, rejected_lengths, beta):
    """Length-normalised DPO: DPO on per-token averaged log ratios.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\beta\\Big(\\frac{\\rho_c}{|y_c|} - \\frac{\\rho_r}{|y_r|}\\Big)\\Big)

    Meng, Xia & Chen (2024), "SimPO: Simple Preference Optimization with a Reference-Free Reward" (the
    length-normalised DPO baseline). TRL: ``loss_type="sigmoid_norm"``.

    Args: four ``[batch]`` sequence log-probabilities and ``[batch]`` completion lengths (token counts).
    Returns ``[batch]`` or a scalar.
    """
    chosen, rejected = _length_normalised(chosen, rejected, chosen_lengths, rejected_lengths)
    return _margin_loss("sigmoid", chosen - rejected, beta)


@_ref_loss("exo", aliases=("exo_pair",), f_divergence=True, beta=0.1, label_smoothing=1e-3)
def exo_pair_loss(chosen, rejected, *, beta, label_smoothing):
    """EXO (pairwise): reverse KL from the model's pair distribution to the smoothed label distribution.

    .. math::

        \\ell = \\sigma(z)\\big(\\log\\sigma(z) - \\log(1-\\varepsilon)\\big)
              + \\sigma(-z)\\big(\\log\\sigma(-z) - \\log\\varepsilon\\big), \\qquad z = \\beta\\Delta

    Ji et al. (2024), "Towards Efficient Exact Optimization of Language Model Alignment" (Eq. 16, K=2).
    TRL: ``loss_type="exo_pair"`` (ε = ``label_smoothing``, must be > 0; the paper suggests 1e-3).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    _check_smoothing("label_smoothing", label_smoothing, 1e-12, 1.0, "EXO needs 0 < ε < 1 (the paper uses 1e-3)")
    z = beta * (chosen - rejected)
    return torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-label_smoothing)) + torch.sigmoid(-z) * (
        F.logsigmoid(-z) - math.log(label_smoothing)
    )


@_ref_loss("discopop", f_divergence=True, beta=0.1, tau=0.05)
def discopop_loss(chosen, rejected, *, beta, tau):
    """DiscoPOP (log-ratio modulated loss): a logistic/exponential blend gated by the margin.

    .. math::

        \\ell = (1 - \\sigma(z/\\tau))\\,(-\\log\\sigma(z)) + \\sigma(z/\\tau)\\,e^{-z}, \\qquad z = \\beta\\Delta

    Lu et al. (2024), "Discovering Preference Optimization Algorithms with and for Large Language Models"
    (Eq. 5). TRL: ``loss_type="discopop"`` (``tau`` = ``discopop_tau``). The exponential part is evaluated
    as :math:`\\exp(\\log\\sigma(z/\\tau) - z)` so that large negative margins do not give ``inf * 0``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    z = beta * (chosen - rejected)
    return torch.sigmoid(-z / tau) * -F.logsigmoid(z) + torch.exp(F.logsigmoid(z / tau) - z)


@_ref_loss("nca_pair", beta=0.1)
def nca_pair_loss(chosen, rejected, *, beta):
    """NCA (pairwise): noise-contrastive alignment on absolute implicit rewards :math:`r = \\beta\\rho`.

    .. math::

        \\ell = -\\log\\sigma(r_c) - \\tfrac12\\log\\sigma(-r_c) - \\tfrac12\\log\\sigma(-r_r)

    Chen et al. (2024), "Noise Contrastive Alignment of Language Models with Explicit Rewards".
    TRL: ``loss_type="nca_pair"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    rc, rr = beta * chosen, beta * rejected
    return -F.logsigmoid(rc) - 0.5 * F.logsigmoid(-rc) - 0.5 * F.logsigmoid(-rr)


@_ref_loss("bco_pair", beta=0.1, delta=0.0)
def bco_pair_loss(chosen, rejected, *, beta, delta):
    """BCO (pairwise): binary classification of chosen vs rejected implicit rewards around a shift δ.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\rho_c - \\delta) - \\log\\sigma(-(\\beta\\rho_r - \\delta))

    Jung et al. (2024), "Binary Classifier Optimization for Large Language Model Alignment". δ is the
    running mean of the rewards (keep it with :func:`bco_reward_shift`); TRL 1.16's ``loss_type="bco_pair"``
    uses δ = 0.

    Args: four ``[batch]`` sequence log-probabilities; ``delta`` a float or 0-d tensor (not differentiated).
    Returns ``[batch]`` or a scalar.
    """
    if isinstance(delta, torch.Tensor):
        delta = delta.detach()
    return -F.logsigmoid(beta * chosen - delta) - F.logsigmoid(-(beta * rejected - delta))


def bco_reward_shift(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    mean: float | torch.Tensor = 0.0,
    count: int = 0,
) -> tuple[torch.Tensor, int]:
    """Update BCO's running reward shift δ (the mean of every implicit reward seen so far).

    .. math::

        \\delta' = \\frac{n\\,\\delta + \\sum_i (r_{c,i} + r_{r,i})}{n + 2B}

    Jung et al. (2024), "Binary Classifier Optimization for Large Language Model Alignment".
    Pass ``mean``/``count`` returned by the previous call (start with 0, 0); rewards are :math:`\\beta\\rho`.

    Args: ``chosen_rewards``, ``rejected_rewards`` ``[batch]``. Returns (new δ as a 0-d tensor, new count).
    """
    check_same_shape(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    with torch.no_grad():
        total = chosen_rewards.sum() + rejected_rewards.sum()
        new_count = count + 2 * chosen_rewards.numel()
        if new_count == 0:
            return torch.as_tensor(mean, dtype=chosen_rewards.dtype), 0
        new_mean = (torch.as_tensor(mean, dtype=total.dtype) * count + total) / new_count
    return new_mean, new_count


@_ref_loss("sppo_hard", beta=0.1)
def sppo_hard_loss(chosen, rejected, *, beta):
    """SPPO with hard win probabilities: regress each log ratio onto :math:`\\pm 1/(2\\beta)`.

    .. math::

        \\ell = \\Big(\\rho_c - \\frac{1}{2\\beta}\\Big)^2 + \\Big(\\rho_r + \\frac{1}{2\\beta}\\Big)^2

    Wu et al. (2024), "Self-Play Preference Optimization for Language Model Alignment" (Eq. 4.7 with
    P = 1 for the winner, 0 for the loser). TRL: ``loss_type="sppo_hard"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    half = 0.5 / beta
    return (chosen - half) ** 2 + (rejected + half) ** 2


@_ref_loss("apo_zero", beta=0.1)
def apo_zero_loss(chosen, rejected, *, beta):
    """APO-zero: raise the chosen likelihood and lower the rejected one (chosen better than the model).

    .. math::

        \\ell = 1 - \\sigma(\\beta\\rho_c) + \\sigma(\\beta\\rho_r)

    D'Oosterlinck et al. (2024), "Anchored Preference Optimization and Contrastive Revisions" (Eq. 7).
    TRL: ``loss_type="apo_zero"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    return torch.sigmoid(-beta * chosen) + torch.sigmoid(beta * rejected)


@_ref_loss("apo_down", beta=0.1)
def apo_down_loss(chosen, rejected, *, beta):
    """APO-down: lower both likelihoods, the rejected one more (chosen worse than the model's outputs).

    .. math::

        \\ell = \\sigma(\\beta\\rho_c) + 1 - \\sigma(\\beta(\\rho_c - \\rho_r))

    D'Oosterlinck et al. (2024), "Anchored Preference Optimization and Contrastive Revisions" (Eq. 8).
    TRL: ``loss_type="apo_down"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    return torch.sigmoid(beta * chosen) + torch.sigmoid(-beta * (chosen - rejected))


@_ref_loss("rpo", beta=0.1, alpha=1.0, chosen_lengths=None, chosen_nll=None)
def rpo_loss(chosen, rejected, *, beta, alpha, chosen_lengths, chosen_nll, policy_chosen_logps):
    """RPO: DPO plus a length-normalised negative log-likelihood of the chosen response.

    .. math::

        \\ell = -\\log\\sigma(\\beta\\Delta) - \\alpha\\,\\frac{\\log\\pi(y_c)}{|y_c|}

    Pang et al. (2024), "Iterative Reasoning Preference Optimization". The NLL term is ``chosen_nll`` when
    given (e.g. a token-mean cross-entropy), else :math:`-\\log\\pi(y_c)/|y_c|` (``chosen_lengths``) or
    :math:`-\\log\\pi(y_c)` without lengths. In TRL: ``loss_type=["sigmoid", "sft"]``, weights ``[1, α]``.

    Args: four ``[batch]`` sequence log-probabilities; ``chosen_lengths``/``chosen_nll`` ``[batch]``.
    Returns ``[batch]`` or a scalar.
    """
    nll = _nll(policy_chosen_logps, chosen_nll, chosen_lengths)
    return _margin_loss("sigmoid", chosen - rejected, beta) + alpha * nll


def _per_pair(name: str, value, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()
    check_broadcastable(name, value, like.shape)
    return value


@_ref_loss("mmpo", aliases=("margin_matching",), quality_margins=_REQUIRED, gamma=1.0, beta=0.1)
def mmpo_loss(chosen, rejected, *, quality_margins, gamma, beta):
    """Margin-matching PO: DPO against a soft Bradley–Terry target built from the quality margin.

    .. math::

        p = \\sigma(\\gamma\\,(s_c - s_r)), \\qquad
        \\ell = -p\\log\\sigma(\\beta\\Delta) - (1-p)\\log\\sigma(-\\beta\\Delta)

    Kim et al. (2024), "Margin Matching Preference Optimization: Enhanced Model Alignment with Granular
    Feedback". ``quality_margins`` = :math:`s_c - s_r` (e.g. rating or reward-score differences);
    ``gamma`` scales them to Bradley–Terry logits.

    Args: four ``[batch]`` sequence log-probabilities; ``quality_margins`` ``[batch]``. Returns ``[batch]`` or
    a scalar.
    """
    target = torch.sigmoid(gamma * _per_pair("quality_margins", quality_margins, chosen))
    return _logistic(beta * (chosen - rejected), 1.0 - target)


@_ref_loss("irepo", preference_probs=_REQUIRED, beta=0.1, eps=1e-6)
def irepo_loss(chosen, rejected, *, preference_probs, beta, eps):
    """iREPO: regress the implicit-reward difference onto the logit of the empirical preference.

    .. math::

        \\ell = \\Big(\\beta\\Delta - \\log\\frac{\\hat p}{1-\\hat p}\\Big)^2

    Le et al. (2024), "iREPO: implicit Reward Pairwise Difference based Empirical Preference Optimization".
    ``preference_probs`` :math:`\\hat p` is the fraction of annotators (human or AI) preferring the chosen
    response; it is clipped to ``[eps, 1-eps]`` so unanimous votes give a finite target.

    Args: four ``[batch]`` sequence log-probabilities; ``preference_probs`` ``[batch]`` in [0, 1].
    Returns ``[batch]`` or a scalar.
    """
    p = _per_pair("preference_probs", preference_probs, chosen)
    if p.numel() and bool(((p < 0) | (p > 1) | torch.isnan(p)).any()):
        raise InputError(f"preference_probs must lie in [0, 1]; got values from {p.min().item()} to {p.max().item()}")
    return (beta * (chosen - rejected) - torch.logit(p, eps=eps)) ** 2


# ------------------------------------------------------------------------------ distributional (batch) AOT


def _sorted_valid(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sort ``x`` ascending with masked entries moved to the end (as zeros, so they stay finite)."""
    if mask is None:
        return torch.sort(x, dim=0).values
    mask = torch.as_tensor(mask, dtype=torch.bool, device=x.device).expand_as(x)
    key = torch.where(mask, x.detach(), torch.full_like(x, float("inf")))
    order = torch.argsort(key, dim=0, stable=True)
    return torch.where(mask, x, torch.zeros_like(x)).gather(0, order)


def _aot(a, b, beta, label_smoothing, mask, weights, reduction):
    if weights is not None:
        raise InputError(
            "weights are not supported by AOT: it sorts the batch, so per-pair weights would not line up "
            "with the sorted quantiles. Pass weights=None."
        )
    if a.dim() != 1:
        raise InputError(f"AOT expects 1-D [batch] inputs, got shape {list(a.shape)}")
    values = _margin_loss("sigmoid", _sorted_valid(a, mask) - _sorted_valid(b, mask), beta, label_smoothing)
    if mask is not None:
        # after sorting, the valid entries are the first n_valid positions
        n_valid = torch.as_tensor(mask, dtype=torch.bool, device=a.device).expand_as(a).sum()
        mask = torch.arange(a.shape[0], device=a.device) < n_valid
    return reduce_loss(values, reduction, mask=mask)


@register("aot", inputs=PAIR_REF, batch_coupled=True, family=_FAMILY)
def aot_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """AOT (paired): first-order stochastic dominance of the policy's over the reference's log-odds.

    .. math::

        \\ell_{(i)} = -(1-\\varepsilon)\\log\\sigma(\\beta d_{(i)}) - \\varepsilon\\log\\sigma(-\\beta d_{(i)}),
        \\quad d_{(i)} = \\mathrm{sort}(\\log\\tfrac{\\pi_c}{\\pi_r})_{(i)}
                       - \\mathrm{sort}(\\log\\tfrac{\\pi^{ref}_c}{\\pi^{ref}_r})_{(i)}

    Melnyk et al. (2024), "Distributional Preference Alignment of LLMs via Optimal Transport". The loss
    compares batch quantiles, so the i-th value belongs to the i-th quantile, not the i-th pair, and
    ``weights`` are rejected (as TRL does). TRL: ``loss_type="aot"``.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` (per quantile) or a scalar.
    """
    _check(mask, None, **_named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    return _aot(
        policy_chosen_logps - policy_rejected_logps,
        ref_chosen_logps - ref_rejected_logps,
        beta, label_smoothing, mask, weights, reduction,
    )  # fmt: skip


@register("aot_unpaired", inputs=PAIR_REF, batch_coupled=True, family=_FAMILY)
def aot_unpaired_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """AOT (unpaired): the chosen log ratios' distribution should dominate the rejected ones'.

    .. math::

        \\ell_{(i)} = -(1-\\varepsilon)\\log\\sigma(\\beta d_{(i)}) - \\varepsilon\\log\\sigma(-\\beta d_{(i)}),
        \\quad d_{(i)} = \\mathrm{sort}(\\rho_c)_{(i)} - \\mathrm{sort}(\\rho_r)_{(i)}

    Melnyk et al. (2024), "Distributional Preference Alignment of LLMs via Optimal Transport".
    TRL: ``loss_type="aot_unpaired"``. Values are per quantile; ``weights`` are rejected.

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` (per quantile) or a scalar.
    """
    _check(mask, None, **_named(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    return _aot(
        policy_chosen_logps - ref_chosen_logps,
        policy_rejected_logps - ref_rejected_logps,
        beta, label_smoothing, mask, weights, reduction,
    )  # fmt: skip


# ----------------------------------------------------------------------- DPO with extra terms or targets


@register(
    "pair_sft",
    inputs=(
        PAIR_REF[0],
        *(dataclasses.replace(i, required=False) for i in PAIR_REF[1:]),  # accepted so it composes with the others
        dataclasses.replace(CHOSEN_LENGTHS, required=True),
    ),
    batch_coupled=True,
    family=_FAMILY,
    aliases=("sft",),
)
def pair_sft_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor | None = None,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    chosen_lengths: torch.Tensor,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """The SFT term of a preference batch: token-mean NLL of the chosen responses (TRL ``loss_type="sft"``).

    .. math::

        \\mathcal{L} = -\\frac{\\sum_i \\log\\pi(y_{c,i})}{\\sum_i |y_{c,i}|}, \\qquad
        \\ell_i = -\\frac{\\log\\pi(y_{c,i})}{\\overline{|y_c|}}

    The token mean spans the batch, so each pair's value divides by the batch's mean length; their mean is
    the token-mean NLL. Used in the MPO mixture: Wang et al. (2024), "Enhancing the Reasoning Ability of
    Multimodal Large Language Models via Mixed Preference Optimization". The rejected/reference inputs are
    accepted (and ignored) so it combines with the others in :func:`weighted_sum`.

    Args: ``policy_chosen_logps`` and ``chosen_lengths`` ``[batch]``. Returns ``[batch]`` or a scalar.
    """
    _check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    lengths = torch.as_tensor(
        _required("chosen_lengths", chosen_lengths), dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device
    )
    check_broadcastable("chosen_lengths", lengths, policy_chosen_logps.shape)
    lengths = lengths.expand_as(policy_chosen_logps)
    if mask is not None:
        lengths = torch.where(torch.as_tensor(mask, dtype=torch.bool).expand_as(lengths), lengths, 0.0)
        count = torch.as_tensor(mask, dtype=torch.bool).expand_as(lengths).sum()
    else:
        count = lengths.numel()
    mean_length = (lengths.sum() / max(int(count), 1)).clamp(min=1.0)
    return _reduce(-policy_chosen_logps / mean_length, reduction, mask, weights)


@register("dr_dpo", inputs=PAIR_REF, batch_coupled=True, family=_FAMILY, aliases=("drdpo",))
def dr_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    beta_prime: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Dr. DPO: a soft-minimum (log-mean-exp) aggregation of the DPO losses over the batch.

    .. math::

        \\mathcal{L} = -\\beta' \\log \\frac{\\sum_i w_i\\, e^{-\\ell^{DPO}_i/\\beta'}}{\\sum_i w_i}

    Wu et al. (2024), "Towards Robust Alignment of Language Models: Distributionally Robustifying Direct
    Preference Optimization". β' → ∞ recovers the (weighted) mean DPO loss; small β' down-weights pairs with
    large loss (likely label noise). The objective does not split into per-pair terms: ``"mean"`` returns
    :math:`\\mathcal{L}`, ``"sum"`` :math:`\\mathcal{L}\\sum_i w_i` and ``"none"`` each pair's share
    :math:`w_i\\mathcal{L}` (so the three stay consistent).

    Args: four ``[batch]`` sequence log-probabilities. Returns ``[batch]`` or a scalar.
    """
    if beta_prime <= 0:
        raise InputError(f"beta_prime must be positive, got {beta_prime!r}")
    c, r = _pair_scores(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, mask, weights)
    per_pair = _margin_loss("sigmoid", c - r, beta)
    w = torch.ones_like(per_pair) if weights is None else torch.as_tensor(weights, dtype=c.dtype).expand_as(c)
    if mask is not None:
        w = torch.where(torch.as_tensor(mask, dtype=torch.bool, device=c.device).expand_as(c), w, 0.0)
    total_w = w.sum()
    if per_pair.numel() == 0 or not bool(total_w > 0):
        return _reduce(per_pair * 0.0, reduction, mask, weights) * 0.0
    # log-mean-exp over the positive-weight pairs; zero-weight (masked) ones are excluded entirely
    keep = w > 0
    log_w = torch.where(keep, w, 1.0).log()
    scores = torch.where(keep, -per_pair / beta_prime + log_w, float("-inf"))
    objective = -beta_prime * (torch.logsumexp(scores.flatten(), 0) - total_w.log())
    if reduction == "mean":
        return objective
    if reduction == "sum":
        return objective * total_w
    return reduce_loss(w * objective, reduction)


# ------------------------------------------------------------------------------------ reference-free


def _avg(logps: torch.Tensor, name: str, lengths) -> torch.Tensor:
    return logps if lengths is None else logps / _lengths(name, lengths, logps)


@register("simpo", inputs=(*PAIR, CHOSEN_LENGTHS, REJECTED_LENGTHS), family=_FAMILY)
def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SimPO: reference-free logistic loss on length-normalised log-likelihoods with a target margin γ.

    .. math::

        \\ell = -\\log\\sigma\\Big(\\frac{\\beta}{|y_c|}\\log\\pi(y_c) - \\frac{\\beta}{|y_r|}\\log\\pi(y_r)
                - \\gamma\\Big)

    Meng, Xia & Chen (2024), "SimPO: Simple Preference Optimization with a Reference-Free Reward".
    Without lengths the inputs are taken as already-averaged log-probabilities (as TRL's CPOTrainer with
    ``loss_type="simpo"`` computes them). Defaults β = 2, γ = 1 (γ/β = 0.5) follow the paper's setups;
    ``label_smoothing`` gives the conservative variant.

    Args: ``[batch]`` chosen/rejected log-probabilities (summed, with lengths; or averaged).
    Returns ``[batch]`` or a scalar.
    """
    _check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    delta = _avg(policy_chosen_logps, "chosen_lengths", chosen_lengths) - _avg(
        policy_rejected_logps, "rejected_lengths", rejected_lengths
    )
    return _reduce(_logistic(beta * delta - gamma, label_smoothing), reduction, mask, weights)


def _alphapo_reward(logps: torch.Tensor, alpha: float) -> torch.Tensor:
    # (1 - p^-α)/α written with expm1 so small α stays accurate
    return -torch.expm1(-alpha * logps) / alpha if alpha != 0.0 else logps


@register("cpo", inputs=(*PAIR, CHOSEN_NLL), family=_FAMILY)
def cpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    loss_type: str = "sigmoid",
    simpo_gamma: float = 0.5,
    alpha: float = 0.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CPO: a reference-free preference term plus a behaviour-cloning NLL on the chosen response.

    .. math::

        \\ell = -(1-\\varepsilon)\\log\\sigma(\\beta d) - \\varepsilon\\log\\sigma(-\\beta d)
                + \\lambda\\,\\mathrm{NLL}(y_c), \\qquad d = r(y_c) - r(y_r)

    with :math:`r = \\log\\pi` (or AlphaPO's :math:`r = (1 - \\pi^{-\\alpha})/\\alpha` when ``alpha`` ≠ 0),
    λ = ``cpo_alpha``. ``loss_type`` ``"hinge"`` uses :math:`\\max(0, 1-\\beta d)`, ``"ipo"``
    :math:`(d - 1/(2\\beta))^2` and ``"simpo"`` the margin :math:`d - \\gamma/\\beta` (see
    :func:`cpo_simpo_loss`). Xu et al. (2024), "Contrastive Preference Optimization: Pushing the Boundaries
    of LLM Performance in Machine Translation"; Gupta et al. (2025), "AlphaPO: Reward Shape Matters for LLM
    Alignment". Matches TRL's CPOTrainer: give summed log-probs for sigmoid/hinge and averaged ones for
    ipo/simpo, as it does. ``chosen_nll`` defaults to :math:`-\\log\\pi(y_c)` of the given inputs; TRL's is a
    batch token-mean cross-entropy, which can be passed as a 0-d tensor.

    Args: ``[batch]`` chosen/rejected log-probabilities; ``chosen_nll`` ``[batch]`` or 0-d.
    Returns ``[batch]`` or a scalar.
    """
    _check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    d = _alphapo_reward(policy_chosen_logps, alpha) - _alphapo_reward(policy_rejected_logps, alpha)
    if loss_type == "simpo":
        d = d - simpo_gamma / beta
        loss_type = "sigmoid"
    values = _margin_loss(loss_type, d, beta, label_smoothing if loss_type == "sigmoid" else 0.0)
    if cpo_alpha == 0.0:
        return _reduce(values, reduction, mask, weights)
    return _reduce_plus(values, cpo_alpha * _nll(policy_chosen_logps, chosen_nll, None), reduction, mask, weights)


@register("cpo_simpo", inputs=(*PAIR, CHOSEN_LENGTHS, REJECTED_LENGTHS, CHOSEN_NLL), family=_FAMILY)
def cpo_simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 2.0,
    gamma: float = 1.0,
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """CPO-SimPO: SimPO's length-normalised margin loss plus CPO's NLL on the chosen response.

    .. math::

        \\ell = -\\log\\sigma(\\beta(\\bar r_c - \\bar r_r) - \\gamma) + \\lambda\\,\\mathrm{NLL}(y_c),
        \\qquad \\bar r = \\log\\pi(y)/|y|

    Meng, Xia & Chen (2024), "SimPO"; Xu et al. (2024), "Contrastive Preference Optimization". TRL:
    CPOTrainer with ``loss_type="simpo"`` and ``cpo_alpha`` > 0 (its ``simpo_gamma`` is γ here).
    ``chosen_nll`` defaults to :math:`-\\bar r_c`.

    Args: ``[batch]`` chosen/rejected log-probabilities (summed with lengths, or averaged).
    Returns ``[batch]`` or a scalar.
    """
    values = simpo_loss(
        policy_chosen_logps, policy_rejected_logps,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
        beta=beta, gamma=gamma, label_smoothing=label_smoothing, mask=mask, reduction="none",
    )  # fmt: skip
    if cpo_alpha == 0.0:
        return _reduce(values, reduction, mask, weights)
    nll = _nll(policy_chosen_logps, chosen_nll, chosen_lengths)
    return _reduce_plus(values, cpo_alpha * nll, reduction, mask, weights)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x < 0, switching form at -log 2 to avoid cancellation (Mächler 2012)."""
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)
    return torch.where(x < -math.log(2.0), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


@register("orpo", inputs=(*PAIR, CHOSEN_NLL), family=_FAMILY)
def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ORPO: SFT loss plus a log-odds-ratio penalty, without a reference model.

    .. math::

        \\ell = \\mathrm{NLL}(y_c) - \\lambda \\log\\sigma\\big(\\log O(y_c) - \\log O(y_r)\\big),
        \\qquad O(y) = \\frac{P(y)}{1 - P(y)},\\; \\log P(y) = \\tfrac{1}{|y|}\\log\\pi(y)

    Hong, Lee & Thorne (2024), "ORPO: Monolithic Preference Optimization without Reference Model"
    (Eqs. 4-7); λ = ``beta`` as in TRL's ORPOTrainer. Inputs are per-token averaged log-probabilities
    (< 0). ``chosen_nll`` defaults to :math:`-\\log P(y_c)`; TRL's is the token-mean cross-entropy over the
    batch, which can be passed as a 0-d tensor. Computed in float32 or wider.

    Args: ``[batch]`` averaged chosen/rejected log-probabilities; ``chosen_nll`` ``[batch]`` or 0-d.
    Returns ``[batch]`` or a scalar.
    """
    _check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    both = torch.stack([policy_chosen_logps, policy_rejected_logps])
    if both.dtype not in (torch.float32, torch.float64):
        both = both.float()
    log_odds = both - _log1mexp(both)  # one pass over chosen and rejected together
    values = (-beta * F.logsigmoid(log_odds[0] - log_odds[1])).to(policy_chosen_logps.dtype)
    return _reduce_plus(values, _nll(policy_chosen_logps, chosen_nll, None), reduction, mask, weights)


# ------------------------------------------------------------------------------------- pairwise Cringe


def cringe_positive_logits(
    logits: torch.Tensor,
    negative_tokens: torch.Tensor,
    *,
    k: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample, for every negative token, a positive alternative from the model's top-k and return its logit.

    .. math::

        s^{+}_t = z_t[v], \\quad v \\sim \\mathrm{softmax}(\\mathrm{top}_k(z_t \\setminus \\{y_t\\}))

    Adolphs et al. (2022), "The CRINGE Loss: Learning what language not to model". The negative token
    itself is excluded from the candidates. Sampling is not differentiated; the returned logits are.

    Args: ``logits`` ``[batch, T, vocab]``; ``negative_tokens`` ``[batch, T]`` (int). Returns ``[batch, T]``.
    """
    if logits.dim() != 3 or negative_tokens.shape != logits.shape[:2]:
        raise InputError(
            f"logits must be [batch, T, vocab] and negative_tokens [batch, T]; got {list(logits.shape)} and "
            f"{list(negative_tokens.shape)}"
        )
    if not 1 <= k < logits.shape[-1]:
        raise InputError(f"k must be in [1, vocab size - 1] = [1, {logits.shape[-1] - 1}], got {k}")
    neg = negative_tokens.long().clamp(min=0).unsqueeze(-1)
    candidates = logits.detach().scatter(-1, neg, float("-inf"))
    top_vals, top_idx = candidates.topk(k, dim=-1)
    probs = torch.softmax(top_vals.float(), dim=-1).reshape(-1, k)
    pick = torch.multinomial(probs, 1, generator=generator).reshape(*logits.shape[:2], 1)
    return logits.gather(-1, top_idx.gather(-1, pick)).squeeze(-1)


@register(
    "pairwise_cringe",
    inputs=(
        *PAIR,
        *(dataclasses.replace(i, required=False) for i in PAIR_REF[2:]),
        keyword("rejected_token_logits", "token_logits", "[batch, T]", required=True),
        keyword("positive_token_logits", "token_logits", "[batch, T]", required=True),
        keyword("rejected_mask", "token_mask", "[batch, T]", required=True),
        CHOSEN_NLL,
    ),
    family=_FAMILY,
    aliases=("cringe_pair",),
)
def pairwise_cringe_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    rejected_token_logits: torch.Tensor,
    positive_token_logits: torch.Tensor,
    rejected_mask: torch.Tensor,
    chosen_nll: torch.Tensor | None = None,
    alpha: float = 1.0,
    margin: float = 0.0,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Pairwise Cringe: NLL on the chosen response plus a margin-gated token-level Cringe loss on the rejected.

    .. math::

        \\ell = \\mathrm{NLL}(y_c) + \\alpha\\, g\\, \\frac{1}{|y_r|}\\sum_t
                \\log\\big(1 + e^{s^-_t - s^+_t}\\big), \\qquad
        g = \\sigma\\Big(\\frac{b - M}{\\tau}\\Big),\\; M = \\log\\pi(y_c) - \\log\\pi(y_r)

    Xu et al. (2023), "Some things are more CRINGE than others: Iterative Preference Optimization with the
    Pairwise Cringe Loss". :math:`s^-_t` is the logit of the rejected token at step t, :math:`s^+_t` that of
    a positive sampled from the top-k (:func:`cringe_positive_logits`). The gate g switches the Cringe term
    off once the chosen response already beats the rejected by more than the margin b; it is not
    differentiated (it only selects pairs). ``chosen_nll`` defaults to :math:`-\\log\\pi(y_c)`; the
    reference inputs are accepted and ignored so the loss composes in :func:`weighted_sum`.

    Args: ``[batch]`` sequence log-probabilities; token tensors ``[batch, T]`` with ``rejected_mask``
    (bool/0-1) marking the rejected completion tokens. Returns ``[batch]`` or a scalar.
    """
    _check(mask, weights, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    for name, t in (
        ("rejected_token_logits", rejected_token_logits),
        ("positive_token_logits", positive_token_logits),
        ("rejected_mask", rejected_mask),
    ):
        if t is None or t.dim() != 2 or t.shape[0] != policy_chosen_logps.shape[0]:
            got = None if t is None else list(t.shape)
            raise InputError(f"{name} must be [batch, T] with batch {policy_chosen_logps.shape[0]}, got {got}")
    check_same_shape(
        rejected_token_logits=rejected_token_logits,
        positive_token_logits=positive_token_logits,
        rejected_mask=rejected_mask,
    )
    tok_mask = rejected_mask.bool()
    token_loss = torch.where(tok_mask, F.softplus(rejected_token_logits - positive_token_logits), 0.0)
    cringe = token_loss.sum(-1) / tok_mask.sum(-1).clamp(min=1).to(token_loss.dtype)
    gate = torch.sigmoid((margin - (policy_chosen_logps - policy_rejected_logps).detach()) / temperature)
    values = _nll(policy_chosen_logps, chosen_nll, None) + alpha * gate * cringe.to(policy_chosen_logps.dtype)
    return _reduce(values, reduction, mask, weights)


# ----------------------------------------------------------------- log-prob builders and loss combinators


def _token_args(**tensors: torch.Tensor) -> None:
    check_same_shape(**tensors)
    for name, t in tensors.items():
        if t.dim() != 2:
            raise InputError(f"{name} must be [batch, T] per-token values, got shape {list(t.shape)}")


def token_log_sum_sq_probs(logits: torch.Tensor) -> torch.Tensor:
    """Per-position :math:`\\log\\sum_v \\pi(v)^2` from next-token logits (WPO's alignment term).

    .. math::

        \\log\\sum_v \\pi(v)^2 = \\mathrm{logsumexp}(2 z) - 2\\,\\mathrm{logsumexp}(z)

    Zhou et al. (2024), "WPO: Enhancing RLHF with Weighted Preference Optimization".

    Args: ``logits`` ``[..., vocab]``. Returns ``[...]``.
    """
    return torch.logsumexp(2.0 * logits, dim=-1) - 2.0 * torch.logsumexp(logits, dim=-1)


def wpo_weights(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    chosen_log_sum_sq_probs: torch.Tensor | None = None,
    rejected_log_sum_sq_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """WPO pair weights: the product of each response's length-normalised (aligned) probability.

    .. math::

        w = \\exp\\Big(\\frac{1}{|y_c|}\\sum_t \\log\\frac{\\pi(y_{c,t})}{\\sum_v \\pi(v)^2}\\Big)
            \\exp\\Big(\\frac{1}{|y_r|}\\sum_t \\log\\frac{\\pi(y_{r,t})}{\\sum_v \\pi(v)^2}\\Big)

    Zhou et al. (2024), "WPO: Enhancing RLHF with Weighted Preference Optimization" (Eq. 2). Without
    the ``*_log_sum_sq_probs`` terms (:func:`token_log_sum_sq_probs`) the plain mean log-probability is used.
    The weights carry no gradient. TRL's ``use_weighting=True`` equals
    ``loss_fn(..., weights=w, reduction="none").mean()`` (TRL divides by the batch size, not by Σw as
    ``reduction="mean"`` does).

    Args: per-token log-probs and 0/1 masks ``[batch, T]``. Returns ``[batch]``.
    """
    _token_args(
        chosen_token_logps=chosen_token_logps, rejected_token_logps=rejected_token_logps,
        chosen_mask=chosen_mask, rejected_mask=rejected_mask,
    )  # fmt: skip

    def mean_aligned(logps, mask, lssp):
        with torch.no_grad():
            if lssp is not None:
                check_same_shape(token_logps=logps, log_sum_sq_probs=lssp)
                logps = logps - lssp
            mask = mask.to(logps.dtype)
            return (logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)

    return torch.exp(
        mean_aligned(chosen_token_logps, chosen_mask, chosen_log_sum_sq_probs)
        + mean_aligned(rejected_token_logps, rejected_mask, rejected_log_sum_sq_probs)
    )


def ld_dpo_logps(
    chosen_token_logps: torch.Tensor,
    rejected_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LD-DPO sequence log-probs: full weight on the shared-length prefix, ``alpha`` on the longer tail.

    .. math::

        \\log\\hat\\pi(y) = \\sum_{t \\le \\min(|y_c|,|y_r|)} \\log\\pi(y_t)
                          + \\alpha \\sum_{t > \\min(|y_c|,|y_r|)} \\log\\pi(y_t)

    Liu et al. (2024), "Length Desensitization in Direct Preference Optimization". Positions count
    completion tokens only (``*_mask``), as TRL's ``ld_alpha`` does; apply it to the policy's and the
    reference's per-token log-probs alike, then feed any loss here. α = 1 gives the plain sums.

    Args: per-token log-probs and 0/1 masks ``[batch, T]``. Returns (chosen, rejected), each ``[batch]``.
    """
    _token_args(
        chosen_token_logps=chosen_token_logps, rejected_token_logps=rejected_token_logps,
        chosen_mask=chosen_mask, rejected_mask=rejected_mask,
    )  # fmt: skip
    cm, rm = chosen_mask.bool(), rejected_mask.bool()
    shared = torch.minimum(cm.sum(-1), rm.sum(-1)).unsqueeze(-1)

    def combine(logps, m):
        # weight 1 on the first `shared` completion tokens, alpha after them, 0 off the completion
        pos = m.long().cumsum(-1)
        in_head = pos <= shared
        weight = torch.where(in_head, 1.0, alpha).to(logps.dtype) * m.to(logps.dtype)
        return (logps * weight).sum(-1)

    return combine(chosen_token_logps, cm), combine(rejected_token_logps, rm)


def weighted_sum(terms) -> Callable[..., torch.Tensor]:
    """Build a loss that is a weighted sum of registered losses (MPO-style mixtures).

    .. math::

        \\ell = \\sum_k w_k\\, \\ell_k

    Wang et al. (2024), "Enhancing the Reasoning Ability of Multimodal Large Language Models via Mixed
    Preference Optimization" (MPO = sigmoid + bco_pair + sft). ``terms`` is a list of ``(name_or_fn, weight)``
    or ``(name_or_fn, weight, kwargs)``; keyword arguments given when calling the combined loss go to every
    term whose signature accepts them (per-term ``kwargs`` take precedence). Reductions are linear, so the
    result equals TRL's ``loss_type=[...]`` with ``loss_weights=[...]``.

    Returns ``fn(*inputs, mask=None, weights=None, reduction="mean", **kwargs)``.
    """
    from pairkit.losses._core import get

    if not terms:
        raise InputError("weighted_sum needs at least one (loss, weight) term")
    built = []
    for term in terms:
        if not isinstance(term, (tuple, list)) or len(term) not in (2, 3):
            raise InputError(f"each term must be (name_or_fn, weight) or (name_or_fn, weight, kwargs), got {term!r}")
        fn = get(term[0]) if isinstance(term[0], str) else term[0]
        params = inspect.signature(fn).parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        built.append((fn, float(term[1]), dict(term[2]) if len(term) == 3 else {}, set(params), accepts_any))

    def combined(*inputs, mask=None, weights=None, reduction: Reduction = "mean", **kwargs):
        unused = set(kwargs) - set().union(*(names for *_, names, _ in built))
        if unused and not any(any_kw for *_, any_kw in built):
            raise InputError(f"no term of the combined loss accepts {sorted(unused)}")
        total = None
        for fn, weight, own, names, any_kw in built:
            kw = {k: v for k, v in kwargs.items() if any_kw or k in names}
            kw.update(own)
            value = weight * fn(*inputs, mask=mask, weights=weights, reduction=reduction, **kw)
            total = value if total is None else total + value
        return total

    combined.__doc__ = "Weighted sum of " + ", ".join(f"{w} * {getattr(f, '__name__', f)}" for f, w, *_ in built)
    return combined


combine = weighted_sum
