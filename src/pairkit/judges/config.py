"""Build a judge from a JSON-style configuration (used by ``pairkit judge``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pairkit.errors import InputError

__all__ = ["judge_from_config"]

_PROTOCOLS = {"portia": "PortiaJudge", "bsm": "BSMJudge", "cgcot": "CGCoTJudge", "few_shot": "FewShotJudge"}


def judge_from_config(
    config: Mapping[str, Any],
    *,
    texts: Mapping[str, list[str]] | None = None,
    source: str = "judge config",
    cache: str | Path | None = None,
):
    """A comparator from ``{"type": ..., options...}``.

    Types: ``"simulated"`` (``strengths``: candidate id → θ, applied to every answer of that candidate via
    ``texts``: candidate id → its answer texts; plus :class:`SimulatedJudge` options), ``"openai"``
    (:class:`OpenAIJudge` options: ``model``, ``base_url``, ``price`` = [input, output] per million tokens, …;
    ``"batch": true`` or ``{"poll_interval": …}`` asks through the provider's batch API, :class:`BatchJudge`, whose
    submission ledger is the ``cache`` file),
    ``"huggingface"`` (:class:`HFJudge`: ``model`` path; a directory saved by ``pairkit train pairwise-judge``
    loads a :class:`PairwiseClassifierJudge`), ``"embedding"`` (:class:`EmbeddingJudge`), ``"human"``
    (:class:`HumanJudge`) and the protocols of :mod:`pairkit.judges.protocols` — ``"portia"``, ``"bsm"``,
    ``"cgcot"``, ``"few_shot"`` — with ``"chat"``: the config of their ``"openai"`` chat model, plus their own
    options (``k``, ``concept``/``questions``, ``exemplars``: a list of rows, …); ``"cdr"``
    (:class:`DensityRatioJudge`: ``strong``, ``weak`` local model paths) and ``"follow_up"``
    (:class:`FollowUpJudge`: ``model``), ``"seq2seq"`` (:class:`Seq2SeqJudge`: duoT5/monoT5 ``model`` path,
    ``mode``).
    """
    if not isinstance(config, Mapping) or "type" not in config:
        raise InputError(f"{source}: expected a JSON object with a 'type' (simulated, openai, huggingface, human)")
    options = {k: v for k, v in config.items() if k != "type"}
    kind = config["type"]
    try:
        if kind == "simulated":
            from pairkit.judges.simulated import SimulatedJudge

            strengths = options.pop("strengths", None)
            if not isinstance(strengths, Mapping) or not strengths:
                raise InputError(f"{source}: a simulated judge needs 'strengths': {{candidate id: strength}}")
            by_text = {}
            for cid, value in strengths.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise InputError(
                        f"{source}: the strength of candidate {cid!r} must be a finite number (a log-strength), "
                        f"got {value!r}"
                    )
                for text in (texts or {}).get(str(cid), [str(cid)]):
                    by_text[text] = float(value)
            return SimulatedJudge(by_text, **options)
        if kind == "openai":
            from pairkit.judges.http import OpenAIJudge

            batch = options.pop("batch", None)
            if batch is None or batch is False:
                return OpenAIJudge(**options)
            from pairkit.judges.batch import BatchJudge

            if batch is not True and not isinstance(batch, Mapping):
                raise InputError(f"{source}: 'batch' must be true or an object of batch options, got {batch!r}")
            if cache is None:
                raise InputError(
                    f"{source}: a batch judge keeps its submissions in the judgment cache; give a cache file "
                    "(pairkit judge --cache judgments.sqlite)"
                )
            return BatchJudge(OpenAIJudge(**options), cache, **({} if batch is True else dict(batch)))
        if kind == "huggingface":
            from pairkit.judges.local import HFJudge
            from pairkit.judges.pairwise_classifier import PairwiseClassifierJudge, is_pairwise_classifier

            if is_pairwise_classifier(options.get("model")):
                return PairwiseClassifierJudge(**options)

            return HFJudge(**options)
        if kind == "embedding":
            from pairkit.judges.embedding import EmbeddingJudge

            return EmbeddingJudge(**options)
        if kind in _PROTOCOLS:
            from pairkit.judges import protocols

            chat = options.pop("chat", None)
            if not isinstance(chat, Mapping):
                raise InputError(
                    f"{source}: a {kind!r} judge needs 'chat': the judge config of its chat model, e.g. "
                    '{"type": "openai", "model": ..., "base_url": ...}'
                )
            model = judge_from_config(chat, texts=texts, source=f"{source} (chat)")
            if not callable(getattr(model, "acomplete", None)):
                raise InputError(
                    f"{source}: the chat of a {kind!r} judge must be an 'openai' judge, got {chat.get('type')!r}"
                )
            return getattr(protocols, _PROTOCOLS[kind])(model, **options)
        if kind == "seq2seq":
            from pairkit.judges.seq2seq import Seq2SeqJudge

            return Seq2SeqJudge(**options)
        if kind in ("cdr", "follow_up"):
            from pairkit.judges import likelihood

            cls = likelihood.DensityRatioJudge if kind == "cdr" else likelihood.FollowUpJudge
            return cls(**options)
        if kind == "human":
            from pairkit.judges.human import HumanJudge

            return HumanJudge(**options)
    except TypeError as exc:
        raise InputError(f"{source}: bad or missing option for a {kind!r} judge: {exc}") from None
    except InputError as exc:
        if str(exc).startswith(source):
            raise
        message = str(exc).replace("__init__ has no option", f"a {kind!r} judge has no option").replace(", self,", ",")
        raise InputError(f"{source}: {message}") from None
    raise InputError(
        f"{source}: unknown judge type {kind!r}; use simulated, openai, huggingface, embedding, human, seq2seq, "
        f"cdr, follow_up, {', '.join(_PROTOCOLS)}"
    )
