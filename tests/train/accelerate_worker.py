"""Run by ``accelerate launch`` in tests/train/test_accelerate.py: DPO steps, each rank saving what it holds to
``OUT/rank-R.pt``.

``dp``: the float64 tiny model, plain data parallel. ``fsdp`` (under ``--use_fsdp``): the tiny GPT-2 of
:mod:`pairkit.testing`, one step written to a checkpoint, then a fresh model resumed from it for the second step;
each rank saves the gathered whole weights, the losses, and the placement and local size of every parameter; then
the same two steps with a LoRA adapter (:func:`lora_run`). ``dp`` also runs the batch-coupled losses of
:data:`COUPLED_RUNS` (preference, unpaired, contrastive, regression and pairwise-judge trainers). ``options`` (under
``--use_fsdp`` and other ``--fsdp_*`` options): the ``fsdp`` steps (LoRA too) with rank 1 starting from other
weights (process 0's are broadcast), saving also the FSDP groups (the class of each sharded module, whether it is
checkpointed, whether it offloads), then the error an unsupported option raises."""

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


# batch-coupled losses (tests/train/test_accelerate.py: two processes = one): (trainer, loss, data, options, lr)
COUPLED = {
    "dpo+sft": ("preference", "dpo+0.5*sft", "pairs", None, 1e-2),
    "dr_dpo": ("preference", "dr_dpo", "pairs", {"beta_prime": 0.05}, 1e-2),
    # AOT pairs quantiles: a step large enough that the policy's order of the pairs is no longer the reference's
    "aot": ("preference", "aot", "pairs", {"beta": 3.0}, 0.1),
    "kto": ("unpaired", "kto", "unpaired", None, 1e-2),
    "infonce": ("contrastive", "infonce", "pairs", None, 1e-2),
    "supcon+proxy_anchor": ("contrastive", "supcon+0.5*proxy_anchor", "labels", None, 1e-2),
    "ntxent": ("contrastive", "ntxent", "views", None, 1e-2),
    "cs_ib_loss": ("regression", "cs_ib_loss", "features", None, 1e-2),
    "ensloss": ("pairwise_judge", "cross_entropy+ensloss", "votes", None, 1e-2),
}
# each also with every process computing the batch-coupled terms on its own share (the bug): must differ
COUPLED_RUNS = [*COUPLED, *(f"{run} local" for run in COUPLED)]


def unpaired_rows(n=12, seed=4):
    """Completions labelled desirable (the prompt's word) or not (another word)."""
    from tests.train.test_trainers import WORDS

    rows, g = [], torch.Generator().manual_seed(seed)
    for i in range(n):
        a, b = torch.randperm(len(WORDS), generator=g)[:2].tolist()
        word = WORDS[a] if i % 2 == 0 else WORDS[b]
        rows.append({"prompt": f"say {WORDS[a]}", "completion": f" {word} {word}", "label": i % 2 == 0})
    return rows


def coupled_run(run, gpt2=False):
    """One of :data:`COUPLED_RUNS`: three steps (8 rows, 4, then 8 of the next epoch) from seeded weights; the
    weights (and proxies) and the logged history. ``local``: the coupled terms on each process's rows alone, as
    before they were gathered. ``gpt2``: a preference run on :mod:`pairkit.testing`'s tiny GPT-2 (float32; sharded
    under ``--use_fsdp``), its whole weights gathered."""
    import contextlib
    from unittest import mock

    from pairkit.train import train_contrastive, train_pairwise_judge, train_regression, train_unpaired
    from pairkit.train._loop import call_loss
    from tests.train.test_contrastive_trainer import _data, _encoder

    local = run.endswith(" local")
    trainer, loss, data, options, lr = COUPLED[run.removesuffix(" local")]
    config = TrainConfig(batch_size=8, epochs=2, max_steps=3, lr=lr)
    per_share = [mock.patch(f"pairkit.train.{m}.loss_values", lambda n, i, o: call_loss(n, i, o))
                 for m in ("_steps", "pairwise_judge")]  # fmt: skip
    per_share += [mock.patch(f"pairkit.train.{m}.coupled_losses", lambda names: [])
                  for m in ("contrastive", "regression")]  # fmt: skip
    with contextlib.ExitStack() as stack:
        for patch in per_share if local else ():
            stack.enter_context(patch)
        if trainer == "contrastive":
            model = _encoder()
            result = train_contrastive(model, _data()[data], loss=loss, loss_options=options, config=config)
        elif trainer == "regression":
            from tests.train.test_semi_supervised import _encoder as encoder
            from tests.train.test_semi_supervised import _rows

            rows = [{"features": r["features"], "target": float(r["features"][:2].sum())} for r in _rows(12)[0]]
            model = torch.nn.ModuleDict({"encoder": encoder(), "head": torch.nn.Linear(4, 1).double()})
            result = train_regression(model["encoder"], rows, loss=loss, head=model["head"], config=config)
        elif trainer == "pairwise_judge":
            from tests.train.conftest import build_tokenizer
            from tests.train.test_pairwise_judge import classifier, votes

            tok = build_tokenizer()
            model = classifier(tok, 2).double()
            result = train_pairwise_judge(model, tok, votes(12, 3), ties="drop", loss=loss, config=config)
        else:
            from pairkit.testing import tiny_causal_lm

            model, tok = tiny_causal_lm(seed=6) if gpt2 else (TinyCausalLM(seed=6), CharTokenizer())
            train = train_preference if trainer == "preference" else train_unpaired
            rows = echo_pairs(12, 4) if data == "pairs" else unpaired_rows()
            result = train(model, tok, rows, loss=loss, loss_options=options, config=config)
    state = {k: v.detach().clone() for k, v in (full_state_dict(model) if gpt2 else model.state_dict()).items()}
    state.update({f"proxies.{k}": v for k, v in (result.proxies or {}).items()})
    return {"state": state, "history": [{k: v for k, v in row.items() if k != "lr"} for row in result.history]}


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    rank = None
    if mode == "dp":
        model = TinyCausalLM(seed=6)
        train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2,
                                                                                         lr=1e-2))  # fmt: skip
        rank = torch.distributed.get_rank()
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        saved["coupled"] = {run: coupled_run(run) for run in COUPLED_RUNS}
        torch.save(saved, f"{out}/rank-{rank}.pt")
    else:
        from pairkit.testing import tiny_causal_lm

        rank = int(os.environ["RANK"])
        seed = 6 if mode == "fsdp" or rank == 0 else 7  # options: process 0's weights must reach the others
        model, losses = two_steps(lambda: tiny_causal_lm(seed=seed), f"{out}/run")
        shards = {name: (str(p.placements), tuple(p.to_local().shape), tuple(p.shape))
                  for name, p in model.named_parameters()}  # fmt: skip
        saved = {"state": full_state_dict(model), "losses": losses, "shards": shards, "groups": groups(model)}
        saved["lora"] = lora_run(f"{out}/lora", seed)
        if mode == "fsdp":  # a batch-coupled loss with the model sharded
            saved["coupled"] = {run: coupled_run(run, gpt2=True) for run in ("dpo+sft", "dpo+sft local")}
        if mode == "options":
            from pairkit.errors import InputError

            os.environ["FSDP_SHARDING_STRATEGY"] = "HYBRID_SHARD"
            try:
                train_preference(*tiny_causal_lm(seed=6), echo_pairs(12, 4), config=TrainConfig(max_steps=1))
            except InputError as exc:
                saved["refused"] = str(exc)
        torch.save(saved, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
