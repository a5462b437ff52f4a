"""The one training loop shared by every trainer: accumulation, data parallel, checkpoints, metrics.

A step consumes ``batch_size`` examples (across processes and accumulation micro-batches). The loss of a
step is the sum of per-example losses divided by ``batch_size``, so gradient accumulation and data parallel
(gradients summed with ``all_reduce``) give the update of one process on the whole batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairkit._optional import requires
from pairkit.errors import EstimationError, InputError, PairkitWarning

__all__ = ["TrainConfig", "TrainResult", "check_number", "init_distributed"]


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise :class:`InputError` naming the option, its allowed range and the value unless ``value`` is in it.

    NaN and infinities are never allowed; ``low_open`` excludes ``low`` itself (``beta`` in (0, inf)).
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (not integer or float(value) == int(value))
    if ok and low is not None:
        ok = float(value) > low if low_open else float(value) >= low
    if ok and high is not None:
        ok = float(value) <= high
    if not ok:
        left = "(" if low_open else "["
        lo = "-inf" if low is None else (int(low) if integer else low)
        hi = "inf" if high is None else high
        kind = "an integer" if integer else "a finite number"
        raise InputError(f"{name} must be {kind} in {left}{lo}, {hi}{']' if high is not None else ')'}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Options of every pairkit trainer.

    ``batch_size`` counts examples per optimiser step over all processes and accumulation steps; each
    process splits its share into ``grad_accum`` micro-batches. ``save_every`` (steps) writes a checkpoint
    under ``output_dir/checkpoints``; the last step always writes one when ``output_dir`` is set.

    ``dropout=False`` (the default, as TRL's ``disable_dropout``) runs the training forward passes in eval mode,
    which switches off every dropout — ``nn.Dropout`` modules and the attention dropout transformers applies
    functionally — so the policy at step 1 equals the reference (DPO's first loss is exactly ln 2).
    ``shuffle=False`` keeps the data order in every epoch (a curriculum such as
    :func:`~pairkit.train.curriculum_pairs`, easy to hard).
    ``fsdp=True`` (or ``accelerate launch --use_fsdp``) shards the parameters, gradients and optimizer state over
    the processes with torch's ``fully_shard`` (FSDP2) instead of keeping a full replica on each; the model passed
    to the trainer stays sharded afterwards (``pairkit.train.full_state_dict`` gathers it). One process: no
    effect.
    Truncation: completions are cut to ``max_completion_length`` and prompts to ``max_prompt_length``; a pair
    longer than ``max_length`` loses prompt tokens (from the left) before completion tokens.
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
    max_completion_length: int | None = None
    chunk_size: int = 1024
    progress: bool = False
    dropout: bool = False
    shuffle: bool = True
    fsdp: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "chunk_size", "max_length"):
            check_number(name, getattr(self, name), low=1, integer=True)
        for name in ("max_steps", "save_every", "max_prompt_length", "max_completion_length"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=1, integer=True)
        check_number("warmup_steps", self.warmup_steps, low=0, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        if self.schedule not in ("linear", "cosine", "constant"):
            raise InputError(f"schedule must be 'linear', 'cosine' or 'constant', got {self.schedule!r}")
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)
        if self.max_grad_norm is not None:
            check_number("max_grad_norm", self.max_grad_norm, low=0, low_open=True)


@dataclasses.dataclass
class TrainResult:
    """What a trainer returns: the per-step metrics and the final step.

    ``proxies``: the learnable class proxies a trainer fitted with the model (:func:`~pairkit.train.train_contrastive`
    with proxy losses), by ``"loss.input"`` name; None otherwise. ``regression_head``: the linear head
    :func:`~pairkit.train.train_contrastive` trained for a loss that needs predictions (ConR); None otherwise.
    ``heads``: the modules a trainer trained with the model, by name: :func:`~pairkit.train.train_distillation`'s
    (the projection to the teacher's width, auxiliary, weak and novel-class heads), the classifier and preference
    head of :func:`~pairkit.train.train_semi_supervised`, the regression head of
    :func:`~pairkit.train.train_regression`; None otherwise. ``memory_bank``: the memory bank a trainer kept
    (SimMatchV2's embeddings and probabilities, oldest first); None otherwise.
    """

    history: list[dict[str, float]]
    step: int
    output_dir: str | None = None
    proxies: dict[str, torch.Tensor] | None = None
    regression_head: torch.nn.Module | None = None
    heads: dict[str, torch.nn.Module] | None = None
    memory_bank: dict[str, torch.Tensor] | None = None


def rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group a launcher describes in the environment; returns ``(rank, world_size)``.

    ``torchrun`` (and ``accelerate launch --multi_gpu``) start one process per worker with ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` set; with ``WORLD_SIZE`` > 1 and no process group yet, this starts one
    (``nccl`` when CUDA is available, else ``gloo``), so every trainer runs data parallel under those launchers
    with no code change. Already initialised, or a single process: nothing to do.
    """
    import os

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend, rank=int(os.environ["RANK"]), world_size=world)
    return rank_and_world()


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


@dataclasses.dataclass(frozen=True)
class Micro:
    """Where a micro-batch lies: given to ``step_loss`` as its third argument by ``fit(..., positions=True)``.

    ``rows`` are the indices (into the examples) of the whole step's batch over every process, in order;
    this micro-batch is ``rows[start:stop]``. ``first`` is the position of the step's first row in the stream of
    rows the run has consumed (``epoch · n + i · batch_size``), so ``first + start`` is this micro-batch's.
    ``last`` is True on this process's last micro-batch of the step.
    """

    step: int
    epoch: int
    first: int
    rows: np.ndarray
    start: int
    stop: int
    last: bool

    @property
    def size(self) -> int:
        """The rows of the whole step (over every process and micro-batch)."""
        return len(self.rows)


def check_collective(n: int, config: TrainConfig, world: int, why: str = "as they share state") -> None:
    """Refuse a step with an empty micro-batch on some process when ``step_loss`` runs collectives.

    Every process must then call ``step_loss`` equally often; the smallest step (the last of an epoch, when
    ``batch_size`` does not divide ``n``) must give each of the ``world`` processes ``grad_accum`` rows at least.
    ``why`` ends the error's reason (shared state, or the batch-coupled losses computed on every process's rows).
    """
    if world == 1:
        return
    size = min(config.batch_size, n - (math.ceil(n / config.batch_size) - 1) * config.batch_size)
    if size // world < config.grad_accum:
        raise InputError(
            f"data parallel over {world} processes with grad_accum={config.grad_accum} needs at least "
            f"{world * config.grad_accum} rows in every step (each process runs every micro-batch, {why}), but "
            f"{n} rows in batches of {config.batch_size} leave a step of {size}; choose a batch_size whose last "
            "batch of an epoch is large enough (or fewer processes / less accumulation)"
        )


def fit(
    model: torch.nn.Module,
    examples: Sequence[Any],
    step_loss: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
    config: TrainConfig,
    *,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
    after_step: Callable[[], None] | None = None,
    losses: Sequence[str] = (),
    positions: bool = False,
    collective: bool = False,
) -> TrainResult:
    """Run the loop. ``step_loss(model, rows)`` returns per-example losses ``[n]`` and per-example stats.

    ``losses`` names the registered losses ``step_loss`` uses; a batch-coupled one (its spec says so) is
    refused under gradient accumulation, which would split its batch (see :func:`check_batch_coupled`); under
    data parallel ``step_loss`` must compute it on the whole step's batch (every process's rows gathered:
    :func:`pairkit.train._steps.loss_values`, :func:`pairkit.train._dist.whole_batch`), so every process must
    get a row of the step, as with ``collective``. ``positions=True`` calls ``step_loss(model, rows, micro)`` with
    a :class:`Micro` saying where the rows lie in the step and in the stream. ``collective=True`` says
    ``step_loss`` runs collectives (gathers of per-example state) under data parallel, so every process must get
    a row of every micro-batch (:func:`check_collective`).

    Stats are averaged over the step's examples (over all processes) and logged with the loss, the learning
    rate and the gradient norm, to ``output_dir/metrics.jsonl`` on rank 0 and to ``callback``. ``after_step()``
    runs after each optimizer step, before the checkpoint (an EMA teacher's update).

    With ``config.fsdp`` (or ``accelerate launch --use_fsdp``) and more than one process the model is sharded
    in place (:mod:`pairkit.train._fsdp`) and each step runs inside the root's FSDP forward hooks; the gradients
    are then reduce-scattered (averaged, hence the loss scaled by the number of processes) instead of summed
    with ``all_reduce``, so both modes make the update of one process on the whole batch.
    """
    from pairkit.train import _fsdp

    rank, world = init_distributed()
    n = len(examples)
    if n == 0:
        raise InputError("no training examples")
    check_batch_coupled(losses, config.grad_accum)
    coupled = coupled_losses(losses) if world > 1 else []
    if collective or coupled:  # a batch-coupled loss gathers the whole batch
        why = (f"as loss {', '.join(map(repr, coupled))} is batch-coupled: computed on every process's rows" if coupled
               else "as they share state")  # fmt: skip
        check_collective(n, config, world, why)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, int(config.max_steps))
    requested = _fsdp.fsdp_requested(config)
    plan = _fsdp.settings() if requested else None  # accelerate's --fsdp_* options, checked in one process too
    sharded = world > 1 and requested
    if sharded:
        _fsdp.shard(model, plan)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InputError("the model has no trainable parameters")
    run_step = _fsdp.sharded_step(model, step_loss) if sharded else (lambda *args: step_loss(model, *args))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config, total))
    orders: dict[int, np.ndarray] = {}
    start = 0
    out_dir = Path(config.output_dir) if config.output_dir else None
    fingerprint = _data_fingerprint(examples, config) if out_dir is not None else None
    if resume:
        ckpt = latest_checkpoint(out_dir) if out_dir else None
        if ckpt is None:
            raise InputError(f"resume=True but no checkpoint under {str(out_dir)!r}/checkpoints")
        state = load_checkpoint(ckpt)
        if state.get("data") not in (None, fingerprint):
            raise InputError(
                f"cannot resume from {ckpt}: it was trained on other data or with another batch size or seed; "
                "give the same data and options, or a new --output directory"
            )
        if bool(state.get("fsdp")) != sharded:
            raise InputError(
                f"cannot resume from {ckpt}: it was written {'with' if state.get('fsdp') else 'without'} FSDP; "
                f"resume it {'with' if state.get('fsdp') else 'without'} fsdp (and with more than one process)"
            )
        try:
            if sharded:
                _fsdp.load_checkpoint_states(model, optimizer, state["model"], state["optimizer"])
            else:
                model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise InputError(f"cannot resume from {ckpt}: it holds another model's weights ({exc})") from None
        if not sharded:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        # the optimizer holds the rate the checkpointed run would use next; with more max_steps or epochs the
        # schedule is longer (a run that ended decayed to 0): take this run's rate for the next step
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * scheduler.lr_lambdas[0](scheduler.last_epoch)
        orders = {int(k): np.asarray(v) for k, v in state["orders"].items()}
        start = int(state["step"])
        _set_rng_state(state["rng"])
        if start >= total:
            warnings.warn(
                f"resume: the run in {str(out_dir)!r} already reached step {start} of {total}; nothing to train "
                "(raise max_steps or epochs to continue)",
                PairkitWarning,
                stacklevel=2,
            )
    metrics_fh = None
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            _truncate_metrics(out_dir / "metrics.jsonl", start)
        metrics_fh = open(out_dir / "metrics.jsonl", "a" if resume else "w", encoding="utf-8")  # noqa: SIM115
    bar = None
    if config.progress and rank == 0:
        with requires("train", "the progress bar"):
            from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if config.bf16 else nullcontext()
    history = []
    model.train(config.dropout)
    try:
        for step in range(start, total):
            epoch, i = divmod(step, steps_per_epoch)
            if epoch not in orders:
                rng = np.random.default_rng([config.seed, epoch])
                orders[epoch] = rng.permutation(n) if config.shuffle else np.arange(n)
            idx = orders[epoch][i * config.batch_size : (i + 1) * config.batch_size]
            local = np.array_split(np.arange(len(idx)), world)[rank]
            sums: dict[str, torch.Tensor] = {}
            for k, at in enumerate(np.array_split(local, config.grad_accum)):
                micro = idx[at]
                # under FSDP every process must run as many forward and backward passes (their hooks are
                # collectives): an empty micro-batch runs one example of the step with weight 0
                weight = 1.0 if len(micro) else 0.0
                if len(micro) == 0 and not sharded:
                    continue
                args: tuple = ([examples[j] for j in (micro if len(micro) else idx[:1])],)
                if positions:
                    start = int(at[0]) if len(at) else 0
                    args += (Micro(step, epoch, epoch * n + i * config.batch_size, idx, start, start + len(at),
                                   k == config.grad_accum - 1),)  # fmt: skip
                with autocast:
                    losses, stats = run_step(*args)
                (losses.float().sum() * (world * weight if sharded else 1) / len(idx)).backward()
                for key, value in {"loss": losses, **stats}.items():
                    sums[key] = sums.get(key, 0.0) + value.detach().double().sum() * weight
            keys = sorted(sums)
            totals = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64) for k in keys])
            if world > 1 and not sharded:
                all_reduce_gradients(params)
            if world > 1:
                torch.distributed.all_reduce(totals)
            grad_norm = clip_gradients(params, config.max_grad_norm)
            loss_value = float(totals[keys.index("loss")]) / len(idx)
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
                # stop before the update: a NaN step would overwrite every weight and the next checkpoint
                raise EstimationError(
                    f"step {step + 1}: the loss is {loss_value} and the gradient norm {grad_norm}; the model was "
                    "not updated (lower the learning rate, check beta and the loss options, or the data)"
                )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step()
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
                and (rank == 0 or sharded)  # gathering FSDP shards is a collective: every process takes part
                and (last or (config.save_every and (step + 1) % config.save_every == 0))
            ):
                _save(out_dir, model, optimizer, scheduler, step + 1, orders, config, fingerprint, sharded, rank)
            if callback is not None:
                callback(row)
        if out_dir is not None and world > 1:  # the checkpoint rank 0 wrote is there for every process's next read
            torch.distributed.barrier()
    finally:
        if metrics_fh is not None:
            metrics_fh.close()
        if bar is not None:
            bar.close()
        if sharded:
            _fsdp.forget_step(model)
    return TrainResult(history=history, step=total, output_dir=str(out_dir) if out_dir else None)


