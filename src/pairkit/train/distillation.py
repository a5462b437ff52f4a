"""Train a student from a frozen teacher with any ``distill``- or ``divergence``-family loss of :mod:`pairkit.losses`.

Flow of :func:`train_distillation`:

1. rows → examples: classifier rows (``text`` and, when a loss needs it, ``label``) tokenised once (or feature
   vectors for plain ``torch.nn.Module`` models), or causal-LM rows (``prompt``/``completion``, optional ``spans``).
2. each loss's declared inputs (``pairkit.losses.spec``) are matched with what the trainer computes (the table
   ``SOURCES``); an input it cannot make, or that needs another kind of row, raises
   :class:`~pairkit.errors.InputError` naming the loss and the input before training.
3. the extra trainable parts a loss needs are built with the student and trained with it: a projection of the
   student's features to the teacher's width (a loss whose two embeddings share one width symbol), auxiliary,
   weak and novel-class heads, learnable prototypes; per-example buffers (PS-KD's past predictions, the visit
   counter, MCMI's class centroids) live in the same module, so checkpoints and resume carry them.
4. the shared loop (``pairkit.train._loop.fit``: optimiser, schedule, checkpoints and resume, metrics, accelerate /
   torchrun data parallel) runs the step: the student's forward pass, the teacher's under ``torch.no_grad()``
   (eval mode, frozen), only what the losses ask for, then each loss with ``reduction="mean"`` on the batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from pairkit.errors import InputError, PairkitWarning
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
)
from pairkit.train._steps import loss_terms, normalised_rows, pad_id_of
from pairkit.train.data import TruncationWarning, collate_sequences, encode_completion
from pairkit.train.features import collect_hidden_states
from pairkit.train.reward_model import mean_pool

__all__ = ["SOURCES", "train_distillation", "train_mcmi_teacher"]

FAMILIES = ("distill", "divergence")

SOURCES: dict[str, str] = {
    "student_logits": "the student's class logits [batch, classes] (classifier rows)",
    "logits": "the trained model's own class logits [batch, classes] (self-distillation, MCMI)",
    "teacher_logits": "the teacher's class logits [batch, classes], without gradient",
    "log_predictions": "log-softmax of the student's class logits",
    "predictions": "softmax of the student's class logits",
    "log_targets": "log-softmax of the teacher's class logits",
    "targets": "softmax of the teacher's class logits",
    "labels": "class indices from the 'label' column",
    "student_embeddings": "the student's pooled hidden states (projected to the teacher's width when the loss "
    "needs one width)",
    "teacher_embeddings": "the teacher's pooled hidden states",
    "student_tokens": "the student's token hidden states [batch, T, dim]",
    "teacher_tokens": "the teacher's token hidden states [batch, T, dim]",
    "token student_logits": "the student's next-token logits over the completion tokens [batch, T, vocab]",
    "token teacher_logits": "the teacher's next-token logits over the completion tokens [batch, T, vocab]",
    "span_ids": "each completion token's span, from the 'spans' column (character ranges of the completion)",
    "class_centers": "the teacher's mean embedding of each class over the training data (fixed)",
    "teacher_prototypes": "the teacher's mean embedding of each class over the training data (fixed)",
    "prototypes": "learnable class prototypes, initialised to the teacher's class means",
    "past_logits": "the student's logits for the same example in the previous epoch (one-hot in the first)",
    "aux_logits": "a learnable auxiliary linear head on the student's pooled hidden states",
    "weak_logits": "a learnable weak linear head on the student's pooled hidden states",
    "novel_logits": "a learnable novel-class linear head on the student's pooled hidden states",
    "class_centroids": "the trained model's mean predicted distribution per class, recomputed each epoch",
    "cost": "the ground cost between classes (argument cost; default 1 - I)",
}
"""What :func:`train_distillation` computes for each declared loss input name (``"token …"``: the ``[batch, T,
vocab]`` form of a logit input)."""

# what each source needs: the teacher, the row kind, the data column
_TEACHER = {"teacher_logits", "log_targets", "targets", "teacher_embeddings", "teacher_tokens",
            "token teacher_logits", "class_centers", "teacher_prototypes", "prototypes"}  # fmt: skip
_CLASS_LEVEL = {"student_logits", "logits", "teacher_logits", "log_predictions", "predictions", "log_targets",
                "targets", "past_logits", "aux_logits", "weak_logits", "novel_logits", "class_centroids",
                "cost"}  # fmt: skip
_TOKEN_LEVEL = {"token student_logits", "token teacher_logits", "span_ids"}
_LABELLED = {"labels", "class_centers", "teacher_prototypes", "prototypes", "past_logits", "class_centroids"}
_STUDENT_HIDDEN = {"student_embeddings", "student_tokens", "aux_logits", "weak_logits", "novel_logits"}
_TEACHER_HIDDEN = {"teacher_embeddings", "teacher_tokens", "class_centers", "teacher_prototypes", "prototypes"}
_HEADS = ("aux_logits", "weak_logits", "novel_logits")
_PROJECTED = "projected student_embeddings"


def _dims(shape: str) -> list[str]:
    return [d.strip() for d in shape.strip("[]").split(",") if d.strip()]


def _source(spec, inp) -> str:
    """The source of one declared input, from its name and shape."""
    if inp.name in ("student_logits", "teacher_logits") and "T" in _dims(inp.shape):
        return f"token {inp.name}"
    if inp.name == "student_embeddings":
        teacher = next((i for i in spec.input_specs if i.name == "teacher_embeddings"), None)
        if teacher is not None and _dims(teacher.shape)[-1] == _dims(inp.shape)[-1]:
            return _PROJECTED  # the loss compares the two in one space
    if inp.name not in SOURCES:
        raise InputError(
            f"loss {spec.name!r} needs {inp.name!r} ({inp.kind} {inp.shape}), which train_distillation cannot make; "
            f"it makes {sorted(k for k in SOURCES if ' ' not in k)}"
        )
    return inp.name


def _plan(terms, fmt: str, has_labels: bool, has_spans: bool, has_teacher: bool):
    """{loss: [(input name, source)]} and the set of sources, after checking each can be made from the rows."""
    from pairkit import losses

    plan: dict[str, list[tuple[str, str]]] = {}
    for name, _, _ in terms:
        spec = losses.spec(name)
        chosen = []
        for inp in spec.input_specs:
            src = _source(spec, inp)
            base = "student_embeddings" if src == _PROJECTED else src
            missing = None
            if base in _CLASS_LEVEL and fmt == "lm":
                missing = "classifier rows ('text', 'label'), not prompt/completion rows"
            elif base in _TOKEN_LEVEL and fmt != "lm":
                missing = "causal-LM rows ('prompt', 'completion') and causal LMs"
            elif base in _LABELLED and not has_labels:
                missing = "a 'label' column"
            elif base == "span_ids" and not has_spans:
                missing = "a 'spans' column (character [start, end) ranges of the completion)"
            elif base in _TEACHER and not has_teacher:
                missing = "a teacher model"
            if missing is None:
                chosen.append((inp.name, src))
            elif inp.required:
                raise InputError(f"loss {name!r} needs {inp.name!r} ({SOURCES[base]}), which needs {missing}")
        plan[name] = chosen
    return plan, {src for items in plan.values() for _, src in items}


def _required_options(terms, options: dict[str, Any], given: set[str]) -> None:
    from pairkit import losses

    for name, _, _ in terms:
        spec = losses.spec(name)
        have = set(options_for(name, options)) | given
        lacking = [o.name for o in spec.options if o.name not in spec.defaults and o.name not in have]
        if lacking:
            raise InputError(f"loss {name!r} has no default for {', '.join(map(repr, lacking))}: give it in "
                             "loss_options (--loss-option KEY=VALUE)")  # fmt: skip


# ------------------------------------------------------------------------------------------------- rows


def _rows_format(rows, source: str) -> str:
    first = rows[0]
    if not isinstance(first, dict):
        raise InputError(f"{source}, row 1: expected a mapping of columns, got {type(first).__name__}")
    if "prompt" in first and "completion" in first:
        return "lm"
    if "text" in first:
        return "classify"
    raise InputError(
        f"{source}, row 1: distillation rows need 'text' (and 'label' for losses that use labels) or "
        f"'prompt'/'completion' columns; got {sorted(first)}"
    )


def _label_ids(rows, models, source: str) -> list[int] | None:
    """Class indices of the 'label' column: integers as given, names through the ``label2id`` of the student or else
    the teacher (else in order of first appearance, with a warning). None without a 'label' column."""
    if "label" not in rows[0]:
        return None
    raw = [r.get("label") for r in rows]
    for i, v in enumerate(raw, start=1):
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0):
            raise InputError(f"{source}, row {i}, column 'label': expected a class index >= 0 or name, got {v!r}")
    if all(isinstance(v, int) for v in raw):
        return list(raw)
    if any(isinstance(v, int) for v in raw):
        raise InputError(f"{source}, column 'label': mixes class indices and names; use one kind")
    for model in models:
        known = dict(getattr(getattr(model, "config", None), "label2id", None) or {})
        if set(raw) <= set(known):
            return [int(known[v]) for v in raw]
    known = {}
    for v in raw:
        known.setdefault(v, len(known))
    warnings.warn(f"{source}: the label names are not in the models' config.label2id; classes are numbered in order "
                  f"of first appearance: {known}", PairkitWarning, stacklevel=3)  # fmt: skip
    return [known[v] for v in raw]


def _feature(value, where: str) -> torch.Tensor:
    try:
        x = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{where}: expected a feature vector (tokenizer=None), got {type(value).__name__}") from None
    if not x.is_floating_point() or x.ndim != 1 or not bool(torch.isfinite(x).all()):
        raise InputError(f"{where}: expected a finite 1-D float feature vector, got {x.dtype} {list(x.shape)}")
    return x


def _span_ids(tokenizer, completion: str, spans, n_tokens: int, where: str) -> list[int]:
    """The span of each completion token (``-1`` outside every span, and for the end-of-sequence token)."""
    if not isinstance(spans, (list, tuple)) or not all(
        isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, int) for v in s) and 0 <= s[0] < s[1]
        for s in spans
    ):
        raise InputError(f"{where}, column 'spans': expected a list of [start, end) character ranges, got {spans!r}")
    try:
        enc = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        raise InputError("spans need a fast tokenizer (with offset mappings)") from None
    offsets = list(enc["offset_mapping"])
    out = []
    for a, b in offsets[:n_tokens]:
        out.append(next((k for k, (s, e) in enumerate(spans) if s <= a and b <= e), -1))
    return out + [-1] * (n_tokens - len(out))


def _examples(rows, fmt, tokenizer, teacher_tokenizer, labels, config: TrainConfig, source: str):
    examples, cut = [], 0
    for i, r in enumerate(rows):
        where = f"{source}, row {i + 1}"
        ex: dict[str, Any] = {"index": i}
        if labels is not None:
            ex["label"] = labels[i]
        if fmt == "lm":
            p, c = r.get("prompt"), r.get("completion")
            if not isinstance(p, (str, list)) or not isinstance(c, str) or not c:
                raise InputError(f"{where}: expected a prompt and a non-empty completion text, got {p!r}, {c!r}")
            p_ids, c_ids, was_cut = encode_completion(
                tokenizer, p, c, max_length=config.max_length, max_prompt_length=config.max_prompt_length,
                max_completion_length=config.max_completion_length, report=True,
            )  # fmt: skip
            cut += was_cut
            ex["seq"] = (list(p_ids), list(c_ids))
            if "spans" in r:
                if not isinstance(p, str):
                    raise InputError(f"{where}: 'spans' need a text prompt (a chat template re-tokenises the "
                                     "completion)")
                ex["spans"] = _span_ids(tokenizer, c, r["spans"], len(c_ids), where)
        else:
            text = r.get("text")
            if tokenizer is None:
                ex["x"] = _feature(text, where)
            else:
                if not isinstance(text, str) or not text.strip():
                    raise InputError(f"{where}: expected a non-empty text, got {text!r}")
                for key, tok in (("ids", tokenizer), ("teacher_ids", teacher_tokenizer)):
                    if tok is None:
                        continue
                    ids = tok(text)["input_ids"]
                    if len(ids) > config.max_length:
                        ids = tok(text, truncation=True, max_length=config.max_length)["input_ids"]
                        cut += key == "ids"
                    ex[key] = list(ids)
        examples.append(ex)
    if cut:
        warnings.warn(f"{source}: {cut} of {len(rows)} rows were truncated to max_length={config.max_length} tokens",
                      TruncationWarning, stacklevel=3)  # fmt: skip
    return examples


# ---------------------------------------------------------------------------------------------- forward


def _module_name(model, target) -> str | None:
    return next((n for n, m in model.named_modules() if m is target), None)


def _layer(model, layer: str | None, fmt: str, who: str) -> str | None:
    """The submodule (as in ``model.named_modules()``) whose output is the feature; for causal LMs relative to the
    decoder, None there meaning the decoder's final hidden states."""
    if fmt == "lm":
        prefix = _module_name(model, model.get_decoder())
        if layer is None or layer == prefix:
            return None
        if prefix and not layer.startswith(prefix + "."):
            raise InputError(f"{who}_layer {layer!r} must be a submodule of the decoder {prefix!r}")
        return layer[len(prefix) + 1 :] if prefix else layer
    if layer is not None:
        return layer
    base = getattr(model, "base_model", None)
    name = _module_name(model, base) if isinstance(base, torch.nn.Module) else None
    if name is None:
        raise InputError(f"{who}_layer: name the submodule whose output is the feature (as in named_modules()); "
                         f"a plain {type(model).__name__} has no default")  # fmt: skip
    return name


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = [torch.as_tensor(s, dtype=torch.long) for s in seqs]
    ids = torch.nn.utils.rnn.pad_sequence(t, batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(s) for s in seqs])
    return ids, (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()


def _forward(model, rows, fmt: str, layer: str | None, hidden: bool, token_logits: bool, pad_id, key: str):
    """One forward pass: ``{"logits", "hidden", "attn"}`` and, for causal LMs, the completion-token logits."""
    names = [layer] if hidden and layer is not None else []
    out: dict[str, Any] = {}
    if fmt == "lm":
        batch = collate_sequences([ex["seq"] for ex in rows], pad_id)
        ids, attn = batch["input_ids"], batch["attention_mask"]
        config = getattr(model, "config", None)
        if any(getattr(config, k, None) not in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale")):
            raise InputError("token-level distillation needs logits that are a linear projection of the decoder "
                             "output; this model transforms them (soft-capping or scaling)")  # fmt: skip
        res, states = collect_hidden_states(model.get_decoder(), names, input_ids=ids, attention_mask=attn)
        final = res.last_hidden_state
        out.update(attn=attn, hidden=states[layer] if names else final)
        if token_logits:
            scored = batch["completion_mask"].clone()
            scored[:, 0] = False
            rows_at, pos = scored.nonzero(as_tuple=True)
            rank = (scored.cumsum(1) - 1)[rows_at, pos]
            z = model.get_output_embeddings()(final[rows_at, pos - 1])  # position t-1 predicts token t
            width = int(scored.sum(1).max()) if len(rows_at) else 0
            shape = (len(rows), width, z.shape[-1])
            out["token_logits"] = z.new_zeros(shape).index_put((rows_at, rank), z)
            out["token_mask"] = torch.zeros(shape[:2], dtype=torch.bool).index_put((rows_at, rank), torch.tensor(True))
            out["token_rank"] = (rows_at, rank)
        return out
    if "x" in rows[0]:
        param = next((p for p in model.parameters() if p.is_floating_point()), None)
        x = torch.stack([ex["x"] for ex in rows])
        res, states = collect_hidden_states(model, names, x.to(param.dtype) if param is not None else x)
        attn = None
    else:
        ids, attn = _pad([ex[key] for ex in rows], pad_id)
        res, states = collect_hidden_states(model, names, input_ids=ids, attention_mask=attn)
    logits = getattr(res, "logits", res)
    out.update(logits=logits if isinstance(logits, torch.Tensor) else None, attn=attn)
    if names:
        out["hidden"] = states[layer]
    return out


def _pooled(hidden: torch.Tensor, attn) -> torch.Tensor:
    if hidden.ndim == 2:
        return hidden
    if hidden.ndim != 3:
        raise InputError(f"a hidden state of shape {list(hidden.shape)}: expected [n, dim] or [n, T, dim]")
    return mean_pool(hidden, attn if attn is not None else torch.ones(hidden.shape[:2], dtype=torch.long))


def _tokens(hidden: torch.Tensor, attn) -> torch.Tensor:
    """The first ``T`` token states of every row, ``T`` the batch's shortest row (no padding enters a relation)."""
    if hidden.ndim != 3:
        raise InputError(f"token-level losses need [batch, T, dim] hidden states, got {list(hidden.shape)}")
    if attn is None:
        return hidden
    return hidden[:, : max(int(attn.sum(1).min()), 1)]


def _logits_of(out: dict, who: str) -> torch.Tensor:
    z = out.get("logits")
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        got = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise InputError(f"the {who} must return class logits [batch, classes] (a tensor or an output with "
                         f".logits), got {got}")  # fmt: skip
    return z


# --------------------------------------------------------------------------------------------- the module


def _linear(d_in: int, d_out: int, dtype, seed: int) -> torch.nn.Linear:
    """A linear map with weights ``N(0, 1/d_in)`` from a seeded generator and zero bias."""
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(d_in, d_out).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in))
        layer.bias.zero_()
    return layer


