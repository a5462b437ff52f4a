"""train_diffusion_preference on a tiny diffusers UNet built from a config (no downloads)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from pairkit.errors import InputError  # noqa: E402
from pairkit.train import TrainConfig, train_diffusion_preference  # noqa: E402


def _unet(seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 8),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )  # fmt: skip


def _pairs(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    good = torch.zeros(2, 8, 8) + 0.5
    return [{"chosen": good + 0.05 * torch.randn(2, 8, 8, generator=g), "rejected": torch.randn(2, 8, 8, generator=g)}
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("loss", ["diffusion_dpo", "flow_dpo"])
def test_first_step_is_log2_and_training_prefers_the_winner(loss):
    logs = []
    cfg = TrainConfig(batch_size=4, epochs=6, lr=3e-3, seed=0, warmup_steps=0, schedule="constant")
    train_diffusion_preference(_unet(), _pairs(), loss=loss, config=cfg, loss_options={"beta": 50.0},
                               callback=logs.append)  # fmt: skip
    # the policy equals the reference at step 1: DPO's ln 2 exactly
    assert logs[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)
    assert all(math.isfinite(r["loss"]) for r in logs)
    assert sum(r["accuracy"] for r in logs[-4:]) / 4 > 0.5
    assert logs[-1]["loss"] < math.log(2.0)


def test_mapo_without_reference_and_conditional_unet():
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 8),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, norm_num_groups=4, attention_head_dim=2,
    )  # fmt: skip
    rows = [dict(r, cond=torch.randn(3, 8)) for r in _pairs(4)]
    logs = []
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=50)
    train_diffusion_preference(unet, rows, loss="mapo", config=TrainConfig(batch_size=4, epochs=2),
                               noise_scheduler=scheduler, callback=logs.append)  # fmt: skip
    assert len(logs) == 2 and all(math.isfinite(r["loss"]) for r in logs)


def test_bad_input_raises():
    with pytest.raises(InputError, match="loss must be one of"):
        train_diffusion_preference(_unet(), _pairs(2), loss="dpo")
    with pytest.raises(InputError, match="rejected"):
        train_diffusion_preference(_unet(), [{"chosen": torch.zeros(2, 8, 8)}])
    with pytest.raises(InputError, match="beta"):
        train_diffusion_preference(_unet(), _pairs(2), loss_options={"beta": -1.0})