def all_reduce_gradients(params: list[torch.Tensor]) -> None:
    """Data parallel: sum every parameter's gradient over the processes (``all_reduce``), in place.

    A parameter with a gradient on some process only gets zeros elsewhere first; one with no gradient on any
    process keeps ``grad = None`` (the optimiser then skips it, as in one process). One process: nothing to do.
    """
    if rank_and_world()[1] == 1:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    torch.distributed.all_reduce(present)
    for p, seen in zip(params, present.tolist()):
        if seen:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)


def clip_gradients(params: list[torch.Tensor], max_norm: float | None) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm is None:
        if any(hasattr(g, "full_tensor") for g in grads):  # FSDP shards: the norm of the whole gradient
            return float(torch.nn.utils.get_total_norm(grads).full_tensor())
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def _data_fingerprint(examples: Sequence[Any], config: TrainConfig) -> str:
    """A hash of the training examples and of the options that fix the batch order (batch size, seed)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((config.batch_size, config.seed, len(examples))).encode())
    for ex in examples:
        _hash_into(h, ex)
    return h.hexdigest()


def _hash_into(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        h.update(str(value.dtype).encode() + repr(tuple(value.shape)).encode())
        h.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(repr(key).encode())
            _hash_into(h, value[key])
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], (torch.Tensor, dict)):
        h.update(b"[")
        for item in value:
            _hash_into(h, item)
        h.update(b"]")
    else:  # token ids, texts, scores: repr of the nested lists runs in C
        h.update(repr(value).encode())


def load_checkpoint(ckpt: Path) -> dict[str, Any]:
    try:
        return torch.load(ckpt, weights_only=False)
    except Exception as exc:  # truncated or foreign files raise EOFError, RuntimeError, UnpicklingError, ...
        raise InputError(
            f"checkpoint {ckpt} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); it is damaged or not a "
            "pairkit checkpoint: delete it to resume from the previous one"
        ) from None


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics of steps up to the checkpoint: steps after it are trained (and logged) again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def _save(out_dir: Path, model, optimizer, scheduler, step: int, orders, config: TrainConfig, data=None,
          sharded: bool = False, rank: int = 0) -> None:  # fmt: skip
    if sharded:  # whole states, gathered by all processes, written by rank 0
        from pairkit.train._fsdp import checkpoint_states

        model_state, optimizer_state = checkpoint_states(model, optimizer)
        if rank != 0:
            return
    else:
        model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model_state,
        "optimizer": optimizer_state,
        "fsdp": sharded,
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "step": step,
        "orders": {k: v.tolist() for k, v in orders.items()},
        "config": dataclasses.asdict(config),
        "data": data,
    }
    atomic_save(state, ckpt_dir / f"step-{step}.pt")


def atomic_save(state: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, rename: a kill leaves the old file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def call_loss(
    name: str, inputs: dict[str, Any], options: dict[str, Any], reduction: str = "none"
) -> torch.Tensor:
    """Call a registered loss (per example unless ``reduction`` says otherwise) with its declared inputs and options.

    The spec (:func:`pairkit.losses.spec`) lists the loss's tensor inputs with their kind and shape; each is
    taken from ``inputs`` by name (also without a ``policy_`` prefix). An input declared with the token shape
    ``[batch, T]`` is taken from ``inputs["token"]`` (the token-level tensors the trainer made) when present.
    So is any input with a token axis ``T`` (``[batch, list, T]`` of preference trees).
    A required input that is missing raises :class:`InputError` naming it; ``mask`` (the padding mask of lists)
    is passed when given and the spec takes it. Of ``options`` (checked once by :func:`check_options`) those the
    spec declares are passed, to the function without its per-call check: the unscoped ones, then this loss's
    scoped ``"<loss>.<option>"`` ones over them (:func:`options_for`).
    """
    from pairkit import losses

    spec = losses.spec(name)
    token = inputs.get("token") or {}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for inp in spec.input_specs:
        per_token = "T" in (d.strip() for d in inp.shape.strip("[]").split(","))
        pool = token if per_token and inp.name in token else inputs
        key = inp.name if inp.name in pool else f"policy_{inp.name}"
        value = pool.get(key)
        if value is None and inp.required:
            raise InputError(
                f"loss {name!r} needs {inp.name!r} ({inp.kind} {inp.shape}), which this trainer does not provide "
                f"(it provides {sorted(k for k in inputs if k != 'token')}); use the trainer for that kind of "
                "data, or give the column"
            )
        if inp.keyword:
            if value is not None:
                kwargs[inp.name] = value
        else:
            args.append(value)
    while args and args[-1] is None:
        args.pop()
    if "mask" in inputs and "mask" not in kwargs and "mask" in spec.keywords:
        kwargs["mask"] = inputs["mask"]
    kwargs.update({k: v for k, v in options_for(name, options).items() if spec.takes(k)})
    if "reduction" not in spec.keywords:  # a batch-level value (uniformity, ICNN): its own "mean"
        if reduction != "mean":
            raise InputError(f"loss {name!r} is one value per batch (it has no per-example values); use it in "
                             "a trainer that takes batch-level losses (train_contrastive)")  # fmt: skip
        return spec.unchecked(*args, **kwargs)
    return spec.unchecked(*args, **kwargs, reduction=reduction)


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


def split_option(key: str) -> tuple[str | None, str]:
    """``"kto.beta"`` → ``("kto", "beta")``; an unscoped ``"beta"`` → ``(None, "beta")``."""
    loss, dot, option = key.rpartition(".")
    return (loss, option) if dot else (None, key)


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of the loss term ``name`` (registered name or alias) out of one run's ``loss_options``.

    The unscoped keys (``"beta"``) apply to every term; a scoped key ``"<loss>.<option>"`` (``"kto.beta"``, the
    loss by its name or any alias) applies to that term only and overrides the unscoped key for it. The result
    has plain option names only.

    >>> options_for("kto", {"beta": 0.1, "kto.beta": 0.5, "dpo.label_smoothing": 0.1})
    {'beta': 0.5}
    """
    from pairkit import losses

    own = losses.spec(name).name
    plain: dict[str, Any] = {}
    scoped: dict[str, Any] = {}
    for key, value in options.items():
        loss, option = split_option(key)
        if loss is None:
            plain[option] = value
        elif loss == own or losses.spec(loss).name == own:
            scoped[option] = value
    return {**plain, **scoped}


