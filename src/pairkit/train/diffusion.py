"""Preference training of diffusion and rectified-flow denoisers (e.g. a diffusers ``UNet2DModel``).

Each step noises the samples of every example (a pair, one labelled sample, or a ranked list) with one shared noise
and timestep, takes the per-sample denoising errors of the model and of the frozen reference, and applies a
registered loss of the ``diffusion`` family (:mod:`pairkit.losses.diffusion`) through the shared training loop of
the other trainers. SPO instead takes given sampler steps :math:`x_t \to x_{t-1}` and their step errors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pairkit._optional import requires
from pairkit.errors import InputError
from pairkit.train._loop import TrainConfig, TrainResult, check_options, fit
from pairkit.train._steps import loss_values

__all__ = ["train_diffusion_preference"]

_PAIR_LOSSES = ("diffusion_dpo", "flow_dpo", "mapo", "diffusion_pso")
_LOSSES = (*_PAIR_LOSSES, "diffusion_kto", "rankdpo", "diffusion_spo")
# the columns of one example, per loss: (sample columns, other required columns)
_COLUMNS = {
    "diffusion_kto": (("sample",), ("desirable",)),
    "rankdpo": (("samples",), ("scores",)),
    "diffusion_spo": (("noisy", "chosen", "rejected"), ("timestep",)),
}


def _denoise(model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    out = model(x, t, cond) if cond is not None else model(x, t)
    out = getattr(out, "sample", out)
    return out[0] if isinstance(out, tuple) else out


def _stack(rows: list[dict[str, Any]], key: str) -> torch.Tensor | None:
    values = [r.get(key) for r in rows]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise InputError(f"{key!r} is given for some examples and missing for others")
    return torch.stack([torch.as_tensor(v) for v in values])


def _check_rows(data: Sequence[dict[str, Any]], loss: str) -> list[dict[str, Any]]:
    rows = list(data)
    samples, others = _COLUMNS.get(loss, (("chosen", "rejected"), ()))
    what = {"diffusion_kto": "sample", "rankdpo": "list"}.get(loss, "pair")
    for i, row in enumerate(rows):
        for key in (*samples, *others):
            if key not in row:
                raise InputError(
                    f"{what} {i} has no {key!r} column (loss {loss!r} takes the columns {[*samples, *others]})"
                )
        shapes = {tuple(torch.as_tensor(row[k]).shape) for k in samples}
        if len(shapes) > 1:
            raise InputError(f"{what} {i}: the samples {list(samples)} differ in shape")
        if loss == "rankdpo":
            k = torch.as_tensor(row["samples"]).shape[0]
            if torch.as_tensor(row["scores"]).shape != (k,):
                raise InputError(f"list {i}: 'scores' must hold one score per sample ({k}), got {row['scores']!r}")
    if loss == "rankdpo" and len({torch.as_tensor(r["samples"]).shape for r in rows}) > 1:
        raise InputError("every list must hold the same number of samples of one shape (pad with masked samples)")
    return rows


def _errors(m, noisy, target, t, cond) -> torch.Tensor:
    dims = list(range(1, noisy.dim()))
    return (_denoise(m, noisy, t, cond).float() - target.float()).pow(2).mean(dims)


def _spo_step_means(scheduler: Any, prediction: torch.Tensor, noisy: torch.Tensor, t, t_prev, eta: float):
    """Mean and variance of the DDIM step p(x_{t-1} | x_t) with noise level η (DDIM eqs. 12 and 16)."""
    alphas = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64).to(noisy.device)
    shape = (-1, *([1] * (noisy.dim() - 1)))
    a_t = alphas[t].view(shape)
    a_prev = alphas[t_prev].view(shape)
    x, out = noisy.double(), prediction.double()
    kind = getattr(scheduler.config, "prediction_type", "epsilon")
    if kind == "epsilon":
        x0, eps = (x - (1 - a_t).sqrt() * out) / a_t.sqrt(), out
    elif kind == "v_prediction":
        x0, eps = a_t.sqrt() * x - (1 - a_t).sqrt() * out, a_t.sqrt() * out + (1 - a_t).sqrt() * x
    else:
        raise InputError(f"diffusion_spo supports prediction_type 'epsilon' or 'v_prediction', got {kind!r}")
    variance = eta**2 * (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    mean = a_prev.sqrt() * x0 + (1 - a_prev - variance).clamp(min=0).sqrt() * eps
    return mean, variance.flatten()


def train_diffusion_preference(
    model: torch.nn.Module,
    data: Sequence[dict[str, Any]],
    *,
    loss: str = "diffusion_dpo",
    reference: torch.nn.Module | None = None,
    noise_scheduler: Any = None,
    config: TrainConfig | None = None,
    loss_options: dict[str, Any] | None = None,
    eta: float = 1.0,
    resume: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a denoiser on preferences with Diffusion-DPO, Flow-DPO, MaPO, Diffusion-KTO, RankDPO, SPO or PSO.

    ``data`` rows, by loss (each sample a clean latent ``[C, H, W]``; ``"cond"``, optional ``[L, D]``, is passed as
    the model's third argument — ``encoder_hidden_states`` of a ``UNet2DConditionModel``):

    - ``diffusion_dpo``, ``flow_dpo``, ``mapo``: ``{"chosen", "rejected"}``; ``diffusion_pso``: the same, with the
      training (target) image as ``"chosen"`` and a sample of the distilled model for its prompt as ``"rejected"``;
    - ``diffusion_kto``: ``{"sample", "desirable": bool}`` (one labelled sample per row);
    - ``rankdpo``: ``{"samples": [K, C, H, W], "scores": [K]}`` (K ranked samples of one prompt, higher is better);
    - ``diffusion_spo``: one sampler step, ``{"noisy": x_t, "chosen": x_{t-1}^w, "rejected": x_{t-1}^l,
      "timestep": t, "prev_timestep": optional}`` — the two candidates drawn from the same :math:`x_t` and ranked by
      the caller's step-aware preference model. ``prev_timestep`` defaults to
      ``t - num_train_timesteps // noise_scheduler.num_inference_steps`` (set by ``set_timesteps``; at least 0); the
      step is DDIM's with noise level ``eta`` (> 0; 1 = DDPM's variance), as the SPO authors' sampler.

    ``model(x_t, t[, cond])`` returns the prediction (a diffusers output's ``.sample`` is taken). ``reference``: the
    frozen reference (default: a copy of ``model`` at the start; unused by MaPO).

    Noising: ``"flow_dpo"`` uses rectified flow, :math:`x_t = (1 - t)x_0 + t\\epsilon` with :math:`t \\sim U(0, 1)`,
    target :math:`v = \\epsilon - x_0`, and the model sees ``1000 t``. The others use ``noise_scheduler`` (a
    diffusers scheduler: ``add_noise``, ``config.num_train_timesteps``, ``config.prediction_type`` "epsilon" or
    "v_prediction"; default ``DDPMScheduler()``, which needs the ``diffusion`` extra) with integer timesteps.
    The samples of one example share the noise and the timestep, as in diffusers' Diffusion-DPO example; the
    Diffusion-KTO samples of a batch are noised independently. Data parallel, a batch-coupled loss
    (Diffusion-KTO's KL reference point) is computed on every process's rows gathered in order
    (:func:`pairkit.train._steps.loss_values`), so its objective is one process's on the whole batch; each process
    draws its own noise.
    Returns the ``TrainResult`` of the shared training loop (per-step metrics, final step, output directory).
    """
    if loss not in _LOSSES:
        raise InputError(f"loss must be one of {_LOSSES}, got {loss!r}")
    if loss == "diffusion_spo" and not (isinstance(eta, (int, float)) and 0 < eta <= 1):
        raise InputError(f"eta must be in (0, 1] for diffusion_spo (a stochastic step has a variance), got {eta!r}")
    rows = _check_rows(data, loss)
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

    def on_device(x: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor | None:
        return None if x is None else x.to(device=param.device, dtype=param.dtype)

    def both(m: torch.nn.Module, noisy, target, t, cond):
        err = _errors(m, noisy, target, t, cond)
        if reference is None:
            return err, None
        with torch.no_grad():
            return err, _errors(reference, noisy, target, t, cond)

    def noised(x0: torch.Tensor, copies: int):
        """Noise ``copies`` groups of ``x0`` (stacked along dim 0) with one noise and timestep per example."""
        n = x0.shape[0] // copies
        noise = torch.randn_like(x0[:n]).repeat(copies, *([1] * (x0.dim() - 1)))
        if flow:
            t = torch.rand(n, device=x0.device, dtype=x0.dtype).repeat(copies)
            tt = t.view(-1, *([1] * (x0.dim() - 1)))
            return (1 - tt) * x0 + tt * noise, noise - x0, t * 1000
        steps = int(noise_scheduler.config.num_train_timesteps)
        t = torch.randint(0, steps, (n,), device=x0.device).repeat(copies)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        kind = getattr(noise_scheduler.config, "prediction_type", "epsilon")
        return noisy, noise if kind == "epsilon" else noise_scheduler.get_velocity(x0, noise, t), t

    def pair_step(m: torch.nn.Module, batch: list[dict[str, Any]]):
        param = next(m.parameters())
        n = len(batch)
        x0 = on_device(torch.cat([_stack(batch, "chosen"), _stack(batch, "rejected")]), param)
        cond = on_device(_stack(batch, "cond"), param)
        cond = None if cond is None else torch.cat([cond, cond])
        noisy, target, t = noised(x0, 2)
        err, ref = both(m, noisy, target, t, cond)
        inputs = {"policy_chosen_errors": err[:n], "policy_rejected_errors": err[n:]}
        stats = {"chosen_error": err[:n].detach(), "rejected_error": err[n:].detach()}
        if ref is not None:
            inputs.update(ref_chosen_errors=ref[:n], ref_rejected_errors=ref[n:])
            stats["accuracy"] = ((ref[:n] - err[:n]) > (ref[n:] - err[n:])).float()
        return loss_values(loss, inputs, options), stats

    def kto_step(m: torch.nn.Module, batch: list[dict[str, Any]]):
        param = next(m.parameters())
        x0 = on_device(_stack(batch, "sample"), param)
        desirable = torch.as_tensor([bool(r["desirable"]) for r in batch], device=x0.device)
        noisy, target, t = noised(x0, 1)
        err, ref = both(m, noisy, target, t, on_device(_stack(batch, "cond"), param))
        values = loss_values(loss, {"policy_errors": err, "ref_errors": ref, "desirable": desirable}, options)
        reward = (ref - err).detach()
        stats = {"error": err.detach(), "accuracy": ((reward > 0) == desirable).float()}
        return values, stats

    def list_step(m: torch.nn.Module, batch: list[dict[str, Any]]):
        param = next(m.parameters())
        samples = on_device(_stack(batch, "samples"), param)  # [n, K, C, H, W]
        n, k = samples.shape[:2]
        x0 = samples.transpose(0, 1).reshape(n * k, *samples.shape[2:])  # K groups of n
        cond = on_device(_stack(batch, "cond"), param)
        cond = None if cond is None else cond.repeat(k, *([1] * (cond.dim() - 1)))
        noisy, target, t = noised(x0, k)
        err, ref = both(m, noisy, target, t, cond)
        err, ref = err.view(k, n).T, ref.view(k, n).T
        scores = torch.stack([torch.as_tensor(r["scores"], dtype=torch.float64) for r in batch]).to(err.device)
        values = loss_values(loss, {"policy_errors": err, "ref_errors": ref, "labels": scores}, options)
        reward = (ref - err).detach()
        best = scores.argmax(-1, keepdim=True)
        worst = scores.argmin(-1, keepdim=True)
        right = (reward.gather(-1, best) > reward.gather(-1, worst)).float().squeeze(-1)
        stats = {"error": err.detach().mean(-1), "accuracy": right}
        return values, stats

    def spo_step(m: torch.nn.Module, batch: list[dict[str, Any]]):
        param = next(m.parameters())
        n = len(batch)
        noisy = on_device(_stack(batch, "noisy"), param)
        nxt = on_device(torch.cat([_stack(batch, "chosen"), _stack(batch, "rejected")]), param)
        t = torch.as_tensor([int(r["timestep"]) for r in batch], device=noisy.device)
        t_prev = _prev_timesteps(batch, t, noise_scheduler)
        cond = on_device(_stack(batch, "cond"), param)

        def step_errors(mm):
            mean, variance = _spo_step_means(noise_scheduler, _denoise(mm, noisy, t, cond), noisy, t, t_prev, eta)
            dims = list(range(1, nxt.dim()))
            return (nxt.double() - torch.cat([mean, mean])).pow(2).mean(dims).float(), variance.float()

        err, variance = step_errors(m)
        with torch.no_grad():
            ref, _ = step_errors(reference)
        inputs = {"policy_chosen_errors": err[:n], "policy_rejected_errors": err[n:], "ref_chosen_errors": ref[:n],
                  "ref_rejected_errors": ref[n:], "step_variance": variance}  # fmt: skip
        stats = {"chosen_error": err[:n].detach(), "rejected_error": err[n:].detach(),
                 "accuracy": ((ref[:n] - err[:n]) > (ref[n:] - err[n:])).float()}  # fmt: skip
        return loss_values(loss, inputs, options), stats

    step_loss = {"diffusion_kto": kto_step, "rankdpo": list_step, "diffusion_spo": spo_step}.get(loss, pair_step)
    return fit(model, rows, step_loss, config, resume=resume, callback=callback, losses=[loss])


def _prev_timesteps(batch: list[dict[str, Any]], t: torch.Tensor, scheduler: Any) -> torch.Tensor:
    given = [r.get("prev_timestep") for r in batch]
    if all(g is not None for g in given):
        prev = torch.as_tensor([int(g) for g in given], device=t.device)
    else:
        steps = getattr(scheduler, "num_inference_steps", None)
        if not steps:
            raise InputError(
                "diffusion_spo needs each step's 'prev_timestep' column, or a noise_scheduler with "
                "num_inference_steps set (scheduler.set_timesteps(n))"
            )
        prev = t - int(scheduler.config.num_train_timesteps) // int(steps)
    prev = prev.clamp(min=0)  # as the SPO authors' step: the last step goes to timestep 0, not to the clean sample
    if bool((prev >= t).any()):
        raise InputError("'prev_timestep' must be smaller than 'timestep' (a denoising step goes from t to t-1)")
    return prev
