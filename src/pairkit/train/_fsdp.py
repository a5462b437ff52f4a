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

import contextlib
import dataclasses
import os
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch

from pairkit.errors import InputError, PairkitWarning

__all__ = ["full_state_dict"]

_STEP = "_pairkit_step"
_CALL = "_pairkit_call"
_SYNCED: weakref.WeakSet = weakref.WeakSet()  # models whose weights came from process 0 already

_TRUE = ("1", "TRUE", "YES", "Y", "T", "ON")
_FALSE = ("0", "FALSE", "NO", "N", "F", "OFF")
_BOOL = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
_HYBRID = "shards within a node and replicates across nodes: it needs a 2-D device mesh, which pairkit does not build"
_NO_SHARD = "full replicas on every process: launch with --multi_gpu instead of --use_fsdp"


@dataclasses.dataclass(frozen=True)
class Setting:
    """One ``accelerate launch --fsdp_*`` option as pairkit reads it: from the ``FSDP_*`` environment variable the
    launcher sets (a user may set it too, e.g. under torchrun).

    ``values`` maps each accepted value (upper case) to its meaning; ``parse`` replaces it for free-form values
    (class names, numbers). ``refused`` maps values that have no FSDP2 meaning in pairkit to the reason. Any other
    value is refused too: nothing is silently ignored.
    """

    name: str
    default: str
    doc: str
    values: Mapping[str, Any] | None = None
    refused: Mapping[str, str] = dataclasses.field(default_factory=dict)
    parse: Callable[[str], Any] | None = None

    @property
    def env(self) -> str:
        return f"FSDP_{self.name.upper()}".replace("TRANSFORMER_LAYER_CLS", "TRANSFORMER_CLS")

    @property
    def flag(self) -> str:
        return f"--fsdp_{self.name}"

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = environ.get(self.env)
        raw = self.default if raw is None else raw.strip()
        key = raw.upper()
        if key in self.refused:
            self._refuse(raw, self.refused[key])
        if self.parse is not None:
            try:
                return self.parse(raw)
            except ValueError as exc:
                self._refuse(raw, str(exc))
        if key not in self.values:
            self._refuse(raw, f"pairkit accepts {self.accepted()}")
        return self.values[key]

    def accepted(self) -> str:
        """The accepted values, as the docs and error messages show them."""
        if self.values is None:
            return {"transformer_layer_cls_to_wrap": "class names, comma-separated",
                    "min_num_params": "a whole number", "ignored_modules": "nothing"}[self.name]  # fmt: skip
        if set(self.values) >= set(_BOOL):
            return "true or false" + "".join(f", {k}" for k in self.values if k not in _BOOL)
        if set(self.values) >= set(_TRUE):
            return "true"
        return ", ".join(k for k in self.values if not k.isdigit()) or ", ".join(self.values)

    def _refuse(self, raw: str, why: str):
        raise InputError(f"FSDP option {self.flag} ({self.env}) = {raw!r} is not supported: {why}")


def _class_names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _count(raw: str) -> int:
    if not raw.isdigit():
        raise ValueError("it must be a whole number of parameters >= 0")
    return int(raw)


def _no_modules(raw: str) -> None:
    if raw:
        raise ValueError("FSDP2 leaves ignored parameters unsynchronised between the processes, which pairkit's "
                         "loop does not handle; freeze them (requires_grad=False) instead")  # fmt: skip


