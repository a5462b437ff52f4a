"""Preference pairs built by generation: the construction rules of the papers that need a model to write.

Each rule takes a *sampler* of the online loop (:mod:`pairkit.train.sampling`: :class:`~pairkit.train.HFSampler`
over a transformers causal LM, a vLLM engine or an OpenAI-compatible server — anything with
``sample(prompts, *, k, max_new_tokens, temperature, top_p, seed)``), makes one batched, seeded call per
generation step, and returns rows for :func:`~pairkit.train.train_preference` (``{prompt, chosen, rejected}`` plus
what the rule knows). Rows a rule cannot use (an empty or unchanged generation, a tie) are left out with a
:class:`~pairkit.errors.PairkitWarning` giving their count, never silently.

* :func:`rise_self_edits` — RISE's error-injected self-edits of correct solutions (pairs for ``loss="rise"``).
* :func:`bmc_pseudo_winners` — BMC's pseudo-winners: the loser improved with the winner as a guide (``"bmc"``).
* :func:`dstc_self_tests` — DSTC's self-generated tests and solutions, paired by the tests they pass.
* :func:`tpo_topic_rewrites` — TPO's topic-level rewrites: one sentence of a response replaced by its best and
  worst sampled rewrite.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pairkit.errors import InputError, PairkitWarning
from pairkit.train._chat import prompt_text

__all__ = [
    "BMC_PROMPT",
    "DSTC_SOLUTION_PROMPT",
    "DSTC_TEST_PROMPT",
    "RISE_ERRORS",
    "RISE_PROMPT",
    "SPO_KEY_COLUMNS",
    "TPO_PROMPT",
    "bmc_pseudo_winners",
    "dstc_self_tests",
    "edited_fraction",
    "rise_self_edits",
    "spo_degraded_samples",
    "tpo_topic_rewrites",
]

RISE_PROMPT = (
    "{prompt}\n\nCorrect solution:\n{solution}\n\nRewrite the solution, changing only a few tokens so that it "
    "contains one subtle {error} error and is otherwise the same.\n\nEdited solution:\n"
)
"""The self-editing instruction of :func:`rise_self_edits` (``{prompt}``, ``{solution}``, ``{error}``)."""

RISE_ERRORS = ("calculation", "substitution", "omission")
"""The error types :func:`rise_self_edits` cycles through (RISE injects calculation and substitution errors)."""

BMC_PROMPT = (
    "{prompt}\n\nReference answer:\n{chosen}\n\nAnswer to improve:\n{rejected}\n\nImprove the answer to improve, "
    "making as few changes as possible and using the reference as a guide.\n\nImproved answer:\n"
)
"""The targeted-modification instruction of :func:`bmc_pseudo_winners`."""

DSTC_SOLUTION_PROMPT = "{prompt}\n\nWrite a solution.\n\nSolution:\n"
"""The solution prompt of :func:`dstc_self_tests`."""
DSTC_TEST_PROMPT = "{prompt}\n\nWrite one test case (an assertion) for a solution of this problem.\n\nTest:\n"
"""The test prompt of :func:`dstc_self_tests`."""

TPO_PROMPT = "{prompt}\n\n{before}\n\nRewrite the next sentence: {sentence}\n\nRewritten sentence:\n"
"""The topic-level rewrite instruction of :func:`tpo_topic_rewrites` (the response up to the sentence as context)."""


def edited_fraction(original: str, edited: str) -> float:
    """Fraction of the original's words that a word-level alignment (``difflib``) replaces or deletes."""
    a, b = original.split(), edited.split()
    if not a:
        return 1.0
    same = sum(block.size for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return (len(a) - same) / len(a)


def _sample(sampler, prompts, *, k, max_new_tokens, temperature, top_p, seed) -> list[list[str]]:
    if not callable(getattr(sampler, "sample", None)):
        raise InputError(f"sampler must have sample(prompts, *, k, ...) (see pairkit.train.sampling), got {sampler!r}")
    out = sampler.sample(list(prompts), k=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                         seed=seed)  # fmt: skip
    if len(out) != len(prompts) or any(len(x) != k for x in out):
        raise InputError(f"the sampler returned {[len(x) for x in out]} samples for {len(prompts)} prompts; "
                         f"expected {k} each")  # fmt: skip
    return [[s.strip() for s in x] for x in out]


def _field(row: dict, names: Sequence[str], i: int, rule: str) -> str:
    for n in names:
        if isinstance(row.get(n), str) and row[n].strip():
            return row[n].strip()
    raise InputError(f"{rule}: row {i + 1} needs a non-empty {' or '.join(map(repr, names))}")


def _dropped(rule: str, n_bad: int, n: int, why: str) -> None:
    if n_bad:
        warnings.warn(f"{rule}: left out {n_bad} of {n} rows ({why})", PairkitWarning, stacklevel=3)


def rise_self_edits(
    sampler,
    rows: Sequence[dict[str, Any]],
    *,
    errors: Sequence[str] = RISE_ERRORS,
    max_edit_fraction: float = 0.3,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """RISE: the model injects a subtle error into its own correct solution; (correct, edited) is the pair.

    .. math::

        y^- \\sim \\pi(\\cdot \\mid \\text{edit}(x, y^+, e)),\\qquad
        \\text{keep if } 0 < \\text{edited}(y^+, y^-) \\le \\rho

    Xu et al. (2025), "Subtle Errors in Reasoning: Preference Learning via Error-injected Self-editing". Rows:
    ``{prompt, solution}`` (or ``chosen``) with a correct solution; the error type cycles through ``errors`` (the
    paper's include calculation errors and wrong substitutions). Edits that change nothing or more than
    ``max_edit_fraction`` of the words (:func:`edited_fraction`) are left out, with a warning. Returns
    ``{prompt, chosen, rejected, error, edited_fraction}`` rows, for ``loss="rise"``.
    """
    if not 0 < max_edit_fraction <= 1:
        raise InputError(f"max_edit_fraction must be in (0, 1], got {max_edit_fraction}")
    if not errors:
        raise InputError("errors must name at least one error type")
    prompts, sols, kinds = [], [], []
    for i, row in enumerate(rows):
        p = prompt_text(row.get("prompt", ""))
        s = _field(row, ("solution", "chosen"), i, "rise_self_edits")
        e = errors[i % len(errors)]
        prompts.append(RISE_PROMPT.format(prompt=p, solution=s, error=e))
        sols.append((p, s))
        kinds.append(e)
    edits = _sample(sampler, prompts, k=1, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    seed=seed)  # fmt: skip
    out = []
    for (p, s), e, (edit,) in zip(sols, kinds, edits):
        frac = edited_fraction(s, edit)
        if edit and edit != s and frac <= max_edit_fraction:
            out.append({"prompt": p, "chosen": s, "rejected": edit, "error": e, "edited_fraction": frac})
    _dropped("rise_self_edits", len(rows) - len(out), len(rows), f"edit empty, unchanged or > {max_edit_fraction}")
    return out


def bmc_pseudo_winners(
    sampler,
    rows: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """BMC's bridging phase: the loser rewritten into a pseudo-winner with the winner as reference.

    .. math::

        \\tilde y_w \\sim \\pi(\\cdot \\mid \\text{improve}(x, y_l; \\text{ref } y_w)),\\qquad
        \\text{pair } (\\tilde y_w \\succ y_l)

    Jiang et al. (2025), "Bridging and Modeling Correlations in Pairwise Data for Direct Preference
    Optimization": the pseudo-winner differs from the loser in the tokens that matter, which the ``bmc`` loss
    (:func:`pairkit.losses.bmc_loss`) then up-weights. Rows: ``{prompt, chosen, rejected}``. A rewrite that is
    empty or equal to the loser is left out (warned). Returns ``{prompt, chosen: pseudo-winner, rejected,
    reference}``.
    """
    prompts, items = [], []
    for i, row in enumerate(rows):
        p = prompt_text(row.get("prompt", ""))
        w = _field(row, ("chosen",), i, "bmc_pseudo_winners")
        loser = _field(row, ("rejected",), i, "bmc_pseudo_winners")
        prompts.append(BMC_PROMPT.format(prompt=p, chosen=w, rejected=loser))
        items.append((p, w, loser))
    rewrites = _sample(sampler, prompts, k=1, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       seed=seed)  # fmt: skip
    out = [
        {"prompt": p, "chosen": r, "rejected": loser, "reference": w}
        for (p, w, loser), (r,) in zip(items, rewrites)
        if r and r != loser
    ]
    _dropped("bmc_pseudo_winners", len(rows) - len(out), len(rows), "rewrite empty or equal to the loser")
    return out


def dstc_self_tests(
    sampler,
    prompts: Sequence[Any],
    run: Callable[[str, str], bool],
    *,
    solutions: int = 4,
    tests: int = 4,
    max_new_tokens: int = 256,
    temperature: float = 0.8,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """DSTC: the model writes solutions and tests; solutions are paired by how many self-written tests they pass.

    .. math::

        P_{ij} = \\mathrm{run}(s_i, t_j),\\quad c_i = \\sum_j P_{ij},\\qquad
        (s_{\\arg\\max c} \\succ s_{\\arg\\min c})\\ \\text{if}\\ \\max c > \\min c

    Liu et al. (2024), "DSTC: Direct Preference Learning with Only Self-Generated Tests and Code to Improve Code
    LMs" (minimax selection over the pass matrix). ``run(solution, test) -> bool`` executes one test against one
    solution — sandboxing it is the caller's. Reading taken: only tests that at least one solution passes count
    (a test nothing passes is likely wrong itself); prompts whose solutions all pass equally many are left out
    (warned). Returns ``{prompt, chosen, rejected, chosen_passed, rejected_passed, tests}``.
    """
    if solutions < 2 or tests < 1:
        raise InputError(f"need solutions >= 2 and tests >= 1, got {solutions} and {tests}")
    texts = [prompt_text(p) for p in prompts]
    sols = _sample(sampler, [DSTC_SOLUTION_PROMPT.format(prompt=t) for t in texts], k=solutions,
                   max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)  # fmt: skip
    tsts = _sample(sampler, [DSTC_TEST_PROMPT.format(prompt=t) for t in texts], k=tests,
                   max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed + 1)  # fmt: skip
    out = []
    for t, ss, ts in zip(texts, sols, tsts):
        passed = np.array([[bool(run(s, c)) for c in ts] for s in ss], dtype=bool)
        valid = passed.any(0)
        counts = passed[:, valid].sum(1)
        if counts.max() > counts.min():
            hi, lo = int(np.argmax(counts)), int(np.argmin(counts))
            out.append({"prompt": t, "chosen": ss[hi], "rejected": ss[lo], "chosen_passed": int(counts[hi]),
                        "rejected_passed": int(counts[lo]), "tests": [c for c, v in zip(ts, valid) if v]})  # fmt: skip
    _dropped("dstc_self_tests", len(texts) - len(out), len(texts), "every solution passed as many tests")
    return out


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def tpo_topic_rewrites(
    sampler,
    rows: Sequence[dict[str, Any]],
    score: Callable[[str, str], float],
    *,
    k: int = 4,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """TPO: every topic (sentence) of a response overwritten by its best alternative (chosen) and worst (rejected).

    .. math::

        r_{t,1..k} \\sim \\pi(\\cdot \\mid x, y_{<t}, y_t),\\qquad
        y^{+}_t = r_{t,\\arg\\max_j \\mathrm{score}(x, r_{t,j})},\\quad
        y^{-}_t = r_{t,\\arg\\min_j \\mathrm{score}(x, r_{t,j})}

    He et al. (2024), "A Topic-level Self-Correctional Approach to Mitigate Hallucinations in MLLMs" (Topic-level
    Preference Overwriting): the model's own alternatives for each topic replace it, so the pair contrasts the
    topics' content and nothing else. Reading taken: the response's sentences are the topics, the original
    sentence is one of the candidates, and a topic whose candidates all score the same keeps the original on both
    sides. One batched sampling call covers every sentence of every row. Rows: ``{prompt, response}`` (or
    ``chosen``); ``score(prompt, sentence) -> float`` (a judge, a reward model or a checker). Rows whose two
    sides come out equal are left out (warned). Returns ``{prompt, chosen, rejected, topics_changed}``.
    """
    if k < 1:
        raise InputError(f"k must be >= 1 rewrite per topic, got {k}")
    items, prompts = [], []
    for i, row in enumerate(rows):
        p = prompt_text(row.get("prompt", ""))
        sents = [s for s in _SENTENCE.split(_field(row, ("response", "chosen"), i, "tpo_topic_rewrites")) if s]
        for t, sent in enumerate(sents):
            items.append((i, p, sent))
            prompts.append(TPO_PROMPT.format(prompt=p, before=" ".join(sents[:t]), sentence=sent))
    rewrites = _sample(sampler, prompts, k=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       seed=seed)  # fmt: skip
    sides: dict[int, tuple[str, list[str], list[str], int]] = {}
    for (i, p, sent), rs in zip(items, rewrites):
        cands = [sent, *(r for r in rs if r)]
        sc = np.array([float(score(p, c)) for c in cands])
        hi, lo = (cands[int(np.argmax(sc))], cands[int(np.argmin(sc))]) if sc.max() > sc.min() else (sent, sent)
        _, pos, neg, changed = sides.get(i, (p, [], [], 0))
        sides[i] = (p, [*pos, hi], [*neg, lo], changed + (hi != lo))
    out = [
        {"prompt": p, "chosen": " ".join(pos), "rejected": " ".join(neg), "topics_changed": changed}
        for _, (p, pos, neg, changed) in sorted(sides.items())
        if changed
    ]
    _dropped("tpo_topic_rewrites", len(rows) - len(out), len(rows), "no topic's candidates differed in score")
    return out


SPO_KEY_COLUMNS = ("chosen_key_content", "rejected_key_content")
"""Data columns with a response's key content (lists of substrings of it) from which SPO's degraded samples are made."""


def spo_degraded_samples(pairs, raw, seed: int, source: str = "data") -> tuple[list[tuple[str, str, int]], int]:
    """SPO's self-supervised samples, one per pair: (prompt, degraded response, degree class), and the class count.

    .. math::

        k = s\\,D + j,\\qquad s \\in \\{0\\ (\\text{chosen}), 1\\ (\\text{rejected})\\},\\quad
        j \\sim \\mathcal{U}\\{0, \\dots, |K_s|\\},\\quad D = 1 + \\max_{i, s} |K^{(i)}_s|

    Li et al. (2024), "Self-supervised Preference Optimization: Enhance Your Language Model with Preference Degree
    Awareness": key content :math:`K_s` of a response (the ``chosen_key_content`` / ``rejected_key_content``
    columns, lists of substrings of the response, e.g. extracted beforehand by an LLM as in the paper) is removed
    to different degrees, and a classifier must tell how much was removed from which response. Per pair a side
    :math:`s` with key content is drawn, then :math:`j` of its key spans (a uniformly drawn subset of that size)
    are cut out of the response (first occurrence each). Reading taken: one sample per pair, drawn once before
    training from ``numpy.random.default_rng([seed, 16])``; chosen- and rejected-derived samples are separate
    classes, so there are :math:`2D` classes. A listed span that does not occur in its response, or a row without
    key content while others have it, raises :class:`~pairkit.errors.InputError` naming the row and column.

    Args:
        pairs: rows with ``prompt``, ``chosen``, ``rejected`` (and ``rejected_prompt`` where it differs).
        raw: the rows with the key-content columns, aligned with ``pairs`` (may be the same list).
        seed: seed of the draws; the trainer passes ``TrainConfig.seed``.
        source: the data's name in error messages.
    """
    rng = np.random.default_rng([seed, 16])
    keys = []
    for i, (p, r) in enumerate(zip(pairs, raw)):
        sides = {}
        for side, column in enumerate(SPO_KEY_COLUMNS):
            spans = r.get(column)
            if spans is None:
                continue
            if isinstance(spans, str) or not all(isinstance(x, str) and x for x in spans):
                raise InputError(f"{source}, row {i + 1}, column {column!r}: expected a list of non-empty strings, "
                                 f"got {spans!r}")  # fmt: skip
            response = p["chosen" if side == 0 else "rejected"]
            missing = [x for x in spans if x not in response]
            if missing:
                raise InputError(f"{source}, row {i + 1}, column {column!r}: {missing[0]!r} does not occur in the "
                                 f"{'chosen' if side == 0 else 'rejected'} response")  # fmt: skip
            sides[side] = list(spans)
        if not sides:
            raise InputError(f"{source}, row {i + 1}: SPO's degraded samples need a {SPO_KEY_COLUMNS[0]!r} or "
                             f"{SPO_KEY_COLUMNS[1]!r} column in every row once one row has it")  # fmt: skip
        keys.append(sides)
    degrees = 1 + max(len(v) for sides in keys for v in sides.values())
    samples = []
    for p, sides in zip(pairs, keys):
        side = int(rng.choice(sorted(sides)))
        spans = sides[side]
        j = int(rng.integers(0, len(spans) + 1))
        text = p["chosen" if side == 0 else "rejected"]
        for x in (spans[k] for k in sorted(rng.choice(len(spans), size=j, replace=False))):
            text = text.replace(x, "", 1)
        samples.append((p.get("rejected_prompt", p["prompt"]) if side else p["prompt"], text, side * degrees + j))
    return samples, 2 * degrees
