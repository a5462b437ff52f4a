"""Train an encoder with a contrastive or metric-learning loss (the ``contrastive`` family of :mod:`pairkit.losses`).

Flow of :func:`train_contrastive`:

1. rows → examples. Multi-view rows (``anchor``/``positive`` pairs, or ``views`` lists of two or more), labelled
   rows (``text``/``label``) or regression rows (``text``/``target``); texts are tokenised once (``tokenizer``), or
   the columns hold feature vectors for a plain ``torch.nn.Module`` encoder (``tokenizer=None``).
2. the losses' declared inputs (``pairkit.losses.spec``) are matched with what the rows can produce; an input
   the trainer cannot make raises :class:`~pairkit.errors.InputError` naming the loss and the input before training.
3. proxy inputs (``proxies``, ``prototypes``, ``centers``) become learnable parameters trained with the encoder; a
   loss that needs a regression head's ``predictions`` (ConR) gets a linear head trained with the encoder on the
   regression loss.
4. the shared loop (``pairkit.train._loop.fit``: optimiser, schedule, checkpoints and resume, metrics, progress)
   runs the step: encode the batch (mean pooling of a Hugging Face model's last hidden states), build the inputs,
   call each loss with ``reduction="mean"`` on the whole batch (under data parallel a batch-coupled loss gets every
   process's embeddings, gathered).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from pairkit.errors import InputError
from pairkit.train import _dist as dist
from pairkit.train._loop import (
    TrainConfig,
    TrainResult,
    call_loss,
    check_number,
    check_options,
    coupled_losses,
    fit,
    init_distributed,
    options_for,
)
from pairkit.train._steps import loss_terms, normalised_rows, pad_id_of
from pairkit.train.data import TruncationWarning
from pairkit.train.reward_model import mean_pool

__all__ = ["train_contrastive"]

# what each kind of row produces, as (input name, input kind) the losses declare
_VIEW_INPUTS = {
    ("query", "embeddings"),
    ("keys", "embeddings"),
    ("embeddings", "embeddings"),
    ("labels", "classes"),
    ("views", "views"),
    ("targets", "binary"),
}
_LABEL_INPUTS = {("embeddings", "embeddings"), ("labels", "classes")}
_TARGET_INPUTS = {
    ("embeddings", "embeddings"),
    ("targets", "regression_targets"),
    ("predictions", "regression_targets"),  # from a linear regression head trained with the encoder (ConR)
}
_REGRESSION_LOSSES = ("l1", "mse")
_MADE = {"views": _VIEW_INPUTS, "labels": _LABEL_INPUTS, "targets": _TARGET_INPUTS}
_PROXY_KIND = "proxies"  # made (as learnable parameters) from labelled rows only
_FORMATS = {
    "views": "multi-view rows ('anchor'/'positive' or 'views')",
    "labels": "labelled rows ('text'/'label')",
    "targets": "regression rows ('text'/'target')",
}


def _rows_format(rows: list[dict[str, Any]], source: str) -> str:
    first = rows[0] if rows else {}
    if not isinstance(first, dict):
        raise InputError(f"{source}, row 1: expected a mapping of columns, got {type(first).__name__}")
    if "views" in first or ("anchor" in first and "positive" in first):
        return "views"
    if "text" in first and "label" in first:
        return "labels"
    if "text" in first and "target" in first:
        return "targets"
    raise InputError(
        f"{source}, row 1: contrastive rows need 'anchor'/'positive' (pairs), 'views' (two or more views of one item) "
        f"'text'/'label' or 'text'/'target' columns; got {sorted(first)}"
    )


def _identity(rows, source):
    return rows


def _check_producible(terms, fmt: str) -> None:
    from pairkit import losses

    def makes(f, inp):
        return (inp.name, inp.kind) in _MADE[f] or (f == "labels" and inp.kind == _PROXY_KIND)

    for name, _, _ in terms:
        for inp in losses.spec(name).input_specs:
            if not inp.required or makes(fmt, inp):
                continue
            others = [_FORMATS[f] for f in _FORMATS if f != fmt and makes(f, inp)]
            hint = f"give {' or '.join(others)} instead" if others else "train_contrastive cannot make it"
            raise InputError(
                f"loss {name!r} needs {inp.name!r} ({inp.kind} {inp.shape}), which train_contrastive does not make "
                f"from {_FORMATS[fmt]}; {hint}"
            )


def _check_required_options(terms, options: dict[str, Any]) -> None:
    """A loss option without a default (iSogCLR's ``temperature`` and ``rho``) must be in ``loss_options``."""
    from pairkit import losses

    for name, _, _ in terms:
        spec = losses.spec(name)
        have = options_for(name, options)
        missing = [o.name for o in spec.options if o.name not in spec.defaults and o.name not in have]
        if missing:
            names = ", ".join(map(repr, missing))
            raise InputError(
                f"loss {name!r} has no default for {names}: give it in loss_options (--loss-option KEY=VALUE)"
            )


def _item(value, tokenizer, config: TrainConfig, where: str):
    """Token ids (with a tokenizer; truncated to ``max_length``) or a feature tensor; and whether it was cut."""
    if tokenizer is None:
        try:
            x = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            kind = type(value).__name__
            raise InputError(f"{where}: expected a feature vector (tokenizer=None), got {kind}") from None
        if not x.is_floating_point() or x.ndim != 1 or not bool(torch.isfinite(x).all()):
            got = f"{x.dtype} of shape {list(x.shape)}"
            raise InputError(f"{where}: expected a finite 1-D float feature vector, got {got}")
        return x, False
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: expected a non-empty text, got {value!r}")
    ids = tokenizer(value)["input_ids"]
    if len(ids) > config.max_length:
        return tokenizer(value, truncation=True, max_length=config.max_length)["input_ids"], True
    return ids, False


def _key(item) -> Any:
    return item.numpy().tobytes() if isinstance(item, torch.Tensor) else tuple(item)


def _examples(rows, fmt: str, tokenizer, config: TrainConfig, source: str):
    """Examples ``{"items": [V items], "group": int}`` and the number of classes (labelled rows)."""
    examples, cut = [], 0
    classes: dict[Any, int] = {}
    groups: dict[Any, int] = {}
    views = None
    for i, r in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if fmt == "views":
            raw = r.get("views") if "views" in r else [r.get("anchor"), r.get("positive")]
            if not isinstance(raw, (list, tuple)) or len(raw) < 2:
                raise InputError(f"{where}: 'views' must list two or more views of one item, got {raw!r}")
            if views is None:
                views = len(raw)
            elif len(raw) != views:
                raise InputError(f"{where}: {len(raw)} views, but row 1 has {views}; every row needs as many")
        elif fmt == "labels":
            raw = [r.get("text")]
            label = r.get("label")
            if not isinstance(label, (str, int)) or isinstance(label, bool):
                raise InputError(f"{where}, column 'label': expected a class name or integer, got {label!r}")
        else:
            raw = [r.get("text")]
            target = r.get("target")
            if not isinstance(target, (int, float)) or isinstance(target, bool) or not math.isfinite(target):
                raise InputError(f"{where}, column 'target': expected a finite number, got {target!r}")
        items = []
        for v in raw:
            x, was_cut = _item(v, tokenizer, config, where)
            items.append(x)
            cut += was_cut
        if fmt == "views":  # rows with the same first view (anchor) are one group: each other's positives
            group = groups.setdefault(_key(items[0]), len(groups))
        elif fmt == "labels":
            group = classes.setdefault(label, len(classes))
        else:
            group = i - 1
        examples.append({"items": items, "group": group, **({"target": float(target)} if fmt == "targets" else {})})
    if cut:
        warnings.warn(
            f"{source}: {cut} texts were truncated to max_length={config.max_length} tokens",
            TruncationWarning,
            stacklevel=3,
        )
    if tokenizer is None and len({ex["items"][0].shape[0] for ex in examples}) > 1:
        raise InputError(f"{source}: the feature vectors differ in length; every view needs the same dimension")
    return examples, len(classes)


def _embed(encoder, items: list, pad_id: int | None) -> torch.Tensor:
    """The encoder's embeddings ``[n, d]``: a module on stacked features, or mean-pooled last hidden states."""
    if pad_id is None:
        x = torch.stack(items)
        param = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        out = encoder(x.to(param.dtype) if param is not None else x)  # features in the encoder's precision
        mask = None
    else:
        seqs = [torch.as_tensor(x, dtype=torch.long) for x in items]
        ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_id)
        lengths = torch.tensor([len(s) for s in seqs])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        out = encoder(input_ids=ids, attention_mask=mask)
    hidden = getattr(out, "last_hidden_state", out)
    if not isinstance(hidden, torch.Tensor):
        kind = type(out).__name__
        raise InputError(f"the encoder returned {kind}: expected a tensor or an output with last_hidden_state")
    if hidden.ndim == 3:
        hidden = mean_pool(hidden, mask if mask is not None else torch.ones(hidden.shape[:2], dtype=torch.long))
    if hidden.ndim != 2:
        raise InputError(f"the encoder's output has shape {list(hidden.shape)}: expected [n, dim] or [n, T, dim]")
    return hidden