SETTINGS: tuple[Setting, ...] = (
    Setting("version", "2", "FSDP2 (``fully_shard``) either way: 1 is the launcher's default, and the FSDP1 "
            "options below are read with their FSDP2 meaning", values=dict.fromkeys(("1", "2"), 2)),
    Setting("sharding_strategy", "FULL_SHARD", "FULL_SHARD: free each group's gathered parameters after its "
            "forward; SHARD_GRAD_OP: keep them until its backward (as reshard_after_forward false)",
            values={"FULL_SHARD": True, "1": True, "SHARD_GRAD_OP": False, "2": False},
            refused={"NO_SHARD": _NO_SHARD, "3": _NO_SHARD, "HYBRID_SHARD": _HYBRID, "4": _HYBRID,
                     "HYBRID_SHARD_ZERO2": _HYBRID, "5": _HYBRID}),
    Setting("reshard_after_forward", "true", "``fully_shard(reshard_after_forward=...)`` of every group: true "
            "frees the gathered parameters after each forward and gathers them again in backward; false keeps them "
            "(less communication, more memory). false here or SHARD_GRAD_OP above keeps them",
            values={**_BOOL, "FULL_SHARD": True, "SHARD_GRAD_OP": False},
            refused={"NO_SHARD": _NO_SHARD, "HYBRID_SHARD": _HYBRID, "HYBRID_SHARD_ZERO2": _HYBRID}),
    Setting("offload_params", "false", "``CPUOffloadPolicy``: the parameter shards, their gradients and the "
            "optimizer step live in CPU memory; each group is copied to the device to run", values=_BOOL),
    Setting("auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "which modules get their own ``fully_shard`` group "
            "(gathered only while they run): TRANSFORMER_BASED_WRAP the transformer layers, SIZE_BASED_WRAP every "
            "module (not a ModuleList or ModuleDict) with more than min_num_params parameters, NO_WRAP none (one "
            "group: the whole model). Modules "
            "holding the output head's weight always stay in the root group (the chunked log-probabilities read it "
            "outside any module's forward)",
            values={"TRANSFORMER_BASED_WRAP": "transformer", "SIZE_BASED_WRAP": "size", "NO_WRAP": "none"}),
    Setting("transformer_layer_cls_to_wrap", "", "comma-separated class names of the transformer layers "
            "(default: the model's ``_no_split_modules``); each must name a module of the model",
            parse=_class_names),
    Setting("min_num_params", "100000000", "SIZE_BASED_WRAP's threshold (parameters of a module, its "
            "submodules' included)", parse=_count),
    Setting("backward_prefetch", "BACKWARD_PRE", "FSDP2 gathers the next group before the current one's "
            "backward: BACKWARD_PRE",  values={"BACKWARD_PRE": True},
            refused={"BACKWARD_POST": "FSDP2 prefetches before a group's backward (BACKWARD_PRE), never after",
                     "NO_PREFETCH": "FSDP2 always prefetches the next group in backward"}),
    Setting("forward_prefetch", "false", "true: each wrapped module starts gathering the next one's parameters "
            "when its forward starts (``set_modules_to_forward_prefetch``)", values=_BOOL),
    Setting("state_dict_type", "FULL_STATE_DICT", "checkpoints hold the whole gathered model and optimizer "
            "states, written by process 0 and re-sharded on resume",  values={"FULL_STATE_DICT": "full"},
            refused={"SHARDED_STATE_DICT": "pairkit's checkpoints hold whole states (written by process 0, "
                     "re-sharded on resume, readable without FSDP); use FULL_STATE_DICT",
                     "LOCAL_STATE_DICT": "an FSDP1 format; FSDP2 has no local state dict"}),
    Setting("use_orig_params", "true", "FSDP2 always trains the original parameters (true)",
            values=dict.fromkeys(_TRUE, True),
            refused=dict.fromkeys(_FALSE, "FSDP2 has no flat parameters: it always trains the original ones")),
    Setting("sync_module_states", "false", "true: process 0's parameters and buffers are broadcast to the other "
            "processes before sharding, so all start from its weights", values=_BOOL),
    Setting("cpu_ram_efficient_loading", "false", "true: as sync_module_states; a process whose parameters are "
            "on the meta device (transformers loads a checkpoint on process 0 only when the process group exists "
            "before ``from_pretrained``) gets them from process 0. pairkit's CLI loads the model in every process",
            values=_BOOL),
    Setting("activation_checkpointing", "false", "true: each wrapped module keeps only its inputs in forward and "
            "recomputes its activations in backward (``torch.utils.checkpoint`` around the outermost wrapped modules' "
            "forward)",
            values=_BOOL),
    Setting("activation_checkpointing_offload", "false", "true: the checkpointed inputs are kept in CPU memory "
            "(``save_on_cpu``); needs activation_checkpointing", values=_BOOL),
    Setting("ignored_modules", "", "not supported: any value is refused", parse=_no_modules),
)


@dataclasses.dataclass(frozen=True)
class FsdpSettings:
    """The FSDP2 plan read from :data:`SETTINGS` (see :func:`settings`)."""

    reshard_after_forward: bool = True
    offload_params: bool = False
    auto_wrap_policy: str = "transformer"
    transformer_layer_cls_to_wrap: tuple[str, ...] = ()
    min_num_params: int = 100_000_000
    forward_prefetch: bool = False
    sync_module_states: bool = False
    activation_checkpointing: bool = False
    activation_checkpointing_offload: bool = False


