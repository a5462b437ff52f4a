"""Pairwise judges trained from comparisons: a cross-encoder over (context, A, B), symmetric in A and B.

A ``transformers`` sequence classifier reads the context and both answers in one sequence (see
:func:`pairkit.judges.pairwise_classifier.encode_pairwise`) and predicts *first better*, *second better* and,
when the data has ties, *tie*. Every example is trained in both orders with a symmetry term, so the model
learns P(A ≻ B | A shown first) = P(A ≻ B | B shown first). The saved directory loads as a judge with
``{"type": "huggingface", "model": DIR}`` (:class:`~pairkit.judges.PairwiseClassifierJudge`).

Data rows (JSON/JSONL/Parquet or dicts): ``{prompt, chosen, rejected}`` in any :func:`pairkit.train.data.to_pairs`
format (the chosen answer won), or ``{prompt|context|question, response_a|answer_a|a, response_b|answer_b|b,
winner|outcome|label}`` with an outcome label as in :data:`pairkit.data.readers.OUTCOME_LABELS` (``a``, ``b``,
``tie``, ``model_a``, …) or a number 1 / 0 / 0.5.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError, PairkitWarning
from pairkit.judges.pairwise_classifier import (
    MARKER,
    encode_pairwise,
    encode_verdict_prompt,
    pairwise_logits,
    verdict_token_ids,
)
from pairkit.train import _dist as dist
from pairkit.train._chat import completion_text, prompt_text
from pairkit.train._loop import TrainConfig, TrainResult, check_number, check_options, fit, options_for
from pairkit.train._steps import loss_values
from pairkit.train.data import read_records, to_pairs
from pairkit.train.semi_supervised import Made

__all__ = [
    "ATTACK_OPTIONS",
    "evaluate_pairwise_judge",
    "read_pairwise_judgments",
    "save_pairwise_judge",
    "train_pairwise_judge",
]

FIRST, SECOND, TIE = 0, 1, 2
_SWAP = [SECOND, FIRST, TIE]  # the label of the same example with the answers exchanged
_CONTEXT = ("prompt", "context", "question", "instruction")
_ANSWERS = (("response_a", "response_b"), ("answer_a", "answer_b"), ("a", "b"))
_OUTCOME = ("winner", "outcome", "label")
_PARSED = {"context", "a", "b", "label"}  # rows as read_pairwise_judgments returns them


def _label(value: Any, where: str) -> int:
    from pairkit.data.readers import OUTCOME_LABELS

    if isinstance(value, bool) or value is None:
        raise InputError(f"{where}: expected an outcome (a, b, tie or 1, 0, 0.5), got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    else:
        x = OUTCOME_LABELS.get(str(value).strip().lower(), np.nan)
    labels = {1.0: FIRST, 0.0: SECOND, 0.5: TIE}
    if x not in labels:
        raise InputError(
            f"{where}: outcome {value!r} is not a win for a (a, model_a, 1), for b (b, model_b, 0) or a tie "
            "(tie, 0.5); fractional outcomes are not classes: round them or drop the rows"
        )
    return labels[x]


def read_pairwise_judgments(data, *, source: str | None = None, ties: str = "keep") -> list[dict[str, Any]]:
    """Rows → ``{"context", "a", "b", "label"}`` with label 0 (a better), 1 (b better) or 2 (tie).

    ``ties="drop"`` leaves tie rows out with a :class:`~pairkit.errors.PairkitWarning` giving their count;
    ``"keep"`` keeps them as a third class.
    """
    if ties not in ("keep", "drop"):
        raise InputError(f"ties must be 'keep' or 'drop', got {ties!r}")
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_records(data)
    elif hasattr(data, "to_dict"):
        data = data.to_dict(orient="records")
    source = source or "data"
    rows = list(data)
    if not rows:
        raise InputError(f"{source}: no comparison rows")
    if isinstance(rows[0], dict) and "chosen" in rows[0] and "rejected" in rows[0]:
        out = [
            {"context": prompt_text(p["prompt"]), "a": p["chosen"], "b": p["rejected"], "label": FIRST}
            for p in to_pairs(rows, source=source)
        ]
    else:
        out = []
        for i, row in enumerate(rows, start=1):
            where = f"{source}, row {i}"
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
            ctx = next((k for k in _CONTEXT if k in row), None)
            ans = next((ks for ks in _ANSWERS if all(k in row for k in ks)), None)
            res = next((k for k in _OUTCOME if k in row), None)
            if ans is None or res is None:
                raise InputError(
                    f"{where}: needs 'chosen'/'rejected', or two answers (response_a/response_b, answer_a/answer_b "
                    f"or a/b) with a 'winner' (or 'outcome'/'label'); has {sorted(map(str, row))[:8]}"
                )
            a, b = (completion_text(row[k], f"{where}, column {k!r}") for k in ans)
            if a == "" or b == "":
                raise InputError(f"{where}: an answer is empty; fill it in or drop the row")
            context = prompt_text(row[ctx]) if ctx is not None else ""
            out.append({"context": context, "a": a, "b": b, "label": _label(row[res], f"{where}, column {res!r}")})
    n_ties = sum(r["label"] == TIE for r in out)
    if ties == "drop" and n_ties:
        warnings.warn(f"{source}: dropped {n_ties} tie rows of {len(out)} (ties='drop')", PairkitWarning, stacklevel=2)
        out = [r for r in out if r["label"] != TIE]
        if not out:
            raise InputError(f"{source}: every row is a tie; nothing left with ties='drop'")
    return out


def _num_labels(model, verdicts=None) -> int:
    k = len(verdicts) if verdicts else int(getattr(getattr(model, "config", None), "num_labels", 0))
    if k not in (2, 3):
        raise InputError(f"a pairwise judge classifies into 2 or 3 labels (first, second[, tie]); this model has {k}")
    return k


def _verdict_ids(tokenizer, verdicts):
    return verdict_token_ids(tokenizer, verdicts) if verdicts else None


def _encoded(model, tokenizer, data, max_length: int, ties: str, verdicts=None) -> list[dict[str, Any]]:
    parsed = isinstance(data, list) and all(
        isinstance(r, dict) and set(r) == _PARSED and r["label"] in (FIRST, SECOND, TIE) for r in data[:1]
    )
    rows = data if parsed and data else read_pairwise_judgments(data, ties=ties)
    k = _num_labels(model, verdicts)
    n_ties = sum(r["label"] == TIE for r in rows)
    if n_ties and k == 2:
        raise InputError(
            f"{n_ties} of {len(rows)} rows are ties but the model has 2 labels; give it 3 (num_labels=3) "
            "or leave ties out (ties='drop')"
        )
    ctx = [r["context"] for r in rows]
    a, b = [r["a"] for r in rows], [r["b"] for r in rows]
    encode = encode_verdict_prompt if verdicts else encode_pairwise
    ids = encode(tokenizer, ctx + ctx, a + b, b + a, max_length=max_length)
    n = len(rows)
    return [{"ab": ids[i], "ba": ids[n + i], "label": rows[i]["label"], "index": i} for i in range(n)]


def _probabilities(model, tokenizer, rows, verdict_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax outputs ``[n, K]`` of the shown order and of the swapped order (classes in shown terms)."""
    ids = [r["ab"] for r in rows] + [r["ba"] for r in rows]
    logits = pairwise_logits(model, tokenizer, ids, verdict_ids).float()
    p = torch.softmax(logits, -1)
    return p[: len(rows)], p[len(rows) :]


