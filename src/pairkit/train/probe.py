"""Unsupervised linear probes on the hidden states of a frozen model: CCS and the losses on contrast pairs.

:func:`train_probe` reads the hidden state of each statement and of its negation (or of a comparison and its
reversal, for pairwise contrast-consistent ranking) from a frozen Hugging Face model with
:func:`~pairkit.train.collect_hidden_states`; :func:`fit_probe` normalises the two sets as CCS does and fits a
linear probe with a registered loss on contrast pairs (``ccs``), keeping the restart with the lowest loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pairkit.errors import InputError
from pairkit.train._loop import TrainConfig, call_loss, check_number, check_options, fit, parse_loss_spec
from pairkit.train._steps import normalised_rows, pad_id_of
from pairkit.train.data import prompt_ids

__all__ = ["ProbeResult", "fit_probe", "probe_hidden_states", "train_probe"]

_INPUTS = {"positive_logits", "negative_logits"}


@dataclasses.dataclass
class ProbeResult:
    """A fitted probe: the linear map, the normalisation it expects, and how the restarts went.

    ``probe``: ``torch.nn.Linear(d, 1)`` on normalised hidden states (its output is the logit ``z``).
    ``loss``: the full-data loss of the kept restart; ``restart``: its index; ``restart_losses``: every restart's
    full-data loss. ``accuracy``: ``max(acc, 1 − acc)`` of the probe's answers against the labels when the data
    has labels, else None (the sign of an unsupervised probe is arbitrary, so the better of the two readings is
    reported, as Burns et al. do). ``history``: the kept restart's per-step metrics. ``means``/``stds``: the
    per-dimension statistics of the positive and the negative hidden states the probe was fitted on (used again
    by :meth:`confidence`). ``layer``: the module the hidden states came from (None for given features).
    """

    probe: torch.nn.Linear
    loss: float
    accuracy: float | None
    restart: int
    restart_losses: list[float]
    history: list[dict[str, float]]
    means: tuple[torch.Tensor, torch.Tensor]
    stds: tuple[torch.Tensor, torch.Tensor]
    layer: str | None = None

    def confidence(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """``[n]`` probe credence that each statement (not its negation) is true: ½(p⁺ + 1 − p⁻).

        The hidden states are normalised with the training statistics (``means``, ``stds``).
        """
        pos, neg = _normalise(positive, self.means[0], self.stds[0]), _normalise(negative, self.means[1], self.stds[1])
        with torch.no_grad():
            p_pos = torch.sigmoid(self.probe(pos.to(self.probe.weight.dtype))[:, 0])
            p_neg = torch.sigmoid(self.probe(neg.to(self.probe.weight.dtype))[:, 0])
        return 0.5 * (p_pos + 1 - p_neg)


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


def _stats(x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation; a constant dimension keeps std 1 (it becomes 0 after centring)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"{name} must be [n, d] hidden states with n >= 2, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} holds NaN or infinite values")
    mean, std = x.mean(0), x.std(0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _loss_terms(loss) -> list[tuple[str, float]]:
    from pairkit import losses

    terms = parse_loss_spec(loss)
    for name, _ in terms:
        spec = losses.spec(name)
        needed = {i.name for i in spec.input_specs if i.required}
        if not needed <= _INPUTS:
            raise InputError(
                f"loss {name!r} needs {sorted(needed - _INPUTS)}; a probe gives a logit on each statement "
                f"and on its negation ({sorted(_INPUTS)}): use a loss on contrast pairs such as 'ccs'"
            )
    return terms


def fit_probe(
    positive: torch.Tensor,
    negative: torch.Tensor,
    labels: Sequence[float] | torch.Tensor | None = None,
    *,
    loss: str | dict[str, float] = "ccs",
    loss_options: dict[str, Any] | None = None,
    restarts: int = 10,
    normalize: bool = True,
    config: TrainConfig | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> ProbeResult:
    r"""Fit a linear probe ``z = w·x̃ + b`` to contrast pairs of hidden states, unsupervised; keep the best restart.

    Normalisation (Burns et al. 2023, §2.2): each set is centred and scaled per dimension on its own,

    .. math::
        \tilde x^{+}_i = \frac{x^{+}_i - \mu^{+}}{\sigma^{+}},\qquad
        \tilde x^{-}_i = \frac{x^{-}_i - \mu^{-}}{\sigma^{-}},

    so that what tells a statement from its negation in general (the token "Yes" vs "No") is removed and only
    what varies with the statement's truth is left. The probe is then fitted with ``loss`` (a registered loss on
    contrast pairs: ``ccs`` by default, the consistency + confidence objective
    :math:`(p^+ - (1 - p^-))^2 + \min(p^+, p^-)^2` with :math:`p^\pm = \sigma(z^\pm)`) on the full batch, from
    ``restarts`` random initialisations (seeds ``config.seed + r``); the restart whose final full-data loss is
    lowest is kept, as in the paper (which uses 10 restarts). With ``labels`` (1: the positive statement is
    true) the unsupervised accuracy of the prediction :math:`\tfrac12(p^+ + 1 - p^-) > \tfrac12` is reported
    as :math:`\max(\text{acc}, 1 - \text{acc})`: the probe cannot know which pole is "true".

    Burns, Ye, Klein & Steinhardt (2023), "Discovering Latent Knowledge in Language Models Without
    Supervision" (ICLR). Default optimisation as their code: AdamW, learning rate 1e-3, weight decay 0.01,
    1000 full-batch epochs (pass ``config`` to change; its ``batch_size`` is the number of pairs per step).

    Args:
        positive, negative: ``[n, d]`` hidden states of each statement and of its negation.
        labels: optional ``[n]`` truth of the positive statements (1/0), only for the reported accuracy.
        restarts: random initialisations (>= 1). ``normalize=False`` fits on the raw hidden states.

    Returns: :class:`ProbeResult`.
    """
    check_number("restarts", restarts, low=1, integer=True)
    positive, negative = torch.as_tensor(positive), torch.as_tensor(negative)
    if positive.shape != negative.shape:
        raise InputError(f"positive {tuple(positive.shape)} and negative {tuple(negative.shape)} differ in shape")
    dtype = positive.dtype if positive.is_floating_point() else torch.float32
    positive, negative = positive.to(dtype), negative.to(dtype)
    (m_pos, s_pos), (m_neg, s_neg) = _stats(positive, "positive"), _stats(negative, "negative")
    if not normalize:
        m_pos, m_neg = torch.zeros_like(m_pos), torch.zeros_like(m_neg)
        s_pos, s_neg = torch.ones_like(s_pos), torch.ones_like(s_neg)
    x_pos, x_neg = _normalise(positive, m_pos, s_pos), _normalise(negative, m_neg, s_neg)
    n, d = x_pos.shape
    y = None
    if labels is not None:
        y = torch.as_tensor(labels, dtype=torch.float64).reshape(-1)
        if y.shape[0] != n or not bool(((y == 0) | (y == 1)).all()):
            raise InputError(f"labels must be {n} values, each 0 or 1")
    terms = _loss_terms(loss)
    options = check_options([t for t, _ in terms], dict(loss_options or {}))
    if config is None:
        config = TrainConfig(epochs=1000, batch_size=n, lr=1e-3, weight_decay=0.01, schedule="constant",
                             max_grad_norm=None)  # fmt: skip

    def objective(probe, idx: torch.Tensor) -> torch.Tensor:
        inputs = {"positive_logits": probe(x_pos[idx])[:, 0], "negative_logits": probe(x_neg[idx])[:, 0]}
        return sum(w * call_loss(t, inputs, options) for t, w in terms)

    def step(probe, rows):
        idx = torch.as_tensor(rows, dtype=torch.long)
        return objective(probe, idx), {}

    best = None
    restart_losses = []
    for r in range(restarts):
        torch.manual_seed(config.seed + r)
        probe = torch.nn.Linear(d, 1).to(dtype)
        run = dataclasses.replace(
            config, seed=config.seed + r,
            output_dir=None if config.output_dir is None else f"{config.output_dir}/restart-{r}",
        )  # fmt: skip
        result = fit(probe, list(range(n)), step, run, callback=callback, losses=[t for t, _ in terms])
        with torch.no_grad():
            final = float(objective(probe, torch.arange(n)).mean())
        restart_losses.append(final)
        if best is None or final < best[0]:
            best = (final, r, probe, result.history)
    final, r, probe, history = best
    probe.eval()
    out = ProbeResult(probe=probe, loss=final, accuracy=None, restart=r, restart_losses=restart_losses,
                      history=history, means=(m_pos, m_neg), stds=(s_pos, s_neg))  # fmt: skip
    if y is not None:
        predicted = (out.confidence(positive, negative) > 0.5).double()
        acc = float((predicted == y).double().mean())
        out.accuracy = max(acc, 1 - acc)
    return out


def _layer_name(model, layer: int | str) -> str:
    """A module path for ``layer``: a name as given, or the index into the model's list of decoder blocks."""
    if isinstance(layer, str):
        return layer
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise InputError(f"layer must be a block index or a module name, got {layer!r}")
    kinds = ("layers", "h", "layer", "blocks")
    blocks = [(name, m) for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in kinds]  # fmt: skip
    if not blocks:
        raise InputError("cannot find the model's list of blocks (a ModuleList named layers, h, layer or blocks); "
                         "give layer as a module name from model.named_modules()")  # fmt: skip
    name, modules = max(blocks, key=lambda b: len(b[1]))
    if not -len(modules) <= layer < len(modules):
        raise InputError(f"layer {layer} is out of range: the model has {len(modules)} blocks ({name})")
    return f"{name}.{layer % len(modules)}"