def settings(environ: Mapping[str, str] | None = None) -> FsdpSettings:
    """Read and check every ``FSDP_*`` variable (:data:`SETTINGS`); an unsupported value raises
    :class:`~pairkit.errors.InputError` naming the option and the value, an unknown ``FSDP_*`` variable warns."""
    environ = os.environ if environ is None else environ
    got = {s.name: s.read(environ) for s in SETTINGS}
    known = {s.env for s in SETTINGS}
    unknown = sorted(k for k in environ if k.startswith("FSDP_") and k not in known)
    if unknown:
        warnings.warn(f"pairkit does not read {', '.join(unknown)} (not an FSDP option it knows); they have no "
                      "effect", PairkitWarning, stacklevel=2)  # fmt: skip
    if got["transformer_layer_cls_to_wrap"] and got["auto_wrap_policy"] != "transformer":
        raise InputError(f"FSDP option --fsdp_transformer_layer_cls_to_wrap "
                         f"({','.join(got['transformer_layer_cls_to_wrap'])}) needs --fsdp_auto_wrap_policy "
                         f"TRANSFORMER_BASED_WRAP, got {environ.get('FSDP_AUTO_WRAP_POLICY')!r}")  # fmt: skip
    if got["activation_checkpointing_offload"] and not got["activation_checkpointing"]:
        raise InputError("FSDP option --fsdp_activation_checkpointing_offload true needs "
                         "--fsdp_activation_checkpointing true")  # fmt: skip
    return FsdpSettings(
        reshard_after_forward=got["sharding_strategy"] and got["reshard_after_forward"],
        offload_params=got["offload_params"],
        auto_wrap_policy=got["auto_wrap_policy"],
        transformer_layer_cls_to_wrap=got["transformer_layer_cls_to_wrap"],
        min_num_params=got["min_num_params"],
        forward_prefetch=got["forward_prefetch"],
        sync_module_states=got["sync_module_states"] or got["cpu_ram_efficient_loading"],
        activation_checkpointing=got["activation_checkpointing"],
        activation_checkpointing_offload=got["activation_checkpointing_offload"],
    )


