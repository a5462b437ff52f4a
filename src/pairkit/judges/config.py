"""Build a judge from a JSON-style configuration (used by ``pairkit judge``): the registry of judge types.

Each judge type is a :class:`~pairkit._spec.Spec` in :data:`JUDGES` whose ``fn`` is the judge's class and whose
options are every key its configuration may hold, each with its type and valid range. The options the class
declares itself (``declare_options`` on ``__init__``) are checked there when it is built; the others — those of
keys the class does not check, and the keys a configuration has but the class does not take (``strengths``,
``chat``, ``batch``) — are checked by :func:`judge_from_config`. Either way a bad value raises
:class:`~pairkit.errors.InputError` naming the configuration file, the key, the allowed values and the value.

>>> from pairkit.judges.config import JUDGES, judge_from_config
>>> JUDGES.get("simulated").option("noise").describe()
'a number > 0'
>>> judge_from_config({"type": "simulated", "strengths": {"a": 1.0}, "noise": 0}, source="judge.json")
Traceback (most recent call last):
...
pairkit.errors.InputError: judge.json: noise must be a number > 0, got 0
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pairkit._spec import Interval, Option, Registry, Spec, options_of
from pairkit.errors import InputError
from pairkit.judges import embedding, http, human, likelihood, local, pairwise_classifier, protocols, seq2seq, simulated
from pairkit.judges.prompts import TEMPLATES, VERDICT_SCALES

__all__ = ["JUDGES", "judge_from_config", "judge_type"]

JUDGES = Registry("judge")
"""Judge types by name (the ``"type"`` of a judge configuration): each a :class:`~pairkit._spec.Spec` whose
``fn`` is the judge's class, with every configuration key declared as an option."""

_POSITIVE = Interval(0, None, closed="neither")
_AT_LEAST_1 = Interval(1, None)
_JUDGE_ID = Option("judge_id", str, none=True, doc="the name recorded with each judgment and in the cache key")
_DEVICE = Option("device", str, doc="torch device of the model")
_BATCH_SIZE = Option("batch_size", int, _AT_LEAST_1, doc="sequences per forward pass")
_TEMPLATE = Option("template", str, choices=tuple(TEMPLATES), doc="prompt template")
_VERDICTS = Option("verdicts", str, choices=tuple(VERDICT_SCALES), doc="verdict scale")
_MODEL = Option("model", str, doc="model name (server) or local path")
_CHAT = Option("chat", Mapping, doc="the judge configuration of the chat model (an 'openai' judge)")


def judge_type(
    name: str,
    cls: type,
    *options: Option,
    family: str,
    required: tuple[str, ...] = (),
    build: Callable[..., Any] | None = None,
    aliases: tuple[str, ...] = (),
) -> Spec:
    """Register the judge type ``name``: its class, the configuration keys it takes and how it is built.

    ``options`` are the keys checked here (those the class does not declare itself); the options the class
    declares on ``__init__`` are added to the spec and checked by the class. ``required`` keys must be present.
    ``build(cls, options, context)`` makes the judge (by default ``cls(**options)``); ``context`` holds
    ``texts``, ``source`` and ``cache`` as :func:`judge_from_config` received them.

    Example:

        >>> from pairkit.judges import CallableJudge
        >>> from pairkit.judges.config import JUDGES, judge_from_config, judge_type
        >>> class FirstJudge(CallableJudge):
        ...     def __init__(self, judge_id: str = "first"):
        ...         super().__init__(lambda context, a, b: 1.0, judge_id=judge_id)
        >>> _ = judge_type("always_first", FirstJudge, family="example")
        >>> judge_from_config({"type": "always_first"}).judge("q", "x", "y").p_a
        1.0
        >>> _ = JUDGES.remove("always_first")
    """
    own = tuple(options)
    declared = tuple(o for o in options_of(cls.__init__) if o.name not in {x.name for x in own})
    spec = Spec(
        name,
        cls,
        kind="judge",
        data="a judge configuration (JSON object)",
        options=own + declared,
        aliases=aliases,
        family=family,
        extra={"checked_here": tuple(o.name for o in own), "required": required, "build": build},
    )
    return JUDGES.add(spec)


