"""Run by ``accelerate launch`` in tests/train/test_accelerate_stateful.py (and in one process by the test itself):
the trainers whose state outlives a step — semi-supervised (FixMatch with random augmentations, SimMatchV2's banks,
a batch-coupled relation loss, ShrinkMatch's batch-normalised auxiliary head and running certain ratio) and
distillation (PS-KD's past logits, MCMI's centroids, batch-coupled RKD) — each rank saving what it holds to
``OUT/rank-R.pt``.

Every run is float64 on tiny seeded modules; :func:`runs` returns, per run, the trained weights and the state kept
per example (banks, past-logit table, centroids, visit counts), read from the trainers' modules.
"""

import sys

import torch

import pairkit.train.distillation as distillation
import pairkit.train.semi_supervised as semi
from pairkit.train import TrainConfig, train_distillation, train_mcmi_teacher, train_semi_supervised

F = torch.nn.functional


def _modules(made: list, cls):
    class Recorded(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    return Recorded


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def semi_rows(n_lab=8, n_unl=11, dim=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    lab = [{"features": torch.randn(dim, generator=g, dtype=torch.float64), "label": i % classes} for i in range(n_lab)]
    unl = [{"features": torch.randn(dim, generator=g, dtype=torch.float64)} for _ in range(n_unl)]
    return lab, unl


def noisy(x):
    """A random augmentation (torch's global generator, which the trainer seeds per step and view)."""
    return x + 0.3 * torch.randn_like(x)


def semi_run(loss, *, steps=4, out=None, resume=False, threshold=0.3, **kw):
    torch.manual_seed(3)
    encoder = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh()).double()
    made: list = []
    semi._Model, original = _modules(made, semi._Model), semi._Model
    try:
        config = TrainConfig(batch_size=4, epochs=3, max_steps=steps, lr=5e-2, schedule="constant", output_dir=out)
        res = train_semi_supervised(encoder, *semi_rows(), strong_augment=noisy, weak_augment=lambda x: x * 0.9,
                                    ratio=2, bank_size=6, loss=loss, loss_options={"threshold": threshold},
                                    config=config, resume=resume, **kw)  # fmt: skip
    finally:
        semi._Model = original
    return {"state": _state(made[-1]), "losses": [r["loss"] for r in res.history]}


def distill_rows(n=8, dim=5, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"text": torch.randn(dim, generator=g, dtype=torch.float64), "label": i % classes} for i in range(n)]


def net(seed, width=4):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.Tanh(), torch.nn.Linear(width, 3)).double()


def distill_run(loss, *, epochs=3, steps=None, out=None, resume=False, **kw):
    made: list = []
    distillation._Distiller, original = _modules(made, distillation._Distiller), distillation._Distiller
    try:
        config = TrainConfig(batch_size=4, epochs=epochs, max_steps=steps, lr=5e-2, schedule="constant",
                             output_dir=out)  # fmt: skip
        if loss == "mcmi":
            res = train_mcmi_teacher(net(5), distill_rows(), cmi_weight=0.5, config=config, resume=resume)
        else:
            res = train_distillation(net(5), net(6, 6), distill_rows(), loss=loss, config=config, resume=resume, **kw)
    finally:
        distillation._Distiller = original
    return {"state": _state(made[-1]), "losses": [r["loss"] for r in res.history]}


def runs(out: str) -> dict[str, dict]:
    """Every run, the resumed ones as two launches' worth (two steps, then resumed to the end) in ``out``."""
    simmatch = "fixmatch_loss+simmatchv2_node_node_loss+simmatchv2_node_edge_loss+simmatchv2_edge_edge_loss"
    done = {
        "fixmatch": semi_run("fixmatch_loss"),
        "simmatch": semi_run(simmatch, steps=5),
        "relation": semi_run("fixmatch_loss+relation_consistency_loss"),
        "shrinkmatch": semi_run("fixmatch_loss+shrinkmatch_loss", threshold=0.5),
        "ps_kd": distill_run("ps_kd_loss"),
        "mcmi": distill_run("mcmi"),
        "rkd": distill_run("hinton_kd_loss+rkd_distance_loss+rkd_angle_loss", epochs=1, student_layer="1",
                           teacher_layer="1"),
    }  # fmt: skip
    semi_run(simmatch, steps=2, out=f"{out}/simmatch")
    done["simmatch_resumed"] = semi_run(simmatch, steps=5, out=f"{out}/simmatch", resume=True)
    distill_run("ps_kd_loss", steps=3, out=f"{out}/ps_kd")
    done["ps_kd_resumed"] = distill_run("ps_kd_loss", out=f"{out}/ps_kd", resume=True)
    return done


if __name__ == "__main__":
    out = sys.argv[1]
    result = runs(out)
    rank = torch.distributed.get_rank()
    result["world"] = torch.distributed.get_world_size()
    torch.save(result, f"{out}/rank-{rank}.pt")
    torch.distributed.destroy_process_group()