class _Orders:
    """One step's verdict log-probabilities of both orders ``[2n, K]`` (shown orders first, then swapped) and their
    labels in each order's terms; the adversarial logits are computed on first use (``attack``: the options of
    :data:`ATTACK_OPTIONS` without their ``adversarial_`` prefix)."""

    def __init__(self, model, tokenizer, rows, verdict_ids, swap: torch.Tensor, attack: dict[str, Any]):
        self.model, self.tokenizer, self.verdict_ids, self.attack = model, tokenizer, verdict_ids, attack
        self.ids = [r["ab"] for r in rows] + [r["ba"] for r in rows]
        self.logits = pairwise_logits(model, tokenizer, self.ids, verdict_ids).float()
        self.logp = torch.log_softmax(self.logits, -1)
        y = torch.tensor([r["label"] for r in rows])
        self.labels = torch.cat([y, swap[y]])
        self._adversarial: torch.Tensor | None = None
        self.perturbation: torch.Tensor | None = None  # δ of the adversarial point, once computed

    def _perturbed(self, delta: dict[str, torch.Tensor], init: Callable | None = None) -> torch.Tensor:
        """Verdict logits with ``delta["value"]`` added to the input embeddings (made by ``init`` from the embeddings
        on the first call: its shape is the padded batch's)."""

        def add(module, args, out):
            if "value" not in delta:
                delta["value"] = init(out).requires_grad_(True)
            return out + delta["value"].to(out.dtype)

        handle = self.model.get_input_embeddings().register_forward_hook(add)
        try:
            return pairwise_logits(self.model, self.tokenizer, self.ids, self.verdict_ids).float()
        finally:
            handle.remove()

    def _start(self, out: torch.Tensor) -> torch.Tensor:
        """The first point: uniform in the ball (``random_start``), else a tiny Gaussian probe around 0, where the
        squared change of the margins has a zero gradient (the iterate itself then starts at 0)."""
        eps = self.attack["epsilon"]
        if not self.attack["random_start"]:
            return 1e-3 * eps * torch.randn_like(out)
        if self.attack["norm"] == "inf":
            return eps * (2 * torch.rand_like(out) - 1)
        direction = torch.randn_like(out)
        u = torch.rand(out.shape[0], dtype=out.dtype, device=out.device)
        radius = eps * u ** (1.0 / out[0].numel())  # uniform in the ball
        return direction * (radius / _norms(direction)).view(-1, *[1] * (out.dim() - 1))

    def adversarial(self) -> torch.Tensor:
        """Verdict log-probabilities at the PGD point ``x + δ`` maximising ``‖Δ(x+δ) − Δ(x)‖²`` over the ball."""
        if self._adversarial is None:
            eps, steps, norm = self.attack["epsilon"], self.attack["steps"], self.attack["norm"]
            alpha = self.attack["step_size"] or (eps if steps == 1 else 2.5 * eps / steps)
            clean = self.logits.detach()
            y = self.labels[:, None]
            point: dict[str, torch.Tensor] = {}
            z = self._perturbed(point, self._start)
            delta = point["value"].detach() if self.attack["random_start"] else torch.zeros_like(point["value"])
            for t in range(steps):
                change = (z.gather(-1, y) - z) - (clean.gather(-1, y) - clean)
                (grad,) = torch.autograd.grad(change.square().sum(), point["value"])
                if norm == "inf":
                    delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
                else:
                    g = _norms(grad)
                    step = grad * torch.where(g > 0, alpha / g.clamp_min(1e-30), 0.0).view(-1, *[1] * (grad.dim() - 1))
                    delta = delta + step
                    delta = delta * (eps / _norms(delta).clamp_min(eps)).view(-1, *[1] * (delta.dim() - 1))
                delta = delta.detach()
                point = {"value": delta.requires_grad_(t < steps - 1)}
                z = self._perturbed(point)
            self.perturbation = delta.detach()
            self._adversarial = torch.log_softmax(z, -1)
        return self._adversarial