def judge_from_config(
    config: Mapping[str, Any],
    *,
    texts: Mapping[str, list[str]] | None = None,
    source: str = "judge config",
    cache: str | Path | None = None,
):
    """A comparator from ``{"type": ..., options...}``; the types and their options are in :data:`JUDGES`.

    ``"simulated"`` (``strengths``: candidate id → θ, applied to every answer of that candidate via ``texts``:
    candidate id → its answer texts), ``"openai"`` (``"batch": true`` or ``{"poll_interval": …}`` asks through the
    provider's batch API, :class:`BatchJudge`, whose submission ledger is the ``cache`` file), ``"huggingface"``
    (a directory saved by ``pairkit train pairwise-judge`` loads a :class:`PairwiseClassifierJudge`),
    ``"embedding"``, ``"human"``, ``"seq2seq"``, ``"cdr"``, ``"follow_up"``, ``"reward_model"`` (a directory saved by
    ``pairkit train reward``: :class:`RewardModelJudge`) and the protocols ``"portia"``, ``"bsm"``, ``"cgcot"``,
    ``"few_shot"``, ``"pointwise"`` — these with ``"chat"``: the configuration of their ``"openai"`` chat model.
    A key the type does not take, a missing required key or a value out of its range raises :class:`InputError`
    naming ``source`` (the file), the key, the allowed values and the value.

    Example:

        >>> from pairkit.judges import judge_from_config
        >>> judge = judge_from_config({"type": "simulated", "strengths": {"gpt": 2.0, "llama": 0.0}, "soft": True},
        ...                           texts={"gpt": ["Paris."], "llama": ["Lyon."]})
        >>> round(judge.judge("Capital of France?", "Paris.", "Lyon.").p_a, 3)
        0.881
    """
    if not isinstance(config, Mapping) or "type" not in config:
        raise InputError(f"{source}: expected a JSON object with a 'type' ({', '.join(JUDGES.names())})")
    kind = config["type"]
    if not isinstance(kind, str) or kind not in JUDGES:
        raise InputError(f"{source}: unknown judge type {kind!r}; use {', '.join(JUDGES.names())}")
    spec = JUDGES.get(kind)
    options = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(k for k in options if not spec.takes(k))
    if unknown:
        close = difflib.get_close_matches(unknown[0], spec.option_names, n=1)
        raise InputError(
            f"{source}: a {kind!r} judge has no option {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(spec.option_names))}" + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    missing = [k for k in spec.extra["required"] if k not in options]
    if missing:
        raise InputError(f"{source}: a {kind!r} judge needs {', '.join(map(repr, missing))} ({_needs(spec, missing)})")
    where = f"{source}: "
    for name in spec.extra["checked_here"]:
        if name in options:
            options[name] = spec.option(name).check(options[name], where=where)
    context = {"texts": texts, "source": source, "cache": cache}
    build = spec.extra["build"] or (lambda cls, opts, _: cls(**opts))
    try:
        return build(spec.fn, options, context)
    except TypeError as exc:
        raise InputError(f"{source}: bad or missing option for a {kind!r} judge: {exc}") from None
    except InputError as exc:
        if str(exc).startswith(source):
            raise
        raise InputError(f"{source}: {exc}") from None


def _needs(spec: Spec, names: list[str]) -> str:
    return "; ".join(f"{n}: {spec.option(n).doc or spec.option(n).describe()}" for n in names)


# ------------------------------------------------------------------------------------------- builders
def _simulated(cls, options: dict, context: dict):
    by_text = {}
    for cid, value in options.pop("strengths").items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(
                f"{context['source']}: the strength of candidate {cid!r} must be a finite number (a log-strength), "
                f"got {value!r}"
            )
        for text in (context["texts"] or {}).get(str(cid), [str(cid)]):
            by_text[text] = float(value)
    if not by_text:
        raise InputError(f"{context['source']}: a simulated judge needs 'strengths': {{candidate id: strength}}")
    return cls(by_text, **options)


def _openai(cls, options: dict, context: dict):
    batch = options.pop("batch", None)
    model = options.pop("model")
    if batch is None or batch is False:
        return cls(model, **options)
    from pairkit.judges.batch import BatchJudge

    if context["cache"] is None:
        raise InputError(
            f"{context['source']}: a batch judge keeps its submissions in the judgment cache; give a cache file "
            "(pairkit judge --cache judgments.sqlite)"
        )
    return BatchJudge(cls(model, **options), context["cache"], **({} if batch is True else dict(batch)))


def _huggingface(cls, options: dict, context: dict):
    if pairwise_classifier.is_pairwise_classifier(options.get("model")):
        return pairwise_classifier.PairwiseClassifierJudge(**options)
    unused = sorted(set(options) & {"symmetric", "max_length"})
    if unused:
        raise InputError(f"{', '.join(unused)} apply to a saved pairwise classifier, not to a causal LM judge")
    return cls(**options)


def _protocol(cls, options: dict, context: dict):
    chat = options.pop("chat")
    model = judge_from_config(chat, texts=context["texts"], source=f"{context['source']} (chat)")
    if not callable(getattr(model, "acomplete", None)):
        raise InputError(
            f"{context['source']}: the chat of a {cls.protocol!r} judge must be an 'openai' judge, "
            f"got {chat.get('type')!r}"
        )
    return cls(model, **options)


def _seq2seq(cls, options: dict, context: dict):
    if "targets" in options:
        options["targets"] = tuple(options["targets"])
    return cls(**options)


# ------------------------------------------------------------------------------------------ judge types
judge_type(
    "simulated",
    simulated.SimulatedJudge,
    Option("strengths", Mapping, doc="candidate id → log-strength θ (finite numbers)"),
    family="simulation",
    required=("strengths",),
    build=_simulated,
)
judge_type(
    "openai",
    http.OpenAIJudge,
    _MODEL,
    Option("batch", (bool, Mapping), doc="true, or the batch options: ask through the batch API at its price"),
    Option("base_url", str, doc="the OpenAI-compatible server"),
    Option("api_key", str, none=True, doc="the key (default: the api_key_env variable)"),
    Option("api_key_env", str, doc="environment variable holding the key"),
    _TEMPLATE,
    Option("logprobs", bool, doc="read the verdict's token probabilities"),
    _VERDICTS,
    Option("price", (list, tuple), none=True, doc="[input, output] money per million tokens"),
    Option("extra_body", Mapping, none=True, doc="extra fields of each request body"),
    Option("images", bool, doc="send image answers as image parts"),
    Option("seed", int, none=True, doc="seed of the retry jitter"),
    _JUDGE_ID,
    family="chat model",
    required=("model",),
    build=_openai,
)
judge_type(
    "huggingface",
    local.HFJudge,
    _MODEL,
    _TEMPLATE,
    _VERDICTS,
    _BATCH_SIZE,
    _DEVICE,
    Option("symmetric", bool, doc="saved pairwise classifier: average both orders"),
    Option("max_length", int, _AT_LEAST_1, none=True, doc="saved pairwise classifier: tokens per input at most"),
    _JUDGE_ID,
    family="local model",
    required=("model",),
    build=_huggingface,
)
judge_type(
    "seq2seq",
    seq2seq.Seq2SeqJudge,
    _MODEL,
    Option("mode", str, choices=("duo", "mono"), doc="duoT5 (pair) or monoT5 (each answer alone)"),
    Option("template", str, none=True, doc="the input text template"),
    Option("targets", (list, tuple), doc="the two decoder words read at the first step"),
    _BATCH_SIZE,
    _DEVICE,
    _JUDGE_ID,
    family="local model",
    required=("model",),
    build=_seq2seq,
)
judge_type(
    "cdr",
    likelihood.DensityRatioJudge,
    Option("strong", str, doc="local path of the strong causal LM"),
    Option("weak", str, doc="local path of the weak causal LM"),
    Option("strong_system", str, none=True, doc="system prompt of the strong model only"),
    _DEVICE,
    _JUDGE_ID,
    family="local model",
    required=("strong", "weak"),
)
judge_type(
    "follow_up",
    likelihood.FollowUpJudge,
    _MODEL,
    Option("positive", (list, tuple), doc="positive follow-ups"),
    Option("negative", (list, tuple), doc="negative follow-ups"),
    _DEVICE,
    _JUDGE_ID,
    family="local model",
    required=("model",),
)
judge_type(
    "reward_model",
    likelihood.RewardModelJudge,
    _MODEL,
    Option("max_length", int, doc="tokens per prompt + answer; the prompt is cut first"),
    _DEVICE,
    _JUDGE_ID,
    family="local model",
    required=("model",),
)
judge_type(
    "embedding",
    embedding.EmbeddingJudge,
    family="local model",
)
judge_type(
    "human",
    human.HumanJudge,
    family="human",
)
judge_type(
    "portia",
    protocols.PortiaJudge,
    _CHAT,
    _TEMPLATE,
    _VERDICTS,
    _JUDGE_ID,
    family="protocol",
    required=("chat",),
    build=_protocol,
)
judge_type(
    "bsm",
    protocols.BSMJudge,
    _CHAT,
    _JUDGE_ID,
    family="protocol",
    required=("chat",),
    build=_protocol,
)
judge_type(
    "cgcot",
    protocols.CGCoTJudge,
    _CHAT,
    Option("concept", str, doc="the concept the texts are compared on"),
    Option("questions", (list, tuple), doc="the prompts of the concept breakdown, asked in order"),
    _JUDGE_ID,
    family="protocol",
    required=("chat", "concept", "questions"),
    build=_protocol,
)
judge_type(
    "few_shot",
    protocols.FewShotJudge,
    _CHAT,
    Option("exemplars", (list, tuple), doc="preference rows shown as examples"),
    Option("template", str, choices=tuple(TEMPLATES), doc="prompt template"),
    _VERDICTS,
    _JUDGE_ID,
    family="protocol",
    required=("chat", "exemplars"),
    build=_protocol,
)
judge_type(
    "pointwise",
    protocols.PointwiseJudge,
    _CHAT,
    Option("checklist", (list, tuple), none=True, doc="questions the answer is checked against (WB-Score)"),
    _JUDGE_ID,
    family="protocol",
    required=("chat",),
    build=_protocol,
)
