"""Instruction distillation: a pairwise (LLM) judge's ranking distilled into a pointwise scorer.

A pairwise ranker reads two candidates at once and is accurate but costs O(K²) calls per list; a pointwise scorer
reads one candidate at a time (K calls). Instruction distillation (Sun et al. 2023, "Instruction Distillation Makes
Large Language Models Efficient Zero-shot Rankers") runs the pairwise teacher once on the training lists, orders
each list by it, and trains the pointwise student with RankNet on that ordering.

* Teacher: any pairkit judge (an LLM judge from a config, a trained pairwise judge, a function). Every pair of a
  list is judged (in the order the judge itself chooses; symmetric judges average both orders) and a candidate's
  teacher score is its expected number of wins, :math:`t_i = \\sum_{j\\ne i} P(i \\succ j) + \\tfrac12 P(i = j)`
  (the all-pairs aggregation of pairwise ranking prompting, Qin et al. 2024, "Large Language Models are Effective
  Text Rankers with Pairwise Ranking Prompting").
* Student: a ``transformers`` sequence classifier with one label (its logit is the score), or — with ``yes_no``
  — a causal LM whose score is :math:`z_{yes} - z_{no}`, its next-token logits of the two words after the
  pointwise prompt :data:`POINTWISE_PROMPT` (the paper's pointwise instruction).
* Loss: RankNet over the pairs the teacher orders, :func:`pairkit.losses.pairwise_logistic_loss`.

Data rows: ``{query|prompt|context, candidates|responses|passages: [...]}`` with at least two candidates each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError
from pairkit.judges.pairwise_classifier import pairwise_logits, verdict_token_ids
from pairkit.train._chat import prompt_text
from pairkit.train._loop import TrainConfig, TrainResult, check_number, fit
from pairkit.train._steps import normalised_rows

__all__ = [
    "POINTWISE_PROMPT",
    "evaluate_pointwise_ranker",
    "pointwise_scores",
    "read_ranking_lists",
    "save_pointwise_ranker",
    "teacher_scores",
    "train_instruction_distillation",
]

POINTWISE_PROMPT = "Query: {query}\n\nCandidate: {candidate}\n\nIs the candidate a good answer (Yes or No)?"
"""The pointwise instruction a causal-LM student reads; its verdict is the next token (``yes_no``)."""

_QUERY = ("query", "prompt", "context", "question")
_LISTS = ("candidates", "responses", "passages")


def read_ranking_lists(data, *, source: str | None = None) -> list[dict[str, Any]]:
    """Rows → ``{"query": str, "candidates": [str, ...]}``; every list needs at least two non-empty candidates."""
    _, rows, default = normalised_rows(data, lambda rows, source: rows)
    source = source or default
    if not rows:
        raise InputError(f"{source}: no lists")
    out = []
    for i, row in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        q = next((k for k in _QUERY if k in row), None)
        c = next((k for k in _LISTS if k in row), None)
        if q is None or c is None:
            raise InputError(f"{where}: needs a query ({'/'.join(_QUERY)}) and a list ({'/'.join(_LISTS)})")
        cands = row[c]
        if not isinstance(cands, list) or len(cands) < 2:
            raise InputError(f"{where}, column {c!r}: expected a list of at least 2 candidates")
        if not all(isinstance(x, str) and x.strip() for x in cands):
            raise InputError(f"{where}, column {c!r}: every candidate must be a non-empty string")
        out.append({"query": prompt_text(row[q]), "candidates": list(cands)})
    return out


def teacher_scores(judge, lists: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    """Expected wins :math:`t_i = \\sum_{j \\ne i} P(i \\succ j) + \\frac12 P(\\text{tie})` of every candidate.

    Every unordered pair of each list is judged once (one ``judge_many`` call for all lists; a symmetric judge
    averages both orders itself). Returns one ``[K]`` array per list.
    """
    from pairkit.judges import Request

    index, requests = [], []
    for li, row in enumerate(lists):
        k = len(row["candidates"])
        i, j = np.triu_indices(k, 1)
        index.append((li, i, j))
        c = row["candidates"]
        requests += [Request(row["query"], c[a], c[b]) for a, b in zip(i.tolist(), j.tolist())]
    judged = judge.judge_many(requests)
    p_a = np.array([r.p_a for r in judged], dtype=float)
    p_tie = np.array([r.p_tie for r in judged], dtype=float)
    out, start = [], 0
    for li, i, j in index:
        sl = slice(start, start + len(i))
        start += len(i)
        wins = np.zeros(len(lists[li]["candidates"]))
        np.add.at(wins, i, p_a[sl] + 0.5 * p_tie[sl])
        np.add.at(wins, j, (1.0 - p_a[sl] - p_tie[sl]) + 0.5 * p_tie[sl])
        out.append(wins)
    return out


def _encode(tokenizer, queries: Sequence[str], candidates: Sequence[str], yes_no, max_length: int) -> list[list[int]]:
    if yes_no:
        texts = [POINTWISE_PROMPT.format(query=q, candidate=c) for q, c in zip(queries, candidates)]
        enc = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        return [head + x[-(max_length - len(head)) :] for x in enc]  # keep the question at the end
    enc = tokenizer(list(queries), list(candidates), truncation=True, max_length=max_length, verbose=False)
    return enc["input_ids"]


def pointwise_scores(
    model, tokenizer, queries: Sequence[str], candidates: Sequence[str], *, yes_no=None, max_length: int = 512
) -> torch.Tensor:
    """Student scores ``[n]``: a one-label classifier's logit, or :math:`z_{yes} - z_{no}` of a causal LM.

    ``yes_no``: the two words of a causal-LM student (e.g. ``("Yes", "No")``), scored after
    :data:`POINTWISE_PROMPT`; ``None`` for a sequence classifier with ``num_labels=1``.
    """
    if len(queries) != len(candidates):
        raise InputError("queries and candidates must have the same length")
    if not yes_no and int(getattr(model.config, "num_labels", 0)) != 1:
        raise InputError("a pointwise student is a sequence classifier with num_labels=1, or a causal LM with yes_no")
    ids = _encode(tokenizer, queries, candidates, yes_no, max_length)
    z = pairwise_logits(model, tokenizer, ids, verdict_token_ids(tokenizer, yes_no) if yes_no else None)
    return (z[:, 0] - z[:, 1]) if yes_no else z[:, 0]


def _list_scores(model, tokenizer, rows, yes_no, max_length):
    """Student scores of a batch of lists, ``[b, K_max]``, and the padding mask."""
    queries = [r["query"] for r in rows for _ in r["candidates"]]
    cands = [c for r in rows for c in r["candidates"]]
    flat = pointwise_scores(model, tokenizer, queries, cands, yes_no=yes_no, max_length=max_length)
    sizes = torch.tensor([len(r["candidates"]) for r in rows])
    mask = torch.arange(int(sizes.max()))[None, :] < sizes[:, None]
    scores = flat.new_zeros(mask.shape).masked_scatter(mask, flat)
    return scores, mask


def train_instruction_distillation(
    model,
    tokenizer,
    data,
    *,
    teacher=None,
    yes_no: Sequence[str] | None = None,
    sigma: float = 1.0,
    config: TrainConfig | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a pointwise ranker on a pairwise teacher's ordering of each list (RankNet).

    .. math::

        \\mathcal{L} = \\operatorname{mean}_{t_i > t_j}\\ \\log\\big(1 + e^{-\\sigma(s_i - s_j)}\\big)

    with :math:`t` the teacher's expected wins (:func:`teacher_scores`) and :math:`s` the student's pointwise
    scores (:func:`pointwise_scores`). Sun et al. (2023), "Instruction Distillation Makes Large Language Models
    Efficient Zero-shot Rankers"; RankNet is Burges et al. (2005), "Learning to rank using gradient descent".

    Args:
        model: the student (a one-label ``AutoModelForSequenceClassification``, or a causal LM with ``yes_no``).
        tokenizer: its tokenizer; ``config.max_length`` caps each encoded (query, candidate).
        data: lists (see :func:`read_ranking_lists`); rows may carry their teacher scores already in a
            ``teacher_scores`` column (one number per candidate), then ``teacher`` may be ``None``.
        teacher: a pairkit judge (see :func:`teacher_scores`).
        yes_no: the words of a causal-LM student.
        sigma: RankNet's σ > 0.

    Per-step metrics: loss and ``agreement`` (fraction of the teacher's ordered pairs the student orders the same).
    """
    from pairkit.losses import pairwise_logistic_loss

    check_number("sigma", sigma, low=0, low_open=True)
    config = config or TrainConfig()
    if getattr(model.config, "pad_token_id", 0) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    rows = _scored_rows(data, teacher)

    def step(model, batch):
        scores, mask = _list_scores(model, tokenizer, batch, yes_no, config.max_length)
        t = torch.zeros(mask.shape, dtype=scores.dtype)
        for i, r in enumerate(batch):
            t[i, : len(r["teacher"])] = torch.tensor(r["teacher"], dtype=scores.dtype)
        loss = pairwise_logistic_loss(scores, t, sigma=sigma, mask=mask, reduction="none")
        return loss, {"agreement": _agreement(scores.detach(), t, mask)}

    return fit(model, rows, step, config, resume=resume, callback=callback, losses=["pairwise_logistic_loss"])


