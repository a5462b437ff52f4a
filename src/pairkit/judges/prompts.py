"""Prompt templates for pairwise LLM judging and robust verdict parsing.

The templates follow the structure of MT-Bench's pairwise judge (Zheng et al. 2023, "Judging LLM-as-a-judge
with MT-Bench and Chatbot Arena"): a system instruction, the question, both answers between markers, and a
final verdict in double brackets — ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). The reference-guided variant adds a
reference answer. The wording is pairkit's own; bump ``version`` when it changes (it is part of the cache key).

:func:`parse_verdict` reads the verdict formats judges actually produce: ``[[A]]``/``[[B]]``/``[[C]]``,
Arena-Hard's ``[[A>>B]]``…``[[B>>A]]``, LLMBar/RewardBench's ``Output (a)``/``Output (b)`` and JSON objects such
as ``{"winner": "A"}``; the last verdict in the text wins (judges reason first, decide last).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["TEMPLATES", "PromptTemplate", "parse_verdict", "verdict_probabilities"]


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt with ``{question}``, ``{answer_a}``, ``{answer_b}`` (and ``{reference}``) fields."""

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
    "pairwise": PromptTemplate("pairwise", "pairwise-v1", _SYSTEM, _USER),
    "pairwise_reference": PromptTemplate(
        "pairwise_reference", "pairwise-reference-v1", _SYSTEM_REFERENCE, _USER_REFERENCE
    ),
}

# Each verdict label maps to (P(first better), P(tie)); ">>"/">" keep the strength for the length rule.
_LABELS = {
    "A": (1.0, 0.0),
    "B": (0.0, 0.0),
    "C": (0.0, 1.0),
    "TIE": (0.0, 1.0),
    "A>>B": (1.0, 0.0),
    "A>B": (1.0, 0.0),
    "A=B": (0.0, 1.0),
    "B>A": (0.0, 0.0),
    "B>>A": (0.0, 0.0),
}
_BRACKETS = re.compile(r"\[\[\s*(A\s*>>\s*B|A\s*>\s*B|A\s*=\s*B|B\s*>\s*A|B\s*>>\s*A|A|B|C|tie)\s*\]\]", re.I)
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
    return text if text in _LABELS else None


def parse_verdict(text: str) -> str | None:
    """The last verdict in a judge's reply, as ``"A"``, ``"B"``, ``"tie"`` or Arena-Hard's ``"A>B"`` etc.

    ``None`` if the text holds no recognisable verdict.
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


def verdict_probabilities(label: str) -> tuple[float, float]:
    """(P(first better), P(tie)) of a parsed hard verdict."""
    return _LABELS["TIE" if label == "tie" else label]