def probe_hidden_states(
    model, tokenizer, texts: Sequence[Any], *, layer: int | str = -1, batch_size: int = 16, max_length: int = 512
) -> torch.Tensor:
    """``[n, d]`` hidden state of each text's last token at the output of block ``layer`` of a frozen model.

    ``layer``: an index into the model's decoder blocks (``-1``: the last block, before the final norm) or a
    module name from ``model.named_modules()``. Texts are tokenised as prompts (:func:`pairkit.train.prompt_ids`;
    chat messages through the chat template), cut to their last ``max_length`` tokens and run right-padded in
    batches under ``torch.no_grad()``; the hidden state is read at each text's last real token.
    """
    from pairkit.train.features import collect_hidden_states

    check_number("batch_size", batch_size, low=1, integer=True)
    name = _layer_name(model, layer)
    pad = pad_id_of(tokenizer)
    was = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            ids = [prompt_ids(tokenizer, t)[-max_length:] for t in texts[start : start + batch_size]]
            if any(not x for x in ids):
                raise InputError(f"text {start + next(i for i, x in enumerate(ids) if not x) + 1} has no tokens")
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            attention = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):
                input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
                attention[i, : len(x)] = 1
            with torch.no_grad():
                _, states = collect_hidden_states(model, [name], input_ids=input_ids, attention_mask=attention,
                                                  detach=True)  # fmt: skip
            h = states[name]
            last = attention.sum(1) - 1
            out.append(h[torch.arange(len(ids)), last].float())
    finally:
        model.train(was)
    return torch.cat(out)


