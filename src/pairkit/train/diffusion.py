"""Preference training of diffusion and rectified-flow denoisers (e.g. a diffusers ``UNet2DModel``) on image pairs.

Each step noises the winner and the loser of every pair with the same noise and timestep, takes the per-sample
denoising errors of the model and of the frozen reference, and applies a registered loss of the ``diffusion``
family (:mod:`pairkit.losses.diffusion`) through the shared training loop of the other trainers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pairkit._optional import requires
from pairkit.errors import InputError
from pairkit.train._loop import TrainConfig, TrainResult, call_loss, check_options, fit

__all__ = ["train_diffusion_preference"]

_PAIR_LOSSES = ("diffusion_dpo", "flow_dpo", "mapo")


def _denoise(model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    out = model(x, t, cond) if cond is not None else model(x, t)
    out = getattr(out, "sample", out)
    return out[0] if isinstance(out, tuple) else out


def _stack(rows: list[dict[str, Any]], key: str) -> torch.Tensor | None:
    values = [r.get(key) for r in rows]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise InputError(f"{key!r} is given for some pairs and missing for others")
    return torch.stack([torch.as_tensor(v) for v in values])


def _check_rows(data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = list(data)
    for i, row in enumerate(rows):
        for key in ("chosen", "rejected"):
            if key not in row:
                raise InputError(f"pair {i} has no {key!r} sample (give 'chosen' and 'rejected' tensors [C, H, W])")
        if tuple(torch.as_tensor(row["chosen"]).shape) != tuple(torch.as_tensor(row["rejected"]).shape):
            raise InputError(f"pair {i}: 'chosen' and 'rejected' samples differ in shape")
    return rows


def train_diffusion_preference(
    model: torch.nn.Module,
    data: Sequence[dict[str, Any]],
    *,
    loss: str = "diffusion_dpo",
    reference: torch.nn.Module | None = None,
    noise_scheduler: Any = None,
    config: TrainConfig | None = None,
    loss_options: dict[str, Any] | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a denoiser on preference pairs with Diffusion-DPO, Flow-DPO or MaPO.

    ``data``: rows ``{"chosen": [C, H, W], "rejected": [C, H, W], "cond": optional [L, D]}`` of clean samples
    (latents) and the conditioning passed as the model's third argument (``encoder_hidden_states`` of a
    ``UNet2DConditionModel``). ``model(x_t, t[, cond])`` returns the prediction (a diffusers output's ``.sample``
    is taken). ``reference``: the frozen reference (default: a copy of ``model`` at the start; unused by MaPO).

    Noising: ``"flow_dpo"`` uses rectified flow, :math:`x_t = (1 - t)x_0 + t\\epsilon` with :math:`t \\sim U(0, 1)`,
    target :math:`v = \\epsilon - x_0`, and the model sees ``1000 t``. The others use ``noise_scheduler`` (a
    diffusers scheduler: ``add_noise``, ``config.num_train_timesteps``, ``config.prediction_type`` "epsilon" or
    "v_prediction"; default ``DDPMScheduler()``, which needs the ``diffusion`` extra) with integer timesteps.
    Winner and loser share the noise and the timestep, as in diffusers' Diffusion-DPO example.
    Returns the ``TrainResult`` of the shared training loop (per-step metrics, final step, output directory).
    """
    if loss not in _PAIR_LOSSES:
        raise InputError(f"loss must be one of {_PAIR_LOSSES} (pairs of samples), got {loss!r}")
    rows = _check_rows(data)
    config = config or TrainConfig()
    options = check_options([loss], dict(loss_options or {}))
    flow = loss == "flow_dpo"
    if not flow and noise_scheduler is None:
        with requires("diffusion", "train_diffusion_preference's default noise scheduler"):
            from diffusers import DDPMScheduler
        noise_scheduler = DDPMScheduler()
    if reference is None and loss != "mapo":
        reference = copy.deepcopy(model)
    if reference is not None:
        reference.requires_grad_(False).eval()

    def step_loss(m: torch.nn.Module, batch: list[dict[str, Any]]):
        x0 = torch.cat([_stack(batch, "chosen"), _stack(batch, "rejected")])
        param = next(m.parameters())
        x0 = x0.to(device=param.device, dtype=param.dtype)
        cond = _stack(batch, "cond")
        if cond is not None:
            cond = torch.cat([cond, cond]).to(device=param.device, dtype=param.dtype)
        n = len(batch)
        noise = torch.randn_like(x0[:n]).repeat(2, *([1] * (x0.dim() - 1)))
        if flow:
            t = torch.rand(n, device=x0.device, dtype=x0.dtype).repeat(2)
            tt = t.view(-1, *([1] * (x0.dim() - 1)))
            noisy, target, model_t = (1 - tt) * x0 + tt * noise, noise - x0, t * 1000
        else:
            steps = int(noise_scheduler.config.num_train_timesteps)
            model_t = torch.randint(0, steps, (n,), device=x0.device).repeat(2)
            noisy = noise_scheduler.add_noise(x0, noise, model_t)
            kind = getattr(noise_scheduler.config, "prediction_type", "epsilon")
            target = noise if kind == "epsilon" else noise_scheduler.get_velocity(x0, noise, model_t)
        dims = list(range(1, x0.dim()))
        err = (_denoise(m, noisy, model_t, cond).float() - target.float()).pow(2).mean(dims)
        inputs = {"policy_chosen_errors": err[:n], "policy_rejected_errors": err[n:]}
        if reference is not None:
            with torch.no_grad():
                ref = (_denoise(reference, noisy, model_t, cond).float() - target.float()).pow(2).mean(dims)
            inputs.update(ref_chosen_errors=ref[:n], ref_rejected_errors=ref[n:])
        values = call_loss(loss, inputs, options)
        stats = {"chosen_error": err[:n].detach(), "rejected_error": err[n:].detach()}
        if reference is not None:
            stats["accuracy"] = ((ref[:n] - err[:n]) > (ref[n:] - err[n:])).float()
        return values, stats

    return fit(model, rows, step_loss, config, resume=resume, callback=callback, losses=[loss])
