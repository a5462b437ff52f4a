"""Run by ``accelerate launch`` in tests/train/test_accelerate.py: DPO steps, each rank saving what it holds to
``OUT/rank-R.pt``.

``dp``: the float64 tiny model, plain data parallel. ``fsdp`` (under ``--use_fsdp``): the tiny GPT-2 of
:mod:`pairkit.testing`, one step written to a checkpoint, then a fresh model resumed from it for the second step;
each rank saves the gathered whole weights, the losses, and the placement and local size of every parameter; then
the same two steps with a LoRA adapter (:func:`lora_run`). ``options`` (under ``--use_fsdp`` and other ``--fsdp_*``
options): the ``fsdp`` steps (LoRA too) with rank 1 starting from other weights (process 0's are broadcast), saving
also the FSDP groups (the class of each sharded module, whether it is checkpointed, whether it offloads), then the
error an unsupported option raises."""

import os
import sys

import torch

from pairkit.train import TrainConfig, full_state_dict, train_preference
from tests.train.test_trainers import echo_pairs
from tests.train.tiny import CharTokenizer, TinyCausalLM


def lora_tiny(seed=6):
    """The tiny GPT-2 with a seeded rank-2 LoRA adapter on every linear layer (attention and MLP)."""
    import peft

    from pairkit.testing import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=seed)
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", lora_dropout=0.0)
    return peft.get_peft_model(model, config), tok


def two_steps(make, out, **kw):
    """One step written to a checkpoint, then a fresh model resumed from it for the second step."""
    losses = []
    for steps in (1, 2):
        model, tok = make()
        config = TrainConfig(batch_size=8, max_steps=steps, lr=1e-2, output_dir=out)
        result = train_preference(model, tok, echo_pairs(12, 4), config=config, resume=steps == 2, **kw)
        losses += [row["loss"] for row in result.history]
    return model, losses


def groups(model):
    """``(class of the sharded module, checkpointed, offloads)`` for every FSDP group but the root."""
    from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule

    from pairkit.train._fsdp import is_checkpointed

    out = []
    for m in model.modules():
        if isinstance(m, FSDPModule) and m is not model:
            policy = m._get_fsdp_state()._fsdp_param_group.offload_policy
            offloads = isinstance(policy, CPUOffloadPolicy)
            out.append((type(m).__name__.removeprefix("FSDP"), bool(is_checkpointed(m)), offloads))
    return out


def lora_run(out, seed=6):
    """:func:`two_steps` with :func:`lora_tiny` (the reference is the base): the adapter, which parameters train,
    and how far the base weights moved."""
    import peft

    start = lora_tiny()[0].state_dict()
    model, losses = two_steps(lambda: lora_tiny(seed), out, reference="adapter")
    state = full_state_dict(model)
    base = [k for k in start if "lora_" not in k]
    return {
        "losses": losses,
        "adapter": peft.get_peft_model_state_dict(model, state_dict=state),
        "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
        "base_moved": max(float((state[k] - start[k]).abs().max()) for k in base),
        "groups": groups(model),
    }


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    rank = None
    if mode == "dp":
        model = TinyCausalLM(seed=6)
        train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2,
                                                                                         lr=1e-2))  # fmt: skip
        rank = torch.distributed.get_rank()
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{out}/rank-{rank}.pt")
    else:
        from pairkit.testing import tiny_causal_lm

        rank = int(os.environ["RANK"])
        seed = 6 if mode == "fsdp" or rank == 0 else 7  # options: process 0's weights must reach the others
        model, losses = two_steps(lambda: tiny_causal_lm(seed=seed), f"{out}/run")
        shards = {name: (str(p.placements), tuple(p.to_local().shape), tuple(p.shape))
                  for name, p in model.named_parameters()}  # fmt: skip
        saved = {"state": full_state_dict(model), "losses": losses, "shards": shards, "groups": groups(model)}
        saved["lora"] = lora_run(f"{out}/lora", seed)
        if mode == "options":
            from pairkit.errors import InputError

            os.environ["FSDP_SHARDING_STRATEGY"] = "HYBRID_SHARD"
            try:
                train_preference(*tiny_causal_lm(seed=6), echo_pairs(12, 4), config=TrainConfig(max_steps=1))
            except InputError as exc:
                saved["refused"] = str(exc)
        torch.save(saved, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
