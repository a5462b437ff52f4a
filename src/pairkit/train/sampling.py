"""Samplers for the online loop: where the ``k`` completions per prompt come from.

A sampler has ``sample(prompts, *, k, max_new_tokens, temperature, top_p, seed) -> list[list[str]]`` (``k``
texts per prompt) and ``identity() -> dict``, which keys the loop's sample cache (a killed run never samples a
round twice; another sampler's samples are never reused). Optional: ``update_weights(model)``, called by
:func:`~pairkit.train.train_online` at the start of every round so that an external engine samples from the
current policy.

* :class:`HFSampler` — a transformers causal LM (batched, seeded ``generate``; the loop's default over the policy).
  Built over a frozen copy of the initial policy it gives the *offline* baseline: every round's pairs are
  sampled from the starting policy.
* :class:`RaySampler` — an :class:`HFSampler` replicated over Ray actors (one per GPU or CPU slot); the prompts are
  split across them and the texts come back to the loop's process, which alone writes the sample and judgment
  caches (judge on actors with :class:`~pairkit.judges.RayJudge`).
* :class:`VLLMSampler` — vLLM's Python API (``vllm.LLM``), when vLLM is installed (``pip install
  'pairkit[vllm]'``; it needs a supported GPU or CPU build).
* :class:`OpenAISampler` — an OpenAI-compatible ``/completions`` or ``/chat/completions`` server (vLLM's
  ``vllm serve``, TGI, llama.cpp, …), through the same HTTP client as :class:`~pairkit.judges.OpenAIJudge`
  (bounded retries with backoff, timeouts, concurrency limit). The server's model samples: the policy being
  trained is not synchronised into it, so in the loop this is off-policy sampling unless the server is reloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pairkit._optional import requires
from pairkit.errors import InputError

__all__ = ["HFSampler", "OpenAISampler", "RaySampler", "VLLMSampler"]


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


class HFSampler:
    """``k`` seeded samples per prompt from a transformers causal LM (:func:`~pairkit.train.sample_completions`).

    .. math::

        y_{i,j} \\sim \\pi(\\cdot \\mid x_i),\\quad j = 1..k

    ``identity()`` holds a hash of the model's weights at the time of the call, so samples of a changed model
    are never served from the cache.

    ``per_prompt=True`` samples each prompt alone (its ``k`` samples in one ``generate``) with the seed
    :class:`~pairkit.train.RaySampler` gives it, a hash of the round's seed, the prompt's position and text and
    the sampling options: the samples then equal a :class:`~pairkit.train.RaySampler`'s with any number of actors,
    and ``sample_range`` draws any share of a round's prompts exactly as the whole round would (the online loop's
    processes under ``accelerate launch`` each draw their share). Slower than one batched ``generate`` on a GPU.
    """

    def __init__(self, model, tokenizer, *, per_prompt: bool = False):
        self.model, self.tokenizer, self.per_prompt = model, tokenizer, bool(per_prompt)

    def sample(self, prompts: Sequence[Any], *, k: int, max_new_tokens: int, temperature: float, top_p: float,
               seed: int) -> list[list[str]]:  # fmt: skip
        """``k`` completions per prompt (see :func:`~pairkit.train.sample_completions`)."""
        from pairkit.train.online import sample_completions

        kw = {"k": k, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if self.per_prompt:
            return self.sample_range(prompts, 0, len(prompts), seed=seed, **kw)
        return sample_completions(self.model, self.tokenizer, prompts, seed=seed, **kw)

    def sample_range(self, prompts: Sequence[Any], start: int, stop: int, *, k: int, max_new_tokens: int,
                     temperature: float, top_p: float, seed: int) -> list[list[str]]:  # fmt: skip
        """The samples of ``prompts[start:stop]`` as ``sample`` draws them for the whole list
        (``per_prompt=True`` only: batched samples depend on the whole batch)."""
        from pairkit.train.online import sample_completions

        if not self.per_prompt:
            raise InputError("HFSampler.sample_range needs per_prompt=True (batched samples depend on the batch)")
        kw = {"k": k, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        return [sample_completions(self.model, self.tokenizer, [prompts[i]], seed=_prompt_seed(seed, i, prompts[i],
                                   **kw), **kw)[0] for i in range(start, stop)]  # fmt: skip

    def identity(self) -> dict[str, str]:
        """The cache key part of this sampler: ``hf``, a hash of the weights (and ``per_prompt`` seeding)."""
        from pairkit.train._steps import weights_fingerprint

        out = {"backend": "hf", "policy": weights_fingerprint(self.model)}
        if self.per_prompt:
            out["seeds"] = "per_prompt"
        return out


class VLLMSampler:
    """``k`` samples per prompt from vLLM's offline engine (``vllm.LLM``), seeded per request.

    .. math::

        y_{i,j} \\sim \\pi(\\cdot \\mid x_i),\\quad j = 1..k
        \\quad (\\text{vLLM } \\texttt{SamplingParams}(n{=}k, T, p, \\text{seed}))

    Kwon et al. (2023), "Efficient Memory Management for Large Language Model Serving with PagedAttention".
    ``model`` is a path or hub name (or an ``vllm.LLM`` already built); text prompts go through
    ``LLM.generate``, chat prompts (lists of messages) through ``LLM.chat``. ``update_weights(policy)`` loads a
    torch model's weights into the engine (the route TRL uses for online training:
    ``llm_engine.model_executor.driver_worker.model_runner.model.load_weights``; vLLM versions differ, and a
    version without it raises). Needs vLLM: ``pip install 'pairkit[vllm]'`` (not tested in pairkit's CI, where
    vLLM cannot be installed: only the import guard is).
    """

    def __init__(self, model, *, seed: int = 0, **engine_options):
        with requires("vllm", "the vLLM sampler"):
            import vllm

        self._vllm = vllm
        self.name = model if isinstance(model, str) else type(model).__name__
        self.llm = vllm.LLM(model=model, seed=seed, **engine_options) if isinstance(model, str) else model
        self.version = 0

    def sample(self, prompts: Sequence[Any], *, k: int, max_new_tokens: int, temperature: float, top_p: float,
               seed: int) -> list[list[str]]:  # fmt: skip
        """``k`` completions per prompt; one request per prompt, seeded ``seed + i``."""
        params = [self._vllm.SamplingParams(n=k, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                            seed=seed + i) for i in range(len(prompts))]  # fmt: skip
        chats = [isinstance(p, list) for p in prompts]
        if all(chats):
            outs = self.llm.chat(list(prompts), params, use_tqdm=False)
        elif not any(chats):
            outs = self.llm.generate(list(prompts), params, use_tqdm=False)
        else:
            raise InputError("VLLMSampler: give all prompts as text or all as chat messages, not a mix")
        return [[c.text for c in out.outputs] for out in outs]

    def update_weights(self, policy) -> None:
        """Load ``policy``'s weights into the engine, so the next round samples from the current policy."""
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(policy.state_dict().items())
        from pairkit.train._steps import weights_fingerprint

        self.version = weights_fingerprint(policy)

    def identity(self) -> dict[str, str]:
        """The cache key part: ``vllm``, the model name and a hash of the weights last loaded (if any)."""
        return {"backend": "vllm", "model": self.name, "policy": str(self.version)}


