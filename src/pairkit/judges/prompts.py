"""Prompt templates for pairwise LLM judging and robust verdict parsing.

The templates follow the structure of MT-Bench's pairwise judge (Zheng et al. 2023, "Judging LLM-as-a-judge
with MT-Bench and Chatbot Arena"): a system instruction, the question, both answers between markers, and a
final verdict in double brackets. The default, ``"pairwise_graded"``, asks for the five levels ``[[A>>B]]``,
``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]`` (as WildBench and Arena-Hard do), so that graded scales can tell
a slight win from a clear one; ``"pairwise"`` asks for ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). The
reference-guided variants add a reference answer. The wording is pairkit's own; bump ``version`` when it
changes (it is part of the cache key).

:func:`parse_verdict` reads the verdict formats judges actually produce: ``[[A]]``/``[[B]]``/``[[C]]``,
Arena-Hard's five levels ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``, WildBench's ``A++``,
``A+``, ``A=B``, ``B+``, ``B++``, LLMBar/RewardBench's ``Output (a)``/``Output (b)`` and JSON objects such as
``{"winner": "A"}``; the last verdict in the text wins (judges reason first, decide last).

A :class:`VerdictScale` says what each level is worth: the score of the answer shown first and how many games
the verdict counts as. ``"graded"`` (the default) follows WildBench's WB-Reward (Lin et al. 2024, "WildBench:
benchmarking LLMs with challenging tasks from real users in the wild"): much better +1, slightly better +0.5, tie
0, i.e. scores 1, 0.75, 0.5, 0.25, 0 — so that the length rule, which turns a *slight* win by a much longer answer
into a tie, can tell a slight win from a clear one. ``"arena_hard"`` follows Arena-Hard-Auto (Li et al. 2024,
"From crowdsourced data to high-quality benchmarks: Arena-Hard and BenchBuilder pipeline"): a win is a win, and a
strong verdict (``A>>B``) counts as three games. ``"binary"`` makes every win a plain win.

:func:`verdict_distribution` reads the probability of every verdict from the log-probs of a multi-token verdict
(``[[``, ``A``, ``=``, ``B``, ``]]``), so that ``[[A=B]]`` is a tie and not a near-certain ``A``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pairkit.errors import InputError

__all__ = [
    "TEMPLATES",
    "VERDICT_SCALES",
    "PromptTemplate",
    "VerdictScale",
    "parse_verdict",
    "verdict_distribution",
    "verdict_probabilities",
]


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt with ``{question}``, ``{answer_a}``, ``{answer_b}`` (and ``{reference}``) fields.

    >>> from pairkit.judges import PromptTemplate
    >>> user = 'Q: {question} A: {answer_a} B: {answer_b} Verdict?'
    >>> template = PromptTemplate('short', '1', 'You compare answers.', user)
    >>> template.name, '{answer_a}' in template.user
    ('short', True)
    """

    name: str
    version: str
    system: str
    user: str

    @property
    def needs_reference(self) -> bool:
        return "{reference}" in self.user

    def messages(self, question: str, first: str, second: str, reference: str | None = None) -> list[dict]:
        fields = {"question": question, "answer_a": first, "answer_b": second, "reference": reference or ""}
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user.format(**fields)}]


_VERDICT_RULE = (
    'After your explanation, give your final verdict in exactly this form: "[[A]]" if assistant A is better, '
    '"[[B]]" if assistant B is better, or "[[C]]" if they are equally good.'
)

_SYSTEM = (
    "You are a fair and careful judge. Compare the two AI assistants' answers to the user's question below "
    "and decide which one answers it better. Weigh how helpful, correct, relevant, deep and clear each answer "
    "is. The order in which the answers appear must not influence you, and neither must their length or the "
    "assistants' names. Explain your comparison briefly and objectively first. " + _VERDICT_RULE
)

_SYSTEM_REFERENCE = (
    "You are a fair and careful judge. Compare the two AI assistants' answers to the user's question below, "
    "using the reference answer to check correctness: first find the mistakes in each answer by comparing it "
    "with the reference, then decide which answer is better. The order of the answers, their length and the "
    "assistants' names must not influence you. Explain briefly first. " + _VERDICT_RULE
)

_GRADED_RULE = (
    'After your explanation, give your final verdict in exactly one of these forms: "[[A>>B]]" if assistant A is '
    'much better, "[[A>B]]" if assistant A is slightly better, "[[A=B]]" if they are equally good, "[[B>A]]" if '
    'assistant B is slightly better, or "[[B>>A]]" if assistant B is much better.'
)