def fsdp_requested(config) -> bool:
    """``TrainConfig.fsdp``, or ``accelerate launch --use_fsdp`` (``ACCELERATE_USE_FSDP`` in the environment)."""
    return bool(config.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").upper() in _TRUE


def is_sharded(model) -> bool:
    if not torch.distributed.is_available():  # a torch build without distributed support shards nothing
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard(model: torch.nn.Module, plan: FsdpSettings | None = None) -> None:
    """``fully_shard`` the modules the wrap policy picks (each transformer block by default), then the root (in
    place; a model already sharded is kept). ``plan`` defaults to :func:`settings` of the environment.

    The blocks are the modules whose class is in ``--fsdp_transformer_layer_cls_to_wrap`` or, without it, in the
    model's ``_no_split_modules`` (transformers' list of layers that must not be split across devices); everything
    else (embeddings, a tied output head, the final norm) is one group owned by the root.
    """
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    if is_sharded(model):
        return
    plan = settings() if plan is None else plan
    if model not in _SYNCED:
        _sync_from_first_process(model, plan.sync_module_states)
    chosen = wrapped_modules(model, plan)
    if plan.activation_checkpointing and not chosen:
        raise InputError("FSDP option --fsdp_activation_checkpointing true checkpoints the wrapped modules, and the "
                         f"wrap policy ({plan.auto_wrap_policy}) wraps none in this model")  # fmt: skip
    if plan.activation_checkpointing:
        outer: list[str] = []
        for name, module in chosen:  # the outermost wrapped modules: an inner one runs inside its recomputation
            if not any(name.startswith(prefix + ".") for prefix in outer):
                checkpoint_forward(module, plan.activation_checkpointing_offload)
                outer.append(name)
    offload = CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if plan.offload_params else OffloadPolicy()
    kwargs = {"reshard_after_forward": plan.reshard_after_forward, "offload_policy": offload}
    order = [m for _, m in chosen]
    for module in reversed(order):  # innermost first: a group owns the parameters no inner group took
        fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    if plan.forward_prefetch:
        for module, after in zip(order, order[1:]):
            module.set_modules_to_forward_prefetch([after])


def sync_weights(model, config) -> None:
    """Under FSDP with ``--fsdp_sync_module_states`` or ``--fsdp_cpu_ram_efficient_loading`` and several processes,
    broadcast process 0's weights now, before anything reads the model (the reference log-probabilities a trainer
    precomputes); :func:`shard` then does not broadcast them again."""
    from pairkit.train._loop import init_distributed

    if not fsdp_requested(config) or is_sharded(model) or model in _SYNCED:
        return
    plan = settings()
    if init_distributed()[1] > 1 and plan.sync_module_states:
        _sync_from_first_process(model, True)
        _SYNCED.add(model)


def _sync_from_first_process(model, on: bool) -> None:
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if not on:
        if meta:
            raise InputError(f"{len(meta)} parameters (e.g. {meta[0]}) are on the meta device: load the weights in "
                             "every process, or pass --fsdp_cpu_ram_efficient_loading true to take them from "
                             "process 0")  # fmt: skip
        return
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if meta or any(b.is_meta for b in model.buffers()):
        model.to_empty(device="cpu")
    for tensor in [*model.parameters(), *model.buffers()]:  # tied weights listed once
        torch.distributed.broadcast(tensor.data, src=0)


def wrapped_modules(model, plan: FsdpSettings) -> list[tuple[str, torch.nn.Module]]:
    """``(name, module)`` of the modules that get their own group, in forward (registration) order."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_params = {id(p) for p in head.parameters()} if head is not None else set()

    def holds_head(m):
        return any(id(p) in head_params for p in m.parameters())

    candidates = [(n, m) for n, m in model.named_modules() if m is not model]
    if plan.auto_wrap_policy == "none":
        return []
    if plan.auto_wrap_policy == "size":
        containers = (torch.nn.ModuleList, torch.nn.ModuleDict)  # no forward: FSDP's hooks would never run
        return [(n, m) for n, m in candidates if not holds_head(m) and not isinstance(m, containers)
                and sum(p.numel() for p in m.parameters()) > plan.min_num_params]  # fmt: skip
    present = {type(m).__name__ for _, m in candidates}
    names = plan.transformer_layer_cls_to_wrap
    if names:
        missing = [n for n in names if n not in present]
        if missing:
            raise InputError(f"FSDP option --fsdp_transformer_layer_cls_to_wrap names {', '.join(missing)}, which no "
                             f"module of this model is; its classes: {', '.join(sorted(present))}")  # fmt: skip
    else:
        names = tuple(getattr(model, "_no_split_modules", None) or ())
    picked = [(n, m) for n, m in candidates if type(m).__name__ in names]
    bad = sorted({type(m).__name__ for _, m in picked if holds_head(m)})
    if bad:
        raise InputError(f"FSDP option --fsdp_transformer_layer_cls_to_wrap: {', '.join(bad)} holds the output "
                         "head's weight, which must stay in the root group (pairkit's log-probabilities read it "
                         "outside any module's forward); name the transformer layers instead")  # fmt: skip
    return picked


def checkpoint_forward(module: torch.nn.Module, offload: bool = False) -> None:
    """Make ``module`` recompute its activations in backward (non-reentrant ``torch.utils.checkpoint``); with
    ``offload`` the inputs it keeps go to CPU memory (``save_on_cpu``).

    The module's ``forward`` is replaced on the instance, so the module tree and its parameter names do not
    change (a ``checkpoint_wrapper`` module would insert ``_checkpoint_wrapped_module`` into every name below it,
    and peft then finds no adapter weights to save). FSDP's hooks stay around the call: the parameters are gathered
    before the forward and, in backward, before the recomputation.
    """
    from torch.utils.checkpoint import checkpoint

    inner = module.forward
    pin = torch.cuda.is_available()

    def forward(*args, **kwargs):
        with torch.autograd.graph.save_on_cpu(pin_memory=pin) if offload else contextlib.nullcontext():
            return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    forward.checkpointed = "offload" if offload else "recompute"
    module.forward = forward


def is_checkpointed(module: torch.nn.Module) -> str | None:
    """``"recompute"`` or ``"offload"`` for a module :func:`checkpoint_forward` changed, else None."""
    return getattr(module.__dict__.get("forward"), "checkpointed", None)


def sharded_step(model, step_loss: Callable) -> Callable:
    """``step_loss(model, rows)`` run as a forward method of the sharded root, so FSDP's hooks fire around it."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    setattr(model, _STEP, types.MethodType(lambda self, *args: step_loss(self, *args), model))
    register_fsdp_forward_method(model, _STEP)
    return getattr(model, _STEP)


def forget_step(model) -> None:
    model.__dict__.pop(_STEP, None)


def sharded_call(model, fn: Callable, *args):
    """``fn(model, *args)`` run once as a forward method of the sharded root, so FSDP's hooks fire around it: the
    root's parameters are gathered for the call and, when ``fn`` builds a graph, their gradients are
    reduce-scattered after its backward. A collective: every process must make the same calls."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    setattr(model, _CALL, types.MethodType(lambda self, *a: fn(self, *a), model))
    register_fsdp_forward_method(model, _CALL)
    try:
        return getattr(model, _CALL)(*args)
    finally:
        model.__dict__.pop(_CALL, None)


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

