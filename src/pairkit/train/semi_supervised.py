"""Semi-supervised classification: labelled rows, unlabelled rows and consistency losses between augmented views.

Flow of :func:`train_semi_supervised`:

1. labelled rows (``text``/``features`` and ``label``) and unlabelled rows (``text``/``features``) → examples; texts
   are tokenised once (``tokenizer``), or the columns hold feature vectors for a plain ``torch.nn.Module`` encoder.
2. each loss's declared inputs (``pairkit.losses.spec``) are looked up in ``INPUTS``, the one
   table of what this trainer makes and what each input needs (a memory bank, the labelled bank, a reference model,
   text directions, a preference head); an input it cannot make raises :class:`~pairkit.errors.InputError` before
   training.
3. the encoder, a classifier head and whatever the table asked for (banks as buffers, a frozen reference, a
   preference head) form one module, so the shared loop (``pairkit.train._loop.fit``) optimises and checkpoints them
   together: resume restores the banks and the position in the unlabelled data.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError
from pairkit.train import _dist as dist
from pairkit.train._loop import (
    Micro,
    TrainConfig,
    TrainResult,
    call_loss,
    check_number,
    check_options,
    fit,
    init_distributed,
    options_for,
    rank_and_world,
)
from pairkit.train._steps import loss_terms, normalised_rows, pad_id_of
from pairkit.train.data import TruncationWarning
from pairkit.train.reward_model import mean_pool

__all__ = ["text_augment", "train_semi_supervised"]

_FAMILIES = ("consistency", "regularizer", "classification")
CERTAIN_DECAY = 0.999  # ShrinkMatch's running certain ratio: r <- 0.999 r + 0.001 (this step's fraction)
_PARTS = ("labelled", "unlabelled")
_VIEWS = ("clean", "weak", "strong")
_INPUT_COLUMNS = ("text", "features")


# ------------------------------------------------------------------------------------------ rows and encoders


def row_items(rows, tokenizer, config: TrainConfig, source: str, *, column: str | None = None):
    """The model input of every row (token ids with a tokenizer, else a 1-D float tensor) and the rows' key column.

    ``column`` (``"label"``, ``"target"``) must then be in every row; texts longer than ``config.max_length``
    tokens are cut with one :class:`TruncationWarning` giving the count.
    """
    items, values, cut = [], [], 0
    for i, r in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if not isinstance(r, dict):
            raise InputError(f"{where}: expected a mapping of columns, got {type(r).__name__}")
        key = next((k for k in _INPUT_COLUMNS if k in r), None)
        if key is None:
            raise InputError(f"{where}: needs a 'text' (or 'features') column; has {sorted(map(str, r))[:8]}")
        if column is not None:
            if column not in r:
                raise InputError(f"{where}: needs a {column!r} column; has {sorted(map(str, r))[:8]}")
            values.append(r[column])
        value = r[key]
        if tokenizer is None:
            try:
                x = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise InputError(f"{where}: expected a feature vector (tokenizer=None), got "
                                 f"{type(value).__name__}") from None  # fmt: skip
            if not x.is_floating_point() or x.ndim != 1 or not bool(torch.isfinite(x).all()):
                raise InputError(f"{where}: expected a finite 1-D float feature vector, got {x.dtype} {list(x.shape)}")
            items.append(x)
            continue
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where}: expected a non-empty text, got {value!r}")
        ids = tokenizer(value)["input_ids"]
        if len(ids) > config.max_length:
            ids, cut = ids[: config.max_length], cut + 1
        items.append(list(ids))
    if cut:
        warnings.warn(f"{source}: {cut} texts were truncated to max_length={config.max_length} tokens",
                      TruncationWarning, stacklevel=3)  # fmt: skip
    if tokenizer is None and items and len({x.shape[0] for x in items}) > 1:
        raise InputError(f"{source}: the feature vectors differ in length; every row needs the same dimension")
    return items, values


def rows_of(data, what: str) -> tuple[list[dict[str, Any]], str]:
    rows, _, source = normalised_rows(data, lambda rows, source: rows)
    if not rows:
        raise InputError(f"{source}: no {what} rows")
    return rows, source


def encode_batch(encoder: torch.nn.Module, batch, pad_id: int | None) -> torch.Tensor:
    """Embeddings ``[n, d]``: a module on stacked features ``[n, dim]``, or mean-pooled last hidden states of ids."""
    if pad_id is None:
        param = next((p for p in encoder.parameters() if p.is_floating_point()), None)
        out, mask = encoder(batch.to(param.dtype) if param is not None else batch), None
    else:
        seqs = [torch.as_tensor(x, dtype=torch.long) for x in batch]
        ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_id)
        mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
        out = encoder(input_ids=ids, attention_mask=mask)
    hidden = getattr(out, "last_hidden_state", out)
    if not isinstance(hidden, torch.Tensor):
        raise InputError(f"the encoder returned {type(out).__name__}: expected a tensor or an output with "
                         "last_hidden_state")  # fmt: skip
    if hidden.ndim == 3:
        hidden = mean_pool(hidden, mask if mask is not None else torch.ones(hidden.shape[:2], dtype=torch.long))
    if hidden.ndim != 2:
        raise InputError(f"the encoder's output has shape {list(hidden.shape)}: expected [n, dim] or [n, T, dim]")
    return hidden


def stacked(items: Sequence[Any], tokenizer) -> Any:
    """A batch of inputs as augmentations see it: a ``[n, dim]`` tensor of features, or a list of token-id lists."""
    return torch.stack(list(items)) if tokenizer is None else [list(x) for x in items]


def linear_head(dim: int, out: int, dtype, seed: int) -> torch.nn.Linear:
    """A linear layer ``dim -> out``: weights ``N(0, 1/dim)`` from a generator seeded with ``seed``, bias 0."""
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(dim, out).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(out, dim, generator=g, dtype=torch.float64).to(dtype) / math.sqrt(dim))
        head.bias.zero_()
    return head


def aux_mlp(dim: int, out: int, dtype, seed: int) -> torch.nn.Sequential:
    """ShrinkMatch's auxiliary head: ``dim -> h -> h -> out`` with ``h = max(dim // 4, 1)``, each hidden layer
    followed by batch normalisation and a leaky ReLU (slope 0.1), as the authors' ``head_aux``; the linear layers
    as :func:`linear_head` (seeds ``seed``, ``seed + 1``, ``seed + 2``). Built without drawing from torch's global
    generator, so adding the head leaves the run's augmentations as they were."""
    h = max(dim // 4, 1)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialisation draws from it before being replaced
        head = torch.nn.Sequential(
            linear_head(dim, h, dtype, seed), torch.nn.BatchNorm1d(h).to(dtype), torch.nn.LeakyReLU(0.1),
            linear_head(h, h, dtype, seed + 1), torch.nn.BatchNorm1d(h).to(dtype), torch.nn.LeakyReLU(0.1),
            linear_head(h, out, dtype, seed + 2),
        )  # fmt: skip
    head.built_in = True
    return head


def projection_mlp(dim: int, out: int, dtype, seed: int) -> torch.nn.Sequential:
    """SimMatchV2's projection head: ``dim -> dim -> out`` with a ReLU between, as the authors' ``head`` (whose
    output is ℓ2-normalised into the embeddings the graph terms compare); linear layers as :func:`linear_head`
    (seeds ``seed``, ``seed + 1``), built without drawing from torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        return torch.nn.Sequential(linear_head(dim, dim, dtype, seed), torch.nn.ReLU(),
                                   linear_head(dim, out, dtype, seed + 1))  # fmt: skip


def check_inputs(terms, table: dict[str, Any], trainer: str, options: dict[str, Any]) -> set[str]:
    """What the losses' required inputs need (the union of the table's ``needs``); unknown inputs raise by name."""
    from pairkit import losses

    needs: set[str] = set()
    for name, _, _ in terms:
        for inp in losses.spec(name).input_specs:
            if inp.name in table:
                needs |= table[inp.name].needs
            elif inp.required:
                raise InputError(
                    f"loss {name!r} needs {inp.name!r} ({inp.kind} {inp.shape}), which {trainer} does not make "
                    f"(it makes {sorted(table)})"
                )
    missing = [(n, o.name) for n, _, _ in terms for o in losses.spec(n).options
               if o.name not in losses.spec(n).defaults and o.name not in options_for(n, options)]  # fmt: skip
    if missing:
        raise InputError(f"loss {missing[0][0]!r} has no default for {missing[0][1]!r}: give it in loss_options")
    return needs


def loss_value(name: str, table: dict[str, Any], batch: Any, options: dict[str, Any],
               rows: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:  # fmt: skip
    """One loss on the whole batch (``"mean"``), its inputs made by the table's entries from ``batch``.

    ``rows`` (data parallel, a batch-coupled loss) maps each per-row input to the rows of every process
    (:func:`pairkit.train._dist.whole_batch`); the inputs in ``SHARED`` (banks, text directions) are the same on
    every process, and those in ``batch.gathered`` were made on every process's rows: both are passed as they are.
    """
    from pairkit import losses

    inputs = {i.name: table[i.name].make(batch) for i in losses.spec(name).input_specs if i.name in table}
    if rows is not None:
        done = SHARED | getattr(batch, "gathered", frozenset())
        inputs = {k: rows(v) if isinstance(v, torch.Tensor) and k not in done else v for k, v in inputs.items()}
    return call_loss(name, inputs, options, reduction="mean")


#: Loss inputs that are not one row per example of the batch (the same on every process under data parallel).
SHARED = frozenset({"bank_embeddings", "bank_probs", "text_directions"})


# ------------------------------------------------------------------------------------------------ augmentation


def text_augment(*, drop: float = 0.1, span: float = 0.0, mask_id: int | None = None) -> Callable[[list], list]:
    """Token dropout and span masking of token-id lists: the default augmentations of text in semi-supervised training.

    Each token is deleted with probability ``drop`` (at least one token is kept), then a contiguous span of
    ``round(span · length)`` tokens at a uniform position is replaced by ``mask_id`` (deleted when ``mask_id`` is
    None). Random numbers come from torch's global generator, which :func:`train_semi_supervised` seeds for each
    step and view, so a resumed run, or one over several processes, draws the same augmentations.
    Returns ``f(batch: list[list[int]]) -> list[list[int]]``.
    """
    check_number("drop", drop, low=0, high=1)
    check_number("span", span, low=0, high=1)

    def augment(batch: list) -> list:
        out = []
        for ids in batch:
            x = torch.as_tensor(list(ids), dtype=torch.long)
            keep = torch.rand(len(x)) >= drop
            if len(x) and not bool(keep.any()):
                keep[torch.randint(len(x), ())] = True
            x = x[keep]
            width = int(round(span * len(x)))
            if width:
                start = int(torch.randint(len(x) - width + 1, ()))
                if mask_id is None:
                    x = torch.cat([x[:start], x[start + width :]]) if width < len(x) else x[:1]
                else:
                    x[start : start + width] = mask_id
            out.append(x.tolist())
        return out

    return augment


# ------------------------------------------------------------------------------------------ the trained module


class _Model(torch.nn.Module):
    """The encoder, its classifier head and what the losses need, optimised and checkpointed together."""

    STUDENT = ("encoder", "head", "projection")  # what an EMA teacher copies

    def __init__(self, encoder, head, *, reference=None, preference_head=None, bank=None, labelled=None,
                 aux_head=None, certain_ratio=False, teacher=False, projection=None):  # fmt: skip
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.projection = projection  # SimMatchV2's projection head (None: the embeddings are normalised as they are)
        self.teacher = None  # SimMatchV2's EMA teacher: a copy of the encoder, head and projection (ema_update)
        if teacher:
            self.teacher = torch.nn.ModuleDict({name: copy.deepcopy(getattr(self, name)) for name in self.STUDENT
                                                if getattr(self, name) is not None})  # fmt: skip
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.aux_head = aux_head  # ShrinkMatch's auxiliary classifier (None: the classifier itself)
        if certain_ratio:  # ShrinkMatch's running fraction of certain rows (NaN until the first step)
            self.register_buffer("certain_ratio", torch.full((), float("nan"), dtype=torch.float64))
        self.reference = reference
        if reference is not None:
            for p in reference.parameters():
                p.requires_grad_(False)
        self.preference_head = preference_head
        self.register_buffer("drawn", torch.zeros((), dtype=torch.long))  # unlabelled rows drawn so far
        if bank is not None:  # (size m, dim, classes, dtype)
            m, dim, classes, dtype = bank
            self.register_buffer("bank_embeddings", torch.zeros(m, dim, dtype=dtype))
            self.register_buffer("bank_probs", torch.zeros(m, classes, dtype=dtype))
            self.register_buffer("bank_filled", torch.zeros((), dtype=torch.long))
            self.register_buffer("bank_next", torch.zeros((), dtype=torch.long))
        if labelled is not None:  # (random unit embeddings [L, dim], one-hot targets [L, C])
            self.register_buffer("labelled_embeddings", labelled[0])
            self.register_buffer("labelled_targets", labelled[1])

    def forward(self, *args, **kwargs):
        return self.head(self.encoder(*args, **kwargs))

    def train(self, mode: bool = True):
        """As ``Module.train``, but the built-in auxiliary head (:func:`aux_mlp`) always normalises over its batch,
        as the authors train it (``TrainConfig.dropout=False`` runs the rest in eval mode)."""
        super().train(mode)
        if getattr(self.aux_head, "built_in", False):
            self.aux_head.train(True)
        return self

    @torch.no_grad()
    def ema_update(self, decay: float) -> None:
        """The teacher's parameters ``θ' ← decay · θ' + (1 − decay) · θ`` (its buffers stay its own)."""
        for name in self.teacher:
            for t, p in zip(self.teacher[name].parameters(), getattr(self, name).parameters()):
                t.mul_(decay).add_(p.detach(), alpha=1.0 - decay)

    def enqueue(self, embeddings: torch.Tensor, probs: torch.Tensor) -> None:
        """First in, first out: the newest rows overwrite the oldest once the ``m`` slots are full."""
        m, k = self.bank_embeddings.shape[0], embeddings.shape[0]
        skip = max(k - m, 0)  # more rows than slots: only the last m stay
        slots = (int(self.bank_next) + skip + torch.arange(k - skip)) % m
        self.bank_embeddings[slots] = embeddings[skip:].detach().to(self.bank_embeddings.dtype)
        self.bank_probs[slots] = probs[skip:].detach().to(self.bank_probs.dtype)
        self.bank_next.fill_((int(self.bank_next) + k) % m)
        self.bank_filled.fill_(min(int(self.bank_filled) + k, m))

    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The bank's entries, oldest first."""
        filled, m = int(self.bank_filled), self.bank_embeddings.shape[0]
        order = (int(self.bank_next) - filled + torch.arange(filled)) % m
        return self.bank_embeddings[order], self.bank_probs[order]