class _WithProxies(torch.nn.Module):
    """The encoder, the losses' learnable proxies and the regression head, optimised and checkpointed together."""

    def __init__(self, encoder: torch.nn.Module, proxies: dict[str, torch.Tensor], head=None):
        super().__init__()
        self.encoder = encoder
        self.proxies = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in proxies.items()})
        self.regression_head = head

    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)


def _proxy_key(loss: str, inp: str) -> str:
    return f"{loss}__{inp}"


def _init_proxies(terms, classes: int, dim: int, dtype, centers_per_class: int, seed: int) -> dict[str, torch.Tensor]:
    """Gaussian proxies with rows of norm about 1 (``N(0, 1/dim)``), one tensor per proxy input of each loss."""
    from pairkit import losses

    sizes = {"classes": classes, "centers": centers_per_class, "dim": dim}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, _, _ in terms:
        for inp in losses.spec(name).input_specs:
            if inp.kind != _PROXY_KIND:
                continue
            dims = [d.strip() for d in inp.shape.strip("[]").split(",")]
            if any(d not in sizes for d in dims):
                raise InputError(f"loss {name!r}: train_contrastive cannot size its {inp.name!r} of shape {inp.shape}")
            shape = [sizes[d] for d in dims]
            out[_proxy_key(name, inp.name)] = (torch.randn(shape, generator=g) / math.sqrt(dim)).to(dtype)
    return out