def _scored_rows(data, teacher) -> list[dict[str, Any]]:
    """Lists with the teacher's scores: from a ``teacher_scores`` column when every row has one, else judged."""
    _, raw, source = normalised_rows(data, lambda rows, source: rows)
    rows = read_ranking_lists(raw, source=source)
    if all(isinstance(r, dict) and "teacher_scores" in r for r in raw):
        for i, (r, given) in enumerate(zip(rows, raw), start=1):
            t = np.asarray(given["teacher_scores"], dtype=float)
            if t.shape != (len(r["candidates"]),) or not np.isfinite(t).all():
                raise InputError(f"row {i}, column 'teacher_scores': expected {len(r['candidates'])} finite numbers")
            r["teacher"] = t.tolist()
        return rows
    if teacher is None:
        raise InputError("give a teacher judge, or a 'teacher_scores' column with one number per candidate")
    for r, t in zip(rows, teacher_scores(teacher, rows)):
        r["teacher"] = t.tolist()
    return rows


def _agreement(scores: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per list: the fraction of the teacher's strictly ordered pairs that the student orders the same way."""
    pairs = (teacher[:, :, None] > teacher[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    same = (scores[:, :, None] > scores[:, None, :]) & pairs
    n = pairs.sum((1, 2)).double()
    return torch.where(n > 0, same.sum((1, 2)).double() / n.clamp(min=1), torch.ones_like(n))


def evaluate_pointwise_ranker(
    model, tokenizer, data, *, teacher=None, yes_no=None, max_length: int = 512, batch_size: int = 16
) -> dict[str, float]:
    """Held-out pairwise agreement of the student with the teacher's ordering (and the judge calls saved).

    ``agreement`` is the mean over lists of the fraction of the teacher's strictly ordered pairs that the student
    orders the same way (0.5 for a random scorer); ``teacher_calls`` the judge calls the teacher needs on these
    lists (K(K−1)/2 each) and ``student_calls`` the student's (K each).
    """
    rows = _scored_rows(data, teacher)
    was = model.training
    model.eval()
    agree = []
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            batch = rows[s : s + batch_size]
            scores, mask = _list_scores(model, tokenizer, batch, yes_no, max_length)
            t = torch.zeros(mask.shape, dtype=scores.dtype)
            for i, r in enumerate(batch):
                t[i, : len(r["teacher"])] = torch.tensor(r["teacher"], dtype=scores.dtype)
            agree.append(_agreement(scores.float(), t.float(), mask))
    model.train(was)
    sizes = np.array([len(r["candidates"]) for r in rows])
    return {
        "agreement": float(torch.cat(agree).mean()),
        "lists": len(rows),
        "teacher_calls": int((sizes * (sizes - 1) // 2).sum()),
        "student_calls": int(sizes.sum()),
    }


def save_pointwise_ranker(model, tokenizer, output_dir, *, yes_no=None, metrics: dict | None = None) -> Path:
    """Save the student and tokenizer to ``output_dir/final`` with ``pairkit_ranker.json`` (its kind and words)."""
    from pairkit._io import atomic_directory

    final = Path(output_dir) / "final"
    marker = {"kind": "pointwise_ranker", "version": 1, "yes_no": list(yes_no) if yes_no else None}
    if metrics:
        marker["held_out"] = metrics
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "pairkit_ranker.json").write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return final