def set_for_all(options: dict[str, Any], option: str, value: Any) -> dict[str, Any]:
    """``options`` with ``option`` set to ``value`` for every term (its scoped values dropped)."""
    return {**{k: v for k, v in options.items() if split_option(k)[1] != option}, option: value}


def check_options(names: Sequence[str], options: dict[str, Any]) -> dict[str, Any]:
    """Check the loss options once, against the specs of the losses ``names``; return them checked.

    An option that no loss declares raises :class:`InputError` listing the ones they do; a value outside an
    option's declared range raises :class:`InputError` naming the loss, the option, the range and the value.
    A scoped key ``"<loss>.<option>"`` (the loss by name or alias; see :func:`options_for`) must name one of the
    terms and an option that loss declares, and is checked against that loss's range only; it is returned under
    the loss's registered name.
    """
    from pairkit import losses

    specs = [losses.spec(n) for n in names]
    terms = {s.name: s for s in specs}
    checked = {}
    for key, value in options.items():
        loss, option = split_option(key)
        if loss is not None:
            try:
                s = terms.get(losses.spec(loss).name)
            except InputError:
                s = None
            if s is None:
                raise InputError(f"loss option {key!r}: {loss!r} is not a loss of this run; its losses are "
                                 f"{sorted(terms)} (scope an option as '<loss>.<option>')")  # fmt: skip
            if not s.takes(option):
                raise InputError(f"loss option {key!r}: loss {s.name!r} has no option {option!r}; it accepts "
                                 f"{sorted(s.option_names)}")  # fmt: skip
            checked[f"{s.name}.{option}"] = s.option(option).check(value, where=f"loss {s.name!r}: ")
            continue
        takers = [s for s in specs if s.takes(key)]
        if not takers:
            accepted = sorted(set().union(*(s.option_names for s in specs)))
            raise InputError(f"no loss in {list(names)} has an option {key!r}; they accept {accepted} (or "
                             "'<loss>.<option>' for one loss)")  # fmt: skip
        for s in takers:
            value = s.option(key).check(value, where=f"loss {s.name!r}: ")
        checked[key] = value
    return checked


def check_batch_coupled(losses: Sequence[str], grad_accum: int) -> None:
    """Refuse a batch-coupled loss under gradient accumulation.

    The loop sums per-example values over micro-batches; a loss whose value for one example depends on the
    others (Dr. DPO's soft minimum, AOT's sorted quantiles, the batch token-mean SFT term) would then be
    computed on each micro-batch alone — another objective — so it raises :class:`InputError` instead.
    """
    if grad_accum <= 1:
        return
    coupled = coupled_losses(losses)
    if coupled:
        raise InputError(
            f"loss {', '.join(map(repr, coupled))} is batch-coupled (each example's value depends on the whole "
            f"batch), so grad_accum={grad_accum} would change its objective; use grad_accum=1 with a batch_size "
            "that fits in memory, or a per-example loss"
        )


def coupled_losses(losses: Sequence[str]) -> list[str]:
    """The batch-coupled ones of the registered losses ``losses`` (their spec says so)."""
    from pairkit.losses import spec

    return [name for name in losses if spec(name).batch_coupled]
