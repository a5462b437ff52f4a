"""Preference-model pre-training (PMP): pre-train a reward model on comparisons from voted answers, then fine-tune.

Askell et al. (2021), "A General Language Assistant as a Laboratory for Alignment", §4: a preference model is first
trained on large comparison data built from Stack Exchange answers ranked by votes (and from Reddit and Wikipedia
edits), then fine-tuned on the target preferences, which it learns with fewer samples. :func:`pmp_pairs` turns voted
answers into PMP pairs; :func:`pretrain_preference_model` runs the two stages with
:func:`~pairkit.train.train_reward_model`, the second starting from the weights the first left.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pairkit.errors import DroppedRowsWarning, InputError
from pairkit.train._loop import TrainConfig, TrainResult, check_number
from pairkit.train._steps import normalised_rows

__all__ = ["pmp_pairs", "pretrain_preference_model", "stack_exchange_scores"]


def stack_exchange_scores(upvotes, accepted=None) -> np.ndarray:
    r"""Askell et al.'s score of a Stack Exchange answer from its votes (§4.1).

    .. math::
        s = \operatorname{round}\big(\log_2(1 + u)\big) + \mathbb 1[\text{accepted}]
        \quad (u \ge 0), \qquad s = -1 \quad (u < 0)

    ``upvotes`` ``u``: the answer's net votes; ``accepted``: whether the asker accepted it (default none). Reading
    taken: an answer with negative votes scores −1 whether or not it was accepted (the paper assigns −1 "if the
    number of upvotes is negative"). Rounding is to the nearest integer (``log2(1 + u)`` is never a half-integer
    for integer ``u``).

    >>> stack_exchange_scores([10, 0, -2, 3], [False, True, False, False]).tolist()
    [3.0, 1.0, -1.0, 2.0]
    """
    u = np.asarray(upvotes, dtype=float)
    if not np.isfinite(u).all():
        raise InputError("upvotes must be finite numbers")
    acc = np.zeros_like(u) if accepted is None else np.asarray(accepted, dtype=float)
    if acc.shape != u.shape:
        raise InputError(f"accepted has shape {acc.shape}, upvotes {u.shape}")
    return np.where(u < 0, -1.0, np.rint(np.log2(1 + np.maximum(u, 0))) + (acc > 0))


def _as_given(rows, source: str) -> list[dict[str, Any]]:
    return list(rows)


def _voted_frame(rows: list[dict[str, Any]], score: str, source: str) -> pd.DataFrame:
    """One row per answer: question index, prompt, answer index, answer text, score."""
    qs, prompts, idx, answers, scores = [], [], [], [], []
    for q, r in enumerate(rows, start=1):
        where = f"{source}, row {q}"
        prompt = r.get("prompt", r.get("question"))
        if prompt is None or "answers" not in r:
            raise InputError(f"{where}: voted rows need 'question' (or 'prompt') and 'answers'")
        texts = list(r["answers"])
        if score == "stack_exchange":
            if "upvotes" not in r:
                raise InputError(f"{where}: score='stack_exchange' needs 'upvotes' per answer (and 'accepted')")
            s = stack_exchange_scores(r["upvotes"], r.get("accepted"))
        else:
            if "scores" not in r:
                raise InputError(f"{where}: score='given' needs 'scores' per answer")
            s = np.asarray(r["scores"], dtype=float)
            if not np.isfinite(s).all():
                raise InputError(f"{where}: scores must be finite numbers")
        if len(s) != len(texts):
            raise InputError(f"{where}: {len(texts)} answers but {len(s)} votes/scores")
        qs += [q] * len(texts)
        prompts += [prompt] * len(texts)
        idx += list(range(len(texts)))
        answers += texts
        scores += s.tolist()
    return pd.DataFrame({"q": qs, "prompt": prompts, "i": idx, "answer": answers, "score": scores})


def pmp_pairs(
    data,
    *,
    mode: str = "binary",
    score: str = "stack_exchange",
    good: str = "GOOD: ",
    bad: str = "BAD: ",
    pairs_per_question: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """PMP comparisons from voted answers: ranked pairs, or their binarisation (Askell et al. 2021, §4.1).

    ``data``: a path, DataFrame or rows ``{"question" (or "prompt"), "answers": [texts], "upvotes": [net votes],
    "accepted": [bools]}`` (``score="stack_exchange"``: scored by :func:`stack_exchange_scores`) or with
    ``"scores"`` per answer used as they are (``score="given"``, e.g. Reddit karma already transformed).

    * ``mode="ranked"``: every pair of answers to the same question with different scores, the higher-scored one
      chosen (``prompt, chosen, rejected, chosen_score, rejected_score``). Equal scores give no pair.
    * ``mode="binary"`` (the default; the paper finds binary PMP transfers better to fine-tuning than ranked):
      each ranked pair A > B becomes two independent comparisons of one answer with two labels,
      ``GOOD:A > BAD:A`` and ``BAD:B > GOOD:B`` — the ``good``/``bad`` label is put before the answer text.

    ``pairs_per_question``: keep at most that many ranked pairs per question (a seeded sample; None: all pairs,
    the reading taken here since the paper does not say how many it drew). Questions giving no pair (one answer,
    or all scores equal) are left out with a :class:`~pairkit.errors.DroppedRowsWarning` saying how many. Rows
    come out ordered by question, then by the indices of the better and the worse answer.
    """
    if mode not in ("binary", "ranked"):
        raise InputError(f"mode must be 'binary' or 'ranked', got {mode!r}")
    if score not in ("stack_exchange", "given"):
        raise InputError(f"score must be 'stack_exchange' or 'given', got {score!r}")
    if pairs_per_question is not None:
        check_number("pairs_per_question", pairs_per_question, low=1, integer=True)
    rows, _, source = normalised_rows(data, _as_given)
    if not rows:
        raise InputError(f"{source}: no voted questions")
    long = _voted_frame(rows, score, source)
    pairs = long.merge(long, on="q", suffixes=("_c", "_r"))
    pairs = pairs[pairs["score_c"] > pairs["score_r"]]
    if pairs_per_question is not None:
        rng = np.random.default_rng(seed)
        pairs = pairs.assign(_key=rng.random(len(pairs))).sort_values(["q", "_key"])
        pairs = pairs.groupby("q", sort=False).head(pairs_per_question).drop(columns="_key")
    pairs = pairs.sort_values(["q", "i_c", "i_r"]).reset_index(drop=True)
    dropped = len(rows) - pairs["q"].nunique()
    if dropped:
        warnings.warn(f"{source}: {dropped} of {len(rows)} questions give no pair (fewer than two answers with "
                      "different scores); left out", DroppedRowsWarning, stacklevel=2)  # fmt: skip
    if pairs.empty:
        raise InputError(f"{source}: no question has two answers with different scores")
    ranked = pd.DataFrame({
        "prompt": pairs["prompt_c"].to_numpy(), "chosen": pairs["answer_c"].to_numpy(),
        "rejected": pairs["answer_r"].to_numpy(), "chosen_score": pairs["score_c"].to_numpy(),
        "rejected_score": pairs["score_r"].to_numpy(),
    })  # fmt: skip
    if mode == "ranked":
        return ranked
    better = pd.DataFrame({"prompt": ranked["prompt"], "chosen": good + ranked["chosen"].astype(str),
                           "rejected": bad + ranked["chosen"].astype(str)})  # fmt: skip
    worse = pd.DataFrame({"prompt": ranked["prompt"], "chosen": bad + ranked["rejected"].astype(str),
                          "rejected": good + ranked["rejected"].astype(str)})  # fmt: skip
    # interleave: GOOD:A > BAD:A, then BAD:B > GOOD:B, pair by pair
    out = pd.concat([better, worse], keys=[0, 1]).swaplevel().sort_index(level=0, sort_remaining=True)
    return out.reset_index(drop=True)


def pretrain_preference_model(
    model,
    tokenizer,
    pmp_data,
    finetune_data,
    *,
    pmp: str = "binary",
    loss: str | dict[str, float] = "reward_bradley_terry",
    loss_options: dict[str, Any] | None = None,
    pmp_config: TrainConfig | None = None,
    config: TrainConfig | None = None,
    pmp_options: dict[str, Any] | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> tuple[TrainResult, TrainResult]:
    r"""Preference-model pre-training, then fine-tuning on the target preferences (Askell et al. 2021, §4).

    Stage 1 fits the reward model with :func:`~pairkit.train.train_reward_model` on PMP comparisons; stage 2
    continues from the weights stage 1 left (the same ``model`` object, updated in place) on ``finetune_data``.
    Both stages use the preference-model loss (Bradley–Terry by default),

    .. math::
        \mathcal L_{PM} = \log\big(1 + e^{\,r(x, y_{bad}) - r(x, y_{good})}\big).

    ``pmp_data``: voted answers (rows with ``answers``; made into pairs by :func:`pmp_pairs` with ``mode=pmp``,
    ``"binary"`` by default since the paper reports binary PMP transfers better than ranked, and ``pmp_options``
    such as ``score="given"``, ``pairs_per_question``) or comparisons already made (``prompt, chosen, rejected``
    rows, used as they are). ``finetune_data``: the target preference pairs (any
    :func:`~pairkit.train.to_pairs` format). ``pmp_config`` / ``config``: the two stages' options (each stage's
    ``output_dir`` gets its own checkpoints and ``metrics.jsonl``). The paper's other PMP sources (Reddit
    comments ranked by karma: use ``score="given"``; Wikipedia edits) have no builder here.

    Returns ``(pmp_result, finetune_result)``.
    """
    from pairkit.train.reward_model import train_reward_model

    if pmp not in ("binary", "ranked"):
        raise InputError(f"pmp must be 'binary' or 'ranked', got {pmp!r}")
    rows, _, _ = normalised_rows(pmp_data, _as_given)
    if rows and "answers" in rows[0]:
        rows = pmp_pairs(rows, mode=pmp, **dict(pmp_options or {}))
    elif pmp_options:
        raise InputError("pmp_options apply to voted answers (rows with 'answers'); pmp_data holds pairs already")
    first = train_reward_model(model, rows, tokenizer=tokenizer, loss=loss, loss_options=loss_options,
                               config=pmp_config, callback=callback)  # fmt: skip
    second = train_reward_model(model, finetune_data, tokenizer=tokenizer, loss=loss, loss_options=loss_options,
                                config=config, callback=callback)  # fmt: skip
    return first, second