@dataclasses.dataclass
class _View:
    embeddings: torch.Tensor
    logits: torch.Tensor
    projection: torch.nn.Module | None = None

    @functools.cached_property
    def unit(self) -> torch.Tensor:
        """The ℓ2-normalised embeddings, through the projection head when there is one."""
        e = self.embeddings if self.projection is None else self.projection(self.embeddings)
        return torch.nn.functional.normalize(e, dim=-1)

    @functools.cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits.detach(), dim=-1)


class _Batch:
    """One step's views, computed on first use: only what the losses' inputs ask for is run through the model."""

    def __init__(self, module: _Model, labels, views, pad_id, compare_views: bool):
        self.module, self.labels, self.pad_id = module, labels, pad_id
        self.views = views  # (part, view) -> this micro-batch's share of the step's augmented inputs
        self.compare_views = compare_views
        self.text_directions: torch.Tensor | None = None
        self.gathered: frozenset = frozenset()  # inputs made on every process's rows (data parallel)
        self._cache: dict[tuple[str, str], Any] = {}

    def raw(self, part: str, view: str):
        return self.views(part, view)

    def view(self, part: str, view: str) -> _View:
        if (part, view) not in self._cache:
            e = encode_batch(self.module.encoder, self.raw(part, view), self.pad_id)
            self._cache[(part, view)] = _View(e, self.module.head(e), self.module.projection)
        return self._cache[(part, view)]

    def computed(self, part: str, view: str) -> _View | None:
        return self._cache.get((part, view))

    def target(self, part: str) -> _View:
        """The weak view as SimMatchV2's targets and banks take it: the EMA teacher's (no gradient), else the
        model's."""
        teacher = self.module.teacher
        if teacher is None:
            return self.view(part, "weak")
        if ("teacher", part) not in self._cache:
            with torch.no_grad():
                e = encode_batch(teacher["encoder"], self.raw(part, "weak"), self.pad_id)
                view = _View(e, teacher["head"](e), teacher["projection"] if "projection" in teacher else None)
                view.unit  # noqa: B018 (computed here, without gradient)
                self._cache[("teacher", part)] = view
        return self._cache[("teacher", part)]

    def reference(self, part: str) -> torch.Tensor:
        """The reference side of a relation: the frozen reference on the weak view, or (two views) the detached weak
        view of the model itself."""
        if self.compare_views:
            return self.view(part, "weak").embeddings.detach()
        if ("reference", part) not in self._cache:
            with torch.no_grad():
                self._cache[("reference", part)] = encode_batch(self.module.reference, self.raw(part, "weak"),
                                                                self.pad_id)  # fmt: skip
        return self._cache[("reference", part)]

    def adapted(self, part: str) -> torch.Tensor:
        """The model side of a relation: the weak view (the same input as the reference), or the strong view."""
        return self.view(part, "strong" if self.compare_views else "weak").embeddings

    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory bank; before anything was enqueued (step 1), the current batch's weak view (every process's
        rows under data parallel)."""
        if int(self.module.bank_filled) > 0:
            return self.module.bank()
        if "bank" not in self._cache:
            weak = self.target("unlabelled")
            self._cache["bank"] = (dist.all_rows(weak.unit), dist.all_rows(weak.probs))
        return self._cache["bank"]

    def pseudo_labels(self) -> torch.Tensor:
        from pairkit.losses import simmatchv2_pseudo_labels

        weak = self.target("unlabelled")
        m = self.module
        return simmatchv2_pseudo_labels(weak.unit.detach(), weak.probs.to(weak.unit.dtype),
                                        m.labelled_embeddings.to(weak.unit.dtype), m.labelled_targets)  # fmt: skip

    def view_losses(self) -> torch.Tensor:
        """Cross-entropy of each labelled row under its clean, weak and strong view ``[n, 3]`` (most evidence first)."""
        y = self.labels
        return torch.stack([torch.nn.functional.cross_entropy(self.view("labelled", v).logits, y, reduction="none")
                            for v in ("clean", "weak", "strong")], dim=-1)  # fmt: skip

    def preference_logits(self, view: str) -> torch.Tensor:
        return self.module.preference_head(self.view("labelled", view).embeddings)

    def aux_logits(self) -> torch.Tensor:
        """ShrinkMatch's auxiliary head on the unlabelled rows' strong view (the classifier's logits without one).

        A head that normalises over the batch, under data parallel (``gathered``): on every process's rows, this
        process's carrying gradient to the encoder; the head's own parameters get ``1/world`` of the gradient on
        each process (each runs the head on the whole batch), which the summed gradients make whole."""
        strong = self.view("unlabelled", "strong")
        head = self.module.aux_head
        if head is None:
            return strong.logits
        if "aux_strong_logits" not in self.gathered:
            return head(strong.embeddings)
        world = rank_and_world()[1]
        params = {k: p.detach() + (p - p.detach()) / world for k, p in head.named_parameters()}
        return torch.func.functional_call(head, params, (dist.whole_batch(strong.embeddings),))


@dataclasses.dataclass(frozen=True)
class Made:
    """How a trainer makes one loss input: what it needs set up (``needs``) and the function of the batch."""

    needs: frozenset
    make: Callable[[Any], Any]
    doc: str


def _made(doc: str, make: Callable[[_Batch], Any], *needs: str) -> Made:
    return Made(frozenset(needs), make, doc)


#: What :func:`train_semi_supervised` makes for each loss input it knows, and what that needs set up.
INPUTS: dict[str, Made] = {
    "weak_logits": _made("classifier logits of the unlabelled rows' weak view", lambda b: b.view("unlabelled",
                                                                                                  "weak").logits),
    "strong_logits": _made("classifier logits of the unlabelled rows' strong view",
                           lambda b: b.view("unlabelled", "strong").logits),
    "aux_strong_logits": _made("auxiliary head's logits of the unlabelled rows' strong view", lambda b: b.aux_logits(),
                               "aux_head"),
    "weak_probs": _made("the EMA teacher's softmax of the weak view (no gradient)", lambda b: b.target("unlabelled")
                        .probs, "teacher"),
    "weak_embeddings": _made("the EMA teacher's unit embeddings of the weak view", lambda b: b.target("unlabelled")
                             .unit, "teacher", "projection"),
    "strong_embeddings": _made("unit embeddings of the strong view", lambda b: b.view("unlabelled", "strong").unit,
                               "projection"),
    "pseudo_labels": _made("SimMatchV2 labels propagated from the labelled bank", lambda b: b.pseudo_labels(),
                           "labelled_bank", "teacher", "projection"),
    "bank_embeddings": _made("the FIFO bank of the teacher's weak unit embeddings", lambda b: b.bank()[0], "bank",
                             "teacher", "projection"),
    "bank_probs": _made("the FIFO bank of the teacher's weak predictions", lambda b: b.bank()[1], "bank", "teacher",
                        "projection"),
    "embeddings": _made("the model's embeddings of the unlabelled rows", lambda b: b.adapted("unlabelled")),
    "reference_embeddings": _made("the reference's embeddings of the same rows", lambda b: b.reference("unlabelled"),
                                  "reference"),
    "adapted_embeddings": _made("the model's embeddings of the unlabelled rows", lambda b: b.adapted("unlabelled")),
    "source_embeddings": _made("the reference's embeddings of the same rows", lambda b: b.reference("unlabelled"),
                               "reference"),
    "text_directions": _made("the caller's text directions", lambda b: b.text_directions, "text_directions"),
    "losses": _made("cross-entropy of the labelled rows' clean, weak and strong views", lambda b: b.view_losses()),
    "logits": _made("classifier logits of the labelled rows' weak view", lambda b: b.view("labelled", "weak").logits),
    "labels": _made("the labelled rows' classes", lambda b: b.labels),
    "logits_a": _made("labelled rows, weak view", lambda b: b.view("labelled", "weak").logits),
    "logits_b": _made("labelled rows, strong view", lambda b: b.view("labelled", "strong").logits),
    "preference_logits_a": _made("preference head on the weak view", lambda b: b.preference_logits("weak"),
                                 "preference_head"),
    "preference_logits_b": _made("preference head on the strong view", lambda b: b.preference_logits("strong"),
                                 "preference_head"),
    "preferences": _made("1: the weak view is preferred", lambda b: torch.ones_like(b.labels, dtype=torch.float64)),
}


def _draw(start: int, count: int, n: int, seed: int) -> np.ndarray:
    """Positions ``start … start+count-1`` of the unlabelled stream: one seeded permutation of the rows per pass."""
    pos = np.arange(start, start + count)
    passes, within = np.divmod(pos, n)
    out = np.empty(count, dtype=np.int64)
    for p in np.unique(passes):
        at = passes == p
        out[at] = np.random.default_rng([seed, 1, int(p)]).permutation(n)[within[at]]
    return out


def train_semi_supervised(
    model: torch.nn.Module,
    labeled,
    unlabeled,
    *,
    weak_augment: Callable[[Any], Any] | None = None,
    strong_augment: Callable[[Any], Any] | None = None,
    loss: str | dict[str, float] = "fixmatch_loss",
    loss_options: dict[str, Any] | None = None,
    tokenizer=None,
    ratio: int = 7,
    head: torch.nn.Module | None = None,
    reference: torch.nn.Module | str = "copy",
    text_directions: torch.Tensor | None = None,
    bank_size: int = 1024,
    preference_heads: int = 1,
    aux_head: torch.nn.Module | str = "mlp",
    ema_decay: float = 0.999,
    projection: torch.nn.Module | int | None = 128,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Semi-supervised classification: cross-entropy on labelled rows plus consistency losses on unlabelled rows.

    Each step takes ``B = config.batch_size`` labelled rows and ``μB`` unlabelled rows (``μ`` = ``ratio``; the
    unlabelled rows are drawn in a seeded random order, pass after pass), encodes them with ``model``
    (:math:`e = f_\\theta(x)`, the attention-masked mean of a Hugging Face encoder's last hidden states, or a module
    on feature vectors) and a classifier ``head`` (:math:`z = g(e)`), and minimises

    .. math::

        \\mathcal L = \\frac1B\\sum_{i=1}^{B} \\mathrm{CE}\\big(g(f_\\theta(\\alpha(x_i))), y_i\\big)
            + \\sum_k w_k\\, \\ell_k(\\ldots)

    with :math:`\\alpha` the weak augmentation and :math:`\\ell_k` the ``loss`` terms (their weights :math:`w_k`
    from ``"fixmatch_loss"`` or ``"fixmatch_loss+0.5*simmatchv2_edge_edge_loss"``), each on the whole batch with
    ``reduction="mean"``. What each loss is given is read from its declared inputs and
    this module's ``INPUTS`` table (one entry per input name), so no loss is special-cased:

    * FixMatch (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
      Confidence"): ``weak_logits`` and ``strong_logits`` of the unlabelled rows' weak view :math:`\\alpha(u)` and
      strong view :math:`\\mathcal A(u)`; the weak view's hard pseudo-label counts when its confidence reaches τ
      (``loss_options={"threshold": τ}``, 0.95) — the paper's recipe is μ = 7, τ = 0.95, λ_u = 1 (the weight of
      ``fixmatch_loss``), labelled rows weakly augmented.
    * ShrinkMatch (Yang et al. 2023, "Shrinking Class Space for Enhanced Certainty in Semi-Supervised Learning"):
      ``weak_logits`` of the classifier and ``aux_strong_logits``, the strong view through an auxiliary head
      (``aux_head``: by default the authors' MLP ``d → d/4 → d/4 → K`` with batch normalisation and leaky ReLUs,
      always in training mode, trained with the model; ``"shared"`` uses the classifier instead, the paper's "no
      auxiliary head" ablation), so the shrunk-space term trains the encoder and the auxiliary head but never the
      classifier; add ``fixmatch_loss`` for the confident rows (the paper's loss is
      ``fixmatch_loss+shrinkmatch_loss``). Its weight ``certain_ratio`` (reweighting principle 2) is kept
      here as the authors do: the fraction of unlabelled rows whose weak confidence reaches the loss's τ, starting
      at the first step's and then averaged with decay 0.999 per step (per micro-batch under ``grad_accum``),
      checkpointed; fix it with ``loss_options={"certain_ratio": r}``.
    * SimMatchV2 (Zheng et al. 2023, "SimMatchV2: Semi-Supervised Learning with Graph Consistency"): the strong
      view's unit embeddings and logits from the model, and the weak side from an EMA teacher, as the paper and
      the authors' code (mingkai-zheng/SimMatchV2). Unit embeddings are the ℓ2-normalised output of a projection
      head on the encoder (``projection``: the authors' MLP ``d → d → 128`` with a ReLU, trained with the model by
      the graph terms). The teacher is a copy of the encoder, classifier and projection taken before training,
      updated after every optimizer step as :math:`\\theta' \\leftarrow m\\,\\theta' + (1-m)\\,\\theta` (``ema_decay``
      m, the authors' 0.999; its buffers are its own and it runs in the model's mode, as their default without
      EMAN; ``ema_decay=0`` makes it the model itself). The teacher gives ``weak_probs`` and ``weak_embeddings``
      and fills both banks: the memory bank of the last ``bank_size`` (m) weak unit embeddings and predictions of
      unlabelled rows, first in first out, enqueued after each step's losses (the authors' ``u_bank``/``u_labels``;
      at step 1 the bank is the batch's own weak view), and the labelled bank, one weak unit embedding per labelled
      row (updated by row as rows are seen; seeded random unit vectors before, as the authors' ``l_bank``), over
      which node–node's ``pseudo_labels`` are propagated (:func:`~pairkit.losses.simmatchv2_pseudo_labels`).
      Readings taken: no distribution alignment and no layer normalisation before the classifier (options of
      the authors' scripts, ``--DA`` and ``--norm_feat``). The authors' settings are the losses' defaults (edge
      temperature t = 0.1, node–node threshold 0.7, propagation over the 128 nearest labelled entries with
      α = 0.1).
    * relation consistency and the directional moment loss (Jeon et al. 2023, "Improving Diversity in Zero-Shot
      GAN Adaptation with Semantic Variations"): the model's embeddings of the unlabelled rows' weak view against a
      frozen ``reference`` model's embeddings of the same inputs — by default a copy of ``model`` taken before
      training (the paper's frozen source, from which the adapted model starts); ``reference="views"`` compares
      the model's strong view with its own weak view (detached) instead. ``text_directions`` ``[K+1, d]`` are the
      caller's (the directional moment loss needs them): the target text's own direction and its ``K`` semantic
      variations', each minus the source text.
    * LoL (Zhu et al. 2022): ``losses`` ``[B, 3]``, the cross-entropy of each labelled row's clean, weak and
      strong view — reading taken: a view with less corruption holds more evidence, so its loss must not be
      larger.
    * classification losses whose inputs the table has: ``logits``/``labels`` of the labelled rows' weak view; P2C
      (Kim et al. 2023, "Prefer to Classify") with ``x_a``/``x_b`` the weak and strong view of each labelled row
      (one class), a linear preference head of ``preference_heads`` outputs on the embeddings, and the weak view
      preferred (``preferences`` = 1) — reading taken: the less corrupted view is the clearer example of its class.

    Augmentations are the caller's callables on a batch of inputs — a ``[n, dim]`` tensor of features, or a list of
    token-id lists with a tokenizer — returning the same kind. Defaults for text: the weak view is the text itself,
    the strong view :func:`text_augment` with ``drop=0.1, span=0.25`` and the tokenizer's mask (or unk) token —
    pairkit's choice in FixMatch's spirit, since the paper's RandAugment is for images. For features
    ``strong_augment`` is required (``weak_augment`` defaults to the identity). Each augmentation is called once per
    step on the step's whole batch (all processes' rows), with torch's global generator seeded from
    ``config.seed``, the step and the view (its state is restored afterwards): draw random numbers from it, and a
    resumed run, or one over several processes, repeats them.

    Args:
        model: a ``torch.nn.Module`` on feature vectors (``tokenizer=None``), or a Hugging Face encoder with
            ``tokenizer``; it returns embeddings ``[n, d]`` (or hidden states ``[n, T, d]``).
        labeled: rows ``{"text"|"features": x, "label": c}`` (path, DataFrame or list); classes in order of first
            appearance.
        unlabeled: rows ``{"text"|"features": x}``.
        loss: losses of the ``consistency``, ``regularizer`` or ``classification`` family, or a weighted sum.
        loss_options: their declared options (``threshold``, ``temperature``, …), checked once.
        ratio: μ, unlabelled rows per labelled row in a step (FixMatch's 7).
        head: the classifier on the embeddings (default a linear layer, weights ``N(0, 1/d)`` seeded by
            ``config.seed``, bias 0); trained with the model.
        reference: a frozen reference encoder, ``"copy"`` (of ``model`` before training) or ``"views"``.
        text_directions: ``[K+1, d]`` for the directional moment loss (the target text's direction, then its K
            variations').
        bank_size: m, the entries of SimMatchV2's unlabelled memory bank.
        preference_heads: outputs of P2C's preference head.
        aux_head: ShrinkMatch's auxiliary head on the embeddings: ``"mlp"`` (the authors'), ``"shared"`` (the
            classifier) or a module ``[n, d] -> [n, classes]``.
        ema_decay: m in [0, 1], the decay of SimMatchV2's EMA teacher (0.999, the authors'); 0: the model itself.
        projection: SimMatchV2's projection head on the embeddings, trained with the model: an output width (the
            authors' MLP ``d -> d -> width`` with a ReLU, 128 as theirs), a module ``[n, d] -> [n, width]``, or
            None (the embeddings themselves are normalised).

    Returns a ``TrainResult`` whose ``heads`` hold the classifier (``"classifier"``), any auxiliary head
    (``"auxiliary"``), EMA teacher (``"teacher_encoder"``, ``"teacher_classifier"``) and preference head, and
    ``memory_bank`` the bank's embeddings and probabilities, oldest first. Per-step metrics: loss, ``supervised``
    (the labelled cross-entropy), each loss term by name, ``accuracy`` on the labelled batch, ``confidence`` (mean
    top weak probability of the unlabelled batch, when the weak view was computed) and ``certain_ratio``
    (ShrinkMatch's running weight, when kept). The losses coupling the batch need ``grad_accum=1``.

    Data parallel (``accelerate launch``, ``torchrun``): each step's labelled batch is split between the processes
    in order, and each process takes the matching share of the step's unlabelled rows (positions
    ``μ·first … μ·(first+B)`` of the seeded stream), so N processes see the examples and augmentations of one.
    What is kept across steps is the same on every process: the banks are updated after each step's last
    micro-batch with every process's rows in the batch's order (the FIFO bank enqueues the gathered weak views, as
    MoCo's concatenating all-gather; the labelled bank takes every process's rows by index; the EMA teacher follows
    the same summed-gradient update everywhere), and the checkpoint
    (written once, read by every process) carries them. A batch-coupled loss (``relation_consistency_loss``,
    ``directional_moment_loss``, ``ensloss``, ``correctness_aware_loss``) is computed on every process's rows
    gathered in order, only this process's carrying gradient, weighted so that the summed gradients are those of
    one process on the whole batch. So with ``grad_accum=1`` (and with accumulation, except the step-1 bank,
    which is each micro-batch's own view) N processes give the weights, bank and metrics of one process to
    floating-point rounding. Every process must get a row of every micro-batch (the last batch of an epoch too).
    """
    config = config or TrainConfig()
    check_number("ratio", ratio, low=1, integer=True)
    check_number("bank_size", bank_size, low=1, integer=True)
    check_number("preference_heads", preference_heads, low=1, integer=True)
    check_number("ema_decay", ema_decay, low=0, high=1)
    if projection is not None and not isinstance(projection, torch.nn.Module):
        check_number("projection", projection, low=1, integer=True)
    if not (isinstance(reference, torch.nn.Module) or reference in ("copy", "views")):
        raise InputError(f"reference must be a torch module, 'copy' or 'views', got {reference!r}")
    if not (isinstance(aux_head, torch.nn.Module) or aux_head in ("mlp", "shared")):
        raise InputError(f"aux_head must be a torch module, 'mlp' or 'shared', got {aux_head!r}")
    world = init_distributed()[1]
    terms = loss_terms(loss, _FAMILIES)
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    needs = check_inputs(terms, INPUTS, "train_semi_supervised", options)
    from pairkit import losses

    # losses weighted by ShrinkMatch's running fraction of certain rows, unless the caller fixed it
    running = [n for n, _, _ in terms if "certain_ratio" in losses.spec(n).option_names
               and "certain_ratio" not in options_for(n, options)]  # fmt: skip
    if "text_directions" in needs and text_directions is None:
        raise InputError(
            "loss 'directional_moment_loss' needs text_directions ([K+1, d] tensor): give text_directions="
        )
    lab_rows, lab_source = rows_of(labeled, "labelled")
    unl_rows, unl_source = rows_of(unlabeled, "unlabelled")
    lab_items, raw_labels = row_items(lab_rows, tokenizer, config, lab_source, column="label")
    unl_items, _ = row_items(unl_rows, tokenizer, config, unl_source)
    if aux_head == "mlp" and "aux_head" in needs:  # batch normalisation needs two rows in every micro-batch
        smallest = len(lab_items) % config.batch_size or config.batch_size
        fewest = ratio * (smallest // config.grad_accum)
        if fewest < 2:
            raise InputError(f"aux_head='mlp' normalises over the unlabelled rows of a step (batch normalisation), "
                             f"which needs two or more: a step here can have {fewest}; "
                             "raise ratio or batch_size, or give aux_head='shared' or a module")  # fmt: skip
    classes: dict[Any, int] = {}
    for i, c in enumerate(raw_labels, start=1):
        if not isinstance(c, (str, int, np.integer)) or isinstance(c, bool):
            raise InputError(f"{lab_source}, row {i}, column 'label': expected a class name or integer, got {c!r}")
        classes.setdefault(c, len(classes))
    if len(classes) < 2:
        raise InputError(f"{lab_source}: the labelled rows have {len(classes)} class; classification needs two or more")
    labels = torch.tensor([classes[c] for c in raw_labels])
    pad_id = pad_id_of(tokenizer) if tokenizer is not None else None
    if tokenizer is None and strong_augment is None:
        raise InputError("strong_augment is required for feature-vector inputs (tokenizer=None): give a callable on a "
                         "[n, dim] tensor")  # fmt: skip
    if tokenizer is not None and strong_augment is None:
        mask_id = getattr(tokenizer, "mask_token_id", None) or getattr(tokenizer, "unk_token_id", None) or pad_id
        strong_augment = text_augment(drop=0.1, span=0.25, mask_id=mask_id)
    augment = {"weak": weak_augment or (lambda x: x), "strong": strong_augment}
    with torch.no_grad():
        probe = encode_batch(model, stacked(lab_items[:1], tokenizer), pad_id)
    dim, dtype, k = probe.shape[1], probe.dtype, len(classes)
    head = head if head is not None else linear_head(dim, k, dtype, config.seed)
    ref = None
    if "reference" in needs and reference != "views":
        ref = copy.deepcopy(model) if reference == "copy" else reference
    g = torch.Generator().manual_seed(config.seed + 2)
    if "projection" not in needs or projection is None:
        projection = None
    elif not isinstance(projection, torch.nn.Module):
        projection = projection_mlp(dim, int(projection), dtype, config.seed + 7)
    with torch.no_grad():  # the width of the unit embeddings the banks hold
        width = dim if projection is None else int(projection(probe).shape[-1])
    labelled_bank = None
    if "labelled_bank" in needs:
        unit = torch.nn.functional.normalize(torch.randn(len(lab_items), width, generator=g, dtype=torch.float64),
                                             dim=-1)  # fmt: skip
        labelled_bank = (unit.to(dtype), torch.nn.functional.one_hot(labels, k).to(dtype))
    module = _Model(
        model,
        head,
        reference=ref,
        preference_head=linear_head(dim, preference_heads, dtype, config.seed + 3)
        if "preference_head" in needs else None,
        bank=(bank_size, width, k, dtype) if "bank" in needs else None,
        labelled=labelled_bank,
        aux_head=(aux_mlp(dim, k, dtype, config.seed + 4) if aux_head == "mlp" else aux_head)
        if "aux_head" in needs and aux_head != "shared" else None,
        certain_ratio=bool(running),
        teacher="teacher" in needs,
        projection=projection,
    )  # fmt: skip
    directions = None if text_directions is None else torch.as_tensor(text_directions).to(dtype)
    examples = [{"x": x, "label": int(y), "index": i} for i, (x, y) in enumerate(zip(lab_items, labels.tolist()))]

    from pairkit import losses as registry

    coupled = {name for name, _, _ in terms if registry.spec(name).batch_coupled} if world > 1 else set()
    # an auxiliary head with batch normalisation couples the batch: under data parallel it runs on every process's rows
    gathered = frozenset({"aux_strong_logits"}) if world > 1 and module.aux_head is not None and any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.aux_head.modules()) else frozenset()
    coupled |= {name for name, _, _ in terms if gathered & {i.name for i in registry.spec(name).input_specs}}
    views: dict[Any, Any] = {}  # the step's augmented inputs, made once per step
    pending: list[tuple[torch.Tensor, ...]] = []  # the step's rows for the banks, enqueued after its last micro-batch

    def step_views(at: Micro, unlabelled_rows: np.ndarray) -> Callable[[str, str], Any]:
        if views.get("step") != at.step:
            views.clear()
            views["step"] = at.step
            views["labelled"] = stacked([examples[j]["x"] for j in at.rows], tokenizer)
            views["unlabelled"] = stacked([unl_items[j] for j in unlabelled_rows], tokenizer)

        def get(part: str, view: str):
            if (part, view) not in views:
                x = views[part]
                if view != "clean":
                    seed = np.random.SeedSequence([config.seed, 4, at.step, _PARTS.index(part), _VIEWS.index(view)])
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> 1))
                        x = augment[view](x)
                views[(part, view)] = x
            k = ratio if part == "unlabelled" else 1
            return views[(part, view)][k * at.start : k * at.stop]

        return get

    def step(mod: _Model, rows, at: Micro):
        n = len(rows)
        y = torch.tensor([r["label"] for r in rows])
        # the step's unlabelled rows (its labelled rows x ratio, in stream order); this micro-batch takes its share
        drawn = _draw(ratio * at.first, ratio * at.size, len(unl_items), config.seed)
        mod.drawn.fill_(ratio * (at.first + at.size))
        batch = _Batch(mod, y, step_views(at, drawn), pad_id, compare_views=reference == "views")
        batch.text_directions = directions
        batch.gathered = gathered
        labelled = batch.view("labelled", "weak")
        supervised = torch.nn.functional.cross_entropy(labelled.logits, y, reduction="none")
        total = 0.0
        stats: dict[str, torch.Tensor] = {"supervised": supervised.detach()}
        term_options = options
        if running:
            with torch.no_grad():
                tau = options_for(running[0], options).get("threshold", losses.spec(running[0]).defaults["threshold"])
                confident = batch.view("unlabelled", "weak").probs.max(-1).values >= tau
                hits, rows_seen = dist.total(float(confident.sum()), confident.numel())  # every process's rows
                certain = hits / rows_seen
                before = float(mod.certain_ratio)
                mod.certain_ratio.fill_(certain if math.isnan(before) else CERTAIN_DECAY * before
                                        + (1 - CERTAIN_DECAY) * certain)  # fmt: skip
            term_options = {**options, "certain_ratio": float(mod.certain_ratio)}
            stats["certain_ratio"] = mod.certain_ratio.detach().expand(n)
        for name, weight, _ in terms:
            opts = term_options if name in running else options
            if name in coupled:  # on every process's rows: the value of one process on the whole batch
                value = dist.whole_batch_term(loss_value(name, INPUTS, batch, opts, dist.whole_batch), n, at.size)
            else:
                value = loss_value(name, INPUTS, batch, opts)
            total = total + weight * value
            stats[name] = value.detach().expand(n)
        with torch.no_grad():
            stats["accuracy"] = (labelled.logits.argmax(-1) == y).double()
            weak = batch.computed("unlabelled", "weak")
            if weak is not None:
                stats["confidence"] = weak.probs.max(-1).values.double().mean().expand(n)
            if "bank" in needs or "labelled_bank" in needs:
                weak = batch.target("unlabelled") if "bank" in needs else None
                pending.append((
                    weak.unit.detach() if weak is not None else torch.zeros(0), weak.probs if weak is not None
                    else torch.zeros(0), torch.tensor([r["index"] for r in rows]),
                    batch.target("labelled").unit.detach() if "labelled_bank" in needs else torch.zeros(0),
                ))  # fmt: skip
            if at.last and pending:
                update_banks(mod, *(torch.cat(parts) for parts in zip(*pending)))
                pending.clear()
        return supervised + total, stats

    def update_banks(mod: _Model, units, probs, idx, labelled_units) -> None:
        """The step's rows of every process, in the batch's order: the FIFO bank enqueues them, the labelled bank
        takes each labelled row's weak unit embedding."""
        if "bank" in needs:
            mod.enqueue(dist.all_rows(units), dist.all_rows(probs))
        if "labelled_bank" in needs:
            bank = mod.labelled_embeddings
            bank[dist.all_rows(idx)] = dist.all_rows(labelled_units).to(bank.dtype)

    after_step = functools.partial(module.ema_update, float(ema_decay)) if module.teacher is not None else None
    result = fit(module, examples, step, config, resume=resume, callback=callback, after_step=after_step,
                 losses=[n for n, *_ in terms], positions=True,
                 collective=bool(coupled or running or needs & {"bank", "labelled_bank"}))
    result.heads = {"classifier": module.head}
    if module.projection is not None:
        result.heads["projection"] = module.projection
    if module.teacher is not None:
        names = {"encoder": "teacher_encoder", "head": "teacher_classifier", "projection": "teacher_projection"}
        result.heads.update({names[name]: part for name, part in module.teacher.items()})
    if module.aux_head is not None:
        result.heads["auxiliary"] = module.aux_head
    if module.preference_head is not None:
        result.heads["preference"] = module.preference_head
    if "bank" in needs:
        embeddings, probs = module.bank()
        result.memory_bank = {"embeddings": embeddings.clone(), "probs": probs.clone()}
    return result
