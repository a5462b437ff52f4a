"""Preference-model pre-training (PMP): pre-train a reward model on comparisons from voted answers, then fine-tune.

Askell et al. (2021), "A General Language Assistant as a Laboratory for Alignment", §4: a preference model is first
trained on large comparison data built from Stack Exchange answers ranked by votes (and from Reddit and Wikipedia
edits), then fine-tuned on the target preferences, which it learns with fewer samples. :func:`pmp_pairs` turns voted
answers into PMP pairs; :func:`stack_exchange_pairs`, :func:`reddit_pairs` and :func:`wikipedia_pairs` read the
paper's three sources from files with named columns (one answer, comment or edit per row);
:func:`pretrain_preference_model` runs the two stages with :func:`~pairkit.train.train_reward_model`, the second
starting from the weights the first left (``pairkit train pmp`` on the command line).
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

__all__ = ["PMP_SOURCES", "pmp_pairs", "pretrain_preference_model", "read_pmp_pairs", "reddit_pairs",
           "stack_exchange_pairs", "stack_exchange_scores", "wikipedia_pairs"]


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
    _check_pair_options(mode, pairs_per_question)
    if score not in ("stack_exchange", "given"):
        raise InputError(f"score must be 'stack_exchange' or 'given', got {score!r}")
    rows, _, source = normalised_rows(data, _as_given)
    if not rows:
        raise InputError(f"{source}: no voted questions")
    long = _voted_frame(rows, score, source)
    return _ranked_pairs(long, mode=mode, good=good, bad=bad, pairs_per_question=pairs_per_question, seed=seed,
                         source=source, unit="questions", entry="answer")  # fmt: skip


def _check_pair_options(mode: str, pairs_per_question: int | None) -> None:
    if mode not in ("binary", "ranked"):
        raise InputError(f"mode must be 'binary' or 'ranked', got {mode!r}")
    if pairs_per_question is not None:
        check_number("pairs_per_question", pairs_per_question, low=1, integer=True)


def _ranked_pairs(long: pd.DataFrame, *, mode, good, bad, pairs_per_question, seed, source, unit, entry):
    """Every pair of one group's entries with different scores, the higher-scored chosen, from a long frame (``q``:
    group, ``prompt``, ``i``: position in the group, ``answer``, ``score``), with counts of what gives no pair."""
    n_groups = long["q"].nunique()
    sizes = long.groupby("q").size()
    pairs = long.merge(long, on="q", suffixes=("_c", "_r"))
    pairs = pairs[pairs["score_c"] > pairs["score_r"]]
    same_text = (pairs["answer_c"] == pairs["answer_r"]).to_numpy()
    pairs = pairs[~same_text]
    if pairs_per_question is not None:
        rng = np.random.default_rng(seed)
        pairs = pairs.assign(_key=rng.random(len(pairs))).sort_values(["q", "_key"])
        pairs = pairs.groupby("q", sort=False).head(pairs_per_question).drop(columns="_key")
    pairs = pairs.sort_values(["q", "i_c", "i_r"]).reset_index(drop=True)
    ties = long.groupby(["q", "score"]).size()
    tied_pairs = int((ties * (ties - 1) // 2).sum())
    single = int((sizes < 2).sum())
    dropped = n_groups - pairs["q"].nunique()
    if dropped or tied_pairs or same_text.any():
        parts = [f"{dropped} of {n_groups} {unit} give no pair ({single} with a single {entry}, {dropped - single} "
                 f"whose {entry} scores all tie or whose texts repeat)"] if dropped else []  # fmt: skip
        if tied_pairs:
            parts.append(f"{tied_pairs} pairs with equal scores give no comparison")
        if same_text.any():
            parts.append(f"{int(same_text.sum())} pairs with different scores but the same text give none")
        warnings.warn(f"{source}: " + "; ".join(parts) + "; left out", DroppedRowsWarning, stacklevel=3)
    if pairs.empty:
        raise InputError(f"{source}: no {unit[:-1]} gives a pair (two {entry} texts with different scores)")
    ranked = pd.DataFrame({
        "prompt": pairs["prompt_c"].to_numpy(), "chosen": pairs["answer_c"].to_numpy(),
        "rejected": pairs["answer_r"].to_numpy(), "chosen_score": pairs["score_c"].to_numpy(),
        "rejected_score": pairs["score_r"].to_numpy(),
    })  # fmt: skip
    return ranked if mode == "ranked" else _binarised(ranked, good, bad)


def _binarised(ranked: pd.DataFrame, good: str, bad: str) -> pd.DataFrame:
    """A > B as two comparisons of one text with two labels: ``GOOD:A > BAD:A`` then ``BAD:B > GOOD:B``."""
    chosen, rejected = ranked["chosen"].astype(str), ranked["rejected"].astype(str)
    better = pd.DataFrame({"prompt": ranked["prompt"], "chosen": good + chosen, "rejected": bad + chosen})
    worse = pd.DataFrame({"prompt": ranked["prompt"], "chosen": bad + rejected, "rejected": good + rejected})
    # interleave pair by pair
    out = pd.concat([better, worse], keys=[0, 1]).swaplevel().sort_index(level=0, sort_remaining=True)
    return out.reset_index(drop=True)


def _table(data) -> tuple[pd.DataFrame, Any]:
    """A file (CSV/TSV, JSONL, JSON or Parquet, optionally gzipped: :func:`pairkit.data.read_table`) or a DataFrame,
    with the source that names a row as the user sees it."""
    from pairkit.data import read_table
    from pairkit.data._shapes import Source

    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True), Source("data", 1)
    frame, src = read_table(data)
    if frame.empty:
        raise InputError(f"{src.name}: no rows")
    return frame, src


def _require(frame: pd.DataFrame, src, **columns: str | None) -> None:
    missing = [f"{option}={name!r}" for option, name in columns.items() if name is not None and name not in frame]
    if missing:
        raise InputError(f"{src.name}: no column {', '.join(missing)}; its columns are {list(frame.columns)} (name "
                         "yours with the builder's column options, --column OPTION=NAME on the command line)")


def _bad_rows(src, column: str, bad: np.ndarray, values: pd.Series, problem: str) -> None:
    """Raise naming the first bad row, its value and how many rows share the problem."""
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        value = values.iloc[k]
        shown = "missing" if value is None or (isinstance(value, float) and value != value) else repr(value)[:60]
        raise InputError(f"{src.where(k, column)}: {problem}, got {shown} ({int(bad.sum())} of {len(bad)} rows)")


def _texts(frame: pd.DataFrame, src, column: str) -> pd.Series:
    col = frame[column].astype(object)
    if pd.api.types.infer_dtype(col, skipna=False) != "string":  # a missing value, a number, a JSON object, ...
        _bad_rows(src, column, ~col.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool), col, "expected text")
    _bad_rows(src, column, (col.str.strip() == "").to_numpy(dtype=bool), col, "empty text")
    return col


def _numbers(frame: pd.DataFrame, src, column: str) -> np.ndarray:
    col = frame[column]
    values = pd.to_numeric(col.astype(object).where(col.notna(), None), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan)
    _bad_rows(src, column, ~np.isfinite(values), col, "expected a finite number")
    return values


_TRUTH = {"true": True, "1": True, "1.0": True, "yes": True, "false": False, "0": False, "0.0": False, "no": False}


def _booleans(frame: pd.DataFrame, src, column: str) -> np.ndarray:
    codes, uniques = pd.factorize(frame[column].astype(object), use_na_sentinel=False)
    parsed = np.array([_TRUTH.get(str(u).strip().lower()) for u in uniques], dtype=object)[codes]
    _bad_rows(src, column, pd.isna(parsed), frame[column], "expected true/false (or 1/0, yes/no)")
    return parsed.astype(bool)


def _groups(frame: pd.DataFrame, src, key: str, prompt: pd.Series | None, prompt_column: str | None) -> np.ndarray:
    """Each row's group (question, parent comment) by ``key``; a group's context text must be the same in all rows."""
    col = frame[key].astype(object)
    _bad_rows(src, key, col.isna().to_numpy(), col, "missing id")
    codes = pd.factorize(col)[0]
    if prompt is not None and prompt_column != key:
        first = prompt.groupby(codes).transform("first")
        _bad_rows(src, prompt_column, (prompt != first).to_numpy(), prompt,
                  f"differs from the first row of the same {key!r}")  # fmt: skip
    return codes


def stack_exchange_pairs(
    data,
    *,
    question: str = "question",
    answer: str = "answer",
    upvotes: str = "upvotes",
    accepted: str | None = "accepted",
    question_id: str | None = None,
    mode: str = "binary",
    good: str = "GOOD: ",
    bad: str = "BAD: ",
    pairs_per_question: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    r"""PMP pairs from a Stack Exchange answers file, one answer per row (Askell et al. 2021, §4.1).

    ``data``: a CSV/TSV, JSONL, JSON or Parquet file (or a DataFrame) with the columns named by ``question`` (the
    question's text: the prompt), ``answer`` (the answer's text), ``upvotes`` (its net votes) and ``accepted``
    (true/false, 1/0, yes/no; ``None``: no acceptance data). Answers are grouped by ``question_id`` when given
    (e.g. a dump's ``ParentId``; every row of a question must then carry the same question text), else by the
    question text. Each answer is scored as the paper does (:func:`stack_exchange_scores`),

    .. math::
        s = \operatorname{round}\big(\log_2(1 + u)\big) + \mathbb 1[\text{accepted}] \quad (u \ge 0),
        \qquad s = -1 \quad (u < 0),

    and answers to the same question with different scores make a pair, the higher-scored one chosen
    (``mode="ranked"``), or its binarisation ``GOOD:A > BAD:A``, ``BAD:B > GOOD:B`` (``mode="binary"``, the
    default, which the paper found transfers better): see :func:`pmp_pairs`, which does the same from one row per
    question. Rows come out as :func:`~pairkit.train.train_reward_model` and :func:`pretrain_preference_model`
    take them (``prompt``, ``chosen``, ``rejected``).

    Nothing is dropped silently: questions with a single answer, questions whose answers all tie, the number of
    tied answer pairs and pairs of identical texts are counted in one :class:`~pairkit.errors.DroppedRowsWarning`.
    A missing column, a missing or empty text, non-numeric votes, a bad boolean or two accepted answers to one
    question raise :class:`~pairkit.errors.InputError` naming the file, row, column and value.

    >>> import pandas as pd
    >>> answers = pd.DataFrame({"question": ["Q", "Q"], "answer": ["long", "short"], "upvotes": [7, 0],
    ...                         "accepted": [False, True]})
    >>> pairs = stack_exchange_pairs(answers, mode="ranked")
    >>> pairs[["chosen", "rejected", "chosen_score", "rejected_score"]].values.tolist()
    [['long', 'short', 3.0, 1.0]]
    """
    _check_pair_options(mode, pairs_per_question)
    frame, src = _table(data)
    _require(frame, src, question=question, answer=answer, upvotes=upvotes, accepted=accepted,
             question_id=question_id)  # fmt: skip
    prompt, text = _texts(frame, src, question), _texts(frame, src, answer)
    votes = _numbers(frame, src, upvotes)
    acc = _booleans(frame, src, accepted) if accepted is not None else None
    codes = _groups(frame, src, question_id or question, prompt, question)
    if acc is not None:
        twice = pd.Series(acc).groupby(codes).cumsum().to_numpy() > 1
        _bad_rows(src, accepted, twice, frame[accepted], "a second accepted answer to the same question")
    long = pd.DataFrame({"q": codes, "prompt": prompt.to_numpy(), "i": np.arange(len(frame)),
                         "answer": text.to_numpy(), "score": stack_exchange_scores(votes, acc)})  # fmt: skip
    return _ranked_pairs(long, mode=mode, good=good, bad=bad, pairs_per_question=pairs_per_question, seed=seed,
                         source=src.name, unit="questions", entry="answer")  # fmt: skip


def reddit_pairs(
    data,
    *,
    parent: str = "parent_id",
    context: str | None = "parent_text",
    comment: str = "body",
    karma: str = "score",
    mode: str = "binary",
    good: str = "GOOD: ",
    bad: str = "BAD: ",
    pairs_per_question: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """PMP pairs from a Reddit comments file: sibling replies ranked by karma (Askell et al. 2021, §4.1).

    ``data``: a CSV/TSV, JSONL, JSON or Parquet file (or a DataFrame), one comment per row, with the columns named
    by ``parent`` (the id of the post or comment it replies to: replies with the same parent are siblings),
    ``comment`` (the reply's text), ``karma`` (its score, upvotes minus downvotes) and ``context`` (the parent's
    text, the same in every row of a parent: the prompt; ``None``: an empty prompt). Two siblings with different
    karma make a pair, the higher one chosen; ``mode``, ``good``/``bad``, ``pairs_per_question`` (here per parent)
    and ``seed`` as in :func:`stack_exchange_pairs`. Reading taken (the paper's §4.1 text could not be retrieved
    to check its Reddit filters): karma is compared as it is, the log transform being the one stated for Stack
    Exchange votes; equal karma gives no pair.

    Parents with a single reply, parents whose replies all tie, tied pairs and identical texts are counted in one
    :class:`~pairkit.errors.DroppedRowsWarning`; bad cells raise :class:`~pairkit.errors.InputError` naming the
    file, row, column and value.
    """
    _check_pair_options(mode, pairs_per_question)
    frame, src = _table(data)
    _require(frame, src, parent=parent, context=context, comment=comment, karma=karma)
    prompt = _texts(frame, src, context) if context is not None else pd.Series([""] * len(frame), dtype=object)
    text, score = _texts(frame, src, comment), _numbers(frame, src, karma)
    codes = _groups(frame, src, parent, prompt if context is not None else None, context)
    long = pd.DataFrame({"q": codes, "prompt": prompt.to_numpy(), "i": np.arange(len(frame)),
                         "answer": text.to_numpy(), "score": score})  # fmt: skip
    return _ranked_pairs(long, mode=mode, good=good, bad=bad, pairs_per_question=pairs_per_question, seed=seed,
                         source=src.name, unit="parents", entry="reply")  # fmt: skip


def wikipedia_pairs(
    data,
    *,
    before: str = "before",
    after: str = "after",
    vandalism: str | None = "vandalism",
    revert_comment: str | None = None,
    pattern: str = "vandal",
    context: str | None = "title",
    mode: str = "binary",
    good: str = "GOOD: ",
    bad: str = "BAD: ",
) -> pd.DataFrame:
    """PMP pairs from a Wikipedia edits file: the text before an edit reverted as vandalism is preferred to the text
    after it (Askell et al. 2021, §4.1).

    ``data``: a CSV/TSV, JSONL, JSON or Parquet file (or a DataFrame), one edit per row, with the columns named by
    ``before`` and ``after`` (the text before and after the edit: the changed passage or the whole revision),
    ``context`` (e.g. the article title: the prompt; ``None``: an empty prompt) and what says the edit was reverted
    as vandalism: either ``vandalism`` (true/false, as in a labelled corpus such as PAN-WVC) or ``revert_comment``
    (the summary of the edit that reverted this one, empty when none did), which counts when it matches the
    regular expression ``pattern`` (case-insensitive; used instead of ``vandalism`` when given).

    Reading taken (the paper's §4.1 text could not be retrieved to check the details): Wikipedia comparisons come
    from edits reverted as vandalism, each giving one pair, the revision before the edit (the text the revert
    restored) chosen over the revision after it. Edits not
    reverted as vandalism give no pair (the paper uses no others), nor do edits that left the text unchanged; both
    are counted in a :class:`~pairkit.errors.DroppedRowsWarning`. ``mode="binary"`` (the default) turns each pair
    into ``GOOD:before > BAD:before``, ``BAD:after > GOOD:after`` as :func:`pmp_pairs` does; ``"ranked"`` keeps
    ``prompt, chosen, rejected``.
    """
    import re

    _check_pair_options(mode, None)
    frame, src = _table(data)
    flag_column = revert_comment if revert_comment is not None else vandalism
    if flag_column is None:
        raise InputError("wikipedia_pairs needs the column saying an edit was reverted as vandalism: vandalism= "
                         "(true/false) or revert_comment= (the reverting edit's summary)")  # fmt: skip
    _require(frame, src, before=before, after=after, context=context,
             **{"revert_comment" if revert_comment is not None else "vandalism": flag_column})  # fmt: skip
    old, new = _texts(frame, src, before), _texts(frame, src, after)
    prompt = _texts(frame, src, context) if context is not None else pd.Series([""] * len(frame), dtype=object)
    if revert_comment is not None:
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise InputError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
        comments = frame[revert_comment].astype(object)
        flagged = comments.where(comments.notna(), "").astype(str).str.contains(regex).to_numpy(dtype=bool)
    else:
        flagged = _booleans(frame, src, vandalism)
    unchanged = flagged & (old == new).to_numpy()
    keep = flagged & ~unchanged
    n_other, n_same = int((~flagged).sum()), int(unchanged.sum())
    if n_other or n_same:
        what = f"{revert_comment!r} does not match {pattern!r}" if revert_comment else f"{vandalism!r} is false"
        warnings.warn(f"{src.name}: {n_other} of {len(frame)} edits were not reverted as vandalism ({what}) "
                      f"and {n_same} left the text unchanged: they give no pair; left out", DroppedRowsWarning,
                      stacklevel=2)  # fmt: skip
    if not keep.any():
        raise InputError(f"{src.name}: no edit was reverted as vandalism and changed the text; no pairs")
    ranked = pd.DataFrame({"prompt": prompt.to_numpy()[keep], "chosen": old.to_numpy()[keep],
                           "rejected": new.to_numpy()[keep]})  # fmt: skip
    return ranked if mode == "ranked" else _binarised(ranked, good, bad)


_RANKED = ("mode", "good", "bad", "pairs_per_question", "seed")
# each source's builder, its column options and its other options
_SOURCES: dict[str, tuple[Callable[..., pd.DataFrame], tuple[str, ...], tuple[str, ...]]] = {
    "stackexchange": (stack_exchange_pairs, ("question", "answer", "upvotes", "accepted", "question_id"), _RANKED),
    "reddit": (reddit_pairs, ("parent", "context", "comment", "karma"), _RANKED),
    "wikipedia": (wikipedia_pairs, ("before", "after", "vandalism", "revert_comment", "context"),
                  ("mode", "good", "bad", "pattern")),
}  # fmt: skip
PMP_SOURCES = tuple(_SOURCES)
"""The sources :func:`read_pmp_pairs` (and ``pairkit train pmp --source``) builds PMP pairs from."""


def read_pmp_pairs(
    data, source: str, *, columns: dict[str, str | None] | None = None, **options: Any
) -> pd.DataFrame:
    """PMP pairs from a file of one of the paper's sources: :func:`stack_exchange_pairs` (``"stackexchange"``),
    :func:`reddit_pairs` (``"reddit"``) or :func:`wikipedia_pairs` (``"wikipedia"``).

    ``columns`` maps the builder's column options to the file's column names (``{"answer": "Body"}``; ``None`` or
    ``""`` for an optional column the file lacks, e.g. ``accepted``); ``options`` are the builder's other options
    (``mode``, ``pairs_per_question``, ``seed``, ``pattern``, ...). An unknown source or column option raises
    :class:`~pairkit.errors.InputError` listing the valid ones.
    """
    if source not in _SOURCES:
        raise InputError(f"unknown PMP source {source!r}; available: {', '.join(PMP_SOURCES)}")
    builder, column_options, other_options = _SOURCES[source]
    named = {k: (v or None) for k, v in (columns or {}).items()}
    unknown = sorted(set(named) - set(column_options))
    if unknown:
        raise InputError(f"{source}: unknown column option {unknown[0]!r}; its columns are {', '.join(column_options)}")
    extra = sorted(k for k, v in options.items() if k not in other_options and v is not None)
    if extra:
        raise InputError(f"{source}: option {extra[0]!r} does not apply (its options: {', '.join(other_options)})")
    return builder(data, **named, **{k: v for k, v in options.items() if k in other_options})


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
    ``output_dir`` gets its own checkpoints and ``metrics.jsonl``). Pairs from files of the paper's three sources
    (Stack Exchange answers, Reddit replies, Wikipedia edits): :func:`read_pmp_pairs`.

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
