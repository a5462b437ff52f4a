"""The one training loop shared by every trainer: accumulation, data parallel, checkpoints, metrics.

A step consumes ``batch_size`` examples (across processes and accumulation micro-batches). The loss of a
step is the sum of per-example losses divided by ``batch_size``, so gradient accumulation and data parallel
(gradients summed with ``all_reduce``) give the update of one process on the whole batch.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit.errors import InputError

__all__ = ["TrainConfig", "TrainResult"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of every pairkit trainer.

    ``batch_size`` counts examples per optimiser step over all processes and accumulation steps; each
    process splits its share into ``grad_accum`` micro-batches. ``save_every`` (steps) writes a checkpoint
    under ``output_dir/checkpoints``; the last step always writes one when ``output_dir`` is set.
    """

    output_dir: str | None = None
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "linear"
    max_grad_norm: float | None = 1.0
    max_steps: int | None = None
    seed: int = 0
    bf16: bool = False
    save_every: int | None = None
    max_length: int = 512
    max_prompt_length: int | None = None
    chunk_size: int = 1024
    progress: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "chunk_size", "max_length"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise InputError(f"schedule must be 'linear', 'cosine' or 'constant', got {self.schedule!r}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr!r}")


@dataclasses.dataclass
class TrainResult:
    """What a trainer returns: the per-step metrics and the final step."""

    history: list[dict[str, float]]
    step: int
    output_dir: str | None = None


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _lr_lambda(config: TrainConfig, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        if config.schedule == "constant":
            return 1.0
        frac = (step - config.warmup_steps) / max(total - config.warmup_steps, 1)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        return max(0.0, 1.0 - frac)

    return f


def _rng_state() -> dict[str, Any]:
    # user code (collators, dropout hooks) may draw from the global generators, so all three are restored
    numpy_state = np.random.get_state()  # noqa: NPY002
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoints/step-N.pt`` under ``output_dir``, or None."""
    ckpts = sorted(Path(output_dir, "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return ckpts[-1] if ckpts else None


def fit(
    model: torch.nn.Module,
    examples: Sequence[Any],
    step_loss: Callable[[torch.nn.Module, list[Any]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    config: TrainConfig,
    *,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    losses: Sequence[str] = (),
) -> TrainResult:
    """Run the loop. ``step_loss(model, rows)`` returns per-example losses ``[n]`` and per-example stats.

    ``losses`` names the registered losses ``step_loss`` uses; a batch-coupled one (its spec says so) is
    refused under gradient accumulation, which would split its batch (see :func:`check_batch_coupled`).

    Stats are averaged over the step's examples (over all processes) and logged with the loss, the learning
    rate and the gradient norm, to ``output_dir/metrics.jsonl`` on rank 0 and to ``callback``.
    """
    rank, world = _dist()
    n = len(examples)
    if n == 0:
        raise InputError("no training examples")
    check_batch_coupled(losses, config.grad_accum)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, int(config.max_steps))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total))
    orders: dict[int, np.ndarray] = {}
    start = 0
    out_dir = Path(config.output_dir) if config.output_dir else None
    if resume:
        ckpt = latest_checkpoint(out_dir) if out_dir else None
        if ckpt is None:
            raise InputError(f"resume=True but no checkpoint under {str(out_dir)!r}/checkpoints")
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        orders = {int(k): np.asarray(v) for k, v in state["orders"].items()}
        start = int(state["step"])
        _set_rng_state(state["rng"])
    metrics_fh = None
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_fh = open(out_dir / "metrics.jsonl", "a" if resume else "w", encoding="utf-8")  # noqa: SIM115
    bar = None
    if config.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if config.bf16 else nullcontext()
    history = []
    model.train()
    try:
        for step in range(start, total):
            epoch, i = divmod(step, steps_per_epoch)
            if epoch not in orders:
                orders[epoch] = np.random.default_rng([config.seed, epoch]).permutation(n)
            idx = orders[epoch][i * config.batch_size : (i + 1) * config.batch_size]
            local = np.array_split(idx, world)[rank]
            sums: dict[str, torch.Tensor] = {}
            for micro in np.array_split(local, config.grad_accum):
                if len(micro) == 0:
                    continue
                with autocast:
                    losses, stats = step_loss(model, [examples[j] for j in micro])
                (losses.float().sum() / len(idx)).backward()
                for key, value in {"loss": losses, **stats}.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().double().sum()
            keys = sorted(sums)
            totals = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64) for k in keys])
            if world > 1:
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    torch.distributed.all_reduce(p.grad)
                torch.distributed.all_reduce(totals)
            grad_norm = _clip(params, config.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            row = {"step": step + 1, "epoch": epoch + (i + 1) / steps_per_epoch, "lr": lr, "grad_norm": grad_norm}
            row.update({k: float(v) / len(idx) for k, v in zip(keys, totals)})
            history.append(row)
            if metrics_fh is not None:
                metrics_fh.write(json.dumps(row) + "\n")
                metrics_fh.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{row[k]:.3f}" for k in ("loss", "accuracy") if k in row})
            last = step + 1 == total
            if (
                out_dir is not None
                and rank == 0
                and (last or (config.save_every and (step + 1) % config.save_every == 0))
            ):
                _save(out_dir, model, optimizer, scheduler, step + 1, orders, config)
            if callback is not None:
                callback(row)
    finally:
        if metrics_fh is not None:
            metrics_fh.close()
        if bar is not None:
            bar.close()
    return TrainResult(history=history, step=total, output_dir=str(out_dir) if out_dir else None)


def _clip(params: list[torch.Tensor], max_norm: float | None) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm is None:
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def _save(out_dir: Path, model, optimizer, scheduler, step: int, orders, config: TrainConfig) -> None:
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "step": step,
        "orders": {k: v.tolist() for k, v in orders.items()},
        "config": dataclasses.asdict(config),
    }
    tmp = ckpt_dir / f"step-{step}.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(ckpt_dir / f"step-{step}.pt")


def call_loss(
    name: str, fn: Callable[..., torch.Tensor], inputs: dict[str, Any], options: dict[str, Any]
) -> torch.Tensor:
    """Call a registered loss with the inputs its signature names and the options it accepts, per example.

    Every parameter named in ``inputs`` (also without its ``policy_`` prefix) is filled from it, so a loss
    that accepts ``chosen_lengths`` gets them; a required one that is missing raises :class:`InputError`.
    Of ``options`` only those in the signature are passed (see :func:`check_options`).
    """
    sig = inspect.signature(fn)
    args, kwargs, positional = [], {}, True
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("weights", "reduction"):
            continue
        key = p.name if p.name in inputs else f"policy_{p.name}"
        if key not in inputs:
            if p.default is p.empty:
                raise InputError(
                    f"loss {name!r} needs {p.name!r}, which this trainer does not provide "
                    f"(it provides {sorted(inputs)}); use the trainer for that kind of data"
                )
            positional = positional and p.kind == p.KEYWORD_ONLY
            continue
        # positional parameters go by position: a registered wrapper may rename them internally
        if positional and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(inputs[key])
        else:
            kwargs[p.name] = inputs[key]
    kwargs.update({k: v for k, v in options.items() if k in sig.parameters})
    return fn(*args, **kwargs, reduction="none")


def parse_loss_spec(loss: str | dict[str, float] | Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``"dpo"``, ``"dpo+0.5*sft"``, ``{"dpo": 1, "sft": 0.5}`` or ``[("dpo", 1.0)]`` → [(name, weight)]."""
    if isinstance(loss, str):
        terms = []
        for part in loss.replace(" ", "").split("+"):
            weight, _, name = part.rpartition("*")
            try:
                terms.append((name, float(weight) if weight else 1.0))
            except ValueError:
                raise InputError(f"loss term {part!r} must be NAME or WEIGHT*NAME (e.g. '0.5*sft')") from None
        return terms
    items = list(loss.items()) if isinstance(loss, dict) else list(loss)
    if not items:
        raise InputError("loss: give at least one loss name")
    return [(str(k), float(w)) for k, w in items]


def check_options(terms: list[tuple[str, Callable]], options: dict[str, Any]) -> None:
    """Raise :class:`InputError` for an option that none of the loss terms accepts."""
    accepted = set().union(*(inspect.signature(fn).parameters for _, fn in terms))
    for key in options:
        if key not in accepted:
            raise InputError(
                f"no loss in {[n for n, _ in terms]} has an option {key!r}; they accept {sorted(accepted)}"
            )


def check_batch_coupled(losses: Sequence[str], grad_accum: int) -> None:
    """Refuse a batch-coupled loss under gradient accumulation.

    The loop sums per-example values over micro-batches; a loss whose value for one example depends on the
    others (Dr. DPO's soft minimum, AOT's sorted quantiles, the batch token-mean SFT term) would then be
    computed on each micro-batch alone — another objective — so it raises :class:`InputError` instead.
    """
    if grad_accum <= 1:
        return
    from pairkit.losses import spec

    coupled = [name for name in losses if spec(name).batch_coupled]
    if coupled:
        raise InputError(
            f"loss {', '.join(map(repr, coupled))} is batch-coupled (each example's value depends on the whole "
            f"batch), so grad_accum={grad_accum} would change its objective; use grad_accum=1 with a batch_size "
            "that fits in memory, or a per-example loss"
        )