_SYSTEM_GRADED = _SYSTEM.replace(_VERDICT_RULE, _GRADED_RULE)
_SYSTEM_REFERENCE_GRADED = _SYSTEM_REFERENCE.replace(_VERDICT_RULE, _GRADED_RULE)

_USER = (
    "[User Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

_USER_REFERENCE = (
    "[User Question]\n{question}\n\n[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

TEMPLATES: dict[str, PromptTemplate] = {
    "pairwise_graded": PromptTemplate("pairwise_graded", "pairwise-graded-v1", _SYSTEM_GRADED, _USER),
    "pairwise_graded_reference": PromptTemplate(
        "pairwise_graded_reference", "pairwise-graded-reference-v1", _SYSTEM_REFERENCE_GRADED, _USER_REFERENCE
    ),
    "pairwise": PromptTemplate("pairwise", "pairwise-v1", _SYSTEM, _USER),
    "pairwise_reference": PromptTemplate(
        "pairwise_reference", "pairwise-reference-v1", _SYSTEM_REFERENCE, _USER_REFERENCE
    ),
}
"""Judge prompts by name. ``"pairwise_graded"`` (the default of the judges) asks for the five levels
``[[A>>B]]`` … ``[[B>>A]]`` that the ``"graded"`` and ``"arena_hard"`` scales tell apart (WildBench's WB-Reward and
Arena-Hard ask for these levels); ``"pairwise"`` asks for MT-Bench's ``[[A]]``/``[[B]]``/``[[C]]``. The
``_reference`` variants show a reference answer."""

GRADED = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
_TIES = frozenset({"tie", "A=B", "B=A", "C", "TIE"})
_PLAIN = {"A": "A>B", "B": "B>A"}  # a plain win is scored like a clear win: A=1, B=0 on every scale


@dataclass(frozen=True)
class VerdictScale:
    """What each verdict is worth: ``scores[label]`` = score of the answer shown first (1 win, ½ tie, 0 loss),
    ``weights[label]`` = how many games it counts as. Labels are the five levels ``A>>B``, ``A>B``, ``A=B``,
    ``B>A``, ``B>>A``; plain ``A``/``B`` verdicts score 1/0 with weight 1, ties ½.

    The probability form of a verdict (what :class:`~pairkit.judges.Judgment` stores) is ``p_first = score``,
    ``p_tie = 0`` for a non-tie level and ``p_tie = 1`` for a tie, so ``Judgment.score`` is the level's score.

    >>> from pairkit.judges import VerdictScale
    >>> scale = VerdictScale('lenient', {'A>>B': 1.0, 'A>B': 1.0, 'A=B': 0.5, 'B>A': 0.0, 'B>>A': 0.0})
    >>> scale.scores['A>B'], scale.name
    (1.0, 'lenient')
    """

    name: str
    scores: Mapping[str, float]
    weights: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(GRADED, 1.0))

    def __post_init__(self) -> None:
        for label in GRADED:
            score, weight = self.scores.get(label), self.weights.get(label, 1.0)
            if score is None or not 0 <= score <= 1 or not (math.isfinite(weight) and weight > 0):
                raise InputError(
                    f"verdict scale {self.name!r}: {label} needs a score in [0, 1] and a finite weight > 0, "
                    f"got score {score!r}, weight {weight!r}"
                )
        if self.scores["A=B"] != 0.5:
            raise InputError(f"verdict scale {self.name!r}: a tie (A=B) must score 0.5, got {self.scores['A=B']!r}")

    def level(self, label: str) -> str:
        return "A=B" if label in _TIES else _PLAIN.get(label, label)

    def probabilities(self, label: str) -> tuple[float, float]:
        """(P(first better), P(tie)) of a parsed verdict: (score, 0) for a win or loss, (0, 1) for a tie."""
        level = self.level(label)
        if level == "A=B":
            return 0.0, 1.0
        if label in _PLAIN:
            return (1.0, 0.0) if label == "A" else (0.0, 0.0)
        return float(self.scores[level]), 0.0

    def weight(self, label: str) -> float:
        return 1.0 if label in _PLAIN else float(self.weights.get(self.level(label), 1.0))

    def expect(self, distribution: Mapping[str, float]) -> tuple[float, float, float]:
        """(P(first better), P(tie), expected weight) of a distribution over verdict labels."""
        p_first = p_tie = weight = 0.0
        for label, p in distribution.items():
            first, tie = self.probabilities(label)
            p_first, p_tie, weight = p_first + p * first, p_tie + p * tie, weight + p * self.weight(label)
        return p_first, p_tie, weight

    def identity(self) -> dict:
        return {"scale": self.name, "scores": dict(self.scores), "weights": dict(self.weights)}


VERDICT_SCALES: dict[str, VerdictScale] = {
    "graded": VerdictScale("graded", {"A>>B": 1.0, "A>B": 0.75, "A=B": 0.5, "B>A": 0.25, "B>>A": 0.0}),
    "arena_hard": VerdictScale(
        "arena_hard",
        {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0},
        {"A>>B": 3.0, "A>B": 1.0, "A=B": 1.0, "B>A": 1.0, "B>>A": 3.0},
    ),
    "binary": VerdictScale("binary", {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}),
}


def verdict_scale(scale: str | VerdictScale) -> VerdictScale:
    """A :data:`VERDICT_SCALES` name or a :class:`VerdictScale`."""
    if isinstance(scale, VerdictScale):
        return scale
    if scale not in VERDICT_SCALES:
        raise InputError(f"verdicts must be one of {', '.join(map(repr, VERDICT_SCALES))}, got {scale!r}")
    return VERDICT_SCALES[scale]


# Labels as written: the five levels, WildBench's A++ … B++, A<B forms, and plain A / B / C / tie.
_LEVEL = {
    "A>>B": "A>>B", "A>B": "A>B", "A=B": "A=B", "B>A": "B>A", "B>>A": "B>>A", "B=A": "A=B",
    "B<<A": "A>>B", "B<A": "A>B", "A<B": "B>A", "A<<B": "B>>A",
    "A++": "A>>B", "A+": "A>B", "B+": "B>A", "B++": "B>>A",
    "A": "A", "B": "B", "C": "C", "TIE": "TIE",
}  # fmt: skip
_VERDICT = (
    r"\[\[\s*(A\s*>>\s*B|A\s*>\s*B|A\s*=\s*B|B\s*=\s*A|B\s*>\s*A|B\s*>>\s*A|A\s*<<\s*B|A\s*<\s*B|B\s*<<\s*A|B\s*<\s*A"
    r"|A\s*\+\+|A\s*\+|B\s*\+\+|B\s*\+|A|B|C|tie)\s*"
)
_BRACKETS = re.compile(_VERDICT + r"\]\]", re.I)
_UNCLOSED = re.compile(_VERDICT + "$", re.I)  # a reply cut off right after the verdict
_OUTPUT = re.compile(r"Output\s*\(\s*([ab])\s*\)", re.I)
_JSON = re.compile(r"\{[^{}]*\}")
_JSON_KEYS = ("winner", "verdict", "preference", "better", "choice", "answer")


def _normalise(value: object) -> str | None:
    text = re.sub(r"\s+", "", str(value)).upper().strip("[]\"'")
    text = {
        "1": "A",
        "2": "B",
        "OUTPUT(A)": "A",
        "OUTPUT(B)": "B",
        "ASSISTANTA": "A",
        "ASSISTANTB": "B",
        "MODEL_A": "A",
        "MODEL_B": "B",
        "TIE": "TIE",
        "DRAW": "TIE",
        "EQUAL": "TIE",
    }.get(text, text)
    return _LEVEL.get(text)


def parse_verdict(text: str) -> str | None:
    """The last verdict in a judge's reply: ``"A"``, ``"B"``, ``"tie"`` or a level ``"A>>B"``, ``"A>B"``,
    ``"B>A"``, ``"B>>A"`` (WildBench's ``A++`` is ``A>>B``; ``A=B`` is ``"tie"``).

    ``None`` if the text holds no recognisable verdict.

    >>> from pairkit.judges import parse_verdict
    >>> parse_verdict('The first answer is better. [[A>B]]'), parse_verdict('no verdict here')
    ('A>B', None)
    """
    found: list[tuple[int, str]] = []
    for m in _BRACKETS.finditer(text):
        found.append((m.end(), _normalise(m.group(1))))
    for m in _OUTPUT.finditer(text):
        found.append((m.end(), m.group(1).upper()))
    for m in _JSON.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            label = next((_normalise(obj[k]) for k in _JSON_KEYS if k in obj and _normalise(obj[k])), None)
            if label:
                found.append((m.end(), label))
    found = [f for f in found if f[1]]
    if not found:
        return None
    label = max(found)[1]
    return "tie" if label in ("C", "TIE", "A=B") else label


def verdict_probabilities(label: str, scale: str | VerdictScale = "graded") -> tuple[float, float]:
    """(P(first better), P(tie)) of a parsed hard verdict on a :class:`VerdictScale`.

    >>> from pairkit.judges import verdict_probabilities
    >>> verdict_probabilities('A>B'), verdict_probabilities('tie')
    ((0.75, 0.0), (0.0, 1.0))
    """
    return verdict_scale(scale).probabilities(label)


_READ_LEVELS = ("A>>B", "A>B", "A=B", "B=A", "B>A", "B>>A")
_READ_PLAIN = ("A", "B", "C")


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def _resolve(candidate: str, sampled: str, labels: Sequence[str]) -> str | None:
    """The verdict an alternative token starts, given the sampled verdict's shape (same operator first)."""
    if candidate in labels and not any(x != candidate and x.startswith(candidate) for x in labels):
        return candidate
    consistent = [x for x in labels if x.startswith(candidate)]
    if len(consistent) <= 1:
        return consistent[0] if consistent else None
    if candidate in ("A", "B"):  # only a letter: assume the sampled verdict's operator (A=B, B>>A, …)
        op = re.sub("[AB]", "", sampled)
        same = [x for x in consistent if re.sub("[AB]", "", x) == op]
        if same:
            return same[0]
    return sorted(consistent, key=len)[0]  # an operator cut short ("A>" of A>B or A>>B): the shorter


def verdict_distribution(content: Sequence[Mapping]) -> dict[str, float] | None:
    """The probability of each verdict label from the log-probs of a bracketed verdict, or None if absent.

    ``content`` is the ``logprobs.content`` list of a chat completion (``token``, ``logprob``, ``top_logprobs``).
    The last ``[[…]]`` verdict is found in the text; walking its tokens, each alternative token at a position
    starts a verdict (the sampled prefix plus the alternative, completed like the sampled verdict) and gets
    the probability of the sampled prefix times its own; the sampled verdict gets the rest of the mass:

    .. math::

        P(v) = \\sum_{k} \\Big(\\prod_{j<k} p(t_j)\\Big)\\, p(a_k = v_k) \\;+\\; [v = \\hat v]\\prod_k p(t_k)

    renormalised over the verdict labels (alternatives that start no verdict are dropped). With single-token
    verdicts (``[[A]]``) this is the renormalised distribution of the letter after ``[[``.

    >>> import math
    >>> from pairkit.judges import verdict_distribution
    >>> content = [{'token': '[[', 'logprob': 0.0, 'top_logprobs': []},
    ...            {'token': 'A', 'logprob': math.log(0.8),
    ...             'top_logprobs': [{'token': 'A', 'logprob': math.log(.8)}, {'token': 'B', 'logprob': math.log(.2)}]},
    ...            {'token': ']]', 'logprob': 0.0, 'top_logprobs': []}]
    >>> {k: round(v, 3) for k, v in verdict_distribution(content).items()}
    {'B': 0.2, 'A': 0.8}
    """
    tokens = [str(e.get("token", "")) for e in content or []]
    text = "".join(tokens)
    matches = list(_BRACKETS.finditer(text)) or list(_UNCLOSED.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    start, end = m.start(1), m.end(1)
    sampled = _norm(m.group(1))
    labels = _READ_PLAIN if sampled in _READ_PLAIN else _READ_LEVELS
    if sampled not in labels:  # a form the reader does not walk (A++, tie): no probabilities
        return None
    masses: dict[str, float] = {}
    path, consumed, offset = 1.0, "", 0
    for entry, token in zip(content, tokens):
        lo, hi = offset, offset + len(token)
        offset = hi
        if hi <= start or lo >= end:
            continue
        lead = token[: max(start - lo, 0)].strip()  # the first token's part before the verdict ("[[" in "[[A")
        piece = _norm(token[max(start - lo, 0) : min(end, hi) - lo])
        tops = entry.get("top_logprobs") or []
        own = entry.get("logprob")
        if own is None:
            own = next((alt.get("logprob") for alt in tops if alt.get("token") == token), 0.0)
        p_self = math.exp(float(own))
        for alt in tops:
            alt_token = str(alt.get("token", ""))
            core = alt_token.strip()
            if alt_token == token or not core.startswith(lead):
                continue
            candidate = consumed + _norm(core[len(lead) :].split("]")[0])
            label = _resolve(candidate, sampled, labels) if candidate else None
            if label is not None:
                masses[label] = masses.get(label, 0.0) + path * math.exp(float(alt.get("logprob", -math.inf)))
        path *= p_self
        consumed += piece
        if consumed == sampled:
            break
    masses[sampled] = masses.get(sampled, 0.0) + path
    total = sum(masses.values())
    if not total > 0:
        return None
    out: dict[str, float] = {}
    for label, mass in masses.items():
        key = "tie" if label in ("C", "B=A", "A=B") else label
        out[key] = out.get(key, 0.0) + mass / total
    return out
