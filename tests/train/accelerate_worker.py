"""Run by ``accelerate launch`` in tests/train/test_accelerate.py: two DPO steps on the tiny model, each rank
saving its parameters to ``OUT/rank-R.pt``."""

import sys

import torch

from pairkit.train import TrainConfig, train_preference
from tests.train.test_trainers import echo_pairs
from tests.train.tiny import CharTokenizer, TinyCausalLM

if __name__ == "__main__":
    out = sys.argv[1]
    model = TinyCausalLM(seed=6)
    train_preference(model, CharTokenizer(), echo_pairs(12, 4), config=TrainConfig(batch_size=8, max_steps=2, lr=1e-2))
    rank = torch.distributed.get_rank()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
