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


@pytest.mark.parametrize("loss", ["diffusion_dpo", "flow_dpo", "diffusion_pso"])
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


def _moved(model, before):
    return any(not torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_diffusion_kto_trains_one_step_on_labelled_samples():
    g = torch.Generator().manual_seed(3)
    rows = [{"sample": torch.randn(2, 8, 8, generator=g), "desirable": i % 2 == 0} for i in range(4)]
    unet, logs = _unet(), []
    before = _snapshot(unet)
    train_diffusion_preference(unet, rows, loss="diffusion_kto", config=TrainConfig(batch_size=4, max_steps=1),
                               loss_options={"beta": 50.0}, callback=logs.append)  # fmt: skip
    # policy = reference at step 1: every implicit reward is 0, the reference point 0, so each value is λ(1 - σ(0))
    assert logs[0]["loss"] == pytest.approx(0.5, abs=1e-6)
    assert math.isfinite(logs[0]["grad_norm"]) and _moved(unet, before)
    with pytest.raises(InputError, match="'desirable'"):
        train_diffusion_preference(_unet(), [{"sample": torch.zeros(2, 8, 8)}], loss="diffusion_kto")


def test_rankdpo_trains_one_step_on_ranked_lists_and_k2_equals_diffusion_dpo():
    g = torch.Generator().manual_seed(4)
    rows = [{"samples": torch.randn(3, 2, 8, 8, generator=g), "scores": [2.0, 0.0, 1.0]} for _ in range(4)]
    unet, logs = _unet(), []
    before = _snapshot(unet)
    train_diffusion_preference(unet, rows, loss="rankdpo", config=TrainConfig(batch_size=4, max_steps=1),
                               loss_options={"beta": 50.0}, callback=logs.append)  # fmt: skip
    assert math.isfinite(logs[0]["loss"]) and math.isfinite(logs[0]["grad_norm"]) and _moved(unet, before)
    # two samples without lambda weights: the same step as Diffusion-DPO on the pair (same seed: same noise and t)
    pairs = _pairs(4)
    lists = [{"samples": torch.stack([p["chosen"], p["rejected"]]), "scores": [1.0, 0.0]} for p in pairs]
    ref = _unet(5)
    cfg = TrainConfig(batch_size=4, max_steps=2, seed=0)
    a, b = [], []
    train_diffusion_preference(_unet(), pairs, reference=ref, config=cfg, loss_options={"beta": 50.0},
                               callback=a.append)  # fmt: skip
    train_diffusion_preference(_unet(), lists, loss="rankdpo", reference=ref, config=cfg,
                               loss_options={"beta": 50.0, "lambda_weights": False}, callback=b.append)  # fmt: skip
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    with pytest.raises(InputError, match="one score per sample"):
        train_diffusion_preference(_unet(), [{"samples": torch.zeros(3, 2, 8, 8), "scores": [1.0]}], loss="rankdpo")


def _spo_rows(scheduler, n=4, seed=6):
    g = torch.Generator().manual_seed(seed)
    return [{"noisy": torch.randn(2, 8, 8, generator=g), "timestep": 30, "prev_timestep": 20,
             "chosen": torch.randn(2, 8, 8, generator=g), "rejected": torch.randn(2, 8, 8, generator=g)}
            for _ in range(n)]  # fmt: skip


def test_spo_step_loss_equals_the_authors_gaussian_log_ratio_form():
    """The trainer's step-1 loss against SPO's DDIM step log-probabilities written out (a different reference)."""
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=50)
    rows = _spo_rows(scheduler)
    ref_model = _unet(7)
    unet, logs = _unet(), []
    before = _snapshot(unet)
    opts = {"beta": 10.0, "clip": 0.5}
    train_diffusion_preference(unet, rows, loss="diffusion_spo", reference=ref_model, noise_scheduler=scheduler,
                               config=TrainConfig(batch_size=4, max_steps=1), loss_options=opts,
                               callback=logs.append)  # fmt: skip
    assert _moved(unet, before)

    def logprob(model, row):  # DDIM eq. (12)/(16) with η = 1, the Gaussian log-density averaged over elements
        a = scheduler.alphas_cumprod.double()
        a_t, a_p = a[30], a[20]
        x = row["noisy"].double()[None]
        with torch.no_grad():
            eps = model(x.float(), torch.tensor([30])).sample.double()
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        mu = a_p.sqrt() * x0 + (1 - a_p - var).sqrt() * eps
        out = []
        for key in ("chosen", "rejected"):
            y = row[key].double()[None]
            lp = -((y - mu) ** 2) / (2 * var) - 0.5 * torch.log(var) - 0.5 * math.log(2 * math.pi)
            out.append(lp.mean())
        return out

    values = []
    for row in rows:
        (pw, pl), (rw, rl) = logprob(_unet(), row), logprob(ref_model, row)
        rw_ = torch.clamp(torch.exp(pw - rw), 0.5, 1.5)
        rl_ = torch.clamp(torch.exp(pl - rl), 0.5, 1.5)
        values.append(-torch.log(torch.sigmoid(10.0 * torch.log(rw_) - 10.0 * torch.log(rl_))))
    assert logs[0]["loss"] == pytest.approx(float(torch.stack(values).mean()), rel=1e-4)


def test_spo_previous_timestep_from_the_scheduler_and_bad_eta():
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=50)
    rows = [{k: v for k, v in r.items() if k != "prev_timestep"} for r in _spo_rows(scheduler)]
    with pytest.raises(InputError, match="prev_timestep"):
        train_diffusion_preference(_unet(), rows, loss="diffusion_spo", noise_scheduler=scheduler)
    scheduler.set_timesteps(5)
    logs = []
    train_diffusion_preference(_unet(), rows, loss="diffusion_spo", noise_scheduler=scheduler,
                               config=TrainConfig(batch_size=4, max_steps=1), callback=logs.append)  # fmt: skip
    assert logs[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-6)  # policy = reference: both log-ratios are 0
    with pytest.raises(InputError, match="eta"):
        train_diffusion_preference(_unet(), rows, loss="diffusion_spo", noise_scheduler=scheduler, eta=0.0)
