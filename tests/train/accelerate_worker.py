"""Run by ``accelerate launch`` in tests/train/test_accelerate.py: two DPO steps, each rank saving what it holds
to ``OUT/rank-R.pt``.

``dp``: the float64 tiny model, plain data parallel. ``fsdp`` (under ``--use_fsdp``): the tiny GPT-2 of
:mod:`pairkit.testing`, one step written to a checkpoint, then a fresh model resumed from it for the second step;
each rank saves the gathered whole weights, the losses, and the placement and local size of every parameter."""

import sys

import torch

from pairkit.train import TrainConfig, full_state_dict, train_preference
from tests.train.test_trainers import echo_pairs
from tests.train.tiny import CharTokenizer, TinyCausalLM

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

        losses = []
        for steps in (1, 2):  # the second run resumes the first's checkpoint (whole states, re-sharded)
            model, tok = tiny_causal_lm(seed=6)
            config = TrainConfig(batch_size=8, max_steps=steps, lr=1e-2, output_dir=f"{out}/run")
            result = train_preference(model, tok, echo_pairs(12, 4), config=config, resume=steps == 2)
            losses += [row["loss"] for row in result.history]
        rank = torch.distributed.get_rank()
        shards = {name: (str(p.placements), tuple(p.to_local().shape), tuple(p.shape))
                  for name, p in model.named_parameters()}  # fmt: skip
        torch.save({"state": full_state_dict(model), "losses": losses, "shards": shards}, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
