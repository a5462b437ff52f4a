"""Chat rows as the trainers read them (private to :mod:`pairkit.train`): messages in the ``{role, content}`` or
ShareGPT ``{from, value}`` form, a completion's text, and a prompt in Anthropic HH ``Human:``/``Assistant:``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pairkit.errors import InputError

__all__ = ["HH_ASSISTANT", "ROLES", "chat_message", "chat_messages", "completion_text", "prompt_text"]

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
HH_ASSISTANT = "\n\nAssistant:"


def chat_message(m: Any, where: str) -> dict[str, str]:
    if isinstance(m, dict):
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role in ROLES and isinstance(content, str):
            return {"role": ROLES[role], "content": content}
    raise InputError(f"{where}: expected a chat message {{role, content}} or {{from, value}}, got {m!r:.80}")


def chat_messages(ms: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(ms, Sequence) or isinstance(ms, str):
        raise InputError(f"{where}: expected a list of chat messages, got {ms!r:.80}")
    return [chat_message(m, where) for m in ms]


def completion_text(x: Any, where: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        return chat_message(x, where)["content"]
    msgs = chat_messages(x, where)
    if not msgs:
        raise InputError(f"{where}: the completion is an empty list of chat messages")
    if msgs[-1]["role"] != "assistant":
        raise InputError(f"{where}: the last message must be the assistant's answer")
    return msgs[-1]["content"]


def prompt_text(prompt: str | list[dict[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    parts = []
    for m in prompt:
        tag = {"user": "Human", "assistant": "Assistant", "system": "System"}[m["role"]]
        parts.append(f"\n\n{tag}: {m['content']}")
    return "".join(parts) + HH_ASSISTANT
