"""Run TRL's own loss code on precomputed tensors: its trainers compute the loss inside methods that call a model,
so a stub model returns the given log-probs / rewards and a ``SimpleNamespace`` stands in for the trainer.
Shared by the tests and ``benchmarks/bench_reward_losses.py``."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch


def _trainer_state(**fields) -> SimpleNamespace:
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
        **fields,
    )


def trl_kto_loss(pol, ref, kl_pol, kl_ref, labels, *, loss_type="kto", beta=0.1, dw=1.0, uw=1.0):
    """``trl.trainer.kto_trainer.KTOTrainer._compute_loss`` with ``pol`` as one-token completion log-probs."""
    from trl.trainer.kto_trainer import KTOTrainer

    n = pol.shape[0]
    calculate_kl = loss_type != "apo_zero_unpaired"
    zeros = torch.zeros(n, 1)
    self = _trainer_state(
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x),
        _compute_kl_logps=lambda model, batch: kl_pol if calculate_kl else None,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        calculate_KL=calculate_kl,
        loss_type=loss_type,
        beta=beta,
        desirable_weight=dw,
        undesirable_weight=uw,
    )
    ones = torch.ones(n, 2, dtype=torch.long)
    batch = {
        "input_ids": ones,
        "attention_mask": ones,
        "completion_mask": ones,
        "label": labels,
        "ref_logps": ref,
        "ref_KL_logps": kl_ref,
    }

    def model(**kwargs):
        return SimpleNamespace(log_probs=pol[:, None], entropy=zeros, mean_logits=zeros)

    return KTOTrainer._compute_loss(self, model, batch, return_outputs=False)


def trl_reward_loss(rc, rr, *, margin=None, center=None):
    """``trl.trainer.reward_trainer.RewardTrainer.compute_loss`` with the rewards as the model's logits."""
    from trl.trainer.reward_trainer import RewardTrainer

    n = rc.shape[0]
    self = _trainer_state(
        args=SimpleNamespace(center_rewards_coefficient=center),
        accelerator=SimpleNamespace(gather_for_metrics=lambda x: x, gather=lambda x: x),
    )
    inputs = {"input_ids": torch.ones(2 * n, 3, dtype=torch.long), "attention_mask": torch.ones(2 * n, 3)}
    if margin is not None:
        inputs["margin"] = margin

    def model(**kwargs):
        return SimpleNamespace(logits=torch.cat((rc, rr))[:, None])

    return RewardTrainer.compute_loss(self, model, inputs)