def _norms(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each example's slice ``x[i]`` (all its positions and features)."""
    return x.flatten(1).norm(dim=1)


def _binary_labels(b: _Orders) -> torch.Tensor:
    if bool((b.labels == TIE).any()):
        raise InputError("a binary loss (labels first/second) cannot take tie rows: train with ties='drop'")
    return (b.labels == FIRST).to(b.logp.dtype)


#: The options of the adversarial point for a loss needing ``adversarial_logits`` (declared once, checked on every call
#: of :func:`train_pairwise_judge`).
ATTACK_OPTIONS = (
    Option("adversarial_epsilon", float, Interval(0, None, closed="neither"),
           doc="ε: the radius of the embedding perturbation's ball"),
    Option("adversarial_steps", int, Interval(1, None), doc="PGD steps (1: one FGSM step, the default)"),
    Option("adversarial_step_size", float, Interval(0, None, closed="neither"), none=True,
           doc="α of each step (None: ε for one step, else 2.5ε/steps)"),
    Option("adversarial_norm", str, choices=("inf", "2"), doc="the ball's norm: ℓ∞ (signed steps) or ℓ2"),
    Option("adversarial_random_start", bool, doc="start uniformly in the ball instead of at the clean input"),
)  # fmt: skip

#: What :func:`train_pairwise_judge` makes for each ``(input name, kind)`` a classification loss declares, per order.
INPUTS: dict[tuple[str, str], Made] = {
    ("logits", "logits"): Made(frozenset(), lambda b: b.logp, "verdict log-probabilities [n, K]"),
    ("labels", "classes"): Made(frozenset(), lambda b: b.labels, "the verdict in the order's terms"),
    ("labels", "binary"): Made(frozenset({"no ties"}), _binary_labels, "1 when the answer shown first won"),
    ("scores", "scores"): Made(frozenset(), lambda b: b.logp[:, FIRST] - b.logp[:, SECOND],
                               "log-odds of first over second, log p_first − log p_second"),
    ("logps", "logps"): Made(frozenset(), lambda b: b.logp.gather(-1, b.labels[:, None]).squeeze(-1),
                             "log-probability of the correct verdict"),
    ("adversarial_logits", "logits"): Made(frozenset(), lambda b: b.adversarial(),
                                           "verdict log-probabilities at a PGD point of the input embeddings"),
}


def _check_judge_losses(terms) -> None:
    """Every required input of every loss must be in :data:`INPUTS`; else name the trainer that makes them."""
    from pairkit import losses
    from pairkit.train import semi_supervised

    for name, _, _ in terms:
        spec = losses.spec(name)
        extra = [i.name for i in spec.input_specs if i.required and (i.name, i.kind) not in INPUTS]
        if extra:
            other = all(i.name in semi_supervised.INPUTS for i in spec.input_specs if i.required)
            hint = ("train it with train_semi_supervised (pairkit.train), which makes them from labelled rows"
                    if other else "give a loss on the verdict logits and labels")  # fmt: skip
            raise InputError(
                f"loss {name!r} needs {', '.join(map(repr, extra))}, which train_pairwise_judge does not make from "
                f"comparisons; {hint}"
            )


def step_seed(options: dict[str, Any], rows) -> int:
    """A seed per batch for a loss drawn anew each step (EnsLoss): the ``seed`` option and the batch's row indices
    (every process's under data parallel: the step's whole batch)."""
    every = dist.all_rows(torch.tensor([r["index"] for r in rows], dtype=torch.long))
    h = np.random.default_rng([int(options.get("seed", 0)), *sorted(every.tolist())])
    return int(h.integers(2**31 - 1))


@declare_options(*ATTACK_OPTIONS)
def train_pairwise_judge(
    model,
    tokenizer,
    data,
    *,
    symmetry: float = 1.0,
    ties: str = "keep",
    verdicts: Sequence[str] | None = None,
    loss: str | dict[str, float] = "cross_entropy",
    loss_options: dict[str, Any] | None = None,
    adversarial_epsilon: float = 1e-3,
    adversarial_steps: int = 1,
    adversarial_step_size: float | None = None,
    adversarial_norm: str = "inf",
    adversarial_random_start: bool = False,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit a pairwise cross-encoder on both orders of every comparison, with a symmetry term.

    With :math:`p_{ab} = \\mathrm{softmax}\\,f(x, a, b)` over (first, second[, tie]), :math:`\\pi` the
    permutation exchanging *first* and *second*, and :math:`y` the label in the shown order:

    .. math::

        \\mathcal{L} = \\tfrac12\\big[\\mathrm{CE}(p_{ab}, y) + \\mathrm{CE}(p_{ba}, \\pi y)\\big]
        + \\lambda\\,\\lVert p_{ab} - \\pi\\,p_{ba}\\rVert_2^2

    Training on both orders is the position-debiasing augmentation of PairRanker (Jiang et al. 2023,
    "LLM-Blender"); the squared-difference consistency term (weight :math:`\\lambda` = ``symmetry``) pushes each
    single order towards P(A ≻ B) = 1 − P(B ≻ A) − P(tie), which the judge then enforces exactly by averaging.

    ``loss`` replaces the cross-entropy by any ``classification``-family loss (or weighted sum) on the verdict
    logits :math:`\\log p` of each order, :math:`\\tfrac12[\\ell(\\log p_{ab}, y) + \\ell(\\log p_{ba}, \\pi y)]`:
    e.g. ``"adversarial_comp_sum"`` (Mao, Mohri & Zhong 2023, the ρ-margin comp-sum loss with H-consistency
    guarantees), ``"focal_loss"``, ``"generalized_cross_entropy"`` for noisy labels, or
    ``"cross_entropy+0.1*z_loss"``; ``loss_options`` are their declared options. What a loss is given is read from
    its declared inputs and this module's ``INPUTS`` table (one entry per input name and kind, for each order):

    * ``logits`` ``[n, K]``: :math:`\\log p`; ``labels`` (classes): the verdict in the order's terms;
    * ``scores`` ``[n]`` with binary ``labels`` (EnsLoss, Dai 2024): :math:`\\log p_{first} - \\log p_{second}`, the
      log-odds that the answer shown first wins, and 1 when it did (tie rows are refused: ``ties="drop"``); the
      EnsLoss ``seed`` is redrawn every step from the option and the batch's rows, as the method draws a new loss
      per batch;
    * ``logps`` ``[n]`` (pass@N, Chen et al. 2025, "Rethinking Fine-Tuning when Scaling Test-Time Compute"):
      :math:`\\log p_y`, the log-probability of the correct verdict. Reading taken: the paper's :math:`\\pi(y\\mid x)`
      of the correct answer is here the probability of the correct verdict, known exactly (one class), so
      :math:`1 - (1 - p_y)^N` is pass@N of N sampled verdicts without sampling;
    * ``adversarial_logits`` (the smooth adversarial comp-sum, Mao, Mohri & Zhong 2023): :math:`\\log p` at the
      point :math:`x' = x + \\delta_T` of projected gradient ascent (PGD, Madry et al. 2018) on the loss's
      smoothness term in the model's input-embedding space (a forward hook on ``get_input_embeddings()``),

      .. math::
          \\delta_{t+1} = \\Pi_{\\lVert\\delta\\rVert \\le \\varepsilon}\\Big(\\delta_t + \\alpha\\,
          d\\big(\\nabla_\\delta \\lVert\\bar\\Delta(x + \\delta_t) - \\bar\\Delta(x)\\rVert_2^2\\big)\\Big),
          \\quad t = 0, \\dots, T - 1,

      :math:`\\bar\\Delta` the margins to the label, :math:`d(g) = \\mathrm{sign}(g)` for the ℓ∞ ball and
      :math:`g / \\lVert g\\rVert_2` for the ℓ2 ball (norms and projections per example, over all its positions
      and features), :math:`\\Pi` the projection (clipping, or rescaling to radius ε). ε = ``adversarial_epsilon``,
      T = ``adversarial_steps``, α = ``adversarial_step_size`` (default ε for one step, else 2.5ε/T, Madry et
      al.'s rule, which is 2/255 at ε = 8/255 and T = 10), ``adversarial_norm`` ``"inf"`` or ``"2"``. Without
      ``adversarial_random_start`` the iterate starts at :math:`\\delta_0 = 0`, and as the term's gradient
      vanishes there the first gradient is taken at a tiny Gaussian probe :math:`\\mathcal N(0, (10^{-3}
      \\varepsilon)^2)`; with it, :math:`\\delta_0` is uniform in the ball. The defaults (T = 1, α = ε, ℓ∞, no
      random start) are one FGSM step, :math:`x' = x + \\varepsilon\\,\\mathrm{sign}(\\nabla)`, as before
      these options existed. Reading taken: the paper's supremum over the perturbation ball is approximated by
      PGD on its smoothness term, in embedding space because tokens are discrete. Its experiments (adversarial
      training of image classifiers at an ℓ∞ radius of 8/255) follow a multi-step PGD setting whose step count we
      could not read in the paper's text, and an image radius has no meaning for embeddings, so one step stays the
      default; ``adversarial_steps=10`` is the usual 10-step PGD, each step one more forward and backward pass to
      the embeddings per training step.

    A loss needing anything else raises :class:`~pairkit.errors.InputError` naming the inputs and, when
    :func:`~pairkit.train.train_semi_supervised` makes them (P2C's two same-class inputs and preference logits,
    which comparisons do not give), that trainer.

    With ``verdicts`` the model is a causal LM and :math:`f(x, a, b)` its next-token logits of the verdict words
    after the prompt of :func:`~pairkit.judges.pairwise_classifier.encode_verdict_prompt` (a verdict head over
    the LM's own output projection, as generative pairwise judges are trained; Liu et al. 2025, "Pairwise RM:
    Perform Best-of-N Sampling with Knockout Tournament"); the softmax is over the verdict tokens only.

    Args:
        model: ``AutoModelForSequenceClassification`` with ``num_labels`` 2 (no ties) or 3 (ties as a class),
            or an ``AutoModelForCausalLM`` with ``verdicts``.
        tokenizer: its tokenizer; ``config.max_length`` caps each encoded (context, a, b).
        data: path, DataFrame or rows (see the module docstring).
        symmetry: λ ≥ 0.
        loss: a ``classification``-family loss name or weighted combination (default ``"cross_entropy"``).
        loss_options: the losses' declared options (``tau``, ``rho``, ``gamma``, …), checked once.
        ties: ``"keep"`` (a third class; the model needs 3 labels) or ``"drop"`` (left out, with a warning).
        verdicts: the verdict words of a causal LM (first better, second better[, tie]), e.g.
            :data:`~pairkit.judges.pairwise_classifier.VERDICTS`; ``None`` for a sequence classifier.
        adversarial_epsilon, adversarial_steps, adversarial_step_size, adversarial_norm, adversarial_random_start:
            the PGD attack above (only for a loss needing ``adversarial_logits``), declared in
            :data:`ATTACK_OPTIONS`: ε > 0, T ≥ 1, α > 0 or None, ``"inf"`` or ``"2"``, a bool.

    Per-step metrics: loss, ``ce`` (the classification loss, cross-entropy by default), ``symmetry``, ``accuracy``
    (argmax of the averaged orders) and ``consistency`` (the two orders' verdicts agree).

    Data parallel (``accelerate launch``, ``torchrun``): a batch-coupled loss (EnsLoss, the correctness-aware loss)
    is computed on every process's rows gathered in order, only this process's carrying gradient
    (:func:`pairkit.train._steps.loss_values`), and EnsLoss's draw is seeded by the whole step's rows, so N
    processes train as one on the whole batch.
    """
    from pairkit import losses
    from pairkit.train._steps import loss_terms

    check_number("symmetry", symmetry, low=0)
    attack = {"epsilon": adversarial_epsilon, "steps": adversarial_steps, "step_size": adversarial_step_size,
              "norm": adversarial_norm, "random_start": adversarial_random_start}  # fmt: skip
    terms = loss_terms(loss, "classification")
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    _check_judge_losses(terms)
    config = config or TrainConfig()
    if getattr(model.config, "pad_token_id", 0) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    examples = _encoded(model, tokenizer, data, config.max_length, ties, verdicts)
    swap = torch.tensor(_SWAP[: _num_labels(model, verdicts)])
    verdict_ids = _verdict_ids(tokenizer, verdicts)
    needs = {n for name, _, _ in terms for i in losses.spec(name).input_specs if (i.name, i.kind) in INPUTS
             for n in INPUTS[(i.name, i.kind)].needs}  # fmt: skip
    if "no ties" in needs and any(ex["label"] == TIE for ex in examples):
        raise InputError(f"loss {loss!r} has binary labels (first/second) and the data has ties: train with "
                         "ties='drop'")  # fmt: skip

    def step(model, rows):
        n = len(rows)
        orders = _Orders(model, tokenizer, rows, verdict_ids, swap, attack)
        p = orders.logp.exp()
        p_ab, p_ba = p[:n], p[n:]
        y = orders.labels[:n]
        ce = 0.0
        for name, weight, _ in terms:
            spec = losses.spec(name)
            inputs = {i.name: INPUTS[(i.name, i.kind)].make(orders) for i in spec.input_specs
                      if (i.name, i.kind) in INPUTS}  # fmt: skip
            own = options_for(name, options)
            if spec.takes("seed"):
                own["seed"] = step_seed(own, rows)
            shown, swapped = ({k: v[half] for k, v in inputs.items()} for half in (slice(0, n), slice(n, None)))
            ce = ce + weight * 0.5 * (loss_values(name, shown, own) + loss_values(name, swapped, own))
        sym = ((p_ab - p_ba[:, swap]) ** 2).sum(-1)
        with torch.no_grad():
            avg = 0.5 * (p_ab + p_ba[:, swap])
            stats = {
                "ce": ce.detach(),
                "symmetry": sym.detach(),
                "accuracy": (avg.argmax(-1) == y).double(),
                "consistency": (p_ab.argmax(-1) == swap[p_ba.argmax(-1)]).double(),
            }
        return ce + symmetry * sym, stats

    return fit(model, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])


def evaluate_pairwise_judge(
    model,
    tokenizer,
    data,
    *,
    max_length: int = 512,
    batch_size: int = 32,
    ties: str = "keep",
    confidence: float = 0.95,
    verdicts: Sequence[str] | None = None,
) -> dict[str, float]:
    """Held-out accuracy (Clopper–Pearson interval) and position consistency of a pairwise judge.

    .. math::

        \\bar p = \\tfrac12(p_{ab} + \\pi\\,p_{ba}),\\quad
        \\text{acc} = \\frac1n\\sum_i \\mathbb{1}[\\arg\\max \\bar p_i = y_i],\\quad
        \\text{consistency} = \\frac1n\\sum_i \\mathbb{1}[\\arg\\max p_{ab,i} = \\pi(\\arg\\max p_{ba,i})]

    The binomial test is against ``chance`` = max(tie rate, (1 − tie rate)/2), the best accuracy of a judge
    that ignores the answers' content (it cannot know which side the winner is on). Also reported:
    ``decided_accuracy`` (on rows that are not ties, whether P(a ≻ b) > P(b ≻ a)), ``log_loss`` of
    :math:`\\bar p` and ``first_rate`` (how often a single order picks the answer shown first, 0.5 unbiased).
    ``verdicts`` as in :func:`train_pairwise_judge`.
    Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the case of the binomial".
    """
    from scipy.stats import binomtest

    examples = _encoded(model, tokenizer, data, max_length, ties, verdicts)
    swap = torch.tensor(_SWAP[: _num_labels(model, verdicts)])
    verdict_ids = _verdict_ids(tokenizer, verdicts)
    was = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for s in range(0, len(examples), batch_size):
            parts.append(_probabilities(model, tokenizer, examples[s : s + batch_size], verdict_ids))
    model.train(was)
    p_ab = torch.cat([p for p, _ in parts]).double()
    p_ba = torch.cat([p for _, p in parts]).double()
    y = torch.tensor([r["label"] for r in examples])
    avg = 0.5 * (p_ab + p_ba[:, swap])
    n = len(y)
    correct = int((avg.argmax(-1) == y).sum())
    tie_rate = float((y == TIE).double().mean())
    chance = max(tie_rate, (1 - tie_rate) / 2)
    test = binomtest(correct, n, chance)
    ci = test.proportion_ci(confidence_level=confidence, method="exact")
    decided = y != TIE
    dec_correct = (avg[decided, FIRST] > avg[decided, SECOND]) == (y[decided] == FIRST)
    first_rate = torch.cat([p_ab[:, FIRST] > p_ab[:, SECOND], p_ba[:, FIRST] > p_ba[:, SECOND]]).double().mean()
    return {
        "accuracy": correct / n,
        "n": n,
        "correct": correct,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "chance": chance,
        "p_value": float(test.pvalue),
        "decided_accuracy": float(dec_correct.double().mean()) if bool(decided.any()) else float("nan"),
        "position_consistency": float((p_ab.argmax(-1) == swap[p_ba.argmax(-1)]).double().mean()),
        "first_rate": float(first_rate),
        "log_loss": float(-avg.gather(1, y[:, None]).clamp_min(1e-12).log().mean()),
        "ties": int((y == TIE).sum()),
    }


def save_pairwise_judge(
    model, tokenizer, output_dir, *, max_length: int = 512, metrics: dict | None = None, verdicts=None
) -> Path:
    """Save model, tokenizer and the judge marker to ``output_dir/final``; write ``output_dir/judge.json``.

    ``judge.json`` is ``{"type": "huggingface", "model": "<output_dir>/final"}``, a judge config for
    :func:`pairkit.judges.judge_from_config` (``pairkit judge``, ``pairkit train online --judge``).
    ``verdicts`` (a causal-LM judge's verdict words) are recorded, so the judge loads the model as a causal LM.
    Returns the path of ``final``.
    """
    from pairkit._io import atomic_directory, atomic_write_text

    out = Path(output_dir)
    final = out / "final"
    labels = ["first", "second", "tie"][: _num_labels(model, verdicts)]
    marker = {"kind": "pairwise_classifier", "version": 1, "labels": labels, "max_length": int(max_length)}
    if verdicts:
        marker.update(kind="pairwise_verdict_lm", verdicts=list(verdicts))
    if metrics:
        marker["held_out"] = metrics
    with atomic_directory(final) as tmp:  # a kill mid-save leaves the previous judge intact
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    config = {"type": "huggingface", "model": str(final.resolve())}
    atomic_write_text(out / "judge.json", json.dumps(config, indent=2) + "\n")
    return final
