"""Train a regressor with a latent layer on a ``regression``-family loss (the Cauchy–Schwarz information bottleneck)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from pairkit.errors import InputError
from pairkit.train import _dist as dist
from pairkit.train._loop import TrainConfig, TrainResult, check_options, coupled_losses, fit, init_distributed
from pairkit.train._steps import loss_terms
from pairkit.train.semi_supervised import Made, check_inputs, encode_batch, linear_head, loss_value, row_items, rows_of

__all__ = ["train_regression"]


class _Regressor(torch.nn.Module):
    """The encoder (inputs → latents) and the regression head (latents → predictions), trained together."""

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x):
        return self.head(self.encoder(x))


class _Batch:
    def __init__(self, module: _Regressor, x: torch.Tensor, targets: torch.Tensor):
        self.x, self.targets = x, targets
        self.latents = encode_batch(module.encoder, x, None)
        self.predictions = module.head(self.latents)


#: What :func:`train_regression` makes for each loss input it knows.
INPUTS: dict[str, Made] = {
    "inputs": Made(frozenset(), lambda b: b.x.to(b.latents.dtype), "the rows' feature vectors [n, dim]"),
    "latents": Made(frozenset(), lambda b: b.latents, "the encoder's output [n, latent]"),
    "targets": Made(frozenset(), lambda b: b.targets.to(b.latents.dtype), "the rows' targets [n, target]"),
    "predictions": Made(frozenset(), lambda b: b.predictions, "the regression head's output [n, target]"),
}


def train_regression(
    model: torch.nn.Module,
    data,
    *,
    loss: str | dict[str, float] = "cs_ib_loss",
    loss_options: dict[str, Any] | None = None,
    head: torch.nn.Module | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Fit a regressor :math:`\\hat y = g(f_\\theta(x))` whose latent :math:`t = f_\\theta(x)` the loss also sees.

    Each step encodes the batch's feature vectors :math:`x` ``[B, d_x]`` into latents :math:`t` ``[B, d_t]``
    (``model``) and predictions :math:`\\hat y = g(t)` ``[B, d_y]`` (``head``), and minimises the
    ``regression``-family loss on the whole batch — for the Cauchy–Schwarz divergence information bottleneck
    (Yu, Yu, Løkse, Jenssen & Príncipe 2024, "Cauchy-Schwarz Divergence Information Bottleneck for Regression",
    ICLR; :func:`~pairkit.losses.cs_ib_loss`)

    .. math::

        \\mathcal L = D_{CS}\\big(p(y\\mid x)\\,\\|\\,q_\\theta(\\hat y\\mid x)\\big) + \\beta\\, I_{CS}(X; T)

    with ``inputs`` = :math:`x`, ``latents`` = :math:`t`, ``targets`` = :math:`y`, ``predictions`` = :math:`\\hat
    y` (the module's ``INPUTS`` table; a loss needing anything else raises
    :class:`~pairkit.errors.InputError` naming it). As the paper trains, the batch is the Parzen sample of both
    estimators, so ``grad_accum`` must be 1 and the batch should hold a few dozen rows or more. Data parallel
    (``accelerate launch``, ``torchrun``), the batch-coupled loss is computed on every process's rows gathered in
    order, only this process's carrying gradient, weighted so that the summed gradients are one process's on the
    whole batch; every process must get a row of every step.

    Args:
        model: a ``torch.nn.Module`` from feature vectors ``[n, d_x]`` to latents ``[n, d_t]``.
        data: rows ``{"features"|"text": vector, "target": number or list}`` (path, DataFrame or list).
        loss: a ``regression``-family loss name or weighted sum; ``loss_options`` its options (``beta``,
            ``sigma_x``, …), checked once.
        head: the regression head on the latents (default a linear layer ``d_t -> d_y``, weights
            ``N(0, 1/d_t)`` seeded by ``config.seed``, bias 0); trained with the model.

    Returns a ``TrainResult`` with the head in ``heads["regression"]``. Per-step metrics: loss
    and ``mae`` (mean absolute error of the predictions over the target entries).
    """
    config = config or TrainConfig()
    terms = loss_terms(loss, "regression")
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    check_inputs(terms, INPUTS, "train_regression", options)
    rows, source = rows_of(data, "regression")
    items, raw = row_items(rows, None, config, source, column="target")
    targets = []
    for i, t in enumerate(raw, start=1):
        try:
            y = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            y = torch.tensor([math.nan])
        if y.numel() == 0 or not bool(torch.isfinite(y).all()):
            raise InputError(f"{source}, row {i}, column 'target': expected a finite number or list, got {t!r}")
        targets.append(y)
    if len({y.numel() for y in targets}) > 1:
        raise InputError(f"{source}: the targets differ in length; every row needs as many target values")
    with torch.no_grad():
        probe = encode_batch(model, items[0][None], None)
    head = head if head is not None else linear_head(probe.shape[1], targets[0].numel(), probe.dtype, config.seed)
    module = _Regressor(model, head)
    examples = [{"x": x, "y": y} for x, y in zip(items, targets)]
    coupled = set(coupled_losses([n for n, _, _ in terms])) if init_distributed()[1] > 1 else set()

    def step(mod: _Regressor, rows):
        batch = _Batch(mod, torch.stack([r["x"] for r in rows]), torch.stack([r["y"] for r in rows]))
        if batch.predictions.shape != batch.targets.shape:
            raise InputError(f"the head predicts {list(batch.predictions.shape)[1:]} values per row, the targets have "
                             f"{list(batch.targets.shape)[1:]}")  # fmt: skip
        total = 0.0
        for name, weight, _ in terms:
            if name in coupled:  # every process's rows in order, only this process's carrying gradient
                whole = loss_value(name, INPUTS, batch, options, dist.whole_batch)
                total = total + weight * dist.whole_batch_term(whole, len(rows), dist.own_rows(len(rows)).size)
            else:
                total = total + weight * loss_value(name, INPUTS, batch, options)
        mae = (batch.predictions.detach().double() - batch.targets.double()).abs().mean(-1)
        return total.expand(len(rows)), {"mae": mae}

    result = fit(module, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])
    result.heads = {"regression": module.head}
    return result
