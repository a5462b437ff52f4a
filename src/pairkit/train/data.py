"""Reading preference data for the trainers and turning it into token ids.

Accepted row formats (JSON list, JSONL — optionally gzipped — or Parquet):

* ``{prompt, chosen, rejected}`` with strings (pairkit's judge exports, TRL's standard format), or with
  ``prompt`` a list of chat messages ``[{role, content}]`` and ``chosen``/``rejected`` strings or messages;
* LLaMA-Factory ``{conversations: [{from, value}], chosen: {from, value}, rejected: {from, value}}``;
* HH-RLHF ``{chosen, rejected}`` full dialogues: the shared prefix up to the last ``"\\n\\nAssistant:"`` is
  the prompt;
* unpaired: LLaMA-Factory ``{messages, label}`` (the last assistant message is the completion) or
  ``{prompt, completion, label}``;
* listwise: ``{prompt, responses: [...], scores: [...]}`` (or ``ranks``, 1 = best).

Prompts given as messages use the tokenizer's chat template when it has one; otherwise they are written in
the HH-RLHF ``"\\n\\nHuman: …\\n\\nAssistant:"`` layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pairkit.data.readers import read_records  # the one reader of record files; re-exported here
from pairkit.errors import InputError, PairkitWarning
from pairkit.train._chat import HH_ASSISTANT, chat_messages, completion_text, prompt_text

__all__ = [
    "TruncationWarning",
    "encode_completion",
    "prompt_ids",
    "read_records",
    "to_listwise",
    "to_pairs",
    "to_unpaired",
]

class TruncationWarning(PairkitWarning):
    """Sequences were cut to fit ``max_length`` (the warning gives the counts)."""


def _split_hh(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """HH-RLHF: the prompt is the shared prefix up to (and including) its last ``Assistant:`` marker."""
    n = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        n += 1
    cut = chosen.rfind(HH_ASSISTANT, 0, n)
    if cut < 0:
        raise InputError(f"{where}: chosen and rejected share no '\\n\\nAssistant:' prefix to use as prompt")
    cut += len(HH_ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _prompt_field(value: Any, where: str):
    return value if isinstance(value, str) else chat_messages(value, where)


def to_pairs(rows: Sequence[dict[str, Any]], *, source: str = "data", joint: bool = False) -> list[dict[str, Any]]:
    """Normalise preference rows to ``{prompt, chosen, rejected}`` (prompt: string or messages).

    With ``joint=True`` a row may instead give each response its own prompt (``chosen_prompt``,
    ``rejected_prompt``: a joint instruction–response preference, as DOVE); the result then carries
    ``rejected_prompt`` too. Consumers that cannot use per-response prompts leave ``joint`` False, and such rows
    raise :class:`InputError` there instead of being read with one prompt.
    """
    out = []
    for i, row in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row:
            has = sorted(map(str, row))[:6] if isinstance(row, dict) else type(row).__name__
            raise InputError(f"{where}: needs 'chosen' and 'rejected' fields, has {has}")
        if "chosen_prompt" in row or "rejected_prompt" in row:
            if not joint:
                raise InputError(
                    f"{where}: per-response prompts (chosen_prompt/rejected_prompt) are joint preferences, which "
                    "only train_preference and evaluate_preference take"
                )
            if "chosen_prompt" not in row or "rejected_prompt" not in row:
                raise InputError(f"{where}: give both 'chosen_prompt' and 'rejected_prompt', or 'prompt'")
            pair = {
                "prompt": _prompt_field(row["chosen_prompt"], where),
                "chosen": completion_text(row["chosen"], where + ", column 'chosen'"),
                "rejected": completion_text(row["rejected"], where + ", column 'rejected'"),
            }
            rejected_prompt = _prompt_field(row["rejected_prompt"], where)
            if rejected_prompt != pair["prompt"]:
                pair["rejected_prompt"] = rejected_prompt
            out.append(pair)
            continue
        if "conversations" in row:
            prompt = chat_messages(row["conversations"], where)
        elif "prompt" in row:
            prompt = row["prompt"] if isinstance(row["prompt"], str) else chat_messages(row["prompt"], where)
        elif isinstance(row["chosen"], str) and isinstance(row["rejected"], str):
            prompt, c, r = _split_hh(row["chosen"], row["rejected"], where)
            out.append({"prompt": prompt, "chosen": c, "rejected": r})
            continue
        else:
            chosen, rejected = chat_messages(row["chosen"], where), chat_messages(row["rejected"], where)
            k = 0
            while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
                k += 1
            prompt = chosen[:k]
        chosen_text = completion_text(row["chosen"], where + ", column 'chosen'")
        rejected_text = completion_text(row["rejected"], where + ", column 'rejected'")
        out.append({"prompt": prompt, "chosen": chosen_text, "rejected": rejected_text})
    _check_pairs(out, source)
    return out


def _check_pairs(pairs: list[dict[str, Any]], source: str) -> None:
    """Empty or identical completions carry no preference: raise naming the first row and the count."""
    for col in ("chosen", "rejected"):
        empty = [i for i, p in enumerate(pairs, start=1) if p[col] == ""]
        if empty:
            raise InputError(
                f"{source}, row {empty[0]}, column {col!r}: empty completion ({len(empty)} rows); "
                "remove these rows or fill in the text"
            )
    same = [
        i
        for i, p in enumerate(pairs, start=1)
        if p["chosen"] == p["rejected"] and p.get("rejected_prompt", p["prompt"]) == p["prompt"]
    ]
    if same:
        raise InputError(
            f"{source}, row {same[0]}: chosen and rejected are the same text ({len(same)} of {len(pairs)} rows); "
            "such pairs carry no preference: remove them"
        )


def to_unpaired(rows: Sequence[dict[str, Any]], *, source: str = "data") -> list[dict[str, Any]]:
    """Normalise unpaired rows to ``{prompt, completion, label}`` (label: True = desirable)."""
    out = []
    for i, row in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        label = row.get("label") if isinstance(row, dict) else None
        if not isinstance(label, (bool, np.bool_)) and label not in (0, 1):
            raise InputError(f"{where}, column 'label': expected true/false, got {label!r}")
        if "messages" in row:
            msgs = chat_messages(row["messages"], where)
            if msgs[-1]["role"] != "assistant":
                raise InputError(f"{where}: the last message must be the assistant's completion")
            out.append({"prompt": msgs[:-1], "completion": msgs[-1]["content"], "label": bool(label)})
        elif "prompt" in row and "completion" in row:
            prompt = row["prompt"] if isinstance(row["prompt"], str) else chat_messages(row["prompt"], where)
            completion = completion_text(row["completion"], where + ", column 'completion'")
            out.append({"prompt": prompt, "completion": completion, "label": bool(label)})
        else:
            raise InputError(f"{where}: needs 'messages' or 'prompt' and 'completion', has {sorted(row)[:6]}")
        if out[-1]["completion"] == "":
            raise InputError(f"{where}, column 'completion': empty completion; remove the row or fill in the text")
    return out


def to_listwise(rows: Sequence[dict[str, Any]], *, source: str = "data") -> list[dict[str, Any]]:
    """Normalise listwise rows to ``{prompt, responses, scores}`` (higher score = better; ranks are negated)."""
    out = []
    for i, row in enumerate(rows, start=1):
        where = f"{source}, row {i}"
        if not isinstance(row, dict) or "prompt" not in row:
            raise InputError(f"{where}: listwise rows need 'prompt', 'responses' and 'scores' (or 'ranks')")
        responses = row.get("responses")
        if not isinstance(responses, Sequence) or len(responses) < 2:
            raise InputError(f"{where}, column 'responses': needs a list of at least 2 responses")
        key = "scores" if "scores" in row else "ranks"
        if key not in row:
            raise InputError(f"{where}: needs 'scores' or 'ranks' for its responses")
        try:
            scores = [float(s) * (1 if key == "scores" else -1) for s in row[key]]
        except (TypeError, ValueError):
            raise InputError(f"{where}, column {key!r}: expected a list of numbers, got {row[key]!r:.80}") from None
        if len(scores) != len(responses) or not np.all(np.isfinite(scores)):
            raise InputError(f"{where}: scores {scores!r:.80} must be finite, one per response")
        prompt = row["prompt"] if isinstance(row["prompt"], str) else chat_messages(row["prompt"], where)
        texts = [completion_text(r, where) for r in responses]
        if "" in texts:
            empty = texts.index("") + 1
            raise InputError(f"{where}, column 'responses': response {empty} is empty; fill it or drop it")
        out.append({"prompt": prompt, "responses": texts, "scores": scores})
    return out


def prompt_ids(tokenizer, prompt: str | list[dict[str, str]]) -> list[int]:
    """Token ids of a prompt as the trainers and the sampler see it (chat template with the generation prompt)."""
    if not isinstance(prompt, str) and getattr(tokenizer, "chat_template", None):
        return _template_ids(tokenizer, prompt, add_generation_prompt=True)
    return list(tokenizer(prompt_text(prompt))["input_ids"])


def encode_completion(
    tokenizer,
    prompt: str | list[dict[str, str]],
    completion: str,
    *,
    max_length: int = 512,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
    report: bool = False,
):
    """Token ids of the prompt and of the completion (ending with EOS), truncated to ``max_length`` in total.

    Message prompts go through the tokenizer's chat template (with the generation prompt) when it has one;
    the completion is then the template's rendering of the assistant turn, so it ends with the template's
    end-of-turn tokens. The completion is first cut to ``max_completion_length`` (from the right) and the
    prompt to ``max_prompt_length`` (from the left, keeping its end). If the two still exceed ``max_length``
    the prompt gives way first (down to one token), then the completion: truncating completions first makes
    chosen and rejected identical when both begin alike. With ``report=True`` a third value says whether
    anything was cut.
    """
    p_ids = prompt_ids(tokenizer, prompt)
    if not isinstance(prompt, str) and getattr(tokenizer, "chat_template", None):
        full = _template_ids(tokenizer, [*prompt, {"role": "assistant", "content": completion}])
        comp_ids = full[len(p_ids) :] if full[: len(p_ids)] == p_ids else _plain_completion(tokenizer, completion)
    else:
        comp_ids = _plain_completion(tokenizer, completion)
    n_prompt, n_comp = len(p_ids), len(comp_ids)
    if max_completion_length is not None:
        comp_ids = comp_ids[:max_completion_length]
    if max_prompt_length is not None and len(p_ids) > max_prompt_length:
        p_ids = p_ids[-max_prompt_length:]
    if len(p_ids) + len(comp_ids) > max_length:
        keep = max(max_length - len(comp_ids), min(1, len(p_ids)))
        p_ids = p_ids[len(p_ids) - keep :]
        comp_ids = comp_ids[: max(max_length - len(p_ids), 1)]
    if report:
        return p_ids, comp_ids, (len(p_ids), len(comp_ids)) != (n_prompt, n_comp)
    return p_ids, comp_ids


def _template_ids(tokenizer, messages, **kw) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
    # transformers 5 returns a BatchEncoding, older versions a list of ids
    ids = out if isinstance(out, (list, tuple)) else out["input_ids"]
    return [int(i) for i in ids]


def _plain_completion(tokenizer, completion: str) -> list[int]:
    ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def collate_sequences(seqs: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask`` for (prompt, completion) ids."""
    import torch

    length = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), length), dtype=torch.long)
    comp = torch.zeros((len(seqs), length), dtype=torch.bool)
    for i, (p, c) in enumerate(seqs):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attn[i, :n] = 1
        comp[i, len(p) : n] = True
    return {"input_ids": ids, "attention_mask": attn, "completion_mask": comp}
