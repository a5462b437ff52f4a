"""Local-model judges on Ray: one actor per GPU or CPU slot, results back to the process that owns the cache.

:class:`RayJudge` starts ``n_actors`` Ray actors, each building its own judge from ``factory`` (e.g. an
:class:`~pairkit.judges.HFJudge` on its GPU). Requests that arrive together — a strategy's round — are split
evenly across the actors and judged there in batches; the judgments come back to this process, so a
:class:`~pairkit.judges.CachedJudge` around the :class:`RayJudge` keeps the one SQLite cache (every judgment is
stored before it is used, exactly as with a local judge). The cache key is the actors' judge identity (asked of
the first actor), so cached answers of the same judge run in one process are reused and vice versa.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from pairkit._optional import requires
from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, MicroBatched, Request

__all__ = ["RayJudge"]


class _Actor:
    """Runs in a Ray worker: holds one judge and judges lists of requests."""

    def __init__(self, factory: Callable) -> None:
        self.judge = factory()

    def identity(self) -> dict:
        from pairkit.judges.cache import judge_identity

        return {**judge_identity(self.judge), "priced": bool(getattr(self.judge, "priced", False))}

    def judge_many(self, requests: list[Request]) -> list[Judgment]:
        return self.judge.judge_many(requests)


class RayJudge(MicroBatched, ComparatorBase):
    """A judge replicated over Ray actors (one per GPU, or per CPU slot).

    Args:
        factory: a picklable function returning the judge each actor uses (it runs in the actor, so a model is
            loaded there, not here).
        n_actors: how many actors (one per GPU or CPU slot).
        num_cpus, num_gpus: resources each actor reserves.
        ray_init: arguments for ``ray.init`` when Ray is not running yet (e.g. ``{"num_cpus": 4}``).

    Example:

        >>> import ray
        >>> from pairkit.judges import CallableJudge, RayJudge
        >>> started_here = not ray.is_initialized()
        >>> judge = RayJudge(lambda: CallableJudge(lambda context, a, b: 1.0, judge_id="first"), n_actors=1,
        ...                  ray_init={"num_cpus": 1, "include_dashboard": False, "log_to_driver": False})
        >>> judge.judge("q", "x", "y").p_a
        1.0
        >>> if started_here:
        ...     ray.shutdown()
    """

    @declare_options(
        Option("n_actors", int, Interval(1, 1024), doc="actors (one per GPU or CPU slot)"),
        Option("num_cpus", float, Interval(0, None), doc="CPUs per actor"),
        Option("num_gpus", float, Interval(0, None), doc="GPUs per actor"),
    )
    def __init__(
        self,
        factory: Callable,
        *,
        n_actors: int = 2,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        ray_init: dict | None = None,
    ) -> None:
        super().__init__()
        with requires("ray", "RayJudge"):
            import ray
        if not callable(factory):
            raise InputError(f"RayJudge needs a factory function returning a judge, got {type(factory).__name__}")
        if not ray.is_initialized():
            ray.init(**(ray_init or {}))
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_Actor)
        self.actors = [remote.remote(factory) for _ in range(n_actors)]
        identity = ray.get(self.actors[0].identity.remote())
        self.priced = identity.pop("priced")
        self.judge_id, self.prompt_version = identity.pop("judge_id"), identity.pop("prompt_version")
        self._identity = identity
        self.max_concurrency = 1_000_000  # a cache claims a whole round; the actors bound the work
        self.rounds = 0
        self._pending: list[tuple[Request, asyncio.Future]] = []

    def cache_identity(self) -> dict:
        """The actors' judge identity (the same as that judge's in one process)."""
        return dict(self._identity)

    async def _judge_split(self, requests: Sequence[Request]) -> list[Judgment]:
        """Requests split evenly over the actors (contiguous chunks), judged concurrently, in order."""
        n = len(self.actors)
        bounds = [len(requests) * k // n for k in range(n + 1)]
        refs = [
            actor.judge_many.remote(list(requests[bounds[k] : bounds[k + 1]]))
            for k, actor in enumerate(self.actors)
            if bounds[k + 1] > bounds[k]
        ]
        self.rounds += 1
        out: list[Judgment] = []
        for chunk in await asyncio.gather(*refs):
            out.extend(chunk)
        return out

    async def _batch(self, requests: list[Request]) -> list[Judgment]:
        return await self._judge_split(requests)

    def shutdown(self) -> None:
        """Stop the actors."""
        with requires("ray", "RayJudge"):
            import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
