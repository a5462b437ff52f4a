"""Fully sharded data parallel (FSDP2, torch's ``fully_shard``) for the training loop.

Zhao et al. (2023), "PyTorch FSDP: Experiences on Scaling Fully Sharded Data Parallel". Every parameter, its
gradient and its optimizer state are split over the processes (``Shard(0)`` DTensors); a module's parameters are
all-gathered just before it runs and its gradients reduce-scattered after its backward, in hooks around the
module's *forward*. pairkit's log-probabilities never call the causal LM's ``forward`` (they run the decoder and
apply the output head to chunks of positions, so ``[batch, time, vocab]`` logits never exist), so the loop runs
the whole step (:func:`sharded_step`) as a registered forward method of the root module
(``register_fsdp_forward_method``): the root's parameters (embeddings, output head, final norm) are gathered once
for the step, each decoder block gathers its own inside the decoder, and after backward every gradient is
reduce-scattered. The chunked head reads the gathered weight exactly as without FSDP.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["full_state_dict"]

_STEP = "_pairkit_step"


def fsdp_requested(config) -> bool:
    """``TrainConfig.fsdp``, or ``accelerate launch --use_fsdp`` (``ACCELERATE_USE_FSDP`` in the environment)."""
    return bool(config.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true", "yes")


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard(model: torch.nn.Module) -> None:
    """``fully_shard`` each transformer block, then the root (in place; a model already sharded is kept).

    The blocks are the modules whose class is in the model's ``_no_split_modules`` (transformers' list of layers
    that must not be split across devices) or in accelerate's ``FSDP_TRANSFORMER_CLS_TO_WRAP``; everything else
    (embeddings, a tied output head, the final norm) is one group owned by the root.
    """
    from torch.distributed.fsdp import fully_shard

    if is_sharded(model):
        return
    names = set(getattr(model, "_no_split_modules", None) or ())
    names |= {n.strip() for n in os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if n.strip()}
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in names:
            fully_shard(module)
    fully_shard(model)


def sharded_step(model, step_loss: Callable) -> Callable:
    """``step_loss(model, rows)`` run as a forward method of the sharded root, so FSDP's hooks fire around it."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    setattr(model, _STEP, types.MethodType(lambda self, rows: step_loss(self, rows), model))
    register_fsdp_forward_method(model, _STEP)
    return getattr(model, _STEP)


def forget_step(model) -> None:
    model.__dict__.pop(_STEP, None)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's whole state dict (plain tensors on CPU), also when it is sharded by FSDP.

    After training with ``fsdp`` the model passed to the trainer stays sharded in place: its ``state_dict()``
    holds each process's shards. This gathers them; it is a collective, so every process must call it (all get
    the whole dict). Without FSDP it is ``model.state_dict()`` detached on CPU.
    """
    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options())
    out = {}
    aliases: dict[int, str] = {}  # tied weights (GPT-2's head and embeddings) are gathered once
    for name, tensor in model.state_dict(keep_vars=True).items():
        first = aliases.setdefault(id(tensor), name)
        if first in state:
            out[name] = state[first].detach().cpu()
    return out


def checkpoint_states(model, optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole model and optimizer states of a sharded model (collective; rank 0 gets them, the others ``{}``)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    opts = _options(cpu_offload=True)
    return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)


def load_checkpoint_states(model, optimizer, model_state, optimizer_state) -> None:
    """Load whole states (as :func:`checkpoint_states` wrote them) into the sharded model and its optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, model_state, options=_options())
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=_options())