def _init_head(dim: int, dtype, seed: int) -> torch.nn.Linear:
    """A linear regression head ``dim -> 1``: weights ``N(0, 1/dim)`` (seeded, as the proxies), bias 0."""
    g = torch.Generator().manual_seed(seed + 1)
    head = torch.nn.Linear(dim, 1).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, dim, generator=g) / math.sqrt(dim))
        head.bias.zero_()
    return head


def _stats(grid, groups, targets, rows, fmt: str) -> dict[str, torch.Tensor]:
    """The step's metrics of the rows ``rows.start:rows.stop`` of the batch ``grid`` ``[B, V, d]``: in-batch top-1
    retrieval (multi-view rows), leave-one-out nearest-neighbour label accuracy (labelled rows) or the target gap
    to the nearest neighbour (regression rows), by cosine similarity."""
    same = groups[:, None] == groups[None, :]
    q = torch.nn.functional.normalize(grid[:, 0].float(), dim=-1)
    mine = slice(rows.start, rows.stop)
    if fmt == "views":
        k = torch.nn.functional.normalize(grid[:, 1].float(), dim=-1)
        return {"accuracy": same.gather(1, (q @ k.T).argmax(1, keepdim=True)).squeeze(1).double()[mine]}
    if grid.shape[0] < 2:
        return {}
    near = (q @ q.T).fill_diagonal_(-torch.inf).argmax(1)
    if fmt == "labels":
        return {"accuracy": (groups[near] == groups).double()[mine]}
    t = targets.double()  # how far apart the targets of nearest neighbours are
    return {"neighbour_target_gap": (t[near] - t).abs()[mine]}