class _Distiller(torch.nn.Module):
    """The student with the parts trained with it and the per-example state, checkpointed together."""

    def __init__(self, student, heads: dict[str, torch.nn.Module], prototypes, n: int, past: tuple | None,
                 centroids: tuple | None):  # fmt: skip
        super().__init__()
        self.student = student
        self.heads = torch.nn.ModuleDict(heads)
        self.prototypes = torch.nn.Parameter(prototypes) if prototypes is not None else None
        self.register_buffer("visits", torch.zeros(n, dtype=torch.long))  # epochs each example has been seen
        if past is not None:
            self.register_buffer("past_logits", torch.zeros(n, past[0], dtype=past[1]))
        if centroids is not None:
            k, dtype = centroids
            self.register_buffer("centroids", torch.full((k, k), 1.0 / k, dtype=dtype))
            self.register_buffer("centroid_epoch", torch.tensor(-1))

    def forward(self, *args, **kwargs):
        return self.student(*args, **kwargs)


class _Batch:
    """What the losses ask for on one batch, computed once each and only when asked."""

    def __init__(self, module: _Distiller, teacher, rows, setup: dict[str, Any]):
        self.module, self.teacher, self.rows, self.s = module, teacher, rows, setup
        self.cache: dict[str, Any] = {}

    def __call__(self, key: str):
        if key not in self.cache:
            self.cache[key] = getattr(self, "_" + key.replace(" ", "_"))()
        return self.cache[key]

    def _student(self):
        s = self.s
        return _forward(self.module.student, self.rows, s["fmt"], s["student_layer"], s["student_hidden"],
                        s["token_level"], s["pad_id"], "ids")  # fmt: skip

    def _teacher(self):
        s = self.s
        with torch.no_grad():
            return _forward(self.teacher, self.rows, s["fmt"], s["teacher_layer"], s["teacher_hidden"],
                            s["token_level"], s["pad_id"], s["teacher_key"])  # fmt: skip

    def _student_logits(self):
        return _logits_of(self("student"), "student")

    def _logits(self):
        return self("student_logits")

    def _teacher_logits(self):
        return _logits_of(self("teacher"), "teacher")

    def _log_predictions(self):
        return torch.log_softmax(self("student_logits"), -1)

    def _predictions(self):
        return torch.softmax(self("student_logits"), -1)

    def _log_targets(self):
        return torch.log_softmax(self("teacher_logits"), -1)

    def _targets(self):
        return torch.softmax(self("teacher_logits"), -1)

    def _labels(self):
        return torch.tensor([ex["label"] for ex in self.rows], dtype=torch.long)

    def _student_embeddings(self):
        out = self("student")
        return _pooled(out["hidden"], out["attn"])

    def _projected_student_embeddings(self):
        e = self("student_embeddings")
        return self.module.heads["projection"](e) if "projection" in self.module.heads else e

    def _teacher_embeddings(self):
        out = self("teacher")
        return _pooled(out["hidden"], out["attn"])

    def _student_tokens(self):
        out = self("student")
        return _tokens(out["hidden"], out["attn"])

    def _teacher_tokens(self):
        out = self("teacher")
        return _tokens(out["hidden"], out["attn"])

    def _token_student_logits(self):
        return self("student")["token_logits"]

    def _token_teacher_logits(self):
        z, vocab = self("teacher")["token_logits"], self("token student_logits").shape[-1]
        if z.shape[-1] != vocab:
            raise InputError(f"the teacher's vocabulary ({z.shape[-1]}) differs from the student's ({vocab}); "
                             "token-level losses need one tokenizer")  # fmt: skip
        return z

    def _token_mask(self):
        return self("student")["token_mask"]

    def _span_ids(self):
        rows_at, rank = self("student")["token_rank"]
        spans = torch.full(self("token_mask").shape, -1, dtype=torch.long)
        # the scored tokens of a row are its completion tokens, but the first when the completion starts the row
        values = [v for ex in self.rows for v in ex["spans"][int(len(ex["seq"][0]) == 0) :]]
        return spans.index_put((rows_at, rank), torch.tensor(values, dtype=torch.long))

    def _class_centers(self):
        return self.s["class_means"]

    def _teacher_prototypes(self):
        return self.s["class_means"]

    def _prototypes(self):
        return self.module.prototypes

    def _index(self):
        return torch.tensor([ex["index"] for ex in self.rows], dtype=torch.long)

    def _past_logits(self):
        idx = self("index")
        seen = self.module.visits[idx] > 0
        one_hot = torch.nn.functional.one_hot(self("labels"), self.module.past_logits.shape[1]).bool()
        first = torch.zeros_like(self.module.past_logits[idx]).masked_fill(~one_hot, -math.inf)  # log one-hot
        return torch.where(seen[:, None], self.module.past_logits[idx], first)

    def _aux_logits(self):
        return self.module.heads["aux_logits"](self("student_embeddings"))

    def _weak_logits(self):
        return self.module.heads["weak_logits"](self("student_embeddings"))

    def _novel_logits(self):
        return self.module.heads["novel_logits"](self("student_embeddings"))

    def _class_centroids(self):
        return self.module.centroids

    def _cost(self):
        return self.s["cost"]