class OpenAISampler:
    """``k`` samples per prompt from an OpenAI-compatible server (``/completions`` for text prompts,
    ``/chat/completions`` for chat prompts), through :class:`~pairkit.judges.OpenAIJudge`'s HTTP client.

    .. math::

        y_{i,1..k} = \\text{server}(x_i;\\ n{=}k,\\ T,\\ p,\\ \\text{max\\_tokens},\\ \\text{seed}{=}s{+}i)

    One request per prompt asks for ``n = k`` choices with ``seed = seed + i`` (vLLM and OpenAI honour both;
    a server returning a different number of choices is an error). Retries, timeouts and the concurrency
    bound are the judge client's (``client_options`` are passed to it: ``max_concurrency``, ``max_retries``,
    ``timeout``, …). ``identity()`` is the server and model name, so a cached round is never sampled again.
    """

    def __init__(self, model: str, *, base_url: str, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 extra_body: dict | None = None, **client_options):  # fmt: skip
        from pairkit.judges.http import OpenAIJudge

        self.model, self.base_url = model, base_url.rstrip("/")
        self.extra_body = dict(extra_body or {})
        self._client = OpenAIJudge(model, base_url=base_url, api_key=api_key, api_key_env=api_key_env,
                                   **client_options)  # fmt: skip

    def sample(self, prompts: Sequence[Any], *, k: int, max_new_tokens: int, temperature: float, top_p: float,
               seed: int) -> list[list[str]]:  # fmt: skip
        """``k`` completions per prompt, requested concurrently."""
        return asyncio.run(self._sample(list(prompts), k, max_new_tokens, temperature, top_p, seed))

    async def _sample(self, prompts, k, max_new_tokens, temperature, top_p, seed):
        async def one(i, prompt):
            chat = not isinstance(prompt, str)
            body = {"model": self.model, "n": k, "max_tokens": max_new_tokens, "temperature": temperature,
                    "top_p": top_p, "seed": seed + i, **self.extra_body}  # fmt: skip
            body["messages" if chat else "prompt"] = prompt
            reply = await self._client._post(body, endpoint="/chat/completions" if chat else "/completions")
            choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != k:
                raise InputError(f"{self.base_url}: asked for n={k} completions of prompt {i}, got {len(choices)}")
            return [c["message"]["content"] if chat else c["text"] for c in choices]

        try:
            return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
        finally:
            await self._client.aclose()

    def identity(self) -> dict[str, str]:
        """The cache key part: ``openai``, the server and the model name."""
        return {"backend": "openai", "base_url": self.base_url, "model": self.model}