def train_probe(
    model,
    tokenizer,
    data,
    *,
    loss: str | dict[str, float] = "ccs",
    layer: int | str = -1,
    loss_options: dict[str, Any] | None = None,
    restarts: int = 10,
    normalize: bool = True,
    config: TrainConfig | None = None,
    batch_size: int = 16,
    max_length: int = 512,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> ProbeResult:
    """Fit an unsupervised probe (CCS by default) on a frozen model's hidden states of contrast pairs.

    ``data``: a path, DataFrame or rows ``{"positive": text, "negative": text}`` (optionally ``"label"``: 1 when
    the positive statement is the true one, 0 otherwise; used only to report the unsupervised accuracy). For
    CCS the two texts are a question answered "Yes" and "No" (a statement and its negation); for pairwise
    contrast-consistent ranking (Stoehr et al. 2024, EACL) they are "Is A more … than B? Yes" and the same
    with "No" (or with A and B swapped). The hidden states come from :func:`probe_hidden_states` (block
    ``layer``, last token) and the probe from :func:`fit_probe` (per-class normalisation, ``restarts`` random
    starts, the lowest loss kept; the model is never updated).

    Burns, Ye, Klein & Steinhardt (2023), "Discovering Latent Knowledge in Language Models Without Supervision".
    """
    rows, _, source = normalised_rows(data, lambda rows, source: list(rows))
    if len(rows) < 2:
        raise InputError(f"{source}: a probe needs at least 2 contrast pairs, got {len(rows)}")
    for i, r in enumerate(rows, start=1):
        for key in ("positive", "negative"):
            if key not in r:
                raise InputError(f"{source}, row {i}: missing {key!r} (rows are {{'positive', 'negative', 'label'?}})")
    with_labels = [("label" in r and r["label"] is not None) for r in rows]
    if any(with_labels) and not all(with_labels):
        raise InputError(f"{source}: {sum(with_labels)} of {len(rows)} rows have a 'label'; give all or none")
    labels = [float(r["label"]) for r in rows] if all(with_labels) else None
    texts = [r["positive"] for r in rows] + [r["negative"] for r in rows]
    states = probe_hidden_states(model, tokenizer, texts, layer=layer, batch_size=batch_size, max_length=max_length)
    n = len(rows)
    result = fit_probe(states[:n], states[n:], labels, loss=loss, loss_options=loss_options, restarts=restarts,
                       normalize=normalize, config=config, callback=callback)  # fmt: skip
    result.layer = _layer_name(model, layer)
    return result
