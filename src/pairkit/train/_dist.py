"""Data parallel for the online loop (private to :mod:`pairkit.train`): one process owns the caches and the judge.

Under ``accelerate launch`` or ``torchrun`` (the process group of ``pairkit.train.init_distributed``) every
process runs :func:`~pairkit.train.train_online`; what only one of them may do (read and write the sample and
judgment caches, call the judge, write checkpoints and metrics) runs on the main process (rank 0) through
:func:`on_main`, which hands its result — or its exception — to all of them, so they stay in step and a failure
on the main process stops every process instead of leaving the others waiting. With one process every helper
just calls the function.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pairkit.train._loop import rank_and_world


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it pickles (to be raised on every process), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # an exception holding a lock, a socket, a C object ...
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:  # KeyboardInterrupt too: every process must stop
        return False, _portable(exc)


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` on the main process; every process returns its result (or raises its exception)."""
    rank, world = rank_and_world()
    if world == 1:
        return fn()
    box = [_outcome(fn) if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def gathered(fn: Callable[[], list]) -> list:
    """Every process runs ``fn()`` (a list: its share); all get the lists joined in rank order.

    An exception on any process is raised on all of them (the first rank's)."""
    world = rank_and_world()[1]
    if world == 1:
        return fn()
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, _outcome(fn))
    failed = next((value for ok, value in parts if not ok), None)
    if failed is not None:
        raise failed
    return [x for _, value in parts for x in value]


def share(items):
    """This process's contiguous share of ``items`` (an index array or a ``range``): ``np.array_split`` by rank."""
    rank, world = rank_and_world()
    if world == 1:
        return items
    bounds = [len(items) * r // world for r in range(world + 1)]
    return items[bounds[rank] : bounds[rank + 1]]


def total(*values: float) -> list[float]:
    """The sums over the processes of each value (float64 ``all_reduce``)."""
    if rank_and_world()[1] == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def union_keys(keys) -> list[str]:
    """The sorted union of every process's ``keys``."""
    if rank_and_world()[1] == 1:
        return sorted(keys)
    parts: list = [None] * rank_and_world()[1]
    torch.distributed.all_gather_object(parts, sorted(keys))
    return sorted(set().union(*parts))


def barrier() -> None:
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()


def is_main() -> bool:
    return rank_and_world()[0] == 0


def merged(local: dict[int, Any]) -> dict[int, Any]:
    """Dicts computed by each process (disjoint keys) merged on every process."""
    world = rank_and_world()[1]
    if world == 1:
        return local
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, _outcome(lambda: local))
    out: dict[int, Any] = {}
    for _, part in parts:
        out.update(part)
    return out


def mine(n: int) -> np.ndarray:
    """Indices ``0 … n-1`` this process computes when work is dealt round-robin (``i % world == rank``)."""
    rank, world = rank_and_world()
    return np.arange(rank, n, world)