def train_contrastive(
    model,
    data,
    *,
    tokenizer=None,
    loss: str | dict[str, float] = "infonce",
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    centers_per_class: int = 10,
    regression_loss: str = "l1",
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train an encoder with contrastive / metric-learning losses on in-batch negatives, labels or proxies.

    Each step encodes the batch, :math:`e_i = f_\\theta(x_i)` (for a Hugging Face model the attention-masked mean of
    its last hidden states, as Reimers & Gurevych 2019, "Sentence-BERT"), and minimises the batch loss

    .. math::

        \\mathcal{L} = \\sum_k w_k\\, \\ell_k(e_{1..B}, \\ldots)

    with every registered loss :math:`\\ell_k` of the ``contrastive`` family whose inputs the rows give
    (e.g. InfoNCE, van den Oord et al. 2018; SupCon, Khosla et al. 2020; Proxy-Anchor, Kim et al. 2020), each
    called with ``reduction="mean"``. What is passed is read from each loss's declared inputs:

    * multi-view rows — ``{"anchor": x, "positive": y}`` or ``{"views": [x1, …, xV]}`` (V ≥ 2, the same in every
      row): ``query`` = anchors ``[B, d]``, ``keys`` = first positives ``[B, d]``, ``views`` ``[V, B, d]``,
      ``embeddings`` = all views ``[V·B, d]`` with ``labels`` the row's group repeated per view (SimCLR's
      NT-Xent), and ``targets`` ``[B, B]`` (key j is a positive of query i). Rows with the same anchor form one
      group, so their positives are not counted as each other's negatives by the label-based losses.
    * labelled rows — ``{"text": x, "label": c}``: ``embeddings`` ``[B, d]``, ``labels`` (class indices in order of
      first appearance), and proxies (``proxies`` ``[C, d]``, ``prototypes``, SoftTriple's ``centers``
      ``[C, centers_per_class, d]``) as parameters trained with the encoder, initialised ``N(0, 1/d)`` (seeded by
      ``config.seed``) and returned in ``TrainResult.proxies``.
    * regression rows — ``{"text": x, "target": y}``: ``embeddings`` ``[B, d]`` and ``targets`` ``[B]`` (SupReMix),
      and for a loss that needs a regression head's ``predictions`` (ConR, Keramati et al. 2024) a linear head
      :math:`\\hat y_i = w^\\top e_i + b` trained with the encoder (weights ``N(0, 1/d)`` seeded by
      ``config.seed``, bias 0): the objective becomes :math:`\\frac1B\\sum_i \\rho(\\hat y_i - y_i) + \\sum_k w_k
      \\ell_k` with :math:`\\rho` the ``regression_loss`` (``"l1"``, the deep imbalanced regression benchmarks'
      default, or ``"mse"``), the losses getting :math:`\\hat y` without gradient; the head is returned in
      ``TrainResult.regression_head``.

    A loss needing anything else raises :class:`~pairkit.errors.InputError` naming the loss and the input. These
    losses couple the batch, so ``grad_accum`` must be 1.

    Data parallel (``accelerate launch``, ``torchrun``): each step's batch is split between the processes in order;
    each process encodes its share, and a batch-coupled loss (in-batch negatives, label pairs, quantiles: its
    ``pairkit.losses.spec(name).batch_coupled``) is computed on every process's embeddings gathered in order (the
    negatives of the whole batch, as SimCLR's and CLIP's all-gather), only this process's carrying gradient,
    weighted so that the summed gradients are those of one process on the whole batch (the learnable proxies'
    share divided by the number of processes, since every process computes the loss); per-example losses and the
    regression head stay on each process's rows. The metrics are computed on the whole batch too. So N processes
    train as one on the whole batch (to floating-point rounding) — unless the encoder itself couples the batch
    (batch normalisation), which sees each process's share; every process must get a row of every step.

    Args:
        model: a ``torch.nn.Module`` on feature vectors (``tokenizer=None``; the row columns hold 1-D features), or a
            Hugging Face encoder (``AutoModel``) with ``tokenizer`` (texts cut to ``config.max_length`` tokens).
        data: path, DataFrame or rows as above.
        loss: a ``contrastive``-family name or weighted combination (``"infonce+0.1*uniformity"``).
        loss_options: the losses' declared options (``temperature``, ``margin``, …), checked once.
        centers_per_class: SoftTriple's centres per class (10 as pytorch-metric-learning).
        regression_loss: the regression head's loss, ``"l1"`` or ``"mse"`` (only with a loss that needs
            ``predictions``).

    Per-step metrics: loss and ``accuracy`` — in-batch top-1 retrieval by cosine similarity (the anchor's nearest
    key is a positive) for multi-view rows, leave-one-out nearest-neighbour label accuracy for labelled rows — or,
    for regression rows, ``neighbour_target_gap`` (mean ``|y_i - y_nn(i)|`` of cosine nearest neighbours) and,
    with a regression head, ``regression_mae`` (mean ``|ŷ_i - y_i|``).
    """
    config = config or TrainConfig()
    check_number("centers_per_class", centers_per_class, low=1, integer=True)
    if regression_loss not in _REGRESSION_LOSSES:
        raise InputError(f"regression_loss must be one of {_REGRESSION_LOSSES}, got {regression_loss!r}")
    terms = loss_terms(loss, "contrastive")
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    _check_required_options(terms, options)
    rows, _, source = normalised_rows(data, _identity)
    if not rows:
        raise InputError(f"{source}: no contrastive training rows")
    fmt = _rows_format(rows, source)
    _check_producible(terms, fmt)
    examples, classes = _examples(rows, fmt, tokenizer, config, source)
    pad_id = pad_id_of(tokenizer) if tokenizer is not None else None
    from pairkit import losses

    wants_proxies = any(i.kind == _PROXY_KIND for n, _, _ in terms for i in losses.spec(n).input_specs)
    wants_head = fmt == "targets" and any(
        i.name == "predictions" and i.required for n, _, _ in terms for i in losses.spec(n).input_specs
    )
    if wants_proxies or wants_head:
        with torch.no_grad():
            probe = _embed(model, examples[0]["items"][:1], pad_id)
        proxies = _init_proxies(terms, classes, probe.shape[1], probe.dtype, centers_per_class, config.seed)
        head = _init_head(probe.shape[1], probe.dtype, config.seed) if wants_head else None
        trained = _WithProxies(model, proxies, head)
    else:
        trained = model

    coupled = set(coupled_losses([n for n, _, _ in terms])) if init_distributed()[1] > 1 else set()

    def inputs_of(grid, groups, targets):
        """The losses' inputs from the embeddings ``[B, V, d]``, the groups ``[B]`` and the targets ``[B]``."""
        same = groups[:, None] == groups[None, :]
        if fmt == "views":
            stacked = grid.transpose(0, 1)
            return {
                "query": grid[:, 0],
                "keys": grid[:, 1],
                "views": stacked,
                "embeddings": stacked.reshape(-1, grid.shape[-1]),
                "labels": groups.repeat(grid.shape[1]),
                "targets": same.to(grid.dtype),
            }
        if fmt == "labels":
            return {"embeddings": grid[:, 0], "labels": groups}
        return {"embeddings": grid[:, 0], "targets": targets}

    def step(module, batch):
        encoder = module.encoder if isinstance(module, _WithProxies) else module
        views = len(batch[0]["items"])
        flat = _embed(encoder, [x for ex in batch for x in ex["items"]], pad_id)
        grid = flat.reshape(len(batch), views, -1)
        groups = torch.tensor([ex["group"] for ex in batch], dtype=torch.long)
        targets = torch.tensor([ex.get("target", 0.0) for ex in batch], dtype=flat.dtype)
        inputs = inputs_of(grid, groups, targets)
        head = module.regression_head if isinstance(module, _WithProxies) else None
        total = 0.0
        if head is not None:
            predictions = head(grid[:, 0]).squeeze(-1)
            inputs["predictions"] = predictions.detach()
            error = predictions - targets
            total = (error.abs() if regression_loss == "l1" else error.pow(2)).mean()
        # data parallel, batch-coupled losses: every process's rows in order, only this process's carrying gradient
        every = (dist.whole_batch(grid), dist.all_rows(groups), dist.all_rows(targets)) if coupled else (
            grid, groups, targets)  # fmt: skip
        if coupled:
            whole = inputs_of(*every)
            if "predictions" in inputs:
                whole["predictions"] = dist.all_rows(inputs["predictions"])
            world = dist.rank_and_world()[1]
        coupled_total = 0.0
        for name, weight, _ in terms:
            own = dict(whole if name in coupled else inputs)
            if isinstance(module, _WithProxies):
                for i in losses.spec(name).input_specs:
                    if i.kind == _PROXY_KIND:
                        p = module.proxies[_proxy_key(name, i.name)]
                        # on the whole batch every process gets all of dL/dp: the summed gradients count it once
                        own[i.name] = p.detach() + (p - p.detach()) / world if name in coupled else p
            value = weight * call_loss(name, own, options, reduction="mean")
            if name in coupled:
                coupled_total = coupled_total + value
            else:
                total = total + value
        if coupled:
            total = total + dist.whole_batch_term(coupled_total, len(batch), every[0].shape[0])
        with torch.no_grad():  # the metrics of one process on the whole batch, for this process's rows
            rows = dist.own_rows(len(batch)) if coupled else dist.Rows(0, len(batch), len(batch))
            stats = _stats(every[0].detach(), *every[1:], rows, fmt)
            if head is not None:
                stats["regression_mae"] = (inputs["predictions"].double() - targets.double()).abs()
        return total.expand(len(batch)), stats

    result = fit(trained, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms])
    if isinstance(trained, _WithProxies) and wants_proxies:
        result.proxies = {k.replace("__", "."): v.detach().clone() for k, v in trained.proxies.items()}
    if isinstance(trained, _WithProxies) and trained.regression_head is not None:
        result.regression_head = trained.regression_head
    return result