# ------------------------------------------------------------------------------------------------ trainer


def _chunks(examples, size: int):
    return [examples[i : i + size] for i in range(0, len(examples), size)]


def _class_means(teacher, examples, setup, classes: int) -> torch.Tensor:
    """The teacher's mean pooled hidden state of each class over the examples (zero for a class without any)."""
    sums, counts = None, torch.zeros(classes)
    with torch.no_grad():
        for chunk in _chunks(examples, setup["batch_size"]):
            out = _forward(teacher, chunk, setup["fmt"], setup["teacher_layer"], True, False, setup["pad_id"],
                           setup["teacher_key"])  # fmt: skip
            e = _pooled(out["hidden"], out["attn"])
            y = torch.tensor([ex["label"] for ex in chunk])
            sums = (e.new_zeros(classes, e.shape[1]) if sums is None else sums).index_add_(0, y, e)
            counts += torch.bincount(y, minlength=classes)
    return sums / counts.clamp(min=1).to(sums.dtype)[:, None]


def _refresh_centroids(module: _Distiller, examples, setup, epoch: int) -> None:
    """MCMI: the trained model's class centroids over the training data, once per epoch, in eval mode.

    Data parallel: each process computes the logits of its share of the examples; the shares, gathered in order,
    are the logits of one process, so every process gets the same centroids."""
    from pairkit.losses import class_centroids

    was = module.training
    module.eval()
    with torch.no_grad():
        mine = [examples[i] for i in dist.share(range(len(examples)))]
        logits = dist.all_rows(torch.cat([
            _logits_of(_forward(module.student, c, setup["fmt"], None, False, False, setup["pad_id"], "ids"), "model")
            for c in _chunks(mine, setup["batch_size"])
        ]))  # fmt: skip
        labels = torch.tensor([ex["label"] for ex in examples])
        module.centroids.copy_(class_centroids(logits, labels, module.centroids.shape[0]))
        module.centroid_epoch.fill_(epoch)
    module.train(was)