class _SamplerActor:
    """Runs in a Ray worker: a copy of the policy and its tokenizer; samples lists of prompts."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def load(self, state) -> None:
        self.model.load_state_dict(state)

    def sample(self, items, kw):
        """``items``: ``(position, prompt, seed)``; each prompt is sampled alone, so no padding or batch
        neighbour changes its samples."""
        from pairkit.train.online import sample_completions

        return [sample_completions(self.model, self.tokenizer, [prompt], seed=s, **kw)[0] for _, prompt, s in items]


def _prompt_seed(seed: int, position: int, prompt: Any, *, k: int, max_new_tokens: int, temperature: float,
                top_p: float) -> int:  # fmt: skip
    """The seed of one prompt's samples: a hash of the round's seed, the prompt's position and text, and the
    sampling parameters, in ``[0, 2**63)``.

    .. math::

        s_i = \\operatorname{SHA256}(s, i, x_i, k, n_{\\max}, T, p) \\bmod 2^{63}

    It does not depend on how the prompts are split between workers, so :class:`RaySampler` draws the same
    samples with any number of actors.
    """
    key = json.dumps([int(seed), int(position), _prompt_key(prompt), int(k), int(max_new_tokens),
                      float(temperature), float(top_p)], ensure_ascii=False)  # fmt: skip
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1


class RaySampler:
    """``k`` samples per prompt from copies of a transformers policy on Ray actors (one per GPU or CPU slot).

    .. math::

        y_{i,j} \\sim \\pi(\\cdot \\mid x_i),\\quad i \\in \\text{chunk}_a \\text{ on actor } a

    Moritz et al. (2018), "Ray: A Distributed Framework for Emerging AI Applications". The prompts are split into
    ``n_actors`` contiguous chunks, one per actor, but each prompt is sampled on its own
    (:func:`~pairkit.train.sample_completions` of that prompt alone, its ``k`` samples in one ``generate``) with a
    seed that depends only on the round's seed, the prompt (its position in the round and its text) and the
    sampling parameters (``k``, ``max_new_tokens``, ``temperature``, ``top_p``):

    .. math::

        s_i = \\operatorname{SHA256}(s, i, x_i, k, n_{\\max}, T, p) \\bmod 2^{63}

    Sample ``j`` of a prompt is therefore the same with 1 or 8 actors, in any scheduling, and the cache key
    (``identity()``) does not name the number of actors (older versions seeded chunk ``a`` with ``s + start_a``
    and named it). :func:`~pairkit.train.train_online` calls ``update_weights(policy)`` every round,
    which ships the policy's weights once (``ray.put``) to every actor. The texts come back to the calling
    process, which alone writes the sample cache; judge with :class:`~pairkit.judges.RayJudge` inside a
    :class:`~pairkit.judges.CachedJudge` to keep the judgment cache there too.

    Args:
        model, tokenizer: the policy (copied to each actor) and its tokenizer.
        n_actors: actors; num_cpus, num_gpus: resources each reserves.
        ray_init: arguments for ``ray.init`` when Ray is not running yet.
    """

    def __init__(self, model, tokenizer, *, n_actors: int = 2, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 ray_init: dict | None = None):  # fmt: skip
        from pairkit.train._loop import check_number
        from pairkit.train._steps import weights_fingerprint

        with requires("ray", "the Ray sampler"):
            import ray
        check_number("n_actors", n_actors, low=1, integer=True)
        if not ray.is_initialized():
            ray.init(**(ray_init or {}))
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_SamplerActor)
        model_ref, tokenizer_ref = ray.put(model), ray.put(tokenizer)  # stored once, read by every actor
        self.actors = [remote.remote(model_ref, tokenizer_ref) for _ in range(int(n_actors))]
        self.version = weights_fingerprint(model)

    def update_weights(self, policy) -> None:
        """Send ``policy``'s weights to every actor (skipped when they already hold them)."""
        from pairkit.train._steps import weights_fingerprint

        with requires("ray", "the Ray sampler"):
            import ray
        version = weights_fingerprint(policy)
        if version != self.version:
            state = ray.put({k: v.detach().cpu() for k, v in policy.state_dict().items()})
            ray.get([a.load.remote(state) for a in self.actors])
            self.version = version

    def sample(self, prompts: Sequence[Any], *, k: int, max_new_tokens: int, temperature: float, top_p: float,
               seed: int) -> list[list[str]]:  # fmt: skip
        """``k`` completions per prompt, the prompts split over the actors."""
        with requires("ray", "the Ray sampler"):
            import ray
        n = len(self.actors)
        bounds = [len(prompts) * a // n for a in range(n + 1)]
        kw = {"k": k, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        refs = [actor.sample.remote([(i, prompts[i], _prompt_seed(seed, i, prompts[i], **kw))
                                     for i in range(bounds[a], bounds[a + 1])], kw)
                for a, actor in enumerate(self.actors) if bounds[a + 1] > bounds[a]]  # fmt: skip
        return [ss for chunk in ray.get(refs) for ss in chunk]

    def identity(self) -> dict[str, str]:
        """The cache key part: ``ray-hf`` and a hash of the weights the actors hold (not their number: the
        samples do not depend on it)."""
        return {"backend": "ray-hf", "policy": self.version}

    def shutdown(self) -> None:
        """Stop the actors."""
        with requires("ray", "the Ray sampler"):
            import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
