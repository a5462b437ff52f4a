"""Data parallel for the online loop (private to :mod:`pairkit.train`): one process owns the caches and the judge.

Under ``accelerate launch`` or ``torchrun`` (the process group of ``pairkit.train.init_distributed``) every
process runs :func:`~pairkit.train.train_online`; what only one of them may do (read and write the sample and
judgment caches, call the judge, write checkpoints and metrics) runs on the main process (rank 0) through
:func:`on_main`, which hands its result — or its exception — to all of them, so they stay in step and a failure
on the main process stops every process instead of leaving the others waiting. With one process every helper
just calls the function.
"""

from __future__ import annotations

import dataclasses
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


# ------------------------------------------------------------------ per-example state and the whole batch


def row_counts(n: int) -> list[int]:
    """Every process's row count ``n`` (rank order)."""
    world = rank_and_world()[1]
    if world == 1:
        return [n]
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(world)]
    torch.distributed.all_gather(counts, torch.tensor([n], dtype=torch.long))
    return [int(c) for c in counts]


def all_rows(x: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
    """Every process's rows of ``x`` ``[n_r, ...]`` concatenated in rank order, without gradient.

    The processes hold consecutive shares of a step's batch (rank order), so this is the batch as one process
    computes it: what a first-in-first-out bank enqueues, or per-example state is updated with. ``counts``: the
    processes' row counts when the caller already has them (:func:`row_counts`).
    """
    x = x.detach()
    counts = row_counts(x.shape[0]) if counts is None else counts
    if len(counts) == 1:
        return x
    dtype = x.dtype
    wire = x.to(torch.uint8) if dtype == torch.bool else x  # gloo has no bool
    padded = wire.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = wire
    parts = [torch.empty_like(padded) for _ in counts]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(dtype)


def whole_batch(x: torch.Tensor) -> torch.Tensor:
    """:func:`all_rows`, but this process's own rows keep their gradient (the others' are constants).

    A batch-coupled loss ``L`` computed on these rows has the value of one process on the whole batch, and its
    gradient reaches only this process's rows: :math:`\\partial L/\\partial x_r`. Summing the parameter
    gradients over the processes (:func:`~pairkit.train._loop.all_reduce_gradients`) then gives
    :math:`\\sum_r \\partial L/\\partial x_r\\,\\partial x_r/\\partial\\theta = dL/d\\theta`, with no collective in
    the backward pass (see :func:`whole_batch_term` for the weight).
    """
    rank, world = rank_and_world()
    if world == 1:
        return x
    counts = row_counts(x.shape[0])
    every = all_rows(x, counts)
    start = sum(counts[:rank])
    return torch.cat([every[:start], x, every[start + x.shape[0] :]])


def whole_batch_term(value: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """A term computed on :func:`whole_batch` rows, weighted for the loop that sums ``n`` rows' values over ``size``.

    The loop adds ``n / size`` of a per-process term to the step's loss on each process; the value keeps that
    weight (the processes' values sum to ``L``), while the gradient gets weight 1 (each process's own rows get
    all of :math:`\\partial L/\\partial x_r`). One process: ``n == size``, the value itself.
    """
    if n == size:
        return value
    fixed = value.detach()
    return fixed + (value - fixed) * (size / n)


def whole_batch_values(values: torch.Tensor, n: int) -> torch.Tensor:
    """This process's ``[n]`` per-example share of a batch-coupled loss's ``[size]`` values on the whole batch.

    ``values`` were computed (``reduction="none"``) on :func:`whole_batch` rows, so they are one process's values
    on the whole step; the loop sums each process's ``[n]`` values and divides by the step's ``size``. The values
    returned are this process's slice (so the processes' sums add up to ``values.sum()``), and their gradient is
    that of ``values.sum() / n`` on each row, so the loop's ``sum / size`` backward gives
    :math:`\\partial\\,\\mathrm{mean}(values)/\\partial x_r` — all of it, for this process's rows. One process:
    ``values`` themselves.
    """
    if rank_and_world()[1] == 1:
        return values
    mine = own_rows(n)
    if values.shape[0] != mine.size:
        raise RuntimeError(f"expected {mine.size} values of the whole batch, got {values.shape[0]}")
    whole = values.sum()
    return values[mine.start : mine.stop].detach() + (whole - whole.detach()) / n


@dataclasses.dataclass(frozen=True)
class Rows:
    """Where this process's rows lie in the whole batch (:func:`whole_batch`): ``start:stop`` of ``size``."""

    start: int
    stop: int
    size: int


def own_rows(n: int) -> Rows:
    """Where this process's ``n`` rows lie in the whole batch of every process's rows in rank order."""
    rank = rank_and_world()[0]
    counts = row_counts(n)
    start = sum(counts[:rank])
    return Rows(start, start + n, sum(counts))


def same_trailing_shape(x: torch.Tensor) -> bool:
    """Whether ``x`` has the same shape after its first axis on every process (so its rows can be gathered)."""
    world = rank_and_world()[1]
    if world == 1:
        return True
    shape = torch.tensor(x.shape[1:], dtype=torch.long)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    torch.distributed.all_gather(shapes, shape)
    return all(torch.equal(s, shape) for s in shapes)