# sources that are not one row per example (the same on every process under data parallel)
_SHARED = {"class_centers", "teacher_prototypes", "prototypes", "class_centroids", "cost"}


def _coupled(terms, plan) -> set[str]:
    """The batch-coupled losses (computed on the whole batch under data parallel); token-level ones are refused."""
    from pairkit.losses import spec

    coupled = {name for name, _, _ in terms if spec(name).batch_coupled}
    for name in sorted(coupled):
        tokens = [inp for inp, src in plan[name] if src in _TOKEN_LEVEL | {"student_tokens", "teacher_tokens"}]
        if tokens:
            raise InputError(f"loss {name!r} is batch-coupled and takes token states ({', '.join(tokens)}), whose "
                             "length is each batch's shortest row: data parallel cannot give it one process's "
                             "whole batch; run it in one process")  # fmt: skip
    return coupled


def _freeze(teacher) -> None:
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)


def train_distillation(
    student,
    teacher,
    data,
    *,
    tokenizer=None,
    teacher_tokenizer=None,
    loss: str | dict[str, float] = "hinton_kd_loss",
    loss_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    student_layer: str | None = None,
    teacher_layer: str | None = None,
    novel_classes: int | None = None,
    cost: torch.Tensor | None = None,
    ps_kd_alpha_final: float = 0.8,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Distil a frozen teacher into a student with any ``distill``- or ``divergence``-family loss (or weighted sum).

    Each step minimises :math:`\\mathcal L = \\sum_k w_k\\, \\ell_k(\\ldots)` over the batch, every term called with
    ``reduction="mean"`` on what its declared inputs ask for (:data:`SOURCES`), e.g. Hinton KD (Hinton, Vinyals &
    Dean 2015), DKD, RKD (Park et al. 2019), token-level KL/JSD of language models (GKD, Agarwal et al. 2024).
    The teacher runs in eval mode (no dropout) with frozen parameters, its outputs computed under
    ``torch.no_grad()``.

    * Classifier rows ``{"text": x, "label": y}`` (``label`` only when a loss uses labels; class indices, or names
      mapped through the student's or teacher's ``config.label2id``, else in order of first appearance with a
      warning): class logits from a Hugging Face sequence classifier (``.logits``) or any module returning
      ``[batch, classes]``; with
      ``tokenizer=None`` the ``text`` column holds feature vectors for plain modules. ``log_predictions``,
      ``targets`` and the other divergence inputs are the (log-)softmax of these logits.
    * Causal-LM rows ``{"prompt": p, "completion": c}``: token-level logits ``[batch, T, vocab]`` at the completion
      tokens (position ``t-1`` predicts token ``t``; ``mask`` marks real tokens), for the token KL/JSD and span
      losses; ``spans`` (character ``[start, end)`` ranges of the completion, from the caller's chunker) gives
      ``span_ids`` (a token is in a span when its characters lie inside it; EOS is in none). Student and teacher
      share the tokenizer.
    * Hidden states (both kinds of rows): the output of ``student_layer`` / ``teacher_layer`` (a submodule name as
      in ``named_modules()``; default the base model's, i.e. the last hidden states — for causal LMs the decoder's
      final hidden states) collected with :func:`~pairkit.train.collect_hidden_states`. Embeddings are their
      attention-masked mean; token states are the first ``T`` tokens of each row, ``T`` the batch's shortest row,
      so no padding enters a token relation (a warning gives the lengths when rows differ). A loss whose two
      embeddings share one width symbol (ND, prototype relation) gets the student's embeddings through a learned
      linear projection to the teacher's width when the widths differ (a FitNets-style regressor); the relational
      losses (RKD) take both as they are.

    An optional input is passed when the rows give it: with a ``label`` column Hinton KD adds its cross-entropy
    term (weight ``1 - alpha``) and BD-KD its CE term; give ``loss_options={"alpha": 1.0}`` for pure soft-target KD.

    Choices for the inputs that are neither model's output (each paper's reading):

    * ``class_centers`` (ND, Wang et al. 2023) and ``teacher_prototypes`` (PRD, Asadi et al. 2023): the
      teacher's mean embedding of each class over the training data, computed once before training — ND's class
      centres are the teacher's class means; PRD's are the previous (teacher) model's prototypes, kept fixed.
    * ``prototypes`` (PRD): learnable ``[classes, dim]`` parameters trained with the student, initialised to the
      teacher's class means (the current model's prototypes are learned in the paper).
    * ``past_logits`` (PS-KD, Kim et al. 2021): the student's logits for the same example at its previous visit,
      i.e. the previous epoch, kept per example (the first epoch uses the one-hot label, as the authors' code).
      Unless ``alpha`` is in ``loss_options``, ``α_t = ps_kd_alpha_final · (epoch+1)/epochs``
      (:func:`~pairkit.losses.ps_kd_alpha`).
    * ``aux_logits`` (dual-head KD), ``weak_logits`` (USKD) and ``novel_logits`` (class-relation KD, with
      ``novel_classes`` outputs): linear heads on the student's pooled hidden states, trained with it (weights
      ``N(0, 1/d)`` seeded by ``config.seed``, bias 0). Pointing ``student_layer`` at an intermediate block gives
      USKD's weak prediction from intermediate features.
    * ``class_centroids`` (MCMI, Ye et al. 2024): the trained model's mean predicted distribution per class over
      the training data, recomputed in eval mode at the start of every epoch; see :func:`train_mcmi_teacher`.
    * ``cost`` (``sinkhorn_distance``): ``cost`` if given (``[classes, classes]``), else ``1 - I`` (each class
      apart from every other alike).

    Data parallel (``torchrun``, ``accelerate launch``) runs through the shared loop, each step's batch split
    between the processes in order, and gives the weights of one process on the whole batch (to floating-point
    rounding): the per-example state is the same on every process — after each micro-batch PS-KD's past-logit
    table and the visit counts take every process's rows (indices and logits gathered), MCMI's centroids come from
    every process's share of the training data's logits, gathered in order — and the checkpoint, written once,
    restores it on every process. A batch-coupled loss (RKD, SinKD, USKD, class-relation KD) is computed on every
    process's rows gathered in order, only this process's carrying gradient, weighted so that the summed
    gradients are those of one process on the whole batch; a batch-coupled token-level loss (token-graph KD) is
    refused under data parallel. With per-example state or a batch-coupled loss every process must get a row of
    every micro-batch (the last batch of an epoch too). ``teacher`` may be None when no loss needs it (PS-KD, USKD,
    MCMI). The extra parts are returned in ``TrainResult.heads`` (``projection``, ``aux_logits``, …) and
    ``TrainResult.proxies["prototypes"]``.

    Args:
        student: the model trained. teacher: the frozen model distilled from (a different module).
        data: path, DataFrame or rows as above.
        tokenizer: the student's tokenizer (None: feature-vector rows). teacher_tokenizer: the teacher's, for
            classifier rows when it differs (default: ``tokenizer``).
        loss: a name or weighted sum (``"hinton_kd_loss+0.5*rkd_distance_loss"``); loss_options: their options.
        student_layer, teacher_layer: the submodules whose outputs are the hidden-state features.
        novel_classes: outputs of the novel-class head (class-relation KD).

    Per-step metrics: loss, ``grad_norm``, and with class logits ``accuracy`` (labels) and ``teacher_agreement``
    (same top class as the teacher).
    """
    config = config or TrainConfig()
    check_number("ps_kd_alpha_final", ps_kd_alpha_final, low=0, high=1)
    if novel_classes is not None:
        check_number("novel_classes", novel_classes, low=1, integer=True)
    if teacher is not None and teacher is student:
        raise InputError("teacher must be another model than the student (the teacher is frozen)")
    terms = loss_terms(loss, FAMILIES)
    options = check_options([n for n, _, _ in terms], dict(loss_options or {}))
    rows, _, source = normalised_rows(data, lambda rows, source: rows)
    if not rows:
        raise InputError(f"{source}: no distillation rows")
    fmt = _rows_format(rows, source)
    labels = _label_ids(rows, [m for m in (student, teacher) if m is not None], source)
    plan, sources = _plan(terms, fmt, labels is not None, "spans" in rows[0], teacher is not None)
    _required_options(terms, options, {"alpha"} if "past_logits" in sources else set())
    if "novel_logits" in sources and novel_classes is None:
        raise InputError("novel_classes: give the number of novel classes for the novel-class head")
    if fmt == "lm" and tokenizer is None:
        raise InputError("prompt/completion rows need the causal LMs' tokenizer")
    if teacher_tokenizer is not None and fmt == "lm":
        raise InputError("teacher_tokenizer: token-level distillation needs one tokenizer for both models")
    examples = _examples(rows, fmt, tokenizer, teacher_tokenizer, labels, config, source)
    if teacher is not None:
        _freeze(teacher)
    bases = {"student_embeddings" if s == _PROJECTED else s for s in sources}
    setup: dict[str, Any] = {
        "fmt": fmt,
        "pad_id": pad_id_of(tokenizer) if tokenizer is not None else None,
        "teacher_key": "teacher_ids" if teacher_tokenizer is not None else "ids",
        "batch_size": config.batch_size,
        "student_hidden": bool(bases & _STUDENT_HIDDEN),
        "teacher_hidden": bool(bases & _TEACHER_HIDDEN),
        "token_level": bool(bases & _TOKEN_LEVEL),
        "student_layer": _layer(student, student_layer, fmt, "student") if bases & _STUDENT_HIDDEN else None,
        "teacher_layer": _layer(teacher, teacher_layer, fmt, "teacher") if bases & _TEACHER_HIDDEN else None,
    }
    if bases & {"student_tokens", "teacher_tokens"}:
        lengths = [len(ex["ids"]) if "ids" in ex else sum(map(len, ex["seq"])) for ex in examples if "x" not in ex]
        if lengths and min(lengths) != max(lengths):
            warnings.warn(f"{source}: rows have {min(lengths)} to {max(lengths)} tokens; token-level relation "
                          "losses use the first T tokens of each row of a batch, T its shortest row",
                          PairkitWarning, stacklevel=2)  # fmt: skip

    # the parts trained with the student, sized by one probe batch
    heads: dict[str, torch.nn.Module] = {}
    prototypes = past = centroids = None
    if bases & {"past_logits", *_HEADS, "class_centroids", "cost"} or _PROJECTED in sources:
        probe = _Batch(_Distiller(student, {}, None, 0, None, None), teacher, examples[:1], setup)
        with torch.no_grad():
            dtype = next((p.dtype for p in student.parameters() if p.is_floating_point()), torch.float32)
            k = probe("student_logits").shape[-1] if bases & _CLASS_LEVEL else None
            d_s = probe("student_embeddings").shape[-1] if bases & _STUDENT_HIDDEN else None
            d_t = probe("teacher_embeddings").shape[-1] if _PROJECTED in sources else None
        if _PROJECTED in sources and d_s != d_t:
            heads["projection"] = _linear(d_s, d_t, dtype, config.seed + 1)
        for i, head in enumerate(_HEADS):
            if head in bases:
                heads[head] = _linear(d_s, novel_classes if head == "novel_logits" else k, dtype, config.seed + 2 + i)
        past = (k, dtype) if "past_logits" in bases else None
        centroids = (k, dtype) if "class_centroids" in bases else None
        if "cost" in bases:
            setup["cost"] = _cost(cost, k, dtype)
    if bases & {"class_centers", "teacher_prototypes", "prototypes"}:
        classes = max(labels) + 1
        setup["class_means"] = _class_means(teacher, examples, setup, classes)
        if "prototypes" in bases:
            prototypes = setup["class_means"].clone()
    module = _Distiller(student, heads, prototypes, len(examples), past, centroids)
    token_losses = {n for n, items in plan.items() if any(src in _TOKEN_LEVEL for _, src in items)}
    coupled = _coupled(terms, plan) if init_distributed()[1] > 1 else set()

    def step(m: _Distiller, batch, at: Micro):
        b = _Batch(m, teacher, batch, setup)
        epoch = at.epoch
        if centroids is not None and int(m.centroid_epoch) < epoch:
            _refresh_centroids(m, examples, setup, epoch)
        total = 0.0
        for name, weight, _ in terms:
            inputs = {inp: b(src) for inp, src in plan[name]}
            if name in coupled:  # every process's rows in order; only this process's carry gradient
                inputs = {inp: dist.whole_batch(v) if src not in _SHARED else v
                          for (inp, src), v in zip(plan[name], inputs.values())}  # fmt: skip
            if name in token_losses:
                inputs["mask"] = b("token_mask")
            opts = options_for(name, options)
            if "past_logits" in inputs and "alpha" not in opts:
                from pairkit.losses import ps_kd_alpha

                opts["alpha"] = ps_kd_alpha(min(epoch, config.epochs - 1), config.epochs, alpha_final=ps_kd_alpha_final)
            value = call_loss(name, inputs, opts, reduction="mean")
            total = total + weight * (dist.whole_batch_term(value, len(batch), at.size) if name in coupled else value)
        stats: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            idx = b("index")
            z = b.cache.get("student_logits")
            # per-example state is updated with every process's rows (one process: its own)
            every = dist.all_rows(idx) if collective else idx
            if past is not None:
                m.past_logits[every] = (dist.all_rows(z) if collective else z.detach()).to(m.past_logits.dtype)
            m.visits[every] += 1
            if z is not None and "labels" in b.cache:
                stats["accuracy"] = (z.argmax(-1) == b("labels")).double()
            if z is not None and "teacher_logits" in b.cache:
                stats["teacher_agreement"] = (z.argmax(-1) == b("teacher_logits").argmax(-1)).double()
        return torch.as_tensor(total).expand(len(batch)), stats

    collective = init_distributed()[1] > 1 and (past is not None or centroids is not None or bool(coupled))
    result = fit(module, examples, step, config, resume=resume, callback=callback, losses=[n for n, *_ in terms],
                 positions=True, collective=collective)
    result.heads = dict(module.heads) or None
    if module.prototypes is not None:
        result.proxies = {"prototypes": module.prototypes.detach().clone()}
    return result


def _cost(cost, k: int, dtype) -> torch.Tensor:
    if cost is None:
        return 1.0 - torch.eye(k, dtype=dtype)
    c = torch.as_tensor(cost)
    if tuple(c.shape) != (k, k) or not c.is_floating_point() or not bool(torch.isfinite(c).all()):
        raise InputError(f"cost must be a finite float [{k}, {k}] tensor (classes x classes), got {list(c.shape)}")
    return c.to(dtype)


def train_mcmi_teacher(
    teacher,
    data,
    *,
    tokenizer=None,
    cmi_weight: float = 0.25,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or fine-tune) a *teacher* with maximum conditional mutual information (MCMI) before distilling it.

    Minimises :func:`~pairkit.losses.mcmi_teacher_loss`,

    .. math::
        \\ell = \\mathrm{CE}(z, y) - \\lambda\\,\\mathrm{KL}\\big(\\operatorname{softmax}(z) \\,\\|\\, q_{y}\\big),

    with :math:`q_y` the model's mean predicted distribution over the training examples of class ``y``
    (:func:`~pairkit.losses.class_centroids`), recomputed in eval mode at the start of every epoch (kept in the
    checkpoints, so resume continues with the same centroids). Ye, Chen, Yang, Feng, Sun & Chen (2024), "Bayes
    Conditional Distribution Estimation for Knowledge Distillation" (ICLR). This is :func:`train_distillation`
    with the teacher as the trained model and no other model; rows are classifier rows with a ``label`` column.

    Args:
        teacher: the classifier to train. data: ``{"text", "label"}`` rows (feature vectors with
            ``tokenizer=None``). cmi_weight: ``λ >= 0``.
    """
    return train_distillation(teacher, None, data, tokenizer=tokenizer, loss="mcmi_teacher_loss",
                              loss_options={"cmi_weight": cmi_weight}, config=config, resume=resume,
                              callback=callback)  # fmt: skip
